"""Batched keep/drop predicates for ``Dataset.filter(..., batched=True)``, built on :class:`KeepRule`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..models.judge_prompt import KEEP_THRESHOLD
from .keep_rule import ColumnRule, KeepRule

#: The paper keeps pairs the judge scores 9 or more (about 18% of its data).
DEFAULT_THRESHOLD = KEEP_THRESHOLD


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
        >>> judge_filter({"judge_score": [9.5, 3.0, float("nan")]}, threshold=9)
        [True, False, False]
    """
    if "judge_score" not in batch:
        from ..scorers.compact_judge import VLMJudge

        batch = VLMJudge.shared_instance(**options)(batch, rank)
    return KeepRule((ColumnRule("judge_score", threshold=threshold),), keep_errors).mask(batch)


def threshold_filter(
    batch: Mapping[str, Sequence[Any]],
    thresholds: Mapping[str, float],
    keep_errors: bool = False,
    directions: Mapping[str, str] | None = None,
) -> list[bool]:
    """Keep rows whose every column in ``thresholds`` passes its threshold.

    A threshold means "at least" unless ``directions`` says ``"lower"`` for its column ("at most":
    caption perplexity). A row with NaN (or ``None``) in any of those columns is an error row: kept
    only with ``keep_errors=True`` (it must still pass the other thresholds).

    Example:
        >>> threshold_filter({"judge_score": [9.5, 9.5, 3.0], "clip_score": [0.3, 0.1, 0.4]},
        ...                  {"judge_score": 9, "clip_score": 0.2})
        [True, False, False]
        >>> threshold_filter({"caption_ppl": [40.0, 900.0]}, {"caption_ppl": 340}, directions={"caption_ppl": "lower"})
        [True, False]
    """
    if not thresholds:
        raise ValueError("threshold_filter needs at least one column threshold")
    directions = directions or {}
    rules = tuple(ColumnRule(column, directions.get(column, "higher"), threshold=float(value))
                  for column, value in thresholds.items())
    return KeepRule(rules, keep_errors).mask(batch)


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
    from datasets import Dataset, IterableDataset

    if isinstance(dataset, IterableDataset) or not isinstance(dataset, Dataset):
        raise TypeError(
            f"top_fraction needs a datasets.Dataset (the cut-off needs the whole column), got "
            f"{type(dataset).__name__}; score it to Parquet first, or use threshold_filter with a fixed threshold"
        )
    rule = KeepRule((ColumnRule(column, "higher" if higher_is_better else "lower", fraction=fraction),))
    values = np.asarray(dataset.with_format(None)[column], dtype=np.float64)
    mask = rule.resolve({column: values}).mask({column: values})
    return dataset.select(np.flatnonzero(mask).tolist())
