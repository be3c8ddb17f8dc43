"""Several scorers in one pass over a batch, each image decoded once per decoding policy.

:class:`CompositeScorer` follows the scorer protocol (batch in, new columns out, declared
``output_features`` and ``score_specs``, pickles to configuration). Each sub-scorer says which
columns it decodes images from and with which :class:`~hf_vlm_filter.inputs.ImagePolicy`
(:meth:`~hf_vlm_filter.scorers.base.Scorer.image_columns`, ``image_policy``): the composite decodes
every image once per distinct ``(column, policy)`` — fully, into a
:class:`~hf_vlm_filter.inputs.DecodedImage` holding the RGB image or the reason it was refused — and
hands each sub-scorer a batch whose image column holds those. A scorer therefore gets exactly the
pixels, or the reason, it would get alone: ``ClipScorer(jpeg_draft=True)`` beside a judge gets its
draft-decoded image, the judge its full-resolution one. Decoding runs on the background pool of
:mod:`~hf_vlm_filter.scorers.batching` when any sub-scorer has ``prefetch_workers`` (the largest count
is used), in the calling thread otherwise.

Example:
    >>> both = CompositeScorer([VLMJudge("./judge"), ClipScorer("./clip")])    # doctest: +SKIP
    >>> scored = map_with_scorer(ds, both, batch_size=16)                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasets import Features

from ..inputs import DecodedImage, ImagePolicy
from .base import Batch, Scorer
from .batching import batch_size, prefetch_pool
from .score_spec import ScoreSpec


class CompositeScorer:
    """Run ``scorers`` on each batch, decoding each image once per policy; returns the union of their columns.

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter import ClipScorer, CompositeScorer, VLMJudge
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> both = CompositeScorer([VLMJudge(str(save_tiny_model("/tmp/tiny-judge")), device="cpu"),
        ...                         ClipScorer(str(save_tiny_model("/tmp/tiny-clip", kind="clip")), device="cpu")])
        >>> ds = Dataset.from_dict({"image": [Image.new("RGB", (64, 48), "red")], "caption": ["a red card"]})
        >>> sorted(ds.map(both, batched=True).column_names)
        ['caption', 'clip_error', 'clip_score', 'image', 'judge_error', 'judge_score']
    """

    def __init__(self, scorers: Sequence[Scorer]) -> None:
        if not scorers:
            raise ValueError("CompositeScorer needs at least one scorer")
        self.scorers = [member for scorer in scorers for member in scorer.members()]
        self._check_unique_columns()

    def _check_unique_columns(self) -> None:
        seen: dict[str, Scorer] = {}
        for scorer in self.scorers:
            for name in scorer.output_features():
                if name in seen:
                    raise ValueError(f"column {name!r} is written by both {seen[name]!r} and {scorer!r}")
                seen[name] = scorer

    # ---- the protocol -----------------------------------------------------------------------
    @property
    def score_specs(self) -> tuple[ScoreSpec, ...]:
        return tuple(spec for scorer in self.scorers for spec in scorer.score_specs)

    def members(self) -> tuple[Scorer, ...]:
        return tuple(self.scorers)

    def output_features(self, input_features: Features | None = None) -> Features:
        merged = dict(input_features or {})
        for scorer in self.scorers:
            merged.update(scorer.output_features())
        return Features(merged)

    def check_columns(self, batch: Batch) -> None:
        for scorer in self.scorers:
            scorer.check_columns(batch)

    def load(self, rank: int | None = None) -> None:
        """Load every sub-scorer's model (fails early with the checkpoint's own message)."""
        for scorer in self.scorers:
            scorer.load(rank)

    def on_device(self, device: str) -> CompositeScorer:
        return CompositeScorer([scorer.on_device(device) for scorer in self.scorers])

    def card_facts(self) -> list[dict[str, Any]]:
        return [facts for scorer in self.scorers for facts in scorer.card_facts()]

    def __call__(self, batch: Batch, rank: int | None = None) -> dict[str, list[Any]]:
        self.check_columns(batch)
        size = batch_size(batch)
        decoded: dict[tuple[str, ImagePolicy], list[DecodedImage]] = {}
        columns: dict[str, list[Any]] = {}
        for scorer in self.scorers:
            view = dict(batch)
            for column in scorer.image_columns(batch):
                key = (column, scorer.image_policy())
                if key not in decoded:
                    decoded[key] = self._decode_column(batch[column], size, key[1])
                view[column] = decoded[key]
            columns.update(scorer(view, rank))
        return columns

    def decode_workers(self) -> int:
        """Threads that decode a batch's images: the most ``prefetch_workers`` of any sub-scorer."""
        return max(scorer.pipeline_options().prefetch_workers for scorer in self.scorers)

    def _decode_column(self, cells: Sequence[Any], size: int, policy: ImagePolicy) -> list[DecodedImage]:
        workers = self.decode_workers()
        if workers == 0 or size < 2:
            return [DecodedImage.of(cells[i], policy) for i in range(size)]
        return list(prefetch_pool(workers).map(DecodedImage.of, (cells[i] for i in range(size)), [policy] * size))

    # ---- configuration-only state -------------------------------------------------------------
    @property
    def score_column(self) -> str:
        """The first scorer's score column."""
        return self.scorers[0].score_column

    @property
    def error_column(self) -> str:
        return self.scorers[0].error_column

    def __getstate__(self) -> dict[str, Any]:
        return {"scorers": self.scorers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.scorers = state["scorers"]

    def __repr__(self) -> str:
        return f"CompositeScorer({self.scorers!r})"
