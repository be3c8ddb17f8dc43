"""What a score column means: its direction and its range, declared by the scorer that writes it.

Every engine, keep rule and summary reads these declarations instead of guessing: ``--threshold``
on a higher-is-better score keeps rows *at least* the threshold, on a lower-is-better score (caption
perplexity) rows *at most* it; a histogram spans the scorer's rubric bins (the judge's 1-10) or the
values observed.

Example:
    >>> ppl = ScoreSpec("caption_ppl", "caption_ppl_error", direction="lower", low=1.0)
    >>> ppl.better(3.0, 40.0), ppl.describe_range(), ppl.can_reach(0.5)
    (True, '>= 1, lower is better', False)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DIRECTIONS = ("higher", "lower")


@dataclass(frozen=True)
class ScoreSpec:
    """One score column a scorer writes.

    Args:
        column: the score column (float32, NaN when not scored).
        error_column: the column holding the reason when the score is NaN.
        direction: ``"higher"`` (bigger is better) or ``"lower"`` (smaller is better).
        low / high: the declared range (``None``: unbounded on that side); informative, never enforced.
        bins: histogram edges of a rubric scale (the judge's ``1, 2, ..., 10``); ``None``: summaries bin
            the observed range.
    """

    column: str
    error_column: str
    direction: str = "higher"
    low: float | None = None
    high: float | None = None
    bins: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"need low < high, got {self.low}, {self.high}")
        if self.bins is not None and (len(self.bins) < 2 or list(self.bins) != sorted(set(self.bins))):
            raise ValueError(f"bins must be at least two increasing edges, got {self.bins}")

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than ``b`` in this column's direction."""
        return a > b if self.higher_is_better else a < b

    def can_reach(self, threshold: float) -> bool:
        """Whether any score in the declared range passes ``threshold`` (``>=`` or ``<=`` by direction)."""
        if self.higher_is_better:
            return self.high is None or threshold <= self.high
        return self.low is None or threshold >= self.low

    def describe_range(self) -> str:
        """``"1 to 10, higher is better"``, ``">= 1, lower is better"``…"""
        if self.low is not None and self.high is not None:
            span = f"{self.low:g} to {self.high:g}"
        elif self.low is not None:
            span = f">= {self.low:g}"
        elif self.high is not None:
            span = f"<= {self.high:g}"
        else:
            span = "any real"
        return f"{span}, {self.direction} is better"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bins"] = list(self.bins) if self.bins is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreSpec:
        data = dict(data)
        if data.get("bins") is not None:
            data["bins"] = tuple(float(edge) for edge in data["bins"])
        return cls(**data)
