"""What a filter run did, in one JSON-ready record: the facts a dataset card is filled from.

A :class:`FilterRun` names the source (and its revision), each scorer (class, checkpoint, revision,
columns, mode), the judge prompt, the keep rule (column thresholds or a top fraction), the counts
(a :class:`~hf_vlm_filter.summary.RunSummary`), the command or Python recipe that reproduces it and
the library version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..summary import RunSummary


@dataclass
class ScorerInfo:
    """One scorer of a run: its class, checkpoint and revision, the columns it writes and its mode."""

    name: str
    model: str | None
    revision: str | None
    score_column: str
    error_column: str
    mode: str | None = None

    @classmethod
    def from_scorer(cls, scorer: Any) -> "ScorerInfo":
        """Read the facts from a scorer object (its frozen ``config`` and column names)."""
        config = getattr(scorer, "config", None)
        return cls(
            name=type(scorer).__name__,
            model=getattr(config, "model", None),
            revision=getattr(config, "revision", None),
            score_column=scorer.score_column,
            error_column=scorer.error_column,
            mode=getattr(config, "mode", None),
        )


def scorer_infos(scorer: Any) -> list[ScorerInfo]:
    """The :class:`ScorerInfo` of a scorer, or of each sub-scorer of a ``CompositeScorer``."""
    return [ScorerInfo.from_scorer(sub) for sub in getattr(scorer, "scorers", [scorer])]


def judge_prompt(scorer: Any) -> str | None:
    """The Compact VLM judge's prompt when ``scorer`` is (or contains) one, else ``None``."""
    from ..scorers.compact_judge import SYSTEM_PROMPT, USER_PREFIX, VLMJudge

    if any(isinstance(sub, VLMJudge) for sub in getattr(scorer, "scorers", [scorer])):
        return f"system: {SYSTEM_PROMPT}\nuser: <image> {USER_PREFIX}{{caption}}"
    return None


@dataclass
class FilterRun:
    """The record of one score/filter run (see the module docstring).

    Example:
        >>> from hf_vlm_filter.summary import RunSummary
        >>> run = FilterRun(source="user/pairs", thresholds={"judge_score": 9.0},
        ...                 summary=RunSummary.from_columns([9.5, 3.0], ["", ""], threshold=9))
        >>> FilterRun.from_dict(run.to_dict()) == run
        True
    """

    source: str
    source_revision: str | None = None
    split: str = "train"
    scorers: list[ScorerInfo] = field(default_factory=list)
    prompt: str | None = None
    thresholds: dict[str, float] | None = None
    fraction: float | None = None
    fraction_column: str | None = None
    keep_errors: bool = False
    summary: RunSummary | None = None
    command: str | None = None
    recipe: str | None = None
    library_version: str = ""

    def __post_init__(self) -> None:
        if not self.library_version:
            from .. import __version__

            self.library_version = __version__
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")

    @classmethod
    def from_scorer(cls, scorer: Any, source: str, **fields: Any) -> "FilterRun":
        """A record for ``scorer`` run on ``source``; ``fields`` fill the rest (thresholds, summary...)."""
        fields.setdefault("prompt", judge_prompt(scorer))
        return cls(source=source, scorers=scorer_infos(scorer), **fields)

    @property
    def mode(self) -> str | None:
        """The judge mode (``fast`` / ``reference``) when a scorer has one."""
        return next((info.mode for info in self.scorers if info.mode), None)

    @property
    def rule(self) -> str:
        """The keep rule in words."""
        errors = "error rows kept" if self.keep_errors else "error rows dropped"
        if self.fraction is not None:
            return f"top {self.fraction:.1%} by {self.fraction_column}, {errors}"
        if self.thresholds:
            return ", ".join(f"{column} >= {value:g}" for column, value in self.thresholds.items()) + f", {errors}"
        return "no filter (every row kept)"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (:meth:`from_dict` reads it back)."""
        data = asdict(self)
        data["summary"] = self.summary.to_dict() if self.summary is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FilterRun":
        """The record :meth:`to_dict` wrote."""
        data = dict(data)
        data["scorers"] = [ScorerInfo(**info) for info in data.get("scorers", [])]
        data["summary"] = RunSummary.from_dict(data["summary"]) if data.get("summary") else None
        return cls(**data)
