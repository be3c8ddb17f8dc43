"""What a run did, in one JSON-ready record: the facts a dataset card (or a report) is filled from.

The engines produce a :class:`FilterRun` at the end of every run: where the rows came from (a
:class:`RunContext` the caller gives: source, revision, split, limit, the command or Python recipe),
each scorer (class, checkpoint, revision, columns, direction, and the facts it declares with
``card_facts()``: mode, pixel budget, prompt…), the keep rule, the counts (a
:class:`~hf_vlm_filter.engines.summary.RunSummary`) and the library version. Publishing
(:mod:`hf_vlm_filter.hub`) only reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .._version import __version__
from .keep_rule import KeepRule
from .summary import RunSummary


@dataclass
class RunContext:
    """What the caller knows of a run that the scorers and the rule do not say.

    Args:
        source: the dataset id, file or folder the rows came from.
        source_revision: the source's commit on the Hub, when known.
        split: the split read.
        limit: only the first ``limit`` rows were read (``None``: all).
        command: the command line that reproduces the run (the CLI records its own).
        recipe: or the Python recipe that does.
        calibration: the judge's fast-against-reference calibration the run's threshold was chosen
            with (a :func:`~hf_vlm_filter.engines.calibration.load_calibration` dict); the card and the
            report show it.
    """

    source: str
    source_revision: str | None = None
    split: str = "train"
    limit: int | None = None
    command: str | None = None
    recipe: str | None = None
    calibration: dict[str, Any] | None = None


@dataclass
class ScorerInfo:
    """One scorer of a run: its class, checkpoint and revision, the columns it writes, its mode and
    direction, and the other facts it declares (``card_facts()``)."""

    name: str
    model: str | None
    revision: str | None
    score_column: str
    error_column: str
    mode: str | None = None
    direction: str = "higher"
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_facts(cls, facts: dict[str, Any], spec: Any) -> ScorerInfo:
        """The info of one member scorer from its ``card_facts()`` entry and its main score spec."""
        known = {"class", "model", "revision", "mode"}
        return cls(name=facts["class"], model=facts.get("model"), revision=facts.get("revision"),
                   score_column=spec.column, error_column=spec.error_column, mode=facts.get("mode"),
                   direction=spec.direction, facts={k: v for k, v in facts.items() if k not in known})


def scorer_infos(scorer: Any) -> list[ScorerInfo]:
    """The :class:`ScorerInfo` of each member of ``scorer`` (any object of the scorer protocol)."""
    return [ScorerInfo.from_facts(facts, member.score_spec)
            for member, facts in zip(scorer.members(), scorer.card_facts())]


@dataclass
class FilterRun:
    """The record of one score/filter run (see the module docstring).

    Example:
        >>> from hf_vlm_filter import VLMJudge
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> judge = VLMJudge(str(save_tiny_model("/tmp/tiny-judge")))
        >>> rule = KeepRule.from_thresholds(judge, {"judge_score": 9.0})
        >>> run = FilterRun.of(RunContext("user/pairs"), judge, rule)
        >>> run.scorers[0].name, run.to_dict()["thresholds"], FilterRun.from_dict(run.to_dict()) == run
        ('VLMJudge', {'judge_score': 9.0}, True)
    """

    source: str
    source_revision: str | None = None
    split: str = "train"
    limit: int | None = None
    scorers: list[ScorerInfo] = field(default_factory=list)
    prompt: str | None = None
    rule: KeepRule = field(default_factory=KeepRule)
    summary: RunSummary | None = None
    command: str | None = None
    recipe: str | None = None
    calibration: dict[str, Any] | None = None
    library_version: str = __version__

    @classmethod
    def of(cls, context: RunContext, scorer: Any, rule: KeepRule, summary: RunSummary | None = None) -> FilterRun:
        """The record of ``scorer`` run under ``rule`` in ``context``."""
        infos = scorer_infos(scorer)
        prompt = next((info.facts["prompt"] for info in infos if info.facts.get("prompt")), None)
        return cls(scorers=infos, prompt=prompt, rule=rule, summary=summary, **asdict(context))

    @property
    def context(self) -> RunContext:
        return RunContext(self.source, self.source_revision, self.split, self.limit, self.command, self.recipe,
                          self.calibration)

    @property
    def mode(self) -> str | None:
        """The judge mode (``fast`` / ``reference``) when a scorer has one."""
        return next((info.mode for info in self.scorers if info.mode), None)

    @property
    def thresholds(self) -> dict[str, float]:
        """Column -> threshold of the rule (after a fraction was resolved, its cut-off)."""
        return self.rule.thresholds

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (:meth:`from_dict` reads it back); ``thresholds`` is derived from the
        rule, for readers of the card's metadata."""
        data = asdict(self)
        data["rule"] = self.rule.to_dict()
        data["thresholds"] = self.thresholds
        data["summary"] = self.summary.to_dict() if self.summary is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FilterRun:
        """The record :meth:`to_dict` wrote."""
        data = dict(data)
        data.pop("thresholds", None)
        data["scorers"] = [ScorerInfo(**info) for info in data.get("scorers", [])]
        data["rule"] = KeepRule.from_dict(data.get("rule") or {})
        data["summary"] = RunSummary.from_dict(data["summary"]) if data.get("summary") else None
        return cls(**data)
