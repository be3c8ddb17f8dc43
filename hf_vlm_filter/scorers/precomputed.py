"""Scores a dataset already holds, read instead of recomputed: re-filtering a scored file is cheap.

:class:`PrecomputedScores` wraps the scorer that wrote the columns and implements the scorer
protocol by handing back the batch's own columns, so every engine, keep rule and summary works on a
scored Parquet file exactly as on a fresh run, without loading a model.

Example:
    >>> from hf_vlm_filter import ClipScorer
    >>> reread = PrecomputedScores(ClipScorer("./clip"))
    >>> reread({"clip_score": [0.31, float("nan")], "clip_error": ["", "missing image"], "caption": ["a", "b"]})
    {'clip_score': [0.31, nan], 'clip_error': ['', 'missing image']}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from datasets import Features

from .score_spec import ScoreSpec


class PrecomputedScores:
    """The columns ``scorer`` writes, read from the batch (see the module docstring)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer

    @classmethod
    def available(cls, scorer: Any, columns: Sequence[str] | None) -> bool:
        """Whether ``columns`` hold every column ``scorer`` writes."""
        return bool(columns) and all(name in columns for name in scorer.output_features())

    def __call__(self, batch: Mapping[str, Sequence[Any]], rank: int | None = None) -> dict[str, Any]:
        self.check_columns(batch)
        return {name: list(batch[name]) for name in self.scorer.output_features()}

    def output_features(self, input_features: Features | None = None) -> Features:
        return self.scorer.output_features(input_features)

    @property
    def score_specs(self) -> tuple[ScoreSpec, ...]:
        return self.scorer.score_specs

    def members(self) -> tuple[Any, ...]:
        return self.scorer.members()

    def check_columns(self, batch: Mapping[str, Sequence[Any]]) -> None:
        missing = [name for name in self.scorer.output_features() if name not in batch]
        if missing:
            raise KeyError(f"the source holds no column(s) {missing} to read the scores from (columns: {sorted(batch)})")

    def load(self, rank: int | None = None) -> None:
        """Nothing to load: the scores are in the data."""

    def on_device(self, device: str) -> PrecomputedScores:
        return self

    def card_facts(self) -> list[dict[str, Any]]:
        """Who wrote the columns, and that they were read: never the scorer's own facts (pixel budget,
        prompt...), which describe this configuration rather than the run that made the scores, and
        whose lookup would load the checkpoint's processors."""
        facts = []
        for member in self.members():
            config = getattr(member, "config", None)
            facts.append({"scorer": getattr(member, "name", None), "class": type(member).__name__,
                          "model": getattr(config, "model", None), "revision": getattr(config, "revision", None),
                          "scores": "read from the source, not recomputed"})
        return facts

    def __getstate__(self) -> dict[str, Any]:
        return {"scorer": self.scorer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.scorer = state["scorer"]

    def __repr__(self) -> str:
        return f"PrecomputedScores({self.scorer!r})"
