"""DP, information richness (ViSA agent 3): a VLM rates how much an image has to say, on 1-5.

Any Qwen-VL-family checkpoint serves as the judge. The prompt (ours, below) lists the eight
dimensions of the paper; the assistant turn is forced to start with ``Rating: `` and one forward
pass gives the next-token distribution, read as in :mod:`hf_vlm_filter.models.score_readout`:
the probabilities of the single-digit tokens ``1``..``5`` are renormalised and ``dp_score`` is the
expected rating, a float in [1, 5] (no generation, no parsing).

Columns written: ``dp_score`` (float32, NaN when not scored) and ``dp_error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..inputs import load_image
from ..models.qwen_vl import load_qwen_vl_processors
from ..models.qwen_vl_inputs import PreparedPair, QwenVLPromptBuilder
from ..models.score_readout import digit_token_ids
from ..scorers.base import Batch, Scorer
from ..scorers.config import ImageFields, PipelineFields, ScorerConfig
from .chat_tokens import load_chat_model

DEFAULT_JUDGE = "Qwen/Qwen2-VL-2B-Instruct"
SYSTEM_PROMPT = "You are a careful annotator of images."
RICHNESS_PROMPT = (
    "Rate how much visual information this image contains, from 1 (almost nothing to describe) to 5 "
    "(very rich). Consider eight dimensions: the number and variety of visual elements; details, "
    "textures and materials; context or story; emotion and atmosphere; cultural or historical content; "
    "viewpoint and composition; the type of image (photo, chart, document, artwork...); and dynamics or "
    "interactions between elements. Answer with one digit from 1 to 5."
)
ASSISTANT_PREFIX = "Rating: "
RATINGS = torch.arange(1, 6, dtype=torch.float32)


@dataclass(frozen=True)
class RichnessConfig(PipelineFields, ImageFields, ScorerConfig):
    """Options of the DP agent; frozen, hashable and picklable.

    Shared fields are those of :mod:`hf_vlm_filter.scorers.config`.

    Args:
        min_pixels / max_pixels: the image pixel budget of the Qwen-VL image processor.
        prompt: the user instruction (default :data:`RICHNESS_PROMPT`).
    """

    model: str = DEFAULT_JUDGE
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 448 * 448
    prompt: str = RICHNESS_PROMPT


class _Preprocessing:
    def __init__(self, config: RichnessConfig) -> None:
        tokenizer, image_processor = load_qwen_vl_processors(config.model, config.revision,
                                                             min_pixels=config.min_pixels, max_pixels=config.max_pixels)
        self.builder = QwenVLPromptBuilder(tokenizer, image_processor, system_prompt=SYSTEM_PROMPT,
                                           user_prefix=config.prompt, max_caption_tokens=1,
                                           assistant_prefix=ASSISTANT_PREFIX)
        self.ratings = digit_token_ids(tokenizer)[1:6]


class InformationRichness(Scorer):
    """DP agent: expected 1-5 richness rating from one forward pass of a VLM.

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> from hf_vlm_filter.visa import InformationRichness
        >>> dp = InformationRichness(save_tiny_model("/tmp/tiny-judge"), device="cpu")
        >>> out = Dataset.from_dict({"image": [Image.new("RGB", (56, 56), "red")]}).map(dp, batched=True)
        >>> 1.0 <= out[0]["dp_score"] <= 5.0
        True
    """

    prefix = "dp"
    name = "visa-dp"
    summary = "ViSA information richness: a VLM's expected 1-5 rating (arXiv 2502.19917)"
    config_class = RichnessConfig
    model_types = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
    score_range = (1.0, 5.0)
    input_fields = ("image_column",)
    preprocessing_class = _Preprocessing
    preprocessing_fields = ("model", "revision", "min_pixels", "max_pixels", "prompt")
    cli_fields = ("min_pixels", "max_pixels")
    load_model = load_chat_model

    def prepare(self, batch: Batch, index: int) -> PreparedPair:
        image = load_image(self.cell(batch, "image_column", index), self.image_policy())
        return self.preprocessing.builder.build(image, "")

    @torch.inference_mode()
    def score_prepared(self, items: list[PreparedPair], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        inputs = self.preprocessing.builder.collate(items)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        logits = model(**inputs, logits_to_keep=1).logits[:, -1]
        probs = rating_distribution(logits, self.preprocessing.ratings)
        return [{"dp_score": value} for value in (probs @ RATINGS.to(probs.device)).tolist()]


def rating_distribution(logits: torch.Tensor, rating_ids: list[int]) -> torch.Tensor:
    """``(batch, 5)`` probabilities of ratings 1..5: the softmax restricted to their tokens, renormalised."""
    probs = torch.softmax(logits.float(), dim=-1)[:, rating_ids]
    return probs / probs.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


def dp_scores(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function: adds ``dp_score`` and ``dp_error`` (options: :class:`RichnessConfig` fields)."""
    return InformationRichness.shared_instance(**options)(batch, rank)
