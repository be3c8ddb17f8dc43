"""``hf-vlm-filter score`` and ``hf-vlm-filter filter``: one or several scorers over a SOURCE, Parquet out.

``score`` keeps every row and adds each scorer's columns; ``filter`` keeps the rows its keep rule
keeps: ``--threshold`` on the first scorer's score column (default 9 for the judge), in that
column's direction (at least for a higher-is-better score, at most for caption perplexity),
``--threshold-for COLUMN=VALUE`` on any other score column, ``--top-fraction [COLUMN=]F`` /
``--bottom-fraction [COLUMN=]F`` for the highest / lowest fraction of a column (in memory only), and
``--keep-errors``. Both write ``OUT/data.parquet`` and ``OUT/summary.txt`` and print the summary,
and ``OUT/report.html`` with ``OUT/report_sample.json`` (:mod:`hf_vlm_filter.reports`: the gallery
sample is collected while rows are scored).
With ``--streaming`` the run is the resumable job of :mod:`hf_vlm_filter.engines.streaming`
(Parquet shards under ``OUT/data/``, a checkpoint under ``OUT/state/``, ``--resume``, a dataset card),
under torchrun one job per rank; ``--push-to REPO`` publishes the result.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..engines.keep_rule import ColumnRule, KeepRule
from ..engines.options import DEFAULT_BATCH_SIZE, DEFAULT_MAX_SHARD_BYTES, DEFAULT_SHARD_ROWS, JobOptions
from ..engines.predicates import DEFAULT_THRESHOLD
from ..engines.run_record import RunContext
from ..scorers.registry import SCORERS
from .errors import UsageError, pairs
from .scorer_flags import add_scorer_flags, scorer_options

DATA_FILE = "data.parquet"
SUMMARY_FILE = "summary.txt"
#: The scorer run when no ``--scorer`` is given.
DEFAULT_SCORER = "compact"


def register(commands: Any) -> None:
    """Add the ``score`` and ``filter`` parsers to the CLI's subcommands."""
    for name, help_text in (
        ("score", "add every selected scorer's score and error columns to every row"),
        ("filter", "keep the rows the keep rule keeps (--threshold, --threshold-for, --top-fraction...)"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("source", help="Hub dataset id, .parquet/.json/.jsonl/.csv file, Parquet folder or image folder")
        sub.add_argument("--out", required=True, type=Path, help="output folder (data.parquet, summary.txt)")
        add_scorer_flags(sub)
        sub.add_argument("--split", default="train", help="dataset split (default train)")
        sub.add_argument("--streaming", action="store_true", help="stream the source as a resumable job writing shards")
        sub.add_argument("--limit", type=int, default=None, help="only the first N rows")
        sub.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                         help=f"rows per map batch (default {DEFAULT_BATCH_SIZE}); the scorer cuts it into micro-batches")
        if name == "filter":
            sub.add_argument("--threshold", type=float, default=None,
                             help=f"cut-off on the first scorer's score, in its direction (default {DEFAULT_THRESHOLD:g} "
                                  "for compact)")
            sub.add_argument("--threshold-for", action="append", default=[], metavar="COLUMN=VALUE",
                             help="also a cut-off on COLUMN, e.g. clip_score=0.28 (repeatable)")
            sub.add_argument("--top-fraction", action="append", default=[], metavar="[COLUMN=]F",
                             help="keep the F fraction of rows with the highest COLUMN (default the first score)")
            sub.add_argument("--bottom-fraction", action="append", default=[], metavar="[COLUMN=]F",
                             help="keep the F fraction of rows with the lowest COLUMN (default the first score)")
            sub.add_argument("--keep-errors", action="store_true", help="also keep rows that could not be scored")
            sub.add_argument("--rescore", action="store_true",
                             help="score again even when the source already holds every score column")
        sub.add_argument("--calibration", type=Path, default=None, metavar="PATH",
                         help="the judge's calibration (`hf-vlm-filter calibrate`'s calibration.json or its folder) "
                              "the threshold was chosen with: shown in the report and the dataset card")
        sub.add_argument("--image-root", type=Path, default=None,
                         help="folder relative image paths are resolved against (default: the source's folder)")
        sub.add_argument("--embed-images", action="store_true",
                         help="write each image's bytes into the output's `image` column (Image feature), "
                              "so the output carries its pixels; by default image paths are written absolute")
        sub.add_argument("--format", choices=("parquet", "webdataset"), default="parquet",
                         help="output format: Parquet (default), or WebDataset tar shards (original image bytes, "
                              "the caption, a json member with every score and reason)")
        sub.add_argument("--rejected-out", type=Path, default=None, metavar="DIR",
                         help="filter: also write the dropped rows to DIR, in the same format, with dropped_by "
                              "(the rule that dropped each, or error)")
        sub.add_argument("--push-to", default=None, metavar="REPO",
                         help="publish the result as Hub dataset REPO with a dataset card (streaming: shard by shard)")
        sub.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS,
                         help=f"streaming: rows per Parquet shard (default {DEFAULT_SHARD_ROWS})")
        sub.add_argument("--max-shard-bytes", type=int, default=DEFAULT_MAX_SHARD_BYTES,
                         help=f"streaming: Arrow bytes per shard at most (default {DEFAULT_MAX_SHARD_BYTES})")
        sub.add_argument("--resume", action="store_true",
                         help="streaming: continue the job checkpointed in --out (after a crash or kill)")
        sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The ``score`` / ``filter`` subcommands: build, check, load, run an engine, write, summarise."""
    from ..engines.options import OutputSpec
    from ..engines.shard_formats import shard_format
    from ..inputs.portable import PortableImages
    from ..inputs.sources import load_source
    from ..scorers.precomputed import PrecomputedScores

    options = JobOptions(batch_size=args.batch_size, shard_rows=args.shard_rows, max_shard_bytes=args.max_shard_bytes)
    if args.resume and not args.streaming:
        raise UsageError("--resume continues a --streaming job; add --streaming")
    for flag, folder in (("--out", args.out), ("--rejected-out", args.rejected_out)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise UsageError(f"{flag} {str(folder)!r} exists and is not a folder")
    if args.rejected_out is not None and args.command != "filter":
        raise UsageError("--rejected-out writes the rows a filter drops: use it with `filter`")
    calibration = _calibration(args.calibration)
    names = scorer_names(args)
    models = _models(args, names)
    prefixes = _prefixes(args, names)
    dataset, image_root = load_source(args.source, split=args.split, streaming=args.streaming, limit=args.limit)
    if args.image_root is not None:
        if not args.image_root.is_dir():
            raise UsageError(f"--image-root {str(args.image_root)!r} is not a folder")
        image_root = str(args.image_root)
    text_column = caption_column(args, names, dataset.column_names or [])
    members = [_build_scorer(name, models[name], args, image_root, text_column, prefixes.get(name)) for name in names]
    scorer = members[0] if len(members) == 1 else _composite(members)
    if args.command == "filter" and not args.rescore and PrecomputedScores.available(scorer, dataset.column_names):
        scorer = PrecomputedScores(scorer)
        print(f"the source holds {', '.join(s.column for s in scorer.score_specs)}: filtering on those scores "
              "(--rescore computes them again)")
    rule = keep_rule(args, scorer) if args.command == "filter" else KeepRule()
    if args.streaming and rule.needs_whole_column:
        raise UsageError("--top-fraction / --bottom-fraction need every row's score: run without --streaming "
                         "(or stream with --threshold)")
    image_columns = _image_columns(args, dataset)
    outputs = OutputSpec(
        format=shard_format(args.format, image_column="image" if args.embed_images else next(iter(image_columns), None),
                            text_column=text_column or "caption"),
        transform=PortableImages(tuple(image_columns), image_root, args.embed_images),
        rejected_dir=args.rejected_out)
    context = RunContext(args.source, source_revision=_source_revision(args.source), split=args.split,
                         limit=args.limit, command=args.command_line, calibration=calibration)
    if calibration is not None:
        _check_calibration_model(calibration, scorer)
    gallery = _gallery(scorer, rule, dataset, next(iter(image_columns), None), text_column, image_root)
    if args.streaming:
        from ..engines.torchrun import on_local_device

        scorer = on_local_device(scorer)  # under torchrun: this rank's GPU, chosen before the model loads
    scorer.load()  # fail now, with the checkpoint's own message, rather than inside map
    args.out.mkdir(parents=True, exist_ok=True)
    if args.streaming:
        return _run_job(dataset, scorer, rule, context, options, outputs, args, gallery)
    from ..engines.in_memory import run_in_memory
    from ..reports import write_report

    result = run_in_memory(dataset, scorer, rule, context, options, outputs, observers=[gallery])
    written = _write_in_memory(result.kept, args.out, outputs)
    if result.rejected is not None:
        args.rejected_out.mkdir(parents=True, exist_ok=True)
        print(f"wrote {_write_in_memory(result.rejected, args.rejected_out, outputs)} ({len(result.rejected)} rejected rows)")
    text = result.summary.render()
    (args.out / SUMMARY_FILE).write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {written}")
    print(f"wrote {write_report(args.out, result.run, gallery)}")
    if args.push_to:
        from ..hub.push import push_filtered

        pushed = push_filtered(result.kept, args.push_to, result.run, gallery=gallery)
        print(f"pushed {len(pushed.files)} files to {args.push_to} (commit {pushed.commit_oid})")
    return 0


def _write_in_memory(rows: Any, folder: Path, outputs: Any) -> Path:
    """One file of ``rows`` in ``folder``: ``data.parquet`` (``datasets``' own writer) or ``data.tar``."""
    fmt = outputs.shard_format()
    if fmt.name == "parquet":
        path = folder / DATA_FILE
        rows.to_parquet(str(path))
        return path
    path = folder / f"data{fmt.suffix}"
    fmt.write(path, rows.with_format("arrow")[:])
    return path


def _run_job(dataset: Any, scorer: Any, rule: KeepRule, context: RunContext, options: JobOptions, outputs: Any,
             args: argparse.Namespace, gallery: Any) -> int:
    """``--streaming``: the resumable shard-writing job (one per torchrun rank), then its report and card."""
    from ..engines.torchrun import run_distributed_job
    from ..hub.job_publishing import DatasetCardWriter, HubPublisher
    from ..reports import ReportWriter

    publisher = HubPublisher(args.push_to) if args.push_to else None
    finisher = publisher or DatasetCardWriter()
    result = run_distributed_job(dataset, scorer, args.out, context, rule, options, resume=args.resume,
                                 publisher=publisher, finishers=[ReportWriter(), finisher], outputs=outputs,
                                 observers=[gallery])
    if result is None:  # a rank other than 0: its shards are written, rank 0 writes the card
        print(f"rank done: shards in {args.out / 'data'}; rank 0 writes the card")
        return 0
    print(result.run.summary.render())
    print(f"wrote {len(result.shards)} shards ({result.kept} rows) to {args.out / 'data'}")
    if args.rejected_out is not None:
        rejected = sum(shard.rows for shard in result.rejected_shards)
        print(f"wrote {len(result.rejected_shards)} shards ({rejected} rejected rows) to {args.rejected_out / 'data'}")
    if args.push_to:
        print(f"pushed to {args.push_to}")
    return 0


def _calibration(path: Path | None) -> dict[str, Any] | None:
    """``--calibration``: the checked calibration record, or a one-line usage error."""
    if path is None:
        return None
    from ..engines.calibration import load_calibration

    try:
        return load_calibration(path)
    except ValueError as exc:
        raise UsageError(f"--calibration: {exc}") from None


def _check_calibration_model(calibration: dict[str, Any], scorer: Any) -> None:
    """One warning line when the calibration was made with another checkpoint than the run's judge."""
    models = [getattr(getattr(member, "config", None), "model", None) for member in scorer.members()
              if getattr(member, "name", None) == "compact"]
    if models and calibration.get("model") not in models:
        print(f"warning: the calibration was made with {calibration.get('model')!r}, this run's judge is "
              f"{models[0]!r}: its figures may not hold for this run", file=sys.stderr)


def _gallery(scorer: Any, rule: KeepRule, dataset: Any, image_column: str | None, text_column: str | None,
             image_root: str | None) -> Any:
    """The report's row observer: thumbnails from ``image_column``, captions from ``text_column``
    (else the source's caption column, when it has one)."""
    from ..reports import GallerySample

    columns = dataset.column_names or []
    text_column = text_column or next((column for column in CAPTION_CANDIDATES if column in columns), None)
    return GallerySample.for_run(scorer, rule, image_column=image_column, text_column=text_column,
                                 image_root=image_root)


#: Caption columns looked for when no --text-column is given, in this order.
CAPTION_CANDIDATES = ("caption", "text", "txt", "json.caption")


def caption_column(args: argparse.Namespace, names: list[str], columns: list[str]) -> str | None:
    """``--text-column``, else the one caption column the source has among :data:`CAPTION_CANDIDATES`
    (``None`` when no selected scorer reads a caption, or the source has its default one)."""
    if args.text_column:
        return args.text_column
    if not any("text_column" in SCORERS[base_name(name)].option_fields() for name in names):
        return None
    found = [column for column in CAPTION_CANDIDATES if column in columns]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"no caption column: looked for {', '.join(CAPTION_CANDIDATES)} in {columns}; "
                         "pass --text-column COLUMN")
    raise UsageError(f"several caption columns {found}: pass --text-column with the one to read")


