"""The score histogram shown in a dataset card: one panel per score column, PNG, via matplotlib.

Drawn from the run's :class:`~hf_vlm_filter.engines.summary.ScoreHistogram` s (the bins of every row
read, whatever their number), with each column's threshold marked. matplotlib is the optional
``hub`` extra (``pip install "hf_vlm_filter[hub]"``): without it :func:`try_save_score_histogram`
logs one warning and the card shows the text histogram instead — a missing plotting library costs
the picture, never the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..engines.summary import ScoreHistogram

logger = logging.getLogger(__name__)
_warned = False


def save_score_histogram(
    histograms: Sequence[ScoreHistogram],
    path: str | Path,
    thresholds: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Draw each histogram as a bar panel into the PNG ``path`` (a dashed line at each column's
    threshold); returns the path written. Raises ``ImportError`` without matplotlib.

    Example:
        >>> from hf_vlm_filter import VLMJudge
        >>> histogram = ScoreHistogram(VLMJudge("./j").score_spec)
        >>> histogram.add([9.5, 3.0, 7.2])
        >>> save_score_histogram([histogram], "/tmp/h.png", {"judge_score": 9})  # doctest: +SKIP
        PosixPath('/tmp/h.png')
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "the score histogram needs matplotlib: pip install 'hf_vlm_filter[hub]' (or pip install matplotlib)"
        ) from exc
    if not histograms:
        raise ValueError("save_score_histogram needs at least one score column")
    path = Path(path)
    figure = Figure(figsize=(5.5, 2.6 * len(histograms)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(histograms), 1, squeeze=False)[:, 0]
    for axis, histogram in zip(axes, histograms):
        bins = histogram.bins()
        if bins:
            axis.bar([low for low, _, _ in bins], [count for _, _, count in bins],
                     width=[high - low for low, high, _ in bins], align="edge", color="#4c72b0")
        threshold = (thresholds or {}).get(histogram.column)
        if threshold is not None:
            axis.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
            axis.legend(loc="upper left")
        axis.set_xlabel(histogram.column)
        axis.set_ylabel("rows")
        axis.set_title(f"{histogram.column}: {histogram.count} scored rows", fontsize=10)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def try_save_score_histogram(histograms: Sequence[ScoreHistogram], path: str | Path,
                             thresholds: Mapping[str, float] | None = None) -> Path | None:
    """:func:`save_score_histogram`, or ``None`` (and one warning per process) without matplotlib."""
    global _warned
    try:
        return save_score_histogram(histograms, path, thresholds)
    except ImportError as exc:
        if not _warned:
            logger.warning("%s; the card shows the text histogram instead of score_histogram.png", exc)
            _warned = True
        return None
