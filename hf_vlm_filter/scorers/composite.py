"""Several scorers in one pass over a batch, each image decoded once.

:class:`CompositeScorer` follows the same contract as a single scorer (batch in, new columns out,
declared ``output_features``, pickles to configuration): it decodes the image column(s) once per row
with :func:`~hf_vlm_filter.inputs.load_image`, then hands every sub-scorer a batch whose image
column holds the decoded RGB images. ``load_image`` returns such an image as it is (already RGB,
oriented and within the image policy), so the sub-scorers do no decoding of their own. A row whose
image cannot be decoded keeps its original cell, so every sub-scorer reports the same reason.
Decoding runs on the background pool of :mod:`~hf_vlm_filter.scorers.pipeline` when any
sub-scorer has ``prefetch_workers`` (the largest count is used), in the calling thread otherwise.

Example:
    >>> both = CompositeScorer([VLMJudge("./judge"), ClipScorer("./clip")])    # doctest: +SKIP
    >>> scored = map_with_scorer(ds, both, batch_size=16)                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasets import Features

from ..inputs import ImagePolicy, RowError, load_image
from .base import Batch, Scorer, _batch_size
from .pipeline import prefetch_pool


def _image_column(scorer: Scorer, batch: Batch) -> str | None:
    """The column ``scorer`` reads its image from in ``batch`` (``None``: it reads no image)."""
    if hasattr(scorer, "image_column_in"):
        return scorer.image_column_in(batch)
    return getattr(scorer.config, "image_column", None)


class CompositeScorer:
    """Run ``scorers`` on each batch, decoding each image once; returns the union of their columns.

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter import ClipScorer, CompositeScorer, VLMJudge
        >>> from hf_vlm_filter.testing import save_tiny_model
        >>> both = CompositeScorer([VLMJudge(str(save_tiny_model("/tmp/tiny-judge")), device="cpu"),
        ...                         ClipScorer(str(save_tiny_model("/tmp/tiny-clip", kind="clip")), device="cpu")])
        >>> ds = Dataset.from_dict({"image": [Image.new("RGB", (64, 48), "red")], "caption": ["a red card"]})
        >>> sorted(ds.map(both, batched=True).column_names)
        ['caption', 'clip_error', 'clip_score', 'image', 'judge_error', 'judge_score']
    """

    def __init__(self, scorers: Sequence[Scorer]) -> None:
        if not scorers:
            raise ValueError("CompositeScorer needs at least one scorer")
        self.scorers = list(scorers)
        self._check_unique_columns()

    def _check_unique_columns(self) -> None:
        seen: dict[str, Scorer] = {}
        for scorer in self.scorers:
            for name in scorer.output_features():
                if name in seen:
                    raise ValueError(f"column {name!r} is written by both {seen[name]!r} and {scorer!r}")
                seen[name] = scorer

    # ---- contract ---------------------------------------------------------------------------
    @property
    def score_columns(self) -> list[str]:
        return [scorer.score_column for scorer in self.scorers]

    @property
    def error_columns(self) -> list[str]:
        return [scorer.error_column for scorer in self.scorers]

    @property
    def score_column(self) -> str:
        """The first scorer's score column (the CLI's ``--threshold`` and summary use it)."""
        return self.scorers[0].score_column

    @property
    def error_column(self) -> str:
        return self.scorers[0].error_column

    def output_features(self, input_features: Features | None = None) -> Features:
        merged = dict(input_features or {})
        for scorer in self.scorers:
            merged.update(scorer.output_features())
        return Features(merged)

    def load(self, rank: int | None = None) -> None:
        """Load every sub-scorer's model (fails early with the checkpoint's own message)."""
        for scorer in self.scorers:
            load = getattr(scorer, "load", None)
            if load is not None:
                load(rank)

    def __call__(self, batch: Batch, rank: int | None = None) -> dict[str, list[Any]]:
        for scorer in self.scorers:
            scorer.check_columns(batch)
        size = _batch_size(batch)
        decoded: dict[tuple[str, str | None], list[Any]] = {}
        views: list[Batch] = []
        for scorer in self.scorers:
            column = _image_column(scorer, batch)
            if column is None or column not in batch:
                views.append(batch)
                continue
            root = getattr(scorer.config, "image_root", None)
            key = (column, root)
            if key not in decoded:
                decoded[key] = self._decode_column(batch[column], size, ImagePolicy(image_root=root))
            view = dict(batch)
            view[column] = decoded[key]
            views.append(view)
        columns: dict[str, list[Any]] = {}
        for scorer, view in zip(self.scorers, views):
            columns.update(scorer(view, rank))
        return columns

    def decode_workers(self) -> int:
        """Threads that decode a batch's images: the most ``prefetch_workers`` of any sub-scorer."""
        return max(scorer.pipeline_options().prefetch_workers for scorer in self.scorers)

    def _decode_column(self, cells: Sequence[Any], size: int, policy: ImagePolicy) -> list[Any]:
        workers = self.decode_workers()
        if workers == 0 or size < 2:
            return [self._decode(cells[i], policy) for i in range(size)]
        return list(prefetch_pool(workers).map(self._decode, (cells[i] for i in range(size)), [policy] * size))

    @staticmethod
    def _decode(cell: Any, policy: ImagePolicy) -> Any:
        """The decoded RGB image, or the original cell when it cannot be decoded (same reason later)."""
        try:
            return load_image(cell, policy)
        except RowError:
            return cell

    # ---- configuration-only state -------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"scorers": self.scorers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.scorers = state["scorers"]

    def __repr__(self) -> str:
        return f"CompositeScorer({self.scorers!r})"
