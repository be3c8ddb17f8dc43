"""The report's files in an output folder, and the job finisher that writes them.

Every score and filter run leaves, beside its data::

    OUT/report.html          the report (self-contained: thumbnails embedded, inline SVG)
    OUT/report_sample.json   what it was built from: the run record and the gallery sample

``report_sample.json`` (``{"format": "hf_vlm_filter.report_sample", "version": 1, "run": ...,
"gallery": ...}``; ``run`` is :meth:`FilterRun.to_dict`, ``gallery`` the
:class:`~hf_vlm_filter.reports.gallery.GallerySample` state with base64 JPEG thumbnails) is enough
to draw the report again, or with another threshold (:func:`rebuild_report`, ``hf-vlm-filter
report OUT``), without the data or the model.

Example:
    >>> from hf_vlm_filter.engines.run_record import FilterRun
    >>> from hf_vlm_filter.engines.summary import RunSummary
    >>> from hf_vlm_filter.scorers.score_spec import ScoreSpec
    >>> summary = RunSummary(specs=(ScoreSpec("clip_score", "clip_error", low=-1.0, high=1.0),))
    >>> path = write_report("/tmp/report-doctest", FilterRun("pairs.json", summary=summary))
    >>> path.name, read_report_sample("/tmp/report-doctest")[0].source
    ('report.html', 'pairs.json')
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engines.keep_rule import KeepRule
from ..engines.run_record import FilterRun
from ..engines.streaming.state import atomic_write_bytes
from .gallery import GALLERY, GallerySample
from .html_report import render_report
from .preview import preview_rule

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
#: Where ``hf-vlm-filter report`` writes a preview of another threshold (the run's report stays).
PREVIEW_FILE = "report-preview.html"
SAMPLE_FILE = "report_sample.json"
SAMPLE_FORMAT = "hf_vlm_filter.report_sample"
SAMPLE_VERSION = 1


def write_report(out_dir: str | Path, run: FilterRun, sample: GallerySample | None = None, *,
                 calibration: Mapping[str, Any] | None = None) -> Path:
    """Write ``report_sample.json`` and ``report.html`` for ``run`` into ``out_dir``; returns the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = {"format": SAMPLE_FORMAT, "version": SAMPLE_VERSION, "run": run.to_dict(),
             "gallery": json.loads(sample.dump()) if sample is not None else None,
             "calibration": dict(calibration) if calibration is not None else None}
    atomic_write_bytes(out_dir / SAMPLE_FILE, json.dumps(saved, separators=(",", ":")).encode())
    path = out_dir / REPORT_FILE
    atomic_write_bytes(path, render_report(run, sample, calibration=calibration).encode("utf-8"))
    return path


def read_report_sample(out_dir: str | Path) -> tuple[FilterRun, GallerySample | None, dict[str, Any] | None]:
    """The run record, gallery sample and calibration saved in ``out_dir``'s ``report_sample.json``
    (``ValueError`` with the reason when there is none or it is not one)."""
    path = Path(out_dir) / SAMPLE_FILE
    if not path.is_file():
        raise ValueError(f"{Path(out_dir)} holds no {SAMPLE_FILE}: it is written by every hf-vlm-filter score / "
                         "filter run; run one with --out there first")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(saved, dict) or saved.get("format") != SAMPLE_FORMAT:
        raise ValueError(f"{path} is not a report sample (no \"format\": \"{SAMPLE_FORMAT}\")")
    if int(saved.get("version", 0)) > SAMPLE_VERSION:
        raise ValueError(f"{path}: report sample version {saved['version']} is newer than this library reads "
                         f"({SAMPLE_VERSION}); upgrade hf_vlm_filter")
    run = FilterRun.from_dict(saved["run"])
    sample = GallerySample.from_dump(saved["gallery"]) if saved.get("gallery") else None
    return run, sample, saved.get("calibration")


def rebuild_report(out_dir: str | Path, *, threshold: float | None = None,
                   threshold_for: Mapping[str, float] | None = None, calibration: Mapping[str, Any] | None = None,
                   out: str | Path | None = None) -> Path:
    """Draw ``out_dir``'s report again from its ``report_sample.json``: with ``threshold`` /
    ``threshold_for``, a preview of that cut (written to ``report-preview.html`` unless ``out`` says
    where), else the run's own (``report.html``)."""
    out_dir = Path(out_dir)
    run, sample, saved_calibration = read_report_sample(out_dir)
    rule: KeepRule | None = None
    if threshold is not None or threshold_for:
        rule = preview_rule(run, threshold, threshold_for)
    path = Path(out) if out is not None else out_dir / (PREVIEW_FILE if rule is not None else REPORT_FILE)
    html = render_report(run, sample, rule=rule, calibration=calibration if calibration is not None else saved_calibration)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, html.encode("utf-8"))
    return path


class ReportWriter:
    """A streaming job finisher: ``report.html`` and ``report_sample.json`` in the job folder, from
    the merged run record and the job's :class:`GallerySample` observer (``result.observers``).

    Example:
        >>> finishers = [ReportWriter()]   # before the card writer, which links the report
    """

    def __init__(self, calibration: Mapping[str, Any] | None = None) -> None:
        self.calibration = calibration

    def finish(self, result: Any) -> None:
        sample = result.observers.get(GALLERY)
        if sample is None:
            logger.warning("the job had no %r observer: %s has no gallery", GALLERY, REPORT_FILE)
        write_report(result.out_dir, result.run, sample, calibration=self.calibration)
