"""ViSA selection: Shapley-weighted ``visa_score`` over the agents' columns, then a budget or a threshold.

The agents are run first (each is a ``ds.map`` scorer: :mod:`~hf_vlm_filter.visa.segmentation`,
:mod:`~hf_vlm_filter.visa.object_alignment`, :mod:`~hf_vlm_filter.visa.richness`,
:mod:`~hf_vlm_filter.visa.instruction_quality`); :func:`visa_select` then

1. draws a sample (``sample_size`` rows: a seeded random subset of a ``Dataset``, the first rows of
   an ``IterableDataset``) and fits :class:`~hf_vlm_filter.visa.shapley.AgentWeights` on it (unless
   ``weights`` are given);
2. adds ``visa_score`` to every row (NaN when an agent's score is NaN);
3. keeps the top ``fraction`` of the scored rows (a ``Dataset``: exactly ``round(fraction * n)`` rows,
   best first by score, ties broken by row order, original order kept; an ``IterableDataset``: rows
   at or above the sample's ``1 - fraction`` quantile) or the rows with ``visa_score >= threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Value

from .shapley import AgentWeights, fit_agent_weights

#: The agents' score columns, as the scorers of this package name them.
AGENT_COLUMNS = ("sc_score", "oa_score", "dp_score", "pt_score", "im_score")
SCORE_COLUMN = "visa_score"


@dataclass
class VisaSelection:
    """What :func:`visa_select` returns: the kept rows (with ``visa_score``), the weights and the cut."""

    dataset: Any
    weights: AgentWeights
    threshold: float | None


def sample_table(dataset: Any, columns: Sequence[str], sample_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The ``columns`` of a sample of ``dataset`` as float arrays (see the module docstring)."""
    if sample_size < 3:
        raise ValueError(f"sample_size must be at least 3, got {sample_size}")
    present = getattr(dataset, "column_names", None)
    missing = [c for c in columns if present is not None and c not in present]
    if missing:
        raise KeyError(f"score column(s) {missing} not found (columns: {present}); run the agents first or pass columns=...")
    if hasattr(dataset, "__len__"):
        n = len(dataset)
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample_size), replace=False))
        sample = dataset.select_columns(list(columns)).select(rows.tolist())
    else:
        sample = dataset.select_columns(list(columns)).take(sample_size)
    table: dict[str, list[float]] = {c: [] for c in columns}
    for batch in sample.iter(batch_size=1000):
        for c in columns:
            table[c] += [np.nan if v is None else float(v) for v in batch[c]]
    return {c: np.asarray(v, dtype=np.float64) for c, v in table.items()}


class VisaScore:
    """Batched map function adding ``visa_score`` from the agents' columns and fitted weights."""

    def __init__(self, weights: AgentWeights) -> None:
        self.weights = weights

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
        table = {c: [np.nan if v is None else v for v in batch[c]] for c in self.weights.columns}
        return {SCORE_COLUMN: self.weights.score(table).astype(np.float32)}


def add_visa_score(dataset: Any, weights: AgentWeights, batch_size: int = 1000) -> Any:
    """``dataset`` with a ``visa_score`` column (schema declared, so streaming keeps it)."""
    features = getattr(dataset, "features", None)
    kwargs: dict[str, Any] = {"batched": True, "batch_size": batch_size}
    if features is not None:
        merged = dict(features)
        merged[SCORE_COLUMN] = Value("float32")
        from datasets import Features

        kwargs["features"] = Features(merged)
    return dataset.map(VisaScore(weights), **kwargs)


def visa_select(
    dataset: Any,
    *,
    columns: Sequence[str] = AGENT_COLUMNS,
    fraction: float | None = None,
    threshold: float | None = None,
    weights: AgentWeights | None = None,
    directions: Mapping[str, int] | None = None,
    sample_size: int = 1000,
    seed: int = 0,
) -> VisaSelection:
    """Select rows by Shapley-weighted ``visa_score``: top ``fraction`` or ``visa_score >= threshold``.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"a": [1.0, 2, 3, 4], "b": [1.5, 2, 2.5, 5]})
        >>> picked = visa_select(ds, columns=("a", "b"), fraction=0.5)
        >>> picked.dataset["a"], round(sum(picked.weights.weights), 6)
        (Column([3.0, 4.0]), 1.0)

    Args:
        dataset: a ``Dataset`` or ``IterableDataset`` with the agents' score columns.
        columns: the agents' score columns (default :data:`AGENT_COLUMNS`).
        fraction: keep this top fraction (0 < fraction <= 1); exclusive with ``threshold``.
        threshold: keep rows with ``visa_score >= threshold``.
        weights: fitted weights to reuse (no sample is drawn then).
        directions: ``{column: -1}`` for agents where lower is better (default: higher is better).
        sample_size / seed: the sample the weights (and a streaming budget cut) come from.
    """
    if (fraction is None) == (threshold is None):
        raise ValueError("give exactly one of fraction= (a budget) or threshold=")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    sample = None
    if weights is None or (fraction is not None and not hasattr(dataset, "__len__")):
        sample = sample_table(dataset, columns if weights is None else weights.columns, sample_size, seed)
    if weights is None:
        weights = fit_agent_weights(sample, directions)
    scored = add_visa_score(dataset, weights)
    if threshold is not None:
        cut = float(threshold)
    elif hasattr(scored, "__len__"):
        values = np.asarray(scored[SCORE_COLUMN], dtype=np.float64)
        valid = np.flatnonzero(np.isfinite(values))
        keep = round(fraction * len(valid))
        order = valid[np.argsort(-values[valid], kind="stable")][:keep]
        kept = scored.select(np.sort(order).tolist())
        return VisaSelection(kept, weights, float(values[order[-1]]) if keep else None)
    else:
        sample_scores = weights.score(sample)
        cut = float(np.nanquantile(sample_scores, 1 - fraction))
    kept = scored.filter(lambda batch: [v is not None and v >= cut for v in batch[SCORE_COLUMN]], batched=True)
    return VisaSelection(kept, weights, cut)
