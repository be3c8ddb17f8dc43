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

from ..inputs import clean_caption, load_image
from ..models.unifilter import (
    UniFilterSpec,
    caption_input_ids,
    head_readout,
    load_unifilter,
    load_unifilter_processors,
    read_spec,
)
from .base import Batch, Scorer
from .config import CaptionFields, ImageFields, PipelineFields, ScorerConfig

DEFAULT_UNIFILTER = "weizhiwang/UniFilter-Qwen2.5-1.5B"


@dataclass(frozen=True)
class UniFilterConfig(PipelineFields, CaptionFields, ImageFields, ScorerConfig):
    """Everything that defines a UniFilter run; frozen, hashable and picklable.

    Shared fields are those of :mod:`hf_vlm_filter.scorers.config`.

    Args:
        max_text_tokens: id budget of the text (image placeholder, BOS and EOS included); 75 as published.
    """

    model: str = DEFAULT_UNIFILTER
    max_text_tokens: int = 75

    def validate(self) -> None:
        super().validate()
        if self.max_text_tokens < 3:
            raise ValueError(f"max_text_tokens must be at least 3 (image, BOS, EOS), got {self.max_text_tokens}")


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
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> path = save_tiny_model("/tmp/tiny-unifilter", kind="unifilter")
        >>> scorer = UniFilterScorer.from_pretrained(str(path), device="cpu")
        >>> ds = ds.map(scorer, batched=True, batch_size=16)                      # doctest: +SKIP
    """

    prefix = "unifilter"
    name = "unifilter"
    summary = "UniFilter quality classifier, 0-3, caption pairs (arXiv 2510.15162)"
    config_class = UniFilterConfig
    score_range = (0.0, 3.0)
    input_fields = ("image_column", "text_column")
    preprocessing_class = _Preprocessing
    cli_fields = ("max_text_tokens",)

    def load_model(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        return load_unifilter(self.config.model, dtype, str(device), self.config.revision)

    def extra_features(self) -> dict[str, Any]:
        labels = self.preprocessing.num_labels
        return {"unifilter_probs": List(Value("float32"), length=labels)} if labels > 1 else {}

    def prepare(self, batch: Batch, index: int) -> UniFilterItem:
        image = load_image(self.cell(batch, "image_column", index), self.image_policy())
        caption = clean_caption(self.cell(batch, "text_column", index))
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


def unifilter_scores(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function: adds ``unifilter_score`` and ``unifilter_error`` (options via ``fn_kwargs``).

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> tiny = str(save_tiny_model("/tmp/tiny-unifilter", kind="unifilter"))
        >>> ds = Dataset.from_dict({"image": [Image.new("RGB", (64, 48), "red"), None],
        ...                         "caption": ["a red card", "no image here"]})
        >>> out = ds.map(unifilter_scores, batched=True, fn_kwargs={"model": tiny, "device": "cpu"})
        >>> list(out["unifilter_error"])
        ['', 'missing image']
    """
    return UniFilterScorer.shared_instance(**options)(batch, rank)