def base_name(name: str) -> str:
    """The registry name of ``NAME[:LABEL]``."""
    return name.split(":", 1)[0]


def scorer_names(args: argparse.Namespace) -> list[str]:
    """The ``--scorer NAME[:LABEL]`` values (default ``compact``), checked against the registry."""
    names = args.scorer or [DEFAULT_SCORER]
    if len(set(names)) != len(names):
        raise UsageError(f"--scorer given twice: {names}; give the second one a label (clip:siglip)")
    for name in names:
        base, _, label = name.partition(":")
        if base not in SCORERS:
            raise UsageError(f"unknown --scorer {base!r}; registered: {', '.join(SCORERS)}")
        if ":" in name and not label.replace("_", "").isalnum():
            raise UsageError(f"--scorer {name!r}: a label is letters, digits and '_'")
    return names


def _prefixes(args: argparse.Namespace, names: list[str]) -> dict[str, str]:
    """Column prefixes: ``--column-prefix NAME[:LABEL]=PREFIX``, else ``{prefix}_{label}`` for a labelled scorer."""
    given = pairs(args.column_prefix, "--column-prefix")
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise UsageError(f"--column-prefix names scorers not selected with --scorer: {unknown}")
    prefixes = {}
    for name in names:
        base, _, label = name.partition(":")
        if name in given:
            prefixes[name] = given[name]
        elif label:
            prefixes[name] = f"{SCORERS[base].prefix}_{label}"
    return prefixes


