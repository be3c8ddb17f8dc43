"""Multi-turn Qwen-VL token sequences with the answer tokens marked, for teacher-forced scoring.

The conversation is rendered once through the tokenizer's chat template with sentinel strings in
place of every question and answer; the template text between sentinels is tokenised as is, while
questions and answers are tokenised on their own with ``split_special_tokens=True`` (text such as
``<|im_end|>`` in an answer stays ordinary characters). Each token gets a flag saying whether it
is an answer token: only those are scored. The turn-closing ``<|im_end|>`` belongs to the
template, not to the answer. With an image, the single ``<|image_pad|>`` placeholder the template
writes at the start of the first question is expanded to one token per merged patch; pixels, the
expansion and the left-padded batch come from :mod:`hf_vlm_filter.models.qwen_vl_inputs`, as for
the judge (the exact fast patches when they match the image processor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..models.qwen_vl_inputs import (
    IMAGE_TOKEN,
    QWEN_VL_CHAT_TEMPLATE,
    QwenVLVision,
    expand_image_placeholder,
    left_pad_inputs,
)
from ..models.plain_text import plain_text_ids
from .conversations import Turn

_SENTINEL = "\u2063S{}\u2063"


@dataclass
class ChatTokens:
    """One conversation as token ids, answer flags and (optionally) the image tensors."""

    input_ids: list[int]
    answer_mask: list[bool]
    answer_starts: list[int]  # index in input_ids of each answer's first token
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None


class ChatTokenizer:
    """Builds :class:`ChatTokens` for a Qwen-VL checkpoint's tokenizer and PIL image processor.

    Args:
        tokenizer: the checkpoint's tokenizer (its chat template is used when present).
        image_processor: a Qwen-VL image processor (``AutoImageProcessor(..., backend="pil")``).
        system_prompt: the system message.
        max_answer_tokens: every answer is truncated to this many tokens.
    """

    def __init__(self, tokenizer: Any, image_processor: Any, *, system_prompt: str, max_answer_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.vision = QwenVLVision(image_processor)
        self.system_prompt = system_prompt
        self.max_answer_tokens = max_answer_tokens
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._piece_ids: dict[tuple[int, bool], list[list[int]]] = {}

    def _template_ids(self, n_turns: int, with_image: bool) -> list[list[int]]:
        """Token ids of the template pieces around the turns' contents (they depend on the number of
        turns and on the image only: rendered and tokenised once per shape, not once per row)."""
        key = (n_turns, with_image)
        if key not in self._piece_ids:
            self._piece_ids[key] = [self.tokenizer(piece, add_special_tokens=False)["input_ids"]
                                    for piece in self._template(n_turns, with_image)]
        return self._piece_ids[key]

    def _template(self, n_turns: int, with_image: bool) -> list[str]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system_prompt}]
        for turn in range(n_turns):
            question: list[dict[str, str]] = [{"type": "text", "text": _SENTINEL.format(2 * turn)}]
            if turn == 0 and with_image:
                question.insert(0, {"type": "image"})
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": [{"type": "text", "text": _SENTINEL.format(2 * turn + 1)}]})
        template = getattr(self.tokenizer, "chat_template", None) or QWEN_VL_CHAT_TEMPLATE
        text = self.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
        pieces = []
        for slot in range(2 * n_turns):
            head, text = text.split(_SENTINEL.format(slot), 1)
            pieces.append(head)
        return pieces + [text]

    def build(self, turns: list[Turn], image: Image.Image | None) -> ChatTokens:
        """Token ids and answer flags of ``turns``, with ``image`` in the first question (or none)."""
        pieces = self._template_ids(len(turns), image is not None)
        ids: list[int] = []
        flags: list[bool] = []
        starts: list[int] = []
        pixel_values = grid = None
        for slot, piece_ids in enumerate(pieces):
            if slot == 0 and image is not None:
                pixel_values, grid = self.vision.pixels(image)
                piece_ids = expand_image_placeholder(piece_ids, self.image_token_id, self.vision.tokens(grid))
            ids += piece_ids
            flags += [False] * len(piece_ids)
            if slot == len(pieces) - 1:
                break
            turn = turns[slot // 2]
            is_answer = slot % 2 == 1
            text = turn.answer if is_answer else turn.question
            content = plain_text_ids(self.tokenizer, text)
            if is_answer:
                content = content[: self.max_answer_tokens]
                starts.append(len(ids))
            ids += content
            flags += [is_answer] * len(content)
        return ChatTokens(ids, flags, starts, pixel_values, grid)

    def collate(self, items: list[ChatTokens]) -> dict[str, torch.Tensor]:
        """Left-pad conversations into model inputs (image tensors included when the items have them)."""
        images = [(item.pixel_values, item.image_grid_thw) for item in items if item.pixel_values is not None]
        return left_pad_inputs([item.input_ids for item in items], self.pad_token_id, self.image_token_id, images)


def load_chat_model(scorer: Any, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """``Scorer.load_model`` of the ViSA agents that run a Qwen-VL chat model (DP, PT/IM): one function,
    so agents naming the same checkpoint share one loaded model (see ``Scorer.model``)."""
    from ..models.qwen_vl import load_qwen_vl_model

    return load_qwen_vl_model(scorer.config.model, scorer.config.revision, dtype, device)
