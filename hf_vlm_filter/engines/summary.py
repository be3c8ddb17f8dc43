"""The record of counts of one run: rows read, scored, errors by reason, kept, dropped by rule, time,
and one histogram per score column that fits the score.

Built batch by batch (a streaming job checkpoints it as JSON; the summaries of several ranks add up
with :meth:`RunSummary.merge`), rendered as plain text at the end of every run.

Histograms (:class:`ScoreHistogram`) are mergeable and bounded in memory whatever the number of
rows: a rubric scale (the judge's 1-10) is counted on its own bins; any other score on a fine grid
(4,096 cells over the declared range, or over a log / asinh scale when the range is open), from which
the rendered bins are cut to span the values actually observed (minimum and maximum are exact).

Example:
    >>> from hf_vlm_filter import VLMJudge
    >>> from hf_vlm_filter.engines.keep_rule import KeepRule
    >>> judge = VLMJudge("./judge")
    >>> s = RunSummary.for_scorer(judge, KeepRule.from_thresholds(judge, {"judge_score": 9}))
    >>> s.add({"judge_score": [9.5, float("nan"), 3.0], "judge_error": ["", "empty caption", ""]})
    >>> s.rows, s.scored, s.kept, s.errors, dict(s.dropped_by)
    (3, 2, 1, {'empty caption': 1}, {'error': 1, 'judge_score < 9': 1})
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..scorers.score_spec import ScoreSpec
from .keep_rule import KeepRule

BAR_WIDTH = 40
#: Cells of the fine grid a non-rubric histogram counts on.
FINE_CELLS = 4096
#: Bins of a rendered non-rubric histogram.
DISPLAY_BINS = 10
#: Half-width of the log / asinh grids (covers values up to ~1e12).
_OPEN_SPAN = 28.0


def error_kind(reason: str) -> str:
    """The reason without its row-specific detail: ``"image file not found: a.jpg"`` -> ``"image file not found"``."""
    return reason.split(":", 1)[0].strip()


@dataclass
class ScoreHistogram:
    """A mergeable histogram of one score column (see the module docstring).

    Example:
        >>> from hf_vlm_filter.scorers.score_spec import ScoreSpec
        >>> h = ScoreHistogram(ScoreSpec("clip_score", "clip_error", low=-1.0, high=1.0))
        >>> h.add([0.21, 0.25, 0.30, float("nan")])
        >>> h.count, h.minimum, h.maximum, len(h.bins()), sum(n for _, _, n in h.bins())
        (3, 0.21, 0.3, 10, 3)
    """

    spec: ScoreSpec
    cells: Counter = field(default_factory=Counter)
    count: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf

    @property
    def column(self) -> str:
        return self.spec.column

    def add(self, values: Sequence[float | None] | np.ndarray) -> None:
        """Count the finite ``values`` (NaN, ``None`` and infinities are left out)."""
        array = np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
        array = array[np.isfinite(array)]
        if not array.size:
            return
        self.count += int(array.size)
        self.minimum = min(self.minimum, float(array.min()))
        self.maximum = max(self.maximum, float(array.max()))
        cells, counts = np.unique(self._cell(array), return_counts=True)
        self.cells.update(dict(zip(cells.tolist(), counts.tolist())))

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        """A new histogram counting the values of both."""
        merged = ScoreHistogram(self.spec, self.cells + other.cells, self.count + other.count,
                                min(self.minimum, other.minimum), max(self.maximum, other.maximum))
        return merged

    def bins(self, n: int = DISPLAY_BINS) -> list[tuple[float, float, int]]:
        """``(low, high, count)`` per rendered bin: the rubric's bins, or ``n`` equal bins spanning
        the observed minimum to maximum (each fine cell counted in the bin holding its centre)."""
        if self.spec.bins is not None:
            edges = self.spec.bins
            return [(edges[i], edges[i + 1], self.cells.get(i, 0)) for i in range(len(edges) - 1)]
        if not self.count:
            return []
        low, high = self.minimum, self.maximum
        if high <= low:
            return [(low, high, self.count)]
        width = (high - low) / n
        counts = [0] * n
        for cell, number in self.cells.items():
            centre = min(max(self._centre(cell), low), high)
            counts[min(int((centre - low) / width), n - 1)] += number
        return [(low + i * width, low + (i + 1) * width if i < n - 1 else high, counts[i]) for i in range(n)]

    def render(self) -> list[str]:
        """Text lines: a title, then one bar per bin."""
        spec = self.spec
        lines = [f"{spec.column} histogram ({spec.describe_range()}):"]
        bins = self.bins()
        if not bins:
            return lines + ["  (no scored rows)"]
        labels = [(_label(low), _label(high)) for low, high, _ in bins]
        wide_low = max(2, *(len(lo) for lo, _ in labels))
        wide_high = max(2, *(len(hi) for _, hi in labels))
        top = max(count for _, _, count in bins) or 1
        for (lo, hi), (_, _, count) in zip(labels, bins):
            bar = "#" * math.ceil(count * BAR_WIDTH / top) if count else ""
            lines.append(f"  {lo:>{wide_low}}-{hi:<{wide_high}} |{bar:<{BAR_WIDTH}} {count}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "cells": {str(k): v for k, v in sorted(self.cells.items())},
                "count": self.count, "minimum": self.minimum if self.count else None,
                "maximum": self.maximum if self.count else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreHistogram:
        count = int(data.get("count", 0))
        return cls(ScoreSpec.from_dict(data["spec"]), Counter({int(k): int(v) for k, v in data["cells"].items()}), count,
                   float(data["minimum"]) if count else math.inf, float(data["maximum"]) if count else -math.inf)

    # ---- the grid -------------------------------------------------------------------------------
    def _cell(self, values: np.ndarray) -> np.ndarray:
        spec = self.spec
        if spec.bins is not None:
            edges = np.asarray(spec.bins)
            return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        t_low, t_high = self._grid()
        cells = np.floor((self._forward(values) - t_low) / (t_high - t_low) * FINE_CELLS)
        return np.clip(cells, 0, FINE_CELLS - 1).astype(np.int64)

    def _centre(self, cell: int) -> float:
        t_low, t_high = self._grid()
        return float(self._inverse(t_low + (cell + 0.5) * (t_high - t_low) / FINE_CELLS))

    def _grid(self) -> tuple[float, float]:
        spec = self.spec
        if spec.low is not None and spec.high is not None:
            return spec.low, spec.high
        if spec.low is not None or spec.high is not None:
            return 0.0, _OPEN_SPAN
        return -_OPEN_SPAN, _OPEN_SPAN

    def _forward(self, values: Any) -> Any:
        spec = self.spec
        if spec.low is not None and spec.high is not None:
            return values
        if spec.low is not None:
            return np.log1p(np.maximum(values - spec.low, 0.0))
        if spec.high is not None:
            return np.log1p(np.maximum(spec.high - values, 0.0))
        return np.arcsinh(values)

    def _inverse(self, t: float) -> float:
        spec = self.spec
        if spec.low is not None and spec.high is not None:
            return t
        if spec.low is not None:
            return spec.low + math.expm1(t)
        if spec.high is not None:
            return spec.high - math.expm1(t)
        return math.sinh(t)


def _label(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class RunSummary:
    """Counts of one score or filter run (see the module docstring).

    ``specs`` are the score columns counted (a row is *scored* when all of them are finite; otherwise
    its reason is the first non-empty error column), ``rule`` the keep rule that decided.
    """

    specs: tuple[ScoreSpec, ...] = ()
    rule: KeepRule = field(default_factory=KeepRule)
    rows: int = 0
    scored: int = 0
    kept: int = 0
    error_counts: Counter = field(default_factory=Counter)
    dropped_by: Counter = field(default_factory=Counter)
    histograms: dict[str, ScoreHistogram] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    def __post_init__(self) -> None:
        for spec in self.specs:
            self.histograms.setdefault(spec.column, ScoreHistogram(spec))

    @classmethod
    def for_scorer(cls, scorer: Any, rule: KeepRule | None = None) -> RunSummary:
        """An empty summary of what ``scorer`` (a scorer, or its score specs) writes."""
        specs = tuple(scorer.score_specs) if hasattr(scorer, "score_specs") else tuple(scorer)
        return cls(specs=specs, rule=rule or KeepRule())

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[Any]], scorer: Any, rule: KeepRule | None = None,
                     verdicts: Sequence[str] | None = None) -> RunSummary:
        """A summary of the given score and error columns."""
        summary = cls.for_scorer(scorer, rule)
        summary.add(columns, verdicts)
        return summary

    def add(self, columns: Mapping[str, Sequence[Any]], verdicts: Sequence[str] | None = None) -> None:
        """Count one more batch: ``columns`` holds (at least) every spec's score and error column;
        ``verdicts`` is the keep rule's decision per row (``""`` kept), computed here when omitted."""
        first = self.specs[0]
        size = len(columns[first.column])
        if verdicts is None:
            verdicts = self.rule.decide(columns)
        if len(verdicts) != size:
            raise ValueError(f"verdicts has {len(verdicts)} values for {size} rows")
        scores = [np.asarray([math.nan if v is None else v for v in columns[s.column]], dtype=np.float64)
                  for s in self.specs]
        finite = np.logical_and.reduce([np.isfinite(values) for values in scores])
        error_columns = list(dict.fromkeys(spec.error_column for spec in self.specs))
        for index in np.flatnonzero(~finite).tolist():
            reason = next((columns[c][index] for c in error_columns if c in columns and columns[c][index]), "")
            self.error_counts[error_kind(reason) or "no score"] += 1
        for spec, values in zip(self.specs, scores):
            self.histograms[spec.column].add(values)
        self.rows += size
        self.scored += int(finite.sum())
        for verdict in verdicts:
            if verdict:
                self.dropped_by[verdict] += 1
            else:
                self.kept += 1

    def merge(self, other: RunSummary) -> RunSummary:
        """A new summary counting the rows of both (the rule is taken from ``self``; elapsed time is
        the longer of the two: ranks run side by side)."""
        merged = RunSummary.from_dict(self.to_dict())
        merged.rows += other.rows
        merged.scored += other.scored
        merged.kept += other.kept
        merged.error_counts.update(other.error_counts)
        merged.dropped_by.update(other.dropped_by)
        for column, histogram in other.histograms.items():
            mine = merged.histograms.get(column)
            merged.histograms[column] = histogram if mine is None else mine.merge(histogram)
        merged.elapsed_seconds = max(self.elapsed_seconds, other.elapsed_seconds)
        return merged

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "specs": [spec.to_dict() for spec in self.specs], "rule": self.rule.to_dict(),
            "rows": self.rows, "scored": self.scored, "kept": self.kept,
            "errors": dict(self.error_counts), "dropped_by": dict(self.dropped_by),
            "histograms": {column: h.to_dict() for column, h in self.histograms.items()},
            "elapsed_seconds": self.elapsed_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """The summary :meth:`to_dict` wrote."""
        return cls(
            specs=tuple(ScoreSpec.from_dict(spec) for spec in data.get("specs", ())),
            rule=KeepRule.from_dict(data.get("rule") or {}),
            rows=int(data["rows"]), scored=int(data["scored"]), kept=int(data["kept"]),
            error_counts=Counter({str(k): int(v) for k, v in data.get("errors", {}).items()}),
            dropped_by=Counter({str(k): int(v) for k, v in data.get("dropped_by", {}).items()}),
            histograms={column: ScoreHistogram.from_dict(h) for column, h in data.get("histograms", {}).items()},
            elapsed_seconds=float(data.get("elapsed_seconds", 0.0)),
        )

    @property
    def errors(self) -> dict[str, int]:
        """Rows not scored, by reason, most frequent first (ties by name)."""
        return dict(sorted(self.error_counts.items(), key=lambda item: (-item[1], item[0])))

    @property
    def kept_fraction(self) -> float:
        """``kept / rows`` (0.0 for an empty run)."""
        return self.kept / self.rows if self.rows else 0.0

    @property
    def rows_per_second(self) -> float | None:
        return self.rows / self.elapsed_seconds if self.elapsed_seconds > 0 else None

    @property
    def histogram(self) -> list[int]:
        """Counts per bin of the first score column."""
        return [count for _, _, count in self.histograms[self.specs[0].column].bins()]

    def render(self) -> str:
        """The summary as a few lines of text."""
        lines = [
            f"rows read   {self.rows}",
            f"scored      {self.scored}",
            f"errors      {self.rows - self.scored}",
        ]
        width = max((len(reason) for reason in self.errors), default=0)
        lines += [f"  {reason:<{width}}  {count}" for reason, count in self.errors.items()]
        lines.append(f"kept        {self.kept} ({self.kept_fraction:.1%}; {self.rule.describe()})")
        dropped = sorted(self.dropped_by.items(), key=lambda item: (-item[1], item[0]))
        width = max((len(reason) for reason, _ in dropped), default=0)
        lines += [f"  dropped: {reason:<{width}}  {count}" for reason, count in dropped]
        if self.elapsed_seconds > 0:
            lines.append(f"elapsed     {self.elapsed_seconds:.1f} s ({self.rows_per_second:.1f} rows/s)")
        for spec in self.specs:
            lines += self.histograms[spec.column].render()
        return "\n".join(lines)