def keep_rule(args: argparse.Namespace, scorer: Any) -> KeepRule:
    """The rule of ``filter``: thresholds in each column's declared direction, fractions, keep_errors;
    refused when a column is not written or a threshold can never pass."""
    specs = {spec.column: spec for spec in scorer.score_specs}
    first = scorer.score_specs[0]
    thresholds: dict[str, float] = {}
    if args.threshold is not None:
        thresholds[first.column] = args.threshold
    for column, value in pairs(args.threshold_for, "--threshold-for").items():
        thresholds[column] = _number(value, f"--threshold-for {column}")
    fractions: dict[str, tuple[str, float]] = {}
    for flag, direction in (("top_fraction", "higher"), ("bottom_fraction", "lower")):
        for value in getattr(args, flag):
            column, _, number = value.rpartition("=")
            column = column.strip() or first.column
            if column in fractions:
                raise UsageError(f"two fractions for {column}")
            fractions[column] = (direction, _number(number, f"--{flag.replace('_', '-')}"))
    if not thresholds and not fractions and scorer.members()[0].name == DEFAULT_SCORER:
        thresholds[first.column] = DEFAULT_THRESHOLD
    if not thresholds and not fractions:
        raise UsageError(f"filter with --scorer {scorer.members()[0].name} needs --threshold (or --threshold-for "
                         "COLUMN=VALUE, --top-fraction, --bottom-fraction)")
    unknown = sorted((set(thresholds) | set(fractions)) - set(specs))
    if unknown:
        raise UsageError(f"--threshold-for names columns the selected scorers do not write: {unknown}; "
                         f"they write {list(specs)}")
    both = sorted(set(thresholds) & set(fractions))
    if both:
        raise UsageError(f"{both}: give a column a threshold or a fraction, not both")
    rules = []
    for column, value in thresholds.items():
        spec = specs[column]
        if not spec.can_reach(value):
            raise UsageError(f"threshold {value:g} on {column} can never pass: {column} is {spec.describe_range()}")
        rules.append(ColumnRule(column, spec.direction, threshold=value))
    for column, (direction, fraction) in fractions.items():
        if not 0 < fraction <= 1:
            raise UsageError(f"a fraction must be in (0, 1], got {fraction:g} for {column}")
        rules.append(ColumnRule(column, direction, fraction=fraction))
    return KeepRule(tuple(rules), keep_errors=args.keep_errors)


