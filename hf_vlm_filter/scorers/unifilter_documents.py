"""UniFilter quality score of interleaved image-text documents (OBELICS layout).

A row holds ``texts: list[str | None]`` and ``images: list[image cell | None]`` of equal length,
exactly one of the two set at each position. Following the reference interleaved scoring script:

* a ``None`` text is an image slot (``<image>``); pieces are joined with ``"\\n\\n"``, BOS (when the
  tokenizer has one) prepended and EOS appended (:func:`~hf_vlm_filter.models.unifilter.document_input_ids`);
* images with a 1-pixel side are **dropped**, slot included, as the reference does (other small or
  elongated images are kept: the SigLIP processor resizes them to its square input);
* every kept image goes through :func:`~hf_vlm_filter.inputs.load_image` and the SigLIP processor, and
  its features are spliced at its own ``<image>`` slot;
* documents with more than ``max_images`` (10) kept images or more than ``max_document_tokens`` (6,000)
  ids (one id per image slot, BOS and EOS included) get NaN and a reason, as do documents with a broken
  image, no usable image, no text, or a malformed layout (not lists, lengths differ, both or neither
  set at a position). No document is cut.

Columns are those of caption mode (:class:`~hf_vlm_filter.scorers.unifilter_score.UniFilterScorer`):
``unifilter_score``, ``unifilter_error`` and, for classifier heads, ``unifilter_probs``. Use
:class:`UniFilterDocumentScorer` (a separate class rather than a mode flag, so each config describes
one input layout) or the map function :func:`unifilter_document_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..inputs import ImagePolicy, RowError, image_size_hint, load_image
from ..models.unifilter import document_input_ids
from .base import Batch
from .config import PipelineFields, ScorerConfig
from .unifilter_score import DEFAULT_UNIFILTER, UniFilterScorer, head_outputs

#: Images are decoded as they are (no minimum side, no aspect limit) so that the 1-pixel rule sees
#: their real size; the SigLIP processor resizes what is kept.
_DOCUMENT_IMAGE_LIMITS = {"min_side": 1, "max_aspect_ratio": float("inf")}


@dataclass(frozen=True)
class UniFilterDocumentConfig(PipelineFields, ScorerConfig):
    """Everything that defines a UniFilter document run; frozen, hashable and picklable.

    Shared fields are those of :mod:`hf_vlm_filter.scorers.config`.

    Args:
        texts_column / images_column: the OBELICS-layout list columns.
        image_root: folder against which relative image paths are resolved.
        max_images: documents with more kept images get NaN (10 as in the reference script).
        max_document_tokens: documents with more ids get NaN (6,000 as in the reference script).
    """

    model: str = DEFAULT_UNIFILTER
    texts_column: str = "texts"
    images_column: str = "images"
    image_root: str | None = None
    max_images: int = 10
    max_document_tokens: int = 6000


@dataclass
class UniFilterDocument:
    pixel_values: torch.Tensor  # (images, 3, H, W)
    input_ids: list[int]


class UniFilterDocumentScorer(UniFilterScorer):
    """UniFilter score of interleaved documents, batched for ``ds.map(..., batched=True)``.

    Example:
        >>> scorer = UniFilterDocumentScorer.from_pretrained("/tmp/tiny-unifilter", device="cpu")  # doctest: +SKIP
        >>> ds = ds.map(scorer, batched=True, batch_size=4)                                        # doctest: +SKIP
    """

    name = "unifilter-docs"
    summary = "UniFilter on interleaved documents (OBELICS layout)"
    config_class = UniFilterDocumentConfig
    input_fields = ("texts_column", "images_column")
    cli_fields = ("max_images", "max_document_tokens")

    def image_policy(self) -> ImagePolicy:
        """Images decode as they are (no minimum side, no aspect limit), so the 1-pixel rule sees
        their real size; the SigLIP processor resizes what is kept."""
        return ImagePolicy(image_root=self.config.image_root, **_DOCUMENT_IMAGE_LIMITS)

    def prepare(self, batch: Batch, index: int) -> UniFilterDocument:
        texts, images = self.cell(batch, "texts_column", index), self.cell(batch, "images_column", index)
        if not isinstance(texts, (list, tuple)) or not isinstance(images, (list, tuple)):
            raise RowError(f"texts and images must be lists (got {type(texts).__name__}, {type(images).__name__})")
        if len(texts) != len(images):
            raise RowError(f"texts and images differ in length ({len(texts)} != {len(images)})")
        policy = self.image_policy()
        self._check_image_count(images, policy)
        pieces: list[str | None] = []
        kept = []
        for position, (text, cell) in enumerate(zip(texts, images)):
            if (text is None) == (cell is None):
                raise RowError(f"position {position}: exactly one of text and image must be set")
            if text is not None:
                if not isinstance(text, str):
                    raise RowError(f"position {position}: text is {type(text).__name__}, not str")
                pieces.append(text)
                continue
            try:
                image = load_image(cell, policy)
            except RowError as exc:
                raise RowError(f"image at position {position}: {exc}") from None
            if min(image.size) == 1:
                continue  # 1-pixel side: dropped with its slot, as the reference does
            kept.append(image)
            pieces.append(None)
        if not any(piece is not None and piece.strip() for piece in pieces):
            raise RowError("document has no text")
        if not kept:
            raise RowError("document has no usable image")
        if len(kept) > self.config.max_images:
            raise RowError(f"document has {len(kept)} images (over {self.config.max_images})")
        pre = self.preprocessing
        ids = document_input_ids(pre.tokenizer, pieces)
        if len(ids) > self.config.max_document_tokens:
            raise RowError(f"document has {len(ids)} tokens (over {self.config.max_document_tokens})")
        pixels = pre.image_processor(images=kept, return_tensors="pt")["pixel_values"]
        return UniFilterDocument(pixels, ids)

    def _check_image_count(self, images: list[Any], policy: ImagePolicy) -> None:
        """Refuse a document with too many images from their headers alone, before decoding any
        (an image with a 1-pixel side is dropped, so it does not count)."""
        sizes = [image_size_hint(cell, policy) for cell in images if cell is not None]
        counted = sum(1 for size in sizes if size is None or min(size) > 1)
        if counted > self.config.max_images:
            raise RowError(f"document has {counted} images (over {self.config.max_images})")

    @torch.inference_mode()
    def score_prepared(self, items: list[UniFilterDocument], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        return head_outputs(model([item.input_ids for item in items], torch.cat([item.pixel_values for item in items]),
                                  [item.pixel_values.shape[0] for item in items]))


def unifilter_document_scores(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function over OBELICS-layout documents: adds ``unifilter_score`` and ``unifilter_error``.

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> tiny = str(save_tiny_model("/tmp/tiny-unifilter", kind="unifilter"))
        >>> docs = Dataset.from_dict({"texts": [["A red card.", None, "It is on a table."]],
        ...                           "images": [[None, Image.new("RGB", (64, 48), "red"), None]]})
        >>> out = docs.map(unifilter_document_scores, batched=True, fn_kwargs={"model": tiny, "device": "cpu"})
        >>> row = out[0]
        >>> row["unifilter_error"], row["unifilter_score"] == row["unifilter_score"]  # scored: not NaN
        ('', True)
    """
    return UniFilterDocumentScorer.shared_instance(**options)(batch, rank)
