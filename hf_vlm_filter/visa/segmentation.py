"""SC, segmentation complexity (ViSA agent 1): how many distinct regions an image falls into.

Automatic mask generation with a transformers ``SamModel`` checkpoint, then a count:

1. a ``points_per_side`` x ``points_per_side`` grid of single-point prompts over the image;
2. ``SamModel`` (image embedding computed once per image, points decoded ``points_per_batch`` at a
   time, three candidate masks per point);
3. candidates kept when the predicted IoU >= ``pred_iou_threshold`` and the stability score
   (area at logit > ``+stability_offset`` over area at logit > ``-stability_offset``) >=
   ``stability_threshold``;
4. duplicates removed greedily (best predicted IoU first) when their mask IoU > ``nms_iou_threshold``;
5. masks covering less than ``min_area_fraction`` (0.5%) of the image dropped; ``sc_score`` is the
   number of masks left.

Masks are judged on the decoder's low-resolution grid (256 pixels on the padded long side for the
published SAM), cropped to the image: area fractions and IoUs are scale-free, so upsampling every
candidate to full resolution would only cost memory. The paper uses SAM2.1-L; transformers' SAM2
image processor needs torchvision, which this package does not require, so the default is SAM
ViT-L (``facebook/sam-vit-large``) through its PIL image processor.

Columns written: ``sc_score`` (float32 mask count, NaN when not scored) and ``sc_error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..inputs import load_image
from ..models.loading import load_or_explain
from ..scorers.base import Batch, Scorer
from ..scorers.config import ImageFields, PipelineFields, ScorerConfig

DEFAULT_SAM = "facebook/sam-vit-large"


@dataclass(frozen=True)
class SegmentationConfig(PipelineFields, ImageFields, ScorerConfig):
    """Options of the SC agent; frozen, hashable and picklable.

    Shared fields are those of :mod:`hf_vlm_filter.scorers.config`.

    Args:
        points_per_side: prompt grid size (the grid has ``points_per_side ** 2`` points).
        points_per_batch: point prompts decoded per model call.
        pred_iou_threshold: minimum predicted mask IoU (SAM's own quality estimate).
        stability_threshold / stability_offset: minimum stability score, and the logit offset it uses.
        nms_iou_threshold: two masks overlapping more than this are duplicates.
        min_area_fraction: masks smaller than this fraction of the image are not counted (0.5%).
    """

    model: str = DEFAULT_SAM
    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_threshold: float = 0.88
    stability_threshold: float = 0.95
    stability_offset: float = 1.0
    nms_iou_threshold: float = 0.7
    min_area_fraction: float = 0.005

    def validate(self) -> None:
        super().validate()
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError("points_per_side and points_per_batch must be positive")
        if not 0.0 <= self.min_area_fraction < 1.0:
            raise ValueError(f"min_area_fraction must be in [0, 1), got {self.min_area_fraction}")


@dataclass
class _PreparedImage:
    pixel_values: torch.Tensor  # (1, 3, S, S) padded
    original_size: tuple[int, int]
    reshaped_size: tuple[int, int]


def _load_sam_processor(config: SegmentationConfig) -> Any:
    from transformers import AutoImageProcessor

    return load_or_explain(AutoImageProcessor.from_pretrained, config.model, "SAM image processor",
                           revision=config.revision, backend="pil")



class SegmentationComplexity(Scorer):
    """SC agent: number of SAM masks covering at least 0.5% of the image.

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> from hf_vlm_filter.visa import SegmentationComplexity
        >>> sam = SegmentationComplexity(save_tiny_model("/tmp/tiny-sam", kind="sam"), device="cpu",
        ...                              points_per_side=4, pred_iou_threshold=0.0, stability_threshold=0.0)
        >>> out = Dataset.from_dict({"image": [Image.new("RGB", (40, 30), "red"), None]}).map(sam, batched=True)
        >>> out[0]["sc_score"] >= 0, out[1]["sc_error"]
        (True, 'missing image')
    """

    prefix = "sc"
    name = "visa-sc"
    summary = "ViSA segmentation complexity: SAM masks over 0.5% of the image (arXiv 2502.19917)"
    config_class = SegmentationConfig
    model_types = ("sam",)
    score_range = (0.0, None)
    input_fields = ("image_column",)
    preprocessing_class = staticmethod(_load_sam_processor)
    cli_fields = ("points_per_side", "pred_iou_threshold", "stability_threshold")

    def load_model(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        from transformers import SamModel

        model = load_or_explain(SamModel.from_pretrained, self.config.model, "SAM model",
                                revision=self.config.revision, dtype=dtype)
        return model.to(device).eval()

    def prepare(self, batch: Batch, index: int) -> _PreparedImage:
        image = load_image(self.cell(batch, "image_column", index), self.image_policy())
        inputs = self.preprocessing(images=[image], return_tensors="pt")
        return _PreparedImage(inputs["pixel_values"], tuple(inputs["original_sizes"][0].tolist()),
                              tuple(inputs["reshaped_input_sizes"][0].tolist()))

    @torch.inference_mode()
    def score_prepared(self, items: list[_PreparedImage], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        pixels = torch.cat([item.pixel_values for item in items]).to(model.device, model.dtype)
        embeddings = model.get_image_embeddings(pixel_values=pixels)
        return [{self.score_column: float(self._count_masks(model, embeddings[i : i + 1], item))}
                for i, item in enumerate(items)]

    def _count_masks(self, model: torch.nn.Module, embedding: torch.Tensor, item: _PreparedImage) -> int:
        c = self.config
        points = point_grid(c.points_per_side, item.reshaped_size)
        logits, scores = [], []
        for start in range(0, len(points), c.points_per_batch):
            chunk = points[start : start + c.points_per_batch]
            out = model(image_embeddings=embedding, input_points=chunk[None, :, None, :].to(model.device, model.dtype),
                        multimask_output=True)
            logits.append(out.pred_masks[0].flatten(0, 1).float())  # (points * 3, h, w)
            scores.append(out.iou_scores[0].flatten().float())
        masks = crop_to_image(torch.cat(logits), item.reshaped_size, model.config.vision_config.image_size)
        return count_masks(masks, torch.cat(scores), c)


def point_grid(per_side: int, size: tuple[int, int]) -> torch.Tensor:
    """``per_side ** 2`` (x, y) points at cell centres of a ``size = (height, width)`` image."""
    height, width = size
    steps = (torch.arange(per_side, dtype=torch.float32) + 0.5) / per_side
    ys, xs = torch.meshgrid(steps * height, steps * width, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def crop_to_image(logits: torch.Tensor, reshaped_size: tuple[int, int], padded_side: int) -> torch.Tensor:
    """Low-resolution mask logits ``(n, h, w)`` of the padded square, cropped to the image area."""
    scale = logits.shape[-1] / padded_side
    height = max(1, round(reshaped_size[0] * scale))
    width = max(1, round(reshaped_size[1] * scale))
    return logits[:, :height, :width]


def count_masks(logits: torch.Tensor, predicted_iou: torch.Tensor, config: SegmentationConfig) -> int:
    """Steps 3-5 of the module docstring on candidate mask logits ``(n, h, w)``; returns the count."""
    binary = logits > 0
    area = binary.flatten(1).sum(-1).float()
    loose = (logits > -config.stability_offset).flatten(1).sum(-1).float()
    strict = (logits > config.stability_offset).flatten(1).sum(-1).float()
    stability = torch.where(loose > 0, strict / loose.clamp_min(1), torch.zeros_like(loose))
    keep = (predicted_iou >= config.pred_iou_threshold) & (stability >= config.stability_threshold) & (area > 0)
    candidates = keep.nonzero().flatten()
    if candidates.numel() == 0:
        return 0
    order = candidates[predicted_iou[candidates].argsort(descending=True, stable=True)]
    flat = binary[order].flatten(1).float()
    inter = flat @ flat.T
    union = area[order][:, None] + area[order][None, :] - inter
    iou = inter / union.clamp_min(1)
    kept: list[int] = []
    for i in range(len(order)):
        if all(iou[i, j] <= config.nms_iou_threshold for j in kept):
            kept.append(i)
    image_area = logits.shape[-2] * logits.shape[-1]
    return sum(1 for i in kept if area[order[i]] / image_area >= config.min_area_fraction)


def sc_scores(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function: adds ``sc_score`` and ``sc_error``; ``options`` are :class:`SegmentationConfig` fields."""
    return SegmentationComplexity.shared_instance(**options)(batch, rank)