def _number(value: str, flag: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"{flag}: {value!r} is not a number") from None


def _models(args: argparse.Namespace, names: list[str]) -> dict[str, str | None]:
    """Each scorer's checkpoint: ``--model`` for a single scorer, else ``--model-for NAME=PATH``."""
    model_for = pairs(args.model_for, "--model-for")
    unknown = sorted(set(model_for) - set(names))
    if unknown:
        raise UsageError(f"--model-for names scorers not selected with --scorer: {unknown}")
    if len(names) == 1:
        if args.model is not None and names[0] in model_for:
            raise UsageError("give the checkpoint with --model or --model-for, not both")
        return {names[0]: args.model if args.model is not None else model_for.get(names[0])}
    if args.model is not None:
        raise UsageError("--model is ambiguous with several --scorer; use --model-for NAME=PATH")
    return {name: model_for.get(name) for name in names}


def _build_scorer(name: str, model: str | None, args: argparse.Namespace, image_root: str | None,
                  text_column: str | None, prefix: str | None) -> Any:
    """A scorer of registry ``NAME[:LABEL]`` with the options the command line set, its columns
    under ``prefix`` when given."""
    scorer = _configured(base_name(name), model, args, image_root, text_column)
    if prefix is None:
        return scorer
    from ..scorers.renamed import RenamedColumns

    try:
        return RenamedColumns(scorer, prefix)
    except ValueError as exc:
        raise UsageError(f"--column-prefix {name}: {exc}") from None


