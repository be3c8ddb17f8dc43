"""The ``visa-select`` subcommand: Shapley-weighted selection over already-scored agent columns.

Example::

    hf-vlm-filter visa-select scored.parquet --out out/visa --fraction 0.025
    hf-vlm-filter visa-select scored.parquet --out out/visa --threshold 0.5 --weights out/visa/visa_weights.json
    hf-vlm-filter visa-select scored.parquet --out out/visa --fraction 0.1 --column sc_score --column pt_score \\
        --lower-is-better pt_score

Reads SOURCE (any source ``score`` reads) with the agents' score columns, fits the Shapley weights
on a sample (or loads ``--weights``), and writes ``OUT/data.parquet`` (the kept rows with
``visa_score``) and ``OUT/visa_weights.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..visa.selection import AGENT_COLUMNS
from ..visa.shapley import AgentWeights
from .errors import UsageError
from .score_filter import DATA_FILE

WEIGHTS_FILE = "visa_weights.json"


def register(commands: Any) -> None:
    """Add the ``visa-select`` parser to the CLI's subcommands."""
    help_text = "keep the top fraction (or rows above a threshold) by Shapley-weighted ViSA score"
    sub = commands.add_parser("visa-select", help=help_text, description=help_text)
    sub.add_argument("source", help="dataset with the agents' score columns (Parquet/JSON file or folder, Hub id)")
    sub.add_argument("--out", required=True, type=Path, help="output folder (data.parquet, visa_weights.json)")
    budget = sub.add_mutually_exclusive_group(required=True)
    budget.add_argument("--fraction", type=float, help="keep this top fraction of the scored rows (0-1]")
    budget.add_argument("--threshold", type=float, help="keep rows with visa_score >= this")
    sub.add_argument("--column", action="append", default=None,
                     help=f"an agent score column (repeatable; default {', '.join(AGENT_COLUMNS)})")
    sub.add_argument("--lower-is-better", action="append", default=[], metavar="COLUMN",
                     help="an agent column where lower scores are better (repeatable)")
    sub.add_argument("--weights", type=Path, default=None, help="reuse weights from a visa_weights.json")
    sub.add_argument("--sample-size", type=int, default=1000, help="rows sampled to fit the weights (default 1000)")
    sub.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    sub.add_argument("--split", default="train", help="dataset split (default train)")
    sub.add_argument("--limit", type=int, default=None, help="only the first N rows")
    sub.set_defaults(handler=run_visa_select)


def run_visa_select(args: argparse.Namespace) -> int:
    """Handler of ``visa-select``; returns the exit code."""
    from ..inputs.sources import load_source
    from ..visa.selection import visa_select

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} exists and is not a folder")
    weights = AgentWeights.load(args.weights) if args.weights is not None else None
    columns = tuple(args.column) if args.column else (weights.columns if weights else AGENT_COLUMNS)
    dataset, _root = load_source(args.source, split=args.split, limit=args.limit)
    selection = visa_select(
        dataset, columns=columns, fraction=args.fraction, threshold=args.threshold, weights=weights,
        directions={column: -1 for column in args.lower_is_better}, sample_size=args.sample_size, seed=args.seed,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    selection.dataset.to_parquet(str(args.out / DATA_FILE))
    selection.weights.save(args.out / WEIGHTS_FILE)
    for name, weight in zip(selection.weights.columns, selection.weights.weights):
        print(f"{name}: weight {weight:.4f}")
    cut = "none" if selection.threshold is None else f"{selection.threshold:.6g}"
    print(f"kept {len(selection.dataset)} of {len(dataset)} rows (visa_score >= {cut})")
    print(f"wrote {args.out / DATA_FILE}")
    return 0
