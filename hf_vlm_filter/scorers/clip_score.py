"""CLIP score (DataComp's baseline filter) as a ``datasets`` map scorer.

``clip_score`` is the cosine similarity between the image embedding and the caption embedding of a
dual-encoder checkpoint: any transformers CLIP or SigLIP model (anything ``AutoModel`` loads with
``get_image_features`` / ``get_text_features``). DataComp keeps the top 30% by CLIP ViT-L/14 cosine
(or B/32 >= 0.25).

Per batch there is exactly one image forward and one text forward (never one per row). Images go
through the checkpoint's image processor (``backend="pil"``, so torchvision is never needed);
captions are truncated to the text tower's position budget. SigLIP-family checkpoints were trained on
captions padded to that budget without an attention mask, so they are tokenised the same way here
(``padding="max_length"``); CLIP pads to the longest caption of the batch and masks the padding.

Columns written: ``clip_score`` (float32 in [-1, 1], NaN when not scored) and ``clip_error``
(``""`` or a reason).

Throughput: CLIP scoring is bound by JPEG decoding and resizing, not by the model. Pixels come from
:class:`~hf_vlm_filter.inputs.pixels.ResizeCropPixels` (the processor's exact output, about twice as
fast per core; the processor itself when that is not exact), and each ``map`` batch is scored in
micro-batches of ``micro_batch_size`` rows while ``prefetch_workers`` background threads decode the
next ones (see :mod:`hf_vlm_filter.scorers.batching`). Use a ``map`` ``batch_size`` several times
``micro_batch_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..inputs import ImagePolicy, ResizeCropPixels, clean_caption, load_image
from ..models.loading import load_or_explain, resolve_device, resolve_dtype
from ..models.plain_text import plain_text_ids
from .base import Batch, Scorer
from .config import CaptionFields, ImageFields, PipelineFields, ScorerConfig

DEFAULT_CLIP = "openai/clip-vit-large-patch14"


@dataclass(frozen=True)
class ClipConfig(PipelineFields, CaptionFields, ImageFields, ScorerConfig):
    """Everything that defines a CLIP-score run; frozen, hashable and picklable.

    Shared fields are those of :mod:`hf_vlm_filter.scorers.config` (micro-batches of 256 rows here).

    Args:
        jpeg_draft: decode JPEGs at a reduced DCT scale that still covers the model's input size
            (:class:`~hf_vlm_filter.inputs.ImagePolicy` ``draft_size``): 2-4x faster decoding of
            photos, slightly different pixels and hence scores. Off by default.
    """

    model: str = DEFAULT_CLIP
    micro_batch_size: int | None = 256
    jpeg_draft: bool = False


@dataclass
class ClipItem:
    """One prepared row: the image processor's tensors (batch dim 1) and the caption's token ids."""

    image_inputs: dict[str, torch.Tensor]
    input_ids: list[int]


class _Preprocessing:
    """Tokenizer + image processor of one checkpoint, and how its text tower wants captions (CPU only)."""

    def __init__(self, config: ClipConfig) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

        source, revision = config.model, config.revision
        model_config = load_or_explain(AutoConfig.from_pretrained, source, "CLIP model config", revision=revision)
        self.tokenizer = load_or_explain(AutoTokenizer.from_pretrained, source, "CLIP tokenizer", revision=revision)
        self.image_processor = load_or_explain(
            AutoImageProcessor.from_pretrained, source, "CLIP image processor", revision=revision, backend="pil"
        )
        text_config = getattr(model_config, "text_config", model_config)
        positions = getattr(text_config, "max_position_embeddings", None) or 77
        self.max_length = min(positions, self.tokenizer.model_max_length or positions)
        #: SigLIP (and SigLIP 2) text towers pool the last position and were trained on fixed-length
        #: padding with no attention mask; CLIP pools the EOS token and takes a mask.
        self.fixed_length = "siglip" in getattr(model_config, "model_type", "")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.fast_pixels = ResizeCropPixels.for_processor(self.image_processor)
        size = getattr(self.image_processor, "size", None)
        side = max((getattr(size, key, None) or 0) for key in ("shortest_edge", "height", "width")) if size else 0
        #: Smallest decoded size that still covers the resize target (for ``jpeg_draft``).
        self.draft_size = (side, side) if side else None

    def pixels(self, image: Any) -> dict[str, torch.Tensor]:
        """The image processor's tensors for one image (batch dim 1), by the exact fast path when there is one."""
        if self.fast_pixels is not None and image.mode == "RGB":
            return {"pixel_values": self.fast_pixels(image)}
        image_inputs = self.image_processor(images=[image], return_tensors="pt")
        return {k: v for k, v in image_inputs.items() if isinstance(v, torch.Tensor)}

    def caption_ids(self, caption: str) -> list[int]:
        """The caption's ids as text (a literal ``<|endoftext|>`` in it does not end it), with the
        tokenizer's own start / end tokens, cut to the text tower's positions."""
        return plain_text_ids(self.tokenizer, caption, add_special_tokens=True, truncation=True,
                              max_length=self.max_length)

    def text_inputs(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Pad token id lists into one batch, the way the checkpoint's own processor would."""
        width = self.max_length if self.fixed_length else max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        if self.fixed_length:
            return {"input_ids": input_ids}
        return {"input_ids": input_ids, "attention_mask": mask}


def _features(output: Any) -> torch.Tensor:
    """``get_*_features`` return a tensor in transformers 4 and a pooled output object in 5."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipScorer(Scorer):
    """Image-caption cosine of a CLIP/SigLIP checkpoint as a batched ``datasets`` map function.

    Pickles to its :class:`ClipConfig` only; the checkpoint is loaded on first use and shared by
    every scorer of the same configuration in the process.

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter import ClipScorer
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> path = save_tiny_model("/tmp/tiny-clip", kind="clip")
        >>> clip = ClipScorer.from_pretrained(path, device="cpu")
        >>> ds = Dataset.from_dict({"image": [Image.new("RGB", (64, 48), "red"), None],
        ...                         "caption": ["a red square", "lost image"]})
        >>> out = ds.map(clip, batched=True, batch_size=2)
        >>> -1.0 <= out[0]["clip_score"] <= 1.0, out[1]["clip_error"]
        (True, 'missing image')

    Args:
        model: Hub id or local folder (default ``openai/clip-vit-large-patch14``).
        **options: any other :class:`ClipConfig` field.
    """

    prefix = "clip"
    name = "clip"
    summary = "CLIP / SigLIP image-text cosine (the DataComp baseline)"
    config_class = ClipConfig
    score_range = (-1.0, 1.0)
    input_fields = ("image_column", "text_column")
    preprocessing_class = _Preprocessing
    cli_fields = ("jpeg_draft",)
    #: Decode-bound (~130 pairs/s per core against ~20,000/s for a B/32 on an H100): every core but one.
    max_auto_prefetch_workers = None

    def load_model(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        from transformers import AutoModel

        model = load_or_explain(
            AutoModel.from_pretrained, self.config.model, "CLIP model", revision=self.config.revision, dtype=dtype
        )
        missing = [name for name in ("get_image_features", "get_text_features") if not hasattr(model, name)]
        if missing:
            raise TypeError(f"{type(model).__name__} from {self.config.model!r} is not a dual encoder (no {missing})")
        return model.to(device).eval()

    # ---- the scorer hooks -------------------------------------------------------------------
    def image_policy(self) -> ImagePolicy:
        """With ``jpeg_draft``, JPEGs decode at the smallest DCT scale covering the model's input."""
        draft = self.preprocessing.draft_size if self.config.jpeg_draft else None
        return ImagePolicy(image_root=self.config.image_root, draft_size=draft)

    def prepare(self, batch: Batch, index: int) -> ClipItem:
        pre = self.preprocessing
        image = load_image(self.cell(batch, "image_column", index), self.image_policy())
        caption = clean_caption(self.cell(batch, "text_column", index))
        return ClipItem(pre.pixels(image), pre.caption_ids(caption))

    def collate(self, items: list[ClipItem], rank: int | None = None) -> tuple[dict, dict]:
        """Image and text inputs of a micro-batch on the CPU: pixels in the model's dtype, and pinned
        memory when the model is on CUDA (asynchronous copies)."""
        device = resolve_device(self.config.device, rank)
        image_inputs = {key: torch.cat([item.image_inputs[key] for item in items]) for key in items[0].image_inputs}
        image_inputs["pixel_values"] = image_inputs["pixel_values"].to(resolve_dtype(self.config.dtype, device))
        text_inputs = self.preprocessing.text_inputs([item.input_ids for item in items])
        if device.type == "cuda":
            image_inputs = {key: value.pin_memory() for key, value in image_inputs.items()}
            text_inputs = {key: value.pin_memory() for key, value in text_inputs.items()}
        return image_inputs, text_inputs

    @torch.inference_mode()
    def score_prepared(self, items: list[ClipItem], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        image_inputs, text_inputs = self.collated(items, rank)
        image_inputs = {key: value.to(model.device, non_blocking=True) for key, value in image_inputs.items()}
        image_inputs["pixel_values"] = image_inputs["pixel_values"].to(model.dtype)
        text_inputs = {key: value.to(model.device, non_blocking=True) for key, value in text_inputs.items()}
        image = torch.nn.functional.normalize(_features(model.get_image_features(**image_inputs)).float(), dim=-1)
        text = torch.nn.functional.normalize(_features(model.get_text_features(**text_inputs)).float(), dim=-1)
        scores = (image * text).sum(-1).cpu().tolist()
        return [{"clip_score": score} for score in scores]


def clip_scores(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function: adds ``clip_score`` and ``clip_error``.

    ``options`` are :class:`ClipConfig` fields, given through ``fn_kwargs``.

    Example:
        >>> ds = ds.map(clip_scores, batched=True, batch_size=256)                   # doctest: +SKIP
        >>> ds = ds.map(clip_scores, batched=True,
        ...             fn_kwargs={"model": "./siglip-so400m", "text_column": "text"})  # doctest: +SKIP
    """
    return ClipScorer.shared_instance(**options)(batch, rank)
