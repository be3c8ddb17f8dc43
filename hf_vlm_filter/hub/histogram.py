"""The score histogram shown in a dataset card: one panel per score column, PNG, via matplotlib.

matplotlib is the optional ``hub`` extra (``pip install "hf_vlm_filter[hub]"``); without it
:func:`save_score_histogram` raises an ``ImportError`` saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

BINS = 20


def save_score_histogram(
    scores: Mapping[str, Sequence[float | None]],
    path: str | Path,
    thresholds: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Draw a histogram of each column of ``scores`` (NaN / ``None`` skipped) into the PNG ``path``.

    A dashed vertical line marks each column's threshold. Returns the path written.

    Example:
        >>> save_score_histogram({"judge_score": [9.5, 3.0, 7.2]}, "/tmp/h.png", {"judge_score": 9})  # doctest: +SKIP
        PosixPath('/tmp/h.png')
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "the score histogram needs matplotlib: pip install 'hf_vlm_filter[hub]' (or pip install matplotlib)"
        ) from exc
    if not scores:
        raise ValueError("save_score_histogram needs at least one score column")
    path = Path(path)
    figure = Figure(figsize=(5.5, 2.6 * len(scores)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(scores), 1, squeeze=False)[:, 0]
    for axis, (column, values) in zip(axes, scores.items()):
        finite = [float(v) for v in values if v is not None and not math.isnan(v)]
        axis.hist(finite, bins=BINS, color="#4c72b0")
        threshold = (thresholds or {}).get(column)
        if threshold is not None:
            axis.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
            axis.legend(loc="upper left")
        axis.set_xlabel(column)
        axis.set_ylabel("rows")
        axis.set_title(f"{column}: {len(finite)} scored rows", fontsize=10)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
