"""The scorer protocol: what every engine may rely on, whatever runs behind it.

A single scorer (:class:`~hf_vlm_filter.scorers.base.Scorer`), several in one pass
(:class:`~hf_vlm_filter.scorers.composite.CompositeScorer`) and the model-free second pass of ViSA's
object alignment all implement it, so an engine (``ds.map``, the streaming job, torchrun ranks, Ray
actors), a keep rule or a dataset card never asks what kind of scorer it holds.

Example:
    >>> from hf_vlm_filter import VLMJudge
    >>> judge = VLMJudge("./judge")
    >>> isinstance(judge, ScorerProtocol), [spec.column for spec in judge.score_specs]
    (True, ['judge_score'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from datasets import Features

    from .score_spec import ScoreSpec

Batch = Mapping[str, Sequence[Any]]


@runtime_checkable
class ScorerProtocol(Protocol):
    """A ``datasets.map`` callable with declared columns, scores and loading."""

    def __call__(self, batch: Batch, rank: int | None = None) -> dict[str, Any]:
        """Score a batch: one value per row in every new column, in input order."""

    def output_features(self, input_features: Features | None = None) -> Features:
        """The new columns' features (merged after ``input_features`` when given)."""

    @property
    def score_specs(self) -> tuple[ScoreSpec, ...]:
        """Every score column written, with its direction and range, in column order."""

    def members(self) -> tuple[Any, ...]:
        """The single scorers that run (``(self,)`` for one scorer)."""

    def check_columns(self, batch: Batch) -> None:
        """Raise ``KeyError`` (one message naming the option to set) when a needed column is missing."""

    def load(self, rank: int | None = None) -> Any:
        """Load models and processors now, so that a bad checkpoint fails before any row is read."""

    def on_device(self, device: str) -> ScorerProtocol:
        """The same scorer on ``device`` (members left on the default device move; explicit ones stay)."""

    def card_facts(self) -> list[dict[str, Any]]:
        """One dict per member: the facts a dataset card states (checkpoint, revision, mode, prompt...)."""
