"""The ``hf-vlm-filter`` command line: score or filter a dataset with one or several scorers, write Parquet.

Examples::

    hf-vlm-filter tiny-model out/tiny-judge
    hf-vlm-filter score examples/sample/pairs.json --model out/tiny-judge --out out/scored
    hf-vlm-filter filter some/hub-dataset --streaming --threshold 9 --out out/kept
    hf-vlm-filter filter some/hub-dataset --scorer compact --scorer clip --threshold 9 \
        --threshold-for clip_score=0.28 --out out/kept

``--scorer compact|unifilter|unifilter-docs|clip|ppl`` (repeatable, default ``compact``) picks the
scorers; several run in one pass (:class:`~hf_vlm_filter.scorers.composite.CompositeScorer`).
``score`` keeps every row and adds each scorer's ``<prefix>_score`` / ``<prefix>_error``; ``filter``
keeps rows whose first scorer's score reaches ``--threshold`` and every ``--threshold-for COLUMN=VALUE``
(and, with ``--keep-errors``, rows that could not be scored). Both write
``OUT/data.parquet`` and ``OUT/summary.txt`` and print the summary. With ``--streaming`` the run is a
resumable job (:mod:`hf_vlm_filter.jobs.streaming_filter`): Parquet shards under ``OUT/data/``, a
checkpoint under ``OUT/state/`` (``--resume`` continues a killed job), a dataset card. ``--push-to
REPO`` publishes the result (each shard as it is finished when streaming). Exit codes: 0 success,
1 checkpoint unavailable, 2 bad arguments or source, 3 Hub upload failed or job state refused.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .jobs.streaming_filter import DEFAULT_MAX_SHARD_BYTES, DEFAULT_SHARD_ROWS, JobStateError
from .predicates import DEFAULT_THRESHOLD
from .scorers.compact_judge import DEFAULT_JUDGE, MAX_PIXELS, MIN_PIXELS, MODES
from .sources import SourceError, load_source
from .summary import RunSummary

PROG = "hf-vlm-filter"
SCORER_NAMES = ("compact", "unifilter", "unifilter-docs", "clip", "ppl")
DATA_FILE = "data.parquet"
DEFAULT_BATCH_SIZE = 256  # rows per map batch: several micro-batches, so decoding overlaps the model
SUMMARY_FILE = "summary.txt"
#: Modules that add subcommands: each has ``register(commands)``, which adds its parsers to the
#: ``add_subparsers`` object and sets ``handler=callable(args) -> exit code`` as their default.
COMMAND_MODULES: tuple[str, ...] = ("hf_vlm_filter.visa.cli",)


class UsageError(Exception):
    """A bad argument or input: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (no usage block) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the ``score``, ``filter`` and ``tiny-model`` subcommands."""
    parser = _Parser(prog=PROG, description="Judge image-caption data with a compact VLM; write Parquet.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, help_text in (
        ("score", "add judge_score / judge_error to every row"),
        ("filter", "keep rows whose judge_score >= --threshold"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("source", help="Hub dataset id, .parquet/.json/.jsonl/.csv file, Parquet folder or image folder")
        sub.add_argument("--out", required=True, type=Path, help="output folder (data.parquet, summary.txt)")
        sub.add_argument("--scorer", action="append", choices=SCORER_NAMES, default=None,
                         help="scorer to run (repeatable; default compact); several run in one pass")
        sub.add_argument("--model", default=None, help=f"checkpoint of the (single) scorer, Hub id or local folder (default {DEFAULT_JUDGE} for compact)")
        sub.add_argument("--model-for", action="append", default=[], metavar="NAME=PATH",
                         help="checkpoint of scorer NAME when several --scorer are given (repeatable)")
        sub.add_argument("--revision", default=None, help="Hub revision of --model")
        sub.add_argument("--split", default="train", help="dataset split (default train)")
        sub.add_argument("--streaming", action="store_true", help="stream the source, write Parquet incrementally")
        sub.add_argument("--image-column", default="image", help="image column (default image; image_path is used when absent)")
        sub.add_argument("--text-column", default="caption", help="caption column (default caption)")
        sub.add_argument("--limit", type=int, default=None, help="only the first N rows")
        sub.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                         help=f"rows per map batch (default {DEFAULT_BATCH_SIZE}); the scorer cuts it into micro-batches")
        sub.add_argument("--micro-batch-size", type=int, default=None,
                         help="rows per model forward (default: the scorer's, 64 for compact, 256 for clip)")
        sub.add_argument("--prefetch-workers", type=int, default=None,
                         help="threads decoding the next micro-batch while the model runs (default: cores-1 on GPU, 0 on CPU)")
        sub.add_argument("--mode", choices=MODES, default="fast", help="fast (one forward pass) or reference (generate)")
        sub.add_argument("--device", default=None, help="cuda, cuda:1, cpu... (default: CUDA when available)")
        sub.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default=None)
        sub.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help=f"image pixel budget, upper bound (default {MAX_PIXELS})")
        sub.add_argument("--min-pixels", type=int, default=MIN_PIXELS, help=f"image pixel budget, lower bound (default {MIN_PIXELS})")
        if name == "filter":
            sub.add_argument("--threshold", type=float, default=None,
                             help="keep rows whose first scorer's score >= this (default 9 for compact)")
            sub.add_argument("--threshold-for", action="append", default=[], metavar="COLUMN=VALUE",
                             help="also require COLUMN >= VALUE, e.g. clip_score=0.28 (repeatable)")
            sub.add_argument("--keep-errors", action="store_true", help="also keep rows that could not be scored")
        sub.add_argument("--push-to", default=None, metavar="REPO",
                         help="publish the result as Hub dataset REPO with a dataset card (streaming: shard by shard)")
        sub.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS,
                         help=f"streaming: rows per Parquet shard (default {DEFAULT_SHARD_ROWS})")
        sub.add_argument("--max-shard-bytes", type=int, default=DEFAULT_MAX_SHARD_BYTES,
                         help=f"streaming: Arrow bytes per shard at most (default {DEFAULT_MAX_SHARD_BYTES})")
        sub.add_argument("--resume", action="store_true",
                         help="streaming: continue the job checkpointed in --out (after a crash or kill)")
    tiny = commands.add_parser("tiny-model", help="write a tiny random judge checkpoint (offline smoke runs)")
    tiny.add_argument("out_dir", type=Path)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 checkpoint unavailable, 2 bad input)."""
    from .models.loading import CheckpointUnavailableError

    from .hub.retry import HubUploadError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.command_line = " ".join([PROG, *(shlex.quote(arg) for arg in argv)])
        if args.command == "tiny-model":
            from .testing import save_tiny_model

            print(save_tiny_model(args.out_dir))
            return 0
        handler = getattr(args, "handler", None)
        return handler(args) if handler is not None else run(args)
    except CheckpointUnavailableError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (HubUploadError, JobStateError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 3
    except (UsageError, SourceError, FileNotFoundError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """The ``score`` / ``filter`` subcommands: load, score, (filter), write, summarise."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.micro_batch_size is not None and args.micro_batch_size < 1:
        raise UsageError(f"--micro-batch-size must be >= 1, got {args.micro_batch_size}")
    if args.prefetch_workers is not None and args.prefetch_workers < 0:
        raise UsageError(f"--prefetch-workers must be >= 0, got {args.prefetch_workers}")
    if args.shard_rows < 1 or args.max_shard_bytes < 1:
        raise UsageError("--shard-rows and --max-shard-bytes must be >= 1")
    if args.resume and not args.streaming:
        raise UsageError("--resume continues a --streaming job; add --streaming")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} exists and is not a folder")
    names = _scorer_names(args)
    models = _models(args, names)
    thresholds = _thresholds(args, names) if args.command == "filter" else None
    dataset, image_root = load_source(args.source, split=args.split, streaming=args.streaming, limit=args.limit)
    image_column = args.image_column
    columns = getattr(dataset, "column_names", None) or []
    if image_column == "image" and "image" not in columns and "image_path" in columns:
        image_column = "image_path"  # the seed layout (the judge falls back the same way)
    scorers = [_build_scorer(name, models[name], args, image_column, image_root) for name in names]
    if len(scorers) == 1:
        judge = scorers[0]
    else:
        from .scorers.composite import CompositeScorer

        judge = CompositeScorer(scorers)
    if thresholds is not None:
        _check_threshold_columns(thresholds, judge)
    if args.streaming:
        from .distributed import on_local_device

        judge = on_local_device(judge)  # under torchrun: this rank's GPU, chosen before the model loads
    judge.load()  # fail now, with the checkpoint's own message, rather than inside map
    keep_errors = bool(getattr(args, "keep_errors", False))
    args.out.mkdir(parents=True, exist_ok=True)
    from .hub.run_record import FilterRun

    record = FilterRun.from_scorer(
        judge, args.source, source_revision=_source_revision(args.source), split=args.split,
        thresholds=thresholds, keep_errors=keep_errors, command=args.command_line,
    )
    if args.streaming:
        return _run_job(dataset, judge, record, args)
    summary, scored, kept = _run_in_memory(dataset, judge, args.batch_size, args.out / DATA_FILE, thresholds, keep_errors)
    text = summary.render()
    (args.out / SUMMARY_FILE).write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {args.out / DATA_FILE}")
    if args.push_to:
        from .hub.push import push_filtered

        record.summary = summary
        columns = getattr(judge, "score_columns", [judge.score_column])
        result = push_filtered(kept, args.push_to, record, histogram_scores={c: scored[c] for c in columns})
        print(f"pushed {len(result.files)} files to {args.push_to} (commit {result.commit_oid})")
    return 0


def _run_job(dataset: Any, judge: Any, record: Any, args: argparse.Namespace) -> int:
    """``--streaming``: the resumable shard-writing job, then its card (and uploads with ``--push-to``).

    Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1) each process scores its own
    part of the source on its own GPU; rank 0 waits for every rank and writes the one card
    (:mod:`hf_vlm_filter.distributed`).
    """
    from .distributed import run_distributed_job

    result = run_distributed_job(
        dataset, judge, args.out, record, batch_size=args.batch_size, shard_rows=args.shard_rows,
        max_shard_bytes=args.max_shard_bytes, push_to=args.push_to, resume=args.resume,
    )
    if result is None:  # a rank other than 0: its shards are written, rank 0 writes the card
        print(f"rank done: shards in {args.out / 'data'}; rank 0 writes the card")
        return 0
    print(result.run.summary.render())
    print(f"wrote {len(result.shards)} shards ({result.kept} rows) to {args.out / 'data'}")
    if args.push_to:
        print(f"pushed to {args.push_to}")
    return 0


def _source_revision(source: str) -> str | None:
    """The commit of a Hub dataset SOURCE (recorded in the card); ``None`` for local files or offline."""
    from .hub.cards import is_hub_id

    if not is_hub_id(source):
        return None
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(source).sha
    except Exception:  # noqa: BLE001 - offline, private...: the card just says "not recorded"
        return None


def _scorer_names(args: argparse.Namespace) -> list[str]:
    names = args.scorer or ["compact"]
    if len(set(names)) != len(names):
        raise UsageError(f"--scorer given twice: {names}")
    return names


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise UsageError(f"{flag} expects NAME=VALUE, got {value!r}")
        pairs[key.strip()] = rest.strip()
    return pairs


def _models(args: argparse.Namespace, names: list[str]) -> dict[str, str | None]:
    """Each scorer's checkpoint: ``--model`` for a single scorer, else ``--model-for NAME=PATH``."""
    model_for = _pairs(args.model_for, "--model-for")
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


def _thresholds(args: argparse.Namespace, names: list[str]) -> dict[str, float]:
    """Column -> threshold: ``--threshold`` on the first scorer's score column, plus ``--threshold-for``."""
    from . import SCORERS

    first = SCORERS[names[0]]
    first_column = f"{first.prefix}_{first.score_name}"
    thresholds: dict[str, float] = {}
    if args.threshold is not None:
        thresholds[first_column] = args.threshold
    elif names[0] == "compact":
        thresholds[first_column] = DEFAULT_THRESHOLD
    for column, value in _pairs(args.threshold_for, "--threshold-for").items():
        try:
            thresholds[column] = float(value)
        except ValueError:
            raise UsageError(f"--threshold-for {column}: {value!r} is not a number") from None
    if not thresholds:
        raise UsageError(f"filter with --scorer {names[0]} needs --threshold (or --threshold-for COLUMN=VALUE)")
    return thresholds


def _check_threshold_columns(thresholds: dict[str, float], judge: Any) -> None:
    """Refuse a threshold on a column the selected scorers do not write (before any model loads)."""
    from .scorers.base import is_float_feature

    written = [column for column, feature in judge.output_features().items() if is_float_feature(feature)]
    unknown = sorted(set(thresholds) - set(written))
    if unknown:
        raise UsageError(f"--threshold-for names columns the selected scorers do not write: {unknown}; "
                         f"they write {written}")


def _build_scorer(name: str, model: str | None, args: argparse.Namespace, image_column: str, image_root: Any) -> Any:
    """A scorer of registry ``name`` with the options of ``args`` that its config takes."""
    from . import SCORERS

    cls = SCORERS[name]
    options = {
        "revision": args.revision, "image_column": image_column, "text_column": args.text_column,
        "device": args.device, "dtype": args.dtype, "image_root": image_root,
    }
    if args.micro_batch_size is not None:
        options["micro_batch_size"] = args.micro_batch_size
    if args.prefetch_workers is not None:
        options["prefetch_workers"] = args.prefetch_workers
    if name == "compact":
        options.update(mode=args.mode, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                       image_column=args.image_column)
    config_fields = _config_fields(cls)
    options = {key: value for key, value in options.items() if key in config_fields}
    return cls(model, **options) if model is not None else cls(**options)


def _config_fields(cls: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls.config_class)}


def _summary_threshold(judge: Any, thresholds: dict[str, float] | None) -> float | None:
    if thresholds is None:
        return None
    return thresholds.get(judge.score_column, float("-inf"))


def _run_in_memory(
    dataset: Any, judge: Any, batch_size: int, path: Path, thresholds: dict[str, float] | None, keep_errors: bool
) -> tuple[RunSummary, Any, Any]:
    """Score a ``Dataset`` with ``map``, filter it with ``threshold_filter``, write one Parquet file.

    Returns the summary, the scored rows and the kept rows.
    """
    from . import map_with_scorer, threshold_filter

    scored = map_with_scorer(dataset, judge, batch_size=batch_size)
    summary = RunSummary.from_columns(
        scored[judge.score_column], scored[judge.error_column],
        threshold=_summary_threshold(judge, thresholds), keep_errors=keep_errors, thresholds=thresholds,
    )
    kept = scored
    if thresholds is not None:
        kept = scored.filter(
            threshold_filter, batched=True, batch_size=batch_size,
            fn_kwargs={"thresholds": thresholds, "keep_errors": keep_errors},
        )
        summary.kept = len(kept)
    kept.to_parquet(str(path))
    return summary, scored, kept
