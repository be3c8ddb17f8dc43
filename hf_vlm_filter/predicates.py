"""Batched keep/drop predicates for ``Dataset.filter(..., batched=True)``."""

from __future__ import annotations

import math
from typing import Any

from collections.abc import Mapping, Sequence

#: The paper keeps pairs the judge scores 9 or more (about 18% of its data).
DEFAULT_THRESHOLD = 9.0


def judge_filter(
    batch: Mapping[str, Sequence[Any]],
    rank: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    keep_errors: bool = False,
    **options: Any,
) -> list[bool]:
    """Keep rows whose ``judge_score`` is at least ``threshold``.

    Reads an existing ``judge_score`` column (from an earlier ``map(judge_scores)``), or scores the
    batch with the judge that ``options`` describe. Rows that could not be scored (NaN) are dropped
    unless ``keep_errors=True``. In fast mode the threshold applies to the expected score.

    Example:
        >>> kept = ds.filter(judge_filter, batched=True, fn_kwargs={"threshold": 9})   # doctest: +SKIP
    """
    if "judge_score" in batch:
        scores = batch["judge_score"]
    else:
        from .scorers.compact_judge import get_judge  # imported here: keeps this module torch-free

        scores = get_judge(**options)(batch, rank)["judge_score"]
    return [keep_score(score, threshold, keep_errors) for score in scores]


def keep_score(score: float | None, threshold: float, keep_errors: bool) -> bool:
    """The keep rule shared by every predicate and the run summary: NaN/None rows follow ``keep_errors``."""
    if score is None or math.isnan(score):
        return keep_errors
    return score >= threshold


def threshold_filter(
    batch: Mapping[str, Sequence[Any]], thresholds: Mapping[str, float], keep_errors: bool = False
) -> list[bool]:
    """Keep rows whose every column in ``thresholds`` is at least its threshold.

    A row with NaN (or ``None``) in any of those columns is an error row: kept only with
    ``keep_errors=True`` (it must still pass the other thresholds).

    Example:
        >>> threshold_filter({"judge_score": [9.5, 9.5, 3.0], "clip_score": [0.3, 0.1, 0.4]},
        ...                  {"judge_score": 9, "clip_score": 0.2})
        [True, False, False]
    """
    if not thresholds:
        raise ValueError("threshold_filter needs at least one column threshold")
    missing = [column for column in thresholds if column not in batch]
    if missing:
        raise KeyError(f"threshold columns {missing} are not in the batch (columns: {sorted(batch)})")
    size = len(batch[next(iter(thresholds))])
    keep = [True] * size
    for column, threshold in thresholds.items():
        for index, score in enumerate(batch[column]):
            if keep[index] and not keep_score(score, threshold, keep_errors):
                keep[index] = False
    return keep


def top_fraction(dataset: Any, column: str, fraction: float, higher_is_better: bool = True) -> Any:
    """The rows of a (non-streaming) ``Dataset`` in the best ``fraction`` by ``column``.

    DataComp's "top 30% by CLIP score" is ``top_fraction(scored, "clip_score", 0.3)``. The cut-off is
    the ``1 - fraction`` quantile (``fraction`` quantile when lower is better) of the scored rows,
    computed with numpy; rows at or beyond it are kept (ties at the cut-off are all kept), rows with
    NaN are dropped, and row order is preserved.

    Example:
        >>> from datasets import Dataset
        >>> scored = Dataset.from_dict({"id": [0, 1, 2, 3, 4], "clip_score": [0.31, float("nan"), 0.18, 0.27, 0.22]})
        >>> list(top_fraction(scored, "clip_score", 0.5)["id"])
        [0, 3]
    """
    import numpy as np
    from datasets import Dataset, IterableDataset

    if isinstance(dataset, IterableDataset) or not isinstance(dataset, Dataset):
        raise TypeError(
            f"top_fraction needs a datasets.Dataset (the cut-off needs the whole column), got "
            f"{type(dataset).__name__}; score it to Parquet first, or use threshold_filter with a fixed threshold"
        )
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    values = np.asarray(dataset.with_format(None)[column], dtype=np.float64)
    valid = ~np.isnan(values)
    if not valid.any():
        return dataset.select([])
    scored = values[valid]
    if higher_is_better:
        cutoff = np.quantile(scored, 1.0 - fraction, method="higher" if fraction < 1 else "lower")
        mask = valid & (np.nan_to_num(values, nan=-np.inf) >= cutoff)
    else:
        cutoff = np.quantile(scored, fraction, method="lower" if fraction < 1 else "higher")
        mask = valid & (np.nan_to_num(values, nan=np.inf) <= cutoff)
    return dataset.select(np.flatnonzero(mask).tolist())
