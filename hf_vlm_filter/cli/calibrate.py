"""``hf-vlm-filter calibrate``: how far the judge's fast mode is from its faithful mode, on your rows.

Example::

    hf-vlm-filter calibrate user/pairs --model ./judge --rows 500 --threshold 9 --out out/calibration
    hf-vlm-filter calibrate pairs.parquet --model ./judge --against justify --max-pixels 200704 --out out/cal

Scores the first ``--rows`` rows of SOURCE in fast mode and in reference mode (``--against
justify``: justify mode) and writes ``OUT/calibration.json`` (Spearman / Kendall between the modes,
keep-set precision / recall / Jaccard at ``--threshold``, the fast-mode threshold that best
reproduces the reference keep set and the one keeping as many rows, pairs/s of each mode, the 20
most disagreeing rows with their justifications, the effect of the seed's image path),
``OUT/rows.parquet`` and ``OUT/calibration.png`` (with matplotlib). See
:mod:`hf_vlm_filter.engines.calibration`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..engines.calibration import AGAINST, CALIBRATION_FILE, DEFAULT_ROWS, DEFAULT_THRESHOLD
from .errors import UsageError

#: Judge options the command passes on when given (flag ``--max-pixels`` for ``max_pixels``...).
JUDGE_OPTIONS = {
    "revision": str, "processor": str, "device": str, "dtype": str, "image_column": str, "text_column": str,
    "min_pixels": int, "max_pixels": int, "max_new_tokens": int, "micro_batch_size": int,
}


def register(commands: Any) -> None:
    """Add the ``calibrate`` parser to the CLI's subcommands."""
    help_text = "compare the judge's fast mode with its reference (or justify) mode on the first rows of SOURCE"
    sub = commands.add_parser("calibrate", help=help_text, description=help_text)
    sub.add_argument("source", help="Hub dataset id, .parquet/.json/.jsonl/.csv file, Parquet folder or image folder")
    sub.add_argument("--model", default=None,
                     help="judge checkpoint, Hub id or local folder (default: the published judge)")
    sub.add_argument("--out", required=True, type=Path,
                     help=f"output folder ({CALIBRATION_FILE}, rows.parquet, calibration.png)")
    sub.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                     help=f"rows scored in both modes, the first of SOURCE (default {DEFAULT_ROWS})")
    sub.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                     help=f"keep threshold the modes are compared at (default {DEFAULT_THRESHOLD:g})")
    sub.add_argument("--against", choices=AGAINST, default="reference",
                     help="the faithful mode: reference (the seed's parsed score, default) or justify")
    sub.add_argument("--no-seed-effect", dest="seed_effect", action="store_false",
                     help="skip the fast-mode pass with the other seed image path setting")
    sub.add_argument("--split", default="train", help="dataset split (default train)")
    sub.add_argument("--batch-size", type=int, default=None, help="rows per map batch (default 4 micro-batches)")
    for name, kind in JUDGE_OPTIONS.items():
        sub.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                         help=f"judge option {name} (see hf-vlm-filter score --help)")
    sub.set_defaults(handler=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    """Handler of ``calibrate``; returns the exit code."""
    from ..engines.calibration import calibrate
    from ..hub.cards import is_hub_id
    from ..inputs.sources import load_source
    from ..scorers.compact_judge import VLMJudge

    if args.rows < 1:
        raise UsageError(f"--rows must be >= 1, got {args.rows}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} exists and is not a folder")
    options = {name: getattr(args, name) for name in JUDGE_OPTIONS if getattr(args, name) is not None}
    if args.model is not None:
        options["model"] = args.model
    dataset, image_root = load_source(args.source, split=args.split, streaming=is_hub_id(args.source),
                                      limit=args.rows)
    try:
        judge = VLMJudge(image_root=image_root, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    judge.load()  # fail now, with the checkpoint's own message
    result = calibrate(dataset, judge, rows=args.rows, threshold=args.threshold, against=args.against,
                       batch_size=args.batch_size, seed_effect=args.seed_effect, source=args.source, out_dir=args.out)
    for line in result.summary_lines():
        print(line)
    scatter = result.files.get("scatter")
    print(f"wrote {result.files['calibration']}" + (f" and {scatter.name}" if scatter else ""))
    return 0
