"""The end-of-run summary printed by the command line: counts, error reasons, score histogram.

Pure Python: built from the first scorer's score / error columns, batch by batch when streaming,
and rendered as plain text. It round-trips through JSON (:meth:`RunSummary.to_dict`) so a resumable
job can checkpoint it, and summaries of several ranks add up with :meth:`RunSummary.merge`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .predicates import keep_score

#: Histogram bins 1-2, 2-3, ..., 9-10 (the last one includes 10).
BIN_EDGES = tuple(range(1, 11))
BAR_WIDTH = 40


def error_kind(reason: str) -> str:
    """The reason without its row-specific detail: ``"image file not found: a.jpg"`` -> ``"image file not found"``."""
    return reason.split(":", 1)[0].strip()


@dataclass
class RunSummary:
    """Counts of one score or filter run.

    ``threshold`` is ``None`` for a score run (nothing is dropped, so ``kept`` equals ``rows``).
    ``thresholds`` (column -> value) names every column threshold of a filter run, for the rendered
    rule; when several columns decide, pass the filter's decisions as ``kept_mask`` to :meth:`add`.

    Example:
        >>> s = RunSummary.from_columns([9.5, float("nan"), 3.0], ["", "empty caption", ""], threshold=9)
        >>> s.rows, s.scored, s.kept, s.errors
        (3, 2, 1, {'empty caption': 1})
    """

    threshold: float | None = None
    keep_errors: bool = False
    thresholds: dict[str, float] | None = None
    rows: int = 0
    scored: int = 0
    kept: int = 0
    error_counts: Counter = field(default_factory=Counter)
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BIN_EDGES) - 1))

    @classmethod
    def from_columns(
        cls,
        scores: Iterable[float | None],
        errors: Iterable[str | None],
        threshold: float | None = None,
        keep_errors: bool = False,
        thresholds: dict[str, float] | None = None,
        kept_mask: Iterable[bool] | None = None,
    ) -> "RunSummary":
        """A summary of the given score and error columns."""
        summary = cls(threshold=threshold, keep_errors=keep_errors, thresholds=thresholds)
        summary.add(scores, errors, kept_mask=kept_mask)
        return summary

    def add(
        self, scores: Iterable[float | None], errors: Iterable[str | None], kept_mask: Iterable[bool] | None = None
    ) -> None:
        """Count one more batch of rows (score and error columns of equal length).

        ``kept_mask`` (one bool per row) is the filter's own decision; without it a row is kept by
        ``threshold`` on ``scores`` (every row for a score run).
        """
        scores, errors = list(scores), list(errors)
        mask = list(kept_mask) if kept_mask is not None else None
        if mask is not None and len(mask) != len(scores):
            raise ValueError(f"kept_mask has {len(mask)} values for {len(scores)} rows")
        for index, (score, error) in enumerate(zip(scores, errors, strict=True)):
            self.rows += 1
            ok = score is not None and not math.isnan(score)
            if ok:
                self.scored += 1
                self.histogram[_bin(score)] += 1
            else:
                self.error_counts[error_kind(error or "") or "no score"] += 1
            if mask is not None:
                self.kept += bool(mask[index])
            elif self.threshold is None or keep_score(score, self.threshold, self.keep_errors):
                self.kept += 1

    def merge(self, other: "RunSummary") -> "RunSummary":
        """A new summary counting the rows of both (the rule is taken from ``self``)."""
        merged = RunSummary.from_dict(self.to_dict())
        merged.rows += other.rows
        merged.scored += other.scored
        merged.kept += other.kept
        merged.error_counts.update(other.error_counts)
        merged.histogram = [a + b for a, b in zip(merged.histogram, other.histogram, strict=True)]
        return merged

    def to_dict(self) -> dict:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "threshold": self.threshold, "keep_errors": self.keep_errors, "thresholds": self.thresholds,
            "rows": self.rows, "scored": self.scored, "kept": self.kept,
            "errors": dict(self.error_counts), "histogram": list(self.histogram),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RunSummary":
        """The summary :meth:`to_dict` wrote."""
        return cls(
            threshold=data.get("threshold"), keep_errors=bool(data.get("keep_errors", False)),
            thresholds=dict(data["thresholds"]) if data.get("thresholds") else None,
            rows=int(data["rows"]), scored=int(data["scored"]), kept=int(data["kept"]),
            error_counts=Counter({str(k): int(v) for k, v in data.get("errors", {}).items()}),
            histogram=[int(v) for v in data["histogram"]],
        )

    @property
    def rule(self) -> str:
        """The keep rule in words: every column threshold, and what happens to error rows."""
        errors = f"errors {'kept' if self.keep_errors else 'dropped'}"
        if self.thresholds:
            return ", ".join(f"{column} >= {value:g}" for column, value in self.thresholds.items()) + f", {errors}"
        if self.threshold is None:
            return "score run, nothing dropped"
        return f"score >= {self.threshold:g}, {errors}"

    @property
    def errors(self) -> dict[str, int]:
        """Rows not scored, by reason, most frequent first (ties by name)."""
        return dict(sorted(self.error_counts.items(), key=lambda item: (-item[1], item[0])))

    @property
    def kept_fraction(self) -> float:
        """``kept / rows`` (0.0 for an empty run)."""
        return self.kept / self.rows if self.rows else 0.0

    def render(self) -> str:
        """The summary as a few lines of text."""
        lines = [
            f"rows read   {self.rows}",
            f"scored      {self.scored}",
            f"errors      {self.rows - self.scored}",
        ]
        width = max((len(reason) for reason in self.errors), default=0)
        lines += [f"  {reason:<{width}}  {count}" for reason, count in self.errors.items()]
        lines.append(f"kept        {self.kept} ({self.kept_fraction:.1%}; {self.rule})")
        lines.append("score histogram:")
        top = max(self.histogram) or 1
        for index, count in enumerate(self.histogram):
            bar = "#" * math.ceil(count * BAR_WIDTH / top) if count else ""
            low, high = BIN_EDGES[index], BIN_EDGES[index + 1]
            lines.append(f"  {low:>2}-{high:<2} |{bar:<{BAR_WIDTH}} {count}")
        return "\n".join(lines)


def _bin(score: float) -> int:
    """Histogram bin of a score; scores outside [1, 10] go to the first or last bin."""
    return min(max(int(math.floor(score)) - BIN_EDGES[0], 0), len(BIN_EDGES) - 2)
