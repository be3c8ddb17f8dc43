"""The keep rule: which scored rows a run keeps, one value every engine and summary uses.

A :class:`KeepRule` is a list of :class:`ColumnRule` — per score column a threshold or a
top/bottom fraction, with the column's direction (``higher``: keep scores at least the threshold;
``lower``: at most it) — plus ``keep_errors``. A row is kept when it passes every column rule; a row
with ``NaN`` in a ruled column is an error row, kept only with ``keep_errors`` (and it must still pass
the other columns). Directions come from the scorers' declarations (:class:`~hf_vlm_filter.scorers.ScoreSpec`),
so ``--threshold 340`` on caption perplexity keeps the captions whose perplexity is *at most* 340.

A fraction needs the whole column: :meth:`KeepRule.resolve` turns it into the equivalent threshold
(the quantile cut-off, ties kept) on a finished ``Dataset``; a streaming job refuses it.

Example:
    >>> from hf_vlm_filter import CaptionPerplexity, VLMJudge
    >>> rule = KeepRule.from_thresholds([VLMJudge("./j"), CaptionPerplexity("./lm")],
    ...                                 {"judge_score": 9, "caption_ppl": 340})
    >>> rule.describe()
    'judge_score >= 9, caption_ppl <= 340, errors dropped'
    >>> rule.decide({"judge_score": [9.5, 9.5, 3.0, float("nan")], "caption_ppl": [20.0, 900.0, 20.0, 20.0]})
    ['', 'caption_ppl > 340', 'judge_score < 9', 'error']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..scorers.score_spec import DIRECTIONS, ScoreSpec

#: What ``decide`` says of a row dropped because a ruled column is NaN.
ERROR = "error"


@dataclass(frozen=True)
class ColumnRule:
    """The rule of one score column: a ``threshold`` or a ``fraction`` of the best rows.

    Args:
        column: the score column.
        direction: ``"higher"`` (keep scores >= threshold / the top fraction) or ``"lower"``
            (keep scores <= threshold / the bottom fraction).
        threshold: the cut-off.
        fraction: keep this fraction (0-1] of the scored rows, best first (needs the whole column).
    """

    column: str
    direction: str = "higher"
    threshold: float | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if (self.threshold is None) == (self.fraction is None):
            raise ValueError(f"a rule on {self.column!r} needs exactly one of threshold and fraction")
        if self.threshold is not None and math.isnan(self.threshold):
            raise ValueError(f"the threshold of {self.column!r} is NaN")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")

    @property
    def higher(self) -> bool:
        return self.direction == "higher"

    def describe(self) -> str:
        """``"judge_score >= 9"``, ``"caption_ppl <= 340"``, ``"top 30.0% by clip_score"``…"""
        if self.fraction is not None:
            return f"{'top' if self.higher else 'bottom'} {self.fraction:.1%} by {self.column}"
        return f"{self.column} {'>=' if self.higher else '<='} {self.threshold:g}"

    def failure(self) -> str:
        """Why a scored row fails this rule: ``"judge_score < 9"``."""
        if self.threshold is None:
            return f"not in the {self.describe()}"
        return f"{self.column} {'<' if self.higher else '>'} {self.threshold:g}"

    def passes(self, values: np.ndarray) -> np.ndarray:
        """Elementwise: the score passes (False for NaN; the caller handles errors)."""
        if self.threshold is None:
            raise ValueError(f"{self.describe()} needs the whole column: resolve the rule on the scored dataset first")
        with np.errstate(invalid="ignore"):
            return values >= self.threshold if self.higher else values <= self.threshold

    def cutoff(self, values: np.ndarray) -> float:
        """The threshold that keeps ``fraction`` of the finite ``values`` (ties at the cut-off kept)."""
        finite = values[np.isfinite(values)]
        if not finite.size:
            return math.inf if self.higher else -math.inf
        if self.higher:
            return float(np.quantile(finite, 1.0 - self.fraction, method="higher" if self.fraction < 1 else "lower"))
        return float(np.quantile(finite, self.fraction, method="lower" if self.fraction < 1 else "higher"))

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "direction": self.direction, "threshold": self.threshold,
                "fraction": self.fraction}


@dataclass(frozen=True)
class KeepRule:
    """Which rows a run keeps (see the module docstring); the empty rule keeps every row (a score run)."""

    columns: tuple[ColumnRule, ...] = ()
    keep_errors: bool = False
    #: The rule this one was resolved from (a fraction rule turned into thresholds), for the record.
    resolved_from: KeepRule | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        names = [rule.column for rule in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"a column has two rules: {names}")

    # ---- building -----------------------------------------------------------------------------
    @classmethod
    def from_thresholds(cls, scorers: Any, thresholds: Mapping[str, float], keep_errors: bool = False,
                        fractions: Mapping[str, float] | None = None) -> KeepRule:
        """Column thresholds (and fractions) on what ``scorers`` write, each in its declared direction.

        ``scorers`` is a scorer, a list of them, or their :class:`ScoreSpec` s. A column they do not
        write is refused with the list of those they do.
        """
        specs = {spec.column: spec for spec in _specs(scorers)}
        rules = []
        for column, value in thresholds.items():
            rules.append(ColumnRule(column, _spec(specs, column).direction, threshold=float(value)))
        for column, value in (fractions or {}).items():
            rules.append(ColumnRule(column, _spec(specs, column).direction, fraction=float(value)))
        return cls(tuple(rules), keep_errors)

    @property
    def is_filter(self) -> bool:
        """Whether the rule can drop a row (``False``: a score run)."""
        return bool(self.columns)

    @property
    def needs_whole_column(self) -> bool:
        """Whether a column rule is a fraction (the cut-off depends on every row)."""
        return any(rule.fraction is not None for rule in self.columns)

    @property
    def thresholds(self) -> dict[str, float]:
        """Column -> threshold of the threshold rules."""
        return {rule.column: rule.threshold for rule in self.columns if rule.threshold is not None}

    def check_columns(self, scorers: Any) -> None:
        """Refuse a rule on a column ``scorers`` do not write (before any model loads)."""
        specs = {spec.column: spec for spec in _specs(scorers)}
        for rule in self.columns:
            _spec(specs, rule.column)

    def resolve(self, columns: Mapping[str, Sequence[float]]) -> KeepRule:
        """The rule with every fraction replaced by its cut-off over the full ``columns``."""
        if not self.needs_whole_column:
            return self
        rules = []
        for rule in self.columns:
            if rule.fraction is None:
                rules.append(rule)
                continue
            values = np.asarray(columns[rule.column], dtype=np.float64)
            rules.append(ColumnRule(rule.column, rule.direction, threshold=rule.cutoff(values)))
        return KeepRule(tuple(rules), self.keep_errors, resolved_from=self)

    # ---- deciding -------------------------------------------------------------------------------
    def decide(self, batch: Mapping[str, Sequence[Any]]) -> list[str]:
        """For each row: ``""`` when kept, else why it was dropped (the first failing rule's
        :meth:`ColumnRule.failure`, or ``"error"`` for a NaN in a ruled column)."""
        if not self.columns:
            return [""] * _rows(batch)
        missing = [rule.column for rule in self.columns if rule.column not in batch]
        if missing:
            raise KeyError(f"threshold columns {missing} are not in the batch (columns: {sorted(batch)})")
        size = len(batch[self.columns[0].column])
        verdicts = [""] * size
        for rule in self.columns:
            values = _floats(batch[rule.column])
            error = np.isnan(values)
            passed = rule.passes(values)
            for index in range(size):
                if verdicts[index]:
                    continue
                if error[index]:
                    if not self.keep_errors:
                        verdicts[index] = ERROR
                elif not passed[index]:
                    verdicts[index] = rule.failure()
        return verdicts

    def mask(self, batch: Mapping[str, Sequence[Any]]) -> list[bool]:
        """One bool per row: kept or not (``Dataset.filter(..., batched=True)`` shape)."""
        return [verdict == "" for verdict in self.decide(batch)]

    # ---- words and records ------------------------------------------------------------------------
    @property
    def criteria(self) -> str:
        """The column rules in words: ``"judge_score >= 9, clip_score >= 0.28"`` (``""``: none)."""
        return ", ".join(rule.describe() for rule in self.columns)

    def describe(self) -> str:
        """The rule in words, as summaries print it."""
        if not self.columns:
            return "score run, nothing dropped"
        return f"{self.criteria}, errors {'kept' if self.keep_errors else 'dropped'}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"columns": [rule.to_dict() for rule in self.columns], "keep_errors": self.keep_errors}
        if self.resolved_from is not None:
            data["resolved_from"] = self.resolved_from.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeepRule:
        parent = data.get("resolved_from")
        return cls(tuple(ColumnRule(**rule) for rule in data.get("columns", ())), bool(data.get("keep_errors", False)),
                   resolved_from=cls.from_dict(parent) if parent else None)


def _specs(scorers: Any) -> list[ScoreSpec]:
    if isinstance(scorers, ScoreSpec):
        return [scorers]
    if hasattr(scorers, "score_specs"):
        return list(scorers.score_specs)
    specs: list[ScoreSpec] = []
    for item in scorers:
        specs += _specs(item)
    return specs


def _spec(specs: Mapping[str, ScoreSpec], column: str) -> ScoreSpec:
    if column not in specs:
        raise ValueError(f"no selected scorer writes the score column {column!r}; they write {list(specs)}")
    return specs[column]


def _rows(batch: Mapping[str, Sequence[Any]]) -> int:
    return len(next(iter(batch.values()))) if batch else 0


def _floats(values: Iterable[Any]) -> np.ndarray:
    return np.asarray([math.nan if value is None else float(value) for value in values], dtype=np.float64)
