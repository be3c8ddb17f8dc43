"""UniFilter (arXiv 2510.15162) caption-pair quality score as a ``datasets`` map scorer.

The text is ``"<image>\\n" + caption`` (BOS when the tokenizer has one, EOS appended, cut to 75
ids as in the reference scoring script); the image (SigLIP, 384x384 for the published towers)
is spliced in at ``<image>``. Rows are left-padded, so the score head reads each row's last real
token; batched scores equal per-row scores.

Columns: ``unifilter_score`` (float32; a regression head's raw output on the 0-3 quality scale, or
for a classifier head the expected level ``sum_k k * softmax_k``; NaN when not scored),
``unifilter_error`` and, for classifier heads only, ``unifilter_probs`` (the softmax).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from datasets import List, Value

from ..inputs import ImagePolicy, clean_caption, load_image
from ..models.unifilter import (
    UniFilterSpec,
    caption_input_ids,
    head_readout,
    load_unifilter,
    load_unifilter_processors,
    read_spec,
)
from .base import Batch, Scorer

DEFAULT_UNIFILTER = "weizhiwang/UniFilter-Qwen2.5-1.5B"


@dataclass(frozen=True)
class UniFilterConfig:
    """Everything that defines a UniFilter run; frozen, hashable and picklable.

    Args:
        model: Hub id or local folder of a published-layout UniFilter checkpoint.
        revision: Hub revision of ``model``.
        image_column / text_column: input columns.
        device / dtype: as for the other scorers (``None`` = CUDA + bf16 when available).
        image_root: folder against which relative image paths are resolved.
        max_text_tokens: id budget of the text (image placeholder, BOS and EOS included); 75 as published.
    """

    model: str = DEFAULT_UNIFILTER
    revision: str | None = None
    image_column: str = "image"
    text_column: str = "caption"
    device: str | None = None
    dtype: str | None = None
    image_root: str | None = None
    max_text_tokens: int = 75


@dataclass
class UniFilterItem:
    pixel_values: torch.Tensor
    input_ids: list[int]


class _Preprocessing:
    def __init__(self, config: UniFilterConfig) -> None:
        self.spec: UniFilterSpec = read_spec(config.model, config.revision)
        self.tokenizer, self.image_processor = load_unifilter_processors(self.spec)
        self.num_labels = self.spec.num_labels


class UniFilterScorer(Scorer):
    """UniFilter quality score of image-caption pairs, batched for ``ds.map(..., batched=True)``.

    Example:
        >>> from hf_vlm_filter.testing import save_tiny_model
        >>> path = save_tiny_model("/tmp/tiny-unifilter", kind="unifilter")
        >>> scorer = UniFilterScorer.from_pretrained(str(path), device="cpu")
        >>> ds = ds.map(scorer, batched=True, batch_size=16)                      # doctest: +SKIP
    """

    prefix = "unifilter"
    config_class = UniFilterConfig

    def __init__(self, model: str = DEFAULT_UNIFILTER, **options: Any) -> None:
        super().__init__(UniFilterConfig(model=str(model), **options))

    # ---- loading (cached per process by the base class) --------------------------------------
    def load_processors(self) -> _Preprocessing:
        return self.preprocessing

    @property
    def preprocessing(self) -> _Preprocessing:
        return self.shared(_Preprocessing, (self.config.model, self.config.revision))

    def load_model(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        return load_unifilter(self.config.model, dtype, str(device), self.config.revision)

    def extra_features(self) -> dict[str, Any]:
        labels = self.preprocessing.num_labels
        return {"unifilter_probs": List(Value("float32"), length=labels)} if labels > 1 else {}

    def check_columns(self, batch: Batch) -> None:
        missing = [c for c in (self.config.image_column, self.config.text_column) if c not in batch]
        if missing:
            raise KeyError(
                f"column(s) {missing} not in the batch (columns: {sorted(batch)}); "
                "pass image_column=... / text_column=..."
            )

    def prepare(self, batch: Batch, index: int) -> UniFilterItem:
        image = load_image(batch[self.config.image_column][index], ImagePolicy(image_root=self.config.image_root))
        caption = clean_caption(batch[self.config.text_column][index])
        pre = self.preprocessing
        pixels = pre.image_processor(images=[image], return_tensors="pt")["pixel_values"]
        return UniFilterItem(pixels, caption_input_ids(pre.tokenizer, caption, self.config.max_text_tokens))

    @torch.inference_mode()
    def score_prepared(self, items: list[UniFilterItem], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        return head_outputs(model([item.input_ids for item in items], torch.cat([item.pixel_values for item in items])))


def head_outputs(logits: torch.Tensor) -> list[dict[str, Any]]:
    """Each row's ``unifilter_score`` (and ``unifilter_probs`` for a classifier head) from head logits."""
    scores, probs = head_readout(logits)
    if probs is None:
        return [{"unifilter_score": value} for value in scores.cpu().tolist()]
    return [{"unifilter_score": s, "unifilter_probs": p} for s, p in zip(scores.cpu().tolist(), probs.cpu().tolist())]


def get_unifilter_scorer(**options: Any) -> UniFilterScorer:
    """The process-wide UniFilter scorer for these options (built once per configuration)."""
    return UniFilterScorer.shared_instance(**options)


def unifilter_scores(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function: adds ``unifilter_score`` and ``unifilter_error`` (options via ``fn_kwargs``).

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter.testing import save_tiny_model
        >>> tiny = str(save_tiny_model("/tmp/tiny-unifilter", kind="unifilter"))
        >>> ds = Dataset.from_dict({"image": [Image.new("RGB", (64, 48), "red"), None],
        ...                         "caption": ["a red card", "no image here"]})
        >>> out = ds.map(unifilter_scores, batched=True, fn_kwargs={"model": tiny, "device": "cpu"})
        >>> list(out["unifilter_error"])
        ['', 'missing image']
    """
    return get_unifilter_scorer(**options)(batch, rank)
