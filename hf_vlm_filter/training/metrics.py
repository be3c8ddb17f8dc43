"""How well a judge's scores follow graded quality: level metrics and rubric metrics.

:func:`level_metrics` compares scores with UniFilter levels: accuracy, Spearman and AUC (level 3 vs
0). Scores may be on the UniFilter scale (``"level"``: 0-3, a regression output or an expected level)
or on the compact judge's rubric (``"rubric"``: 1-10, read back to levels with
:func:`~hf_vlm_filter.training.levels.level_for_score`; with rubric-true targets a hallucination scores
2 at level 2, so read ``accuracy`` on that scale as "in the level's nominal band").

:func:`rubric_metrics` compares scores with the examples' rubric scores: the AUC of the keep decision
(target ``>= 9`` against the rest) and the Spearman correlation with the targets — meaningful for
either judge, since both are rank statistics.

Example:
    >>> level_metrics([0, 1, 2, 3], [0.1, 1.2, 1.9, 2.8])
    {'accuracy': 1.0, 'spearman': 1.0, 'auc_3_vs_0': 1.0, 'count': 4}
    >>> level_metrics([0, 3], [2.0, 9.5], scale="rubric")["accuracy"]
    1.0
    >>> rubric_metrics([10, 2, 7, 1], [9.1, 3.0, 6.5, 1.2])
    {'auc_keep': 1.0, 'spearman_score': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .levels import LEVEL_LOWER_BOUNDS

SCALES = ("level", "rubric")


def predicted_levels(scores: Sequence[float], scale: str = "level") -> np.ndarray:
    """Levels 0-3 read from scores: nearest level on the ``"level"`` scale, rubric bands on ``"rubric"``."""
    values = np.asarray(scores, dtype=np.float64)
    if scale == "level":
        return np.clip(np.rint(values), 0, 3).astype(np.int64)
    if scale == "rubric":
        return (np.searchsorted(np.asarray(LEVEL_LOWER_BOUNDS), values, side="right") - 1).clip(0, 3)
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


def level_metrics(levels: Sequence[int], scores: Sequence[float], scale: str = "level") -> dict[str, float]:
    """``accuracy`` (predicted level == level), ``spearman`` (scores vs levels, ties averaged),
    ``auc_3_vs_0`` (ROC AUC of the scores separating level 3 from level 0) and ``count``.

    Rows with a NaN score are left out (``count`` says how many were used); a metric that cannot
    be computed (one class only, constant scores) is NaN.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    levels_array = np.asarray(levels, dtype=np.int64)
    scores_array = np.asarray(scores, dtype=np.float64)
    if levels_array.shape != scores_array.shape or levels_array.ndim != 1:
        raise ValueError(f"levels and scores must be 1-D and of equal length, got {levels_array.shape} "
                         f"and {scores_array.shape}")
    if levels_array.size and not np.isin(levels_array, [0, 1, 2, 3]).all():
        raise ValueError(f"levels must be in 0-3, got {sorted(set(levels_array.tolist()))}")
    kept = ~np.isnan(scores_array)
    levels_array, scores_array = levels_array[kept], scores_array[kept]
    accuracy = float((predicted_levels(scores_array, scale) == levels_array).mean()) if kept.any() else math.nan
    spearman = math.nan
    if len(set(levels_array.tolist())) > 1 and len(set(scores_array.tolist())) > 1:
        spearman = float(spearmanr(levels_array, scores_array).statistic)
    extremes = np.isin(levels_array, [0, 3])
    auc = math.nan
    if len(set(levels_array[extremes].tolist())) == 2:
        auc = float(roc_auc_score(levels_array[extremes] == 3, scores_array[extremes]))
    return {"accuracy": accuracy, "spearman": spearman, "auc_3_vs_0": auc, "count": int(kept.sum())}


def rubric_metrics(targets: Sequence[int], scores: Sequence[float]) -> dict[str, float]:
    """``auc_keep`` (ROC AUC of the scores separating target ``>= 9`` from the rest) and
    ``spearman_score`` (scores vs rubric targets); NaN rows left out, NaN when not computable."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from .rubric import KEEP_SCORE

    targets_array = np.asarray(targets, dtype=np.float64)
    scores_array = np.asarray(scores, dtype=np.float64)
    if targets_array.shape != scores_array.shape or targets_array.ndim != 1:
        raise ValueError(f"targets and scores must be 1-D and of equal length, got {targets_array.shape} "
                         f"and {scores_array.shape}")
    kept = ~np.isnan(scores_array)
    targets_array, scores_array = targets_array[kept], scores_array[kept]
    keep = targets_array >= KEEP_SCORE
    auc = float(roc_auc_score(keep, scores_array)) if 0 < keep.sum() < keep.size else math.nan
    spearman = math.nan
    if len(set(targets_array.tolist())) > 1 and len(set(scores_array.tolist())) > 1:
        spearman = float(spearmanr(targets_array, scores_array).statistic)
    return {"auc_keep": auc, "spearman_score": spearman}
