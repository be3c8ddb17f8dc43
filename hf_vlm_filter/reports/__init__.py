"""Showing what a run did: the report sample collected during the run, the HTML report, and the
dataset card's grid of kept and dropped thumbnails. Reads the engines' run record; never drives a run.

* :mod:`.gallery` — :class:`GallerySample`, the row observer the engines feed (bounded, seeded,
  mergeable across ranks); :mod:`.sketches` its bottom-k samples, :mod:`.thumbnails` its JPEGs;
* :mod:`.html_report` — :func:`render_report`: the page (:mod:`.page`), its SVG charts
  (:mod:`.charts`); :mod:`.preview` another threshold without rescoring;
* :mod:`.files` — ``report.html`` and ``report_sample.json`` in an output folder
  (:func:`write_report`, :func:`rebuild_report`, the job finisher :class:`ReportWriter`);
* :mod:`.card_grid` — the card's thumbnails (``assets/``) and their Markdown.

Example:
    >>> from hf_vlm_filter import VLMJudge
    >>> from hf_vlm_filter.engines import KeepRule, RunContext, run_in_memory
    >>> from hf_vlm_filter.reports import GALLERY, GallerySample, write_report
    >>> judge = VLMJudge("./judge")                                                   # doctest: +SKIP
    >>> rule = KeepRule.from_thresholds(judge, {"judge_score": 9})                    # doctest: +SKIP
    >>> result = run_in_memory(ds, judge, rule, RunContext("user/pairs"),
    ...                        observers=[GallerySample.for_run(judge, rule)])        # doctest: +SKIP
    >>> write_report("out/pairs", result.run, result.observers[GALLERY])              # doctest: +SKIP
    PosixPath('out/pairs/report.html')
"""

from .card_grid import CardGrid, write_card_grid
from .files import PREVIEW_FILE, REPORT_FILE, SAMPLE_FILE, ReportWriter, read_report_sample, rebuild_report, write_report
from .gallery import GALLERY, GallerySample, SampleRow
from .html_report import find_calibration, render_report
from .preview import KeptEstimate, estimate_kept, preview_rule

__all__ = [
    "GALLERY",
    "PREVIEW_FILE",
    "REPORT_FILE",
    "SAMPLE_FILE",
    "CardGrid",
    "GallerySample",
    "KeptEstimate",
    "ReportWriter",
    "SampleRow",
    "estimate_kept",
    "find_calibration",
    "preview_rule",
    "read_report_sample",
    "rebuild_report",
    "render_report",
    "write_card_grid",
    "write_report",
]
