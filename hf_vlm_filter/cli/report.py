"""``hf-vlm-filter report DIR``: draw the visual report of a finished run again, or preview another cut.

Example::

    hf-vlm-filter report out/kept                                   # DIR/report.html again
    hf-vlm-filter report out/kept --threshold 8                     # DIR/report-preview.html: the cut at 8
    hf-vlm-filter report out/kept --threshold-for clip_score=0.3 --out /tmp/cut.html
    hf-vlm-filter report out/kept --calibration out/calibration     # with a calibration shown

Reads ``DIR/report_sample.json`` (the run record and the gallery sample every ``score`` and
``filter`` run writes); neither the data nor the model is read again. With ``--threshold`` (on the
first score column) or ``--threshold-for COLUMN=VALUE`` the sampled rows are decided again under
the new rule and the rows it would keep are estimated from the sample's scores (see
:mod:`hf_vlm_filter.reports`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import UsageError, pairs


def register(commands: Any) -> None:
    """Add the ``report`` parser to the CLI's subcommands."""
    help_text = "draw the HTML report of a score/filter output folder again (--threshold: preview another cut)"
    sub = commands.add_parser("report", help=help_text, description=help_text)
    sub.add_argument("dir", type=Path, help="output folder of a score or filter run (holds report_sample.json)")
    sub.add_argument("--threshold", type=float, default=None, help="preview this cut-off on the first score column")
    sub.add_argument("--threshold-for", action="append", default=[], metavar="COLUMN=VALUE",
                     help="preview a cut-off on COLUMN (repeatable)")
    sub.add_argument("--calibration", type=Path, default=None, metavar="PATH",
                     help="show this calibration (calibration.json, or the folder hf-vlm-filter calibrate wrote)")
    sub.add_argument("--out", type=Path, default=None, metavar="FILE",
                     help="where to write the page (default DIR/report.html, or DIR/report-preview.html when previewing)")
    sub.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``report``; returns the exit code."""
    from ..reports import rebuild_report

    if not args.dir.is_dir():
        raise UsageError(f"{str(args.dir)!r} is not a folder")
    threshold_for = {}
    for column, value in pairs(args.threshold_for, "--threshold-for").items():
        try:
            threshold_for[column] = float(value)
        except ValueError:
            raise UsageError(f"--threshold-for {column}: {value!r} is not a number") from None
    calibration = None
    if args.calibration is not None:
        from ..engines.calibration import load_calibration

        calibration = load_calibration(args.calibration)
    path = rebuild_report(args.dir, threshold=args.threshold, threshold_for=threshold_for, calibration=calibration,
                          out=args.out)
    print(f"wrote {path}")
    return 0
