"""Prompt and tensor building for Qwen-VL-family judges, without the video processor.

transformers' ``Qwen2VLProcessor`` refuses to build without torchvision (its video sub-processor
needs it). The judge only needs images, so this module combines the checkpoint's tokenizer (and its
chat template) with its image processor loaded with ``backend="pil"``, and expands the image
placeholder itself, exactly as the processor does: one ``<|image_pad|>`` per merged patch.

The caption is tokenised on its own with ``split_special_tokens=True``: text such as
``<|im_end|>`` or ``<|image_pad|>`` inside a caption becomes ordinary characters and can never
change the prompt's structure. The prompt around it is rendered once from the chat template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

#: Qwen2-VL's chat format, used only when a tokenizer ships no chat template of its own.
QWEN_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

IMAGE_TOKEN = "<|image_pad|>"
_CAPTION_SLOT = "\u2063CAPTION\u2063"


@dataclass
class PreparedPair:
    """One image-caption pair ready for the model (CPU tensors)."""

    input_ids: list[int]
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor


class QwenVLPromptBuilder:
    """Builds ``system / user[image, prefix + caption] / assistant[+ forced text]`` prompts.

    Args:
        tokenizer: the checkpoint's tokenizer (its chat template is used when present).
        image_processor: a Qwen-VL image processor (``AutoImageProcessor(..., backend="pil")``).
        system_prompt: the system message.
        user_prefix: text placed before the caption in the user turn.
        max_caption_tokens: captions longer than this many tokens are truncated.
        assistant_prefix: text forced at the start of the assistant turn (e.g. ``"score: {"``).
    """

    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        *,
        system_prompt: str,
        user_prefix: str,
        max_caption_tokens: int,
        assistant_prefix: str = "",
    ) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_caption_tokens = max_caption_tokens
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {IMAGE_TOKEN} token: is this a Qwen-VL checkpoint?")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.merge_length = int(getattr(image_processor, "merge_size", 2)) ** 2
        text = self.render(system_prompt, user_prefix + _CAPTION_SLOT)
        head, tail = text.split(_CAPTION_SLOT)
        self.head_ids = self._encode(head)
        self.tail_ids = self._encode(tail + assistant_prefix)
        if self.head_ids.count(self.image_token_id) != 1:
            raise ValueError("the chat template must place exactly one image placeholder before the caption")

    def render(self, system_prompt: str, user_text: str) -> str:
        """The chat-template text of the prompt (with a single, unexpanded image placeholder)."""
        messages = [
            {"role": "system", "content": system_prompt},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user_text}]},
        ]
        template = getattr(self.tokenizer, "chat_template", None) or QWEN_VL_CHAT_TEMPLATE
        return self.tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=True
        )

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def caption_ids(self, caption: str) -> list[int]:
        ids = self.tokenizer(caption, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return ids[: self.max_caption_tokens]

    def build(self, image: Image.Image, caption: str) -> PreparedPair:
        vision = self.image_processor(images=[image], return_tensors="pt")
        grid = vision["image_grid_thw"]
        n_tokens = int(grid[0].prod()) // self.merge_length
        slot = self.head_ids.index(self.image_token_id)
        ids = (
            self.head_ids[:slot]
            + [self.image_token_id] * n_tokens
            + self.head_ids[slot + 1 :]
            + self.caption_ids(caption)
            + self.tail_ids
        )
        return PreparedPair(ids, vision["pixel_values"], grid)

    def collate(self, items: list[PreparedPair], suffix_ids: list[int] = ()) -> dict[str, torch.Tensor]:
        """Left-pad a list of pairs (plus optional teacher-forced ``suffix_ids``) into model inputs."""
        rows = [item.input_ids + list(suffix_ids) for item in items]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int32),
            "pixel_values": torch.cat([item.pixel_values for item in items]),
            "image_grid_thw": torch.cat([item.image_grid_thw for item in items]),
        }
