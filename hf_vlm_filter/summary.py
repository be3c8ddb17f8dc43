"""The end-of-run summary printed by the command line: counts, error reasons, score histogram.

Pure Python: built from the ``judge_score`` / ``judge_error`` columns, batch by batch when
streaming, and rendered as plain text.
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

    Example:
        >>> s = RunSummary.from_columns([9.5, float("nan"), 3.0], ["", "empty caption", ""], threshold=9)
        >>> s.rows, s.scored, s.kept, s.errors
        (3, 2, 1, {'empty caption': 1})
    """

    threshold: float | None = None
    keep_errors: bool = False
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
    ) -> "RunSummary":
        """A summary of the given score and error columns."""
        summary = cls(threshold=threshold, keep_errors=keep_errors)
        summary.add(scores, errors)
        return summary

    def add(self, scores: Iterable[float | None], errors: Iterable[str | None]) -> None:
        """Count one more batch of rows (score and error columns of equal length)."""
        for score, error in zip(scores, errors, strict=True):
            self.rows += 1
            ok = score is not None and not math.isnan(score)
            if ok:
                self.scored += 1
                self.histogram[_bin(score)] += 1
            else:
                self.error_counts[error_kind(error or "") or "no score"] += 1
            if self.threshold is None or keep_score(score, self.threshold, self.keep_errors):
                self.kept += 1

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
        rule = (
            "score run, nothing dropped"
            if self.threshold is None
            else f"score >= {self.threshold:g}, errors {'kept' if self.keep_errors else 'dropped'}"
        )
        lines.append(f"kept        {self.kept} ({self.kept_fraction:.1%}; {rule})")
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
