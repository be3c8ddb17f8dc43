"""A scorer writing its columns under another prefix, so two scorers of one kind fit in one run.

``RenamedColumns(ClipScorer("./siglip"), "siglip")`` writes ``siglip_score`` / ``siglip_error``
beside a plain ``ClipScorer``'s ``clip_score``; everything else (decoding, batching, the model) is the
wrapped scorer's. Columns that start with the scorer's prefix get the new one (``clip_score`` ->
``siglip_score``); any other column it writes is prefixed whole (``im_score`` -> ``pair_im_score``).

Example:
    >>> from hf_vlm_filter import ClipScorer
    >>> renamed = RenamedColumns(ClipScorer("./siglip"), "siglip")
    >>> renamed.score_column, list(renamed.output_features())
    ('siglip_score', ['siglip_score', 'siglip_error'])
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from datasets import Features

from .score_spec import ScoreSpec

_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class RenamedColumns:
    """``scorer`` with every column it writes renamed under ``prefix`` (see the module docstring)."""

    def __init__(self, scorer: Any, prefix: str) -> None:
        if not _PREFIX.match(prefix or ""):
            raise ValueError(f"a column prefix is letters, digits and '_', starting with a letter; got {prefix!r}")
        self.scorer = scorer
        self.prefix = prefix

    def rename(self, name: str) -> str:
        own = f"{self.scorer.prefix}_"
        return self.prefix + name[len(own) - 1:] if name.startswith(own) else f"{self.prefix}_{name}"

    # ---- the protocol ---------------------------------------------------------------------------
    def __call__(self, batch: Mapping[str, Sequence[Any]], rank: int | None = None) -> dict[str, Any]:
        return {self.rename(name): values for name, values in self.scorer(batch, rank).items()}

    def output_features(self, input_features: Features | None = None) -> Features:
        merged = dict(input_features or {})
        merged.update({self.rename(name): feature for name, feature in self.scorer.output_features().items()})
        return Features(merged)

    @property
    def score_specs(self) -> tuple[ScoreSpec, ...]:
        return tuple(replace(spec, column=self.rename(spec.column), error_column=self.rename(spec.error_column))
                     for spec in self.scorer.score_specs)

    @property
    def score_spec(self) -> ScoreSpec:
        return self.score_specs[0]

    @property
    def score_column(self) -> str:
        return self.score_spec.column

    @property
    def error_column(self) -> str:
        return self.score_spec.error_column

    def members(self) -> tuple[Any, ...]:
        return (self,)

    def check_columns(self, batch: Mapping[str, Sequence[Any]]) -> None:
        self.scorer.check_columns(batch)

    def load(self, rank: int | None = None) -> Any:
        return self.scorer.load(rank)

    def on_device(self, device: str) -> RenamedColumns:
        return RenamedColumns(self.scorer.on_device(device), self.prefix)

    def card_facts(self) -> list[dict[str, Any]]:
        return [{**facts, "column_prefix": self.prefix} for facts in self.scorer.card_facts()]

    # what a composite asks of its members: the wrapped scorer's decoding
    def image_columns(self, batch: Mapping[str, Sequence[Any]]) -> list[str]:
        return self.scorer.image_columns(batch)

    def image_policy(self) -> Any:
        return self.scorer.image_policy()

    def pipeline_options(self) -> Any:
        return self.scorer.pipeline_options()

    @property
    def config(self) -> Any:
        return self.scorer.config

    @property
    def name(self) -> str:
        return self.scorer.name

    def __getstate__(self) -> dict[str, Any]:
        return {"scorer": self.scorer, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.scorer, self.prefix = state["scorer"], state["prefix"]

    def __repr__(self) -> str:
        return f"RenamedColumns({self.scorer!r}, {self.prefix!r})"
