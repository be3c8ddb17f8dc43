"""PT and IM, instruction quality (ViSA): teacher-forced log-probs of the answer turns, no generation.

For each LLaVA-format row (``image`` + ``conversations``) a Qwen-VL causal VLM reads the whole
conversation twice, each time in one batched forward pass per micro-batch:

* with the image (placed at the start of the first question) and
* without it (the same conversation with no image at all).

Only answer tokens are scored (questions, template tokens and the turn-closing ``<|im_end|>`` are
context; see :mod:`hf_vlm_filter.visa.chat_tokens`). With ``nll`` the next-token negative
log-likelihood of an answer token:

* ``pt_score`` = mean ``nll`` (with the image) over the first ``pt_tokens`` (10) tokens of every
  answer, pooled over the turns — how hard the answers are to begin for the model;
* ``im_score`` = CE(answers | no image) - CE(answers | image), CE being the mean ``nll`` over all
  answer tokens — how much the image helps to predict the answers (image-text mutual information).

Columns written: ``pt_score`` and ``im_score`` (float32, NaN when not scored) and ``pt_error``
(``""`` or the reason; it applies to both scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..inputs import load_image
from ..models.qwen_vl import load_qwen_vl_processors
from ..scorers.base import Batch, Scorer
from ..scorers.config import ImageFields, PipelineFields, ScorerConfig
from ..scorers.score_spec import ScoreSpec
from .chat_tokens import ChatTokenizer, ChatTokens, load_chat_model
from .conversations import parse_conversation

DEFAULT_VLM = "Qwen/Qwen2-VL-2B-Instruct"
SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class InstructionQualityConfig(PipelineFields, ImageFields, ScorerConfig):
    """Options of the PT / IM agent; frozen, hashable and picklable.

    Shared fields are those of :mod:`hf_vlm_filter.scorers.config`.

    Args:
        conversations_column: the LLaVA-format conversations column.
        pt_tokens: how many leading tokens of each answer PT averages over (10 in the paper).
        max_answer_tokens: every answer is truncated to this many tokens.
        min_pixels / max_pixels: the image pixel budget of the Qwen-VL image processor.
        system_prompt: the system message of the rendered conversation.
    """

    model: str = DEFAULT_VLM
    conversations_column: str = "conversations"
    pt_tokens: int = 10
    max_answer_tokens: int = 512
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 448 * 448
    system_prompt: str = SYSTEM_PROMPT

    def validate(self) -> None:
        super().validate()
        if self.pt_tokens < 1 or self.max_answer_tokens < 1:
            raise ValueError("pt_tokens and max_answer_tokens must be positive")


@dataclass
class _Pair:
    with_image: ChatTokens
    without_image: ChatTokens


class _Preprocessing:
    def __init__(self, config: InstructionQualityConfig) -> None:
        tokenizer, image_processor = load_qwen_vl_processors(config.model, config.revision,
                                                             min_pixels=config.min_pixels, max_pixels=config.max_pixels)
        self.chat = ChatTokenizer(tokenizer, image_processor, system_prompt=config.system_prompt,
                                  max_answer_tokens=config.max_answer_tokens)


class InstructionQuality(Scorer):
    """PT and IM agents in one scorer (two teacher-forced forwards per micro-batch).

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> from hf_vlm_filter.visa import InstructionQuality
        >>> iq = InstructionQuality(save_tiny_model("/tmp/tiny-judge"), device="cpu")
        >>> conv = [{"from": "human", "value": "<image>\\nColour?"}, {"from": "gpt", "value": "Red."}]
        >>> out = Dataset.from_dict({"image": [Image.new("RGB", (56, 56), "red")], "conversations": [conv]}).map(iq, batched=True)
        >>> sorted(c for c in out.column_names if c.endswith(("score", "error")))
        ['im_score', 'pt_error', 'pt_score']
    """

    prefix = "pt"
    name = "visa-pt-im"
    summary = "ViSA instruction quality: answer difficulty (PT) and image-answer information (IM) (arXiv 2502.19917)"
    config_class = InstructionQualityConfig
    model_types = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
    score_range = (0.0, None)
    input_fields = ("image_column", "conversations_column")
    preprocessing_class = _Preprocessing
    preprocessing_fields = ("model", "revision", "min_pixels", "max_pixels", "system_prompt", "max_answer_tokens")
    cli_fields = ("pt_tokens", "min_pixels", "max_pixels")
    load_model = load_chat_model

    @property
    def score_specs(self) -> tuple[ScoreSpec, ...]:
        """``pt_score`` (mean NLL, >= 0) and ``im_score`` (a difference of cross-entropies, any real),
        both higher is better and both explained by ``pt_error``."""
        return (self.score_spec, ScoreSpec("im_score", self.error_column, "higher"))

    def prepare(self, batch: Batch, index: int) -> _Pair:
        turns = parse_conversation(self.cell(batch, "conversations_column", index))
        image = load_image(self.cell(batch, "image_column", index), self.image_policy())
        chat = self.preprocessing.chat
        return _Pair(chat.build(turns, image), chat.build(turns, None))

    @torch.inference_mode()
    def score_prepared(self, items: list[_Pair], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        nll_image, answers_image = self._answer_nll(model, [item.with_image for item in items])
        nll_text, answers_text = self._answer_nll(model, [item.without_image for item in items])
        first = leading_answer_mask([item.with_image for item in items], answers_image.shape[1], self.config.pt_tokens)
        pt = masked_mean(nll_image, first)
        im = masked_mean(nll_text, answers_text) - masked_mean(nll_image, answers_image)
        return [{"pt_score": p, "im_score": i} for p, i in zip(pt.tolist(), im.tolist())]

    def _answer_nll(self, model: torch.nn.Module, items: list[ChatTokens]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position NLL of each token given its prefix ``(batch, width)``, and the answer mask (CPU)."""
        inputs = self.preprocessing.chat.collate(items)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        logits = model(**inputs).logits
        return next_token_nll(logits, inputs["input_ids"]).cpu(), answer_mask(items, inputs["input_ids"].shape[1])


def next_token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """``nll[b, t]`` = -log p(input_ids[b, t] | input_ids[b, :t]); position 0 gets 0."""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return torch.nn.functional.pad(nll, (1, 0))


def answer_mask(items: list[ChatTokens], width: int) -> torch.Tensor:
    """Left-padded ``(batch, width)`` flags of answer tokens."""
    mask = torch.zeros((len(items), width), dtype=torch.bool)
    for row, item in enumerate(items):
        mask[row, width - len(item.answer_mask) :] = torch.tensor(item.answer_mask, dtype=torch.bool)
    return mask


def leading_answer_mask(items: list[ChatTokens], width: int, n_tokens: int) -> torch.Tensor:
    """Left-padded flags of the first ``n_tokens`` tokens of every answer."""
    mask = torch.zeros((len(items), width), dtype=torch.bool)
    for row, item in enumerate(items):
        offset = width - len(item.input_ids)
        for start in item.answer_starts:
            end = start
            while end < len(item.answer_mask) and end - start < n_tokens and item.answer_mask[end]:
                end += 1
            mask[row, offset + start : offset + end] = True
    return mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row means of ``values`` over ``mask`` (NaN for a row with no masked position)."""
    count = mask.sum(-1)
    total = torch.where(mask, values, 0.0).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def instruction_quality_scores(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function: adds ``pt_score``, ``im_score`` and ``pt_error`` (options: :class:`InstructionQualityConfig`)."""
    return InstructionQuality.shared_instance(**options)(batch, rank)
