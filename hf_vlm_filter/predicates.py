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