def _configured(name: str, model: str | None, args: argparse.Namespace, image_root: str | None,
                text_column: str | None) -> Any:
    cls = SCORERS[name]
    options = scorer_options(args, name)
    if "image_root" in cls.option_fields():
        options["image_root"] = image_root
    if text_column is not None and "text_column" in cls.option_fields():
        options["text_column"] = text_column
    if model is not None:
        if "model" not in cls.option_fields():
            raise UsageError(f"--scorer {name} takes no checkpoint (--model / --model-for)")
        options["model"] = model
    try:
        return cls(**options)
    except ValueError as exc:  # the config's own check, worded with the flags that set the options
        message = str(exc)
        for option in sorted(options, key=len, reverse=True):
            message = message.replace(option, "--" + option.replace("_", "-"))
        raise UsageError(message) from None


def _image_columns(args: argparse.Namespace, dataset: Any) -> list[str]:
    """The source's image columns: ``--image-column``, else ``image``, and the seed layout's ``image_path``."""
    wanted = [args.image_column] if args.image_column else ["image", "image_path"]
    return [column for column in wanted if column in (dataset.column_names or [])]


def _composite(members: list[Any]) -> Any:
    from ..scorers.composite import CompositeScorer

    return CompositeScorer(members)


def _source_revision(source: str) -> str | None:
    """The commit of a Hub dataset SOURCE (recorded in the card); ``None`` for local files or offline."""
    from ..hub.cards import is_hub_id

    if not is_hub_id(source):
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source).sha
    except Exception:  # noqa: BLE001 - offline, private...: the card just says "not recorded"
        return None
