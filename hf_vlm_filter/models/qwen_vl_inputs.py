"""Prompt and tensor building for Qwen-VL-family judges, without the video processor.

transformers' ``Qwen2VLProcessor`` refuses to build without torchvision (its video sub-processor
needs it). The judge only needs images, so this module combines the checkpoint's tokenizer (and its
chat template) with its image processor loaded with ``backend="pil"``, and expands the image
placeholder itself, exactly as the processor does: one ``<|image_pad|>`` per merged patch.

The caption is tokenised on its own with ``split_special_tokens=True``: text such as
``<|im_end|>`` or ``<|image_pad|>`` inside a caption becomes ordinary characters and can never
change the prompt's structure. The prompt around it is rendered once from the chat template.

Pixels: :class:`QwenVLImagePatches` produces exactly the image processor's ``pixel_values`` and
``image_grid_thw`` for an RGB image (same PIL resize, then the rescale/normalise table of
:class:`~hf_vlm_filter.inputs.pixels.PixelLookup` applied in patch order on 8-bit pixels), about
2x faster per core; it checks itself against the processor when built and is not used when they
differ. The builder is safe to call from several threads (the tokenizer call is serialised: the
fast tokenizer toggles ``encode_special_tokens`` on its shared backend at every call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..inputs.pixels import PixelLookup, probe_images, verified_fast_path
from .plain_text import plain_text_ids

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


class QwenVLImagePatches:
    """``image_processor(images=[image])`` for one RGB image, computed faster, with equal output.

    Build it with :meth:`for_processor`, which returns ``None`` when the processor is not a
    Qwen-VL PIL processor this class reproduces exactly (checked on probe images).

    Example:
        >>> from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil
        >>> processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224)
        >>> patches = QwenVLImagePatches.for_processor(processor)
        >>> pixel_values, grid = patches(Image.new("RGB", (300, 200), "teal"))
        >>> grid.tolist(), tuple(pixel_values.shape)
        ([[1, 12, 18]], (216, 1176))
    """

    def __init__(self, image_processor: Any, lookup: PixelLookup) -> None:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        self._smart_resize = smart_resize
        self.lookup = lookup
        self.patch = int(image_processor.patch_size)
        self.merge = int(image_processor.merge_size)
        self.temporal = int(image_processor.temporal_patch_size)
        self.min_pixels = int(image_processor.size.shortest_edge)
        self.max_pixels = int(image_processor.size.longest_edge)
        self.resample = image_processor.resample
        self.do_resize = bool(image_processor.do_resize)

    @classmethod
    def for_processor(cls, image_processor: Any) -> QwenVLImagePatches | None:
        """The fast path for ``image_processor``, or ``None`` when it would not be exact."""
        try:
            size = image_processor.size
            if not (size.shortest_edge and size.longest_edge and image_processor.do_convert_rgb in (True, None)):
                return None
            lookup = PixelLookup.from_processor(image_processor)
            if lookup is None:
                return None
            fast = cls(image_processor, lookup)
        except (AttributeError, TypeError, ValueError, ImportError):
            return None
        return verified_fast_path(fast, image_processor)

    def _matches(self, image_processor: Any) -> bool:
        for image in probe_images(((97, 61), (640, 480), (33, 700))):
            reference = image_processor(images=[image], return_tensors="pt")
            pixel_values, grid = self(image)
            if not (torch.equal(grid, reference["image_grid_thw"]) and torch.equal(pixel_values, reference["pixel_values"])):
                return False
        return True

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch rows and columns of a ``height`` x ``width`` image after the budget resize."""
        if self.do_resize:
            height, width = self._smart_resize(
                height, width, factor=self.patch * self.merge, min_pixels=self.min_pixels, max_pixels=self.max_pixels
            )
        return height // self.patch, width // self.patch

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixel_values, image_grid_thw)`` of an RGB image, as the processor returns them."""
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode}")
        rows, cols = self.grid(image.height, image.width)
        if self.do_resize:
            image = image.resize((cols * self.patch, rows * self.patch), resample=self.resample)
        p, m, t = self.patch, self.merge, self.temporal
        values = self.lookup(np.asarray(image), channel_axis=2).reshape(rows // m, m, p, cols // m, m, p, 3)
        # (row blocks, col blocks, merge row, merge col, channel, patch row, patch col): the processor's order
        values = values.transpose(0, 3, 1, 4, 6, 2, 5)
        patches = np.empty(values.shape[:5] + (t,) + values.shape[5:], dtype=np.float32)
        patches[...] = values[:, :, :, :, :, None]
        flat = patches.reshape(rows * cols, 3 * t * p * p)
        return torch.from_numpy(flat), torch.tensor([[1, rows, cols]], dtype=torch.int64)


class QwenVLVision:
    """A Qwen-VL image as model inputs: ``pixel_values``, ``image_grid_thw`` and its token count.

    Uses the exact :class:`QwenVLImagePatches` when they reproduce ``image_processor`` (checked once,
    here), the processor itself otherwise; shared by the judge's prompts and ViSA's conversations.

    Example:
        >>> from PIL import Image
        >>> from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil
        >>> vision = QwenVLVision(Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224))
        >>> pixel_values, grid = vision.pixels(Image.new("RGB", (112, 56), "red"))
        >>> grid.tolist(), vision.tokens(grid), vision.image_tokens(56, 112)
        ([[1, 4, 8]], 8, 8)
    """

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor
        self.merge_length = int(getattr(image_processor, "merge_size", 2)) ** 2
        self.fast_patches = QwenVLImagePatches.for_processor(image_processor)

    def pixels(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixel_values, image_grid_thw)`` of one image: the fast path when exact, else the processor."""
        if self.fast_patches is not None and image.mode == "RGB":
            return self.fast_patches(image)
        vision = self.image_processor(images=[image], return_tensors="pt")
        return vision["pixel_values"], vision["image_grid_thw"]

    def tokens(self, grid: torch.Tensor) -> int:
        """``<|image_pad|>`` tokens of an image whose ``image_grid_thw`` is ``grid`` (one per merged patch)."""
        return int(grid[0].prod()) // self.merge_length

    def image_tokens(self, height: int, width: int) -> int:
        """How many ``<|image_pad|>`` tokens a ``height`` x ``width`` image becomes (``-1``: unknown)."""
        if self.fast_patches is None:
            return -1
        rows, cols = self.fast_patches.grid(height, width)
        return rows * cols // self.merge_length


def expand_image_placeholder(ids: list[int], image_token_id: int, n_tokens: int) -> list[int]:
    """``ids`` with its single image placeholder repeated ``n_tokens`` times, as the processor does.

    Example:
        >>> expand_image_placeholder([1, 7, 2], image_token_id=7, n_tokens=3)
        [1, 7, 7, 7, 2]
    """
    if ids.count(image_token_id) != 1:
        raise ValueError("the chat template must write exactly one image placeholder before the text")
    at = ids.index(image_token_id)
    return ids[:at] + [image_token_id] * n_tokens + ids[at + 1 :]


def left_pad_inputs(
    rows: list[list[int]],
    pad_token_id: int,
    image_token_id: int,
    images: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids`` of token ``rows``, plus
    the ``(pixel_values, image_grid_thw)`` of ``images`` concatenated in row order when given.

    Example:
        >>> inputs = left_pad_inputs([[5, 6, 7], [8]], pad_token_id=0, image_token_id=6)
        >>> inputs["input_ids"].tolist(), inputs["attention_mask"].tolist(), inputs["mm_token_type_ids"].tolist()
        ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]], [[0, 1, 0], [0, 0, 0]])
    """
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    inputs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "mm_token_type_ids": (input_ids == image_token_id).to(torch.int32),
    }
    if images:
        inputs["pixel_values"] = torch.cat([pixel_values for pixel_values, _ in images])
        inputs["image_grid_thw"] = torch.cat([grid for _, grid in images])
    return inputs


def multimodal_position_ids(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The 3-D (M-RoPE) position ids a Qwen-VL ``model`` would compute for ``inputs`` in its forward,
    computed now by the model's own ``get_rope_index`` on the CPU tensors (``None`` for a model
    without one). Passed as ``position_ids``, they move that per-row loop, with its several device
    synchronisations per row, out of the forward and into the thread that collates the batch.
    """
    rope_index = getattr(getattr(model, "model", None), "get_rope_index", None)
    if rope_index is None or "image_grid_thw" not in inputs:
        return None
    position_ids, _deltas = rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )
    return position_ids


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
        self.max_caption_tokens = max_caption_tokens
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {IMAGE_TOKEN} token: is this a Qwen-VL checkpoint?")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.vision = QwenVLVision(image_processor)
        text = self.render(system_prompt, user_prefix + _CAPTION_SLOT)
        head, tail = text.split(_CAPTION_SLOT)
        self.head_ids = self._encode(head)
        self.tail_ids = self._encode(tail + assistant_prefix)
        expand_image_placeholder(self.head_ids, self.image_token_id, 1)  # checks the template writes one

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
        ids = plain_text_ids(self.tokenizer, caption)
        return ids[: self.max_caption_tokens]

    def image_tokens(self, height: int, width: int) -> int:
        """How many ``<|image_pad|>`` tokens a ``height`` x ``width`` image becomes (``-1``: unknown)."""
        return self.vision.image_tokens(height, width)

    def build(self, image: Image.Image, caption: str) -> PreparedPair:
        pixel_values, grid = self.vision.pixels(image)
        head = expand_image_placeholder(self.head_ids, self.image_token_id, self.vision.tokens(grid))
        return PreparedPair(head + self.caption_ids(caption) + self.tail_ids, pixel_values, grid)

    def collate(self, items: list[PreparedPair], suffix_ids: list[int] = ()) -> dict[str, torch.Tensor]:
        """Left-pad a list of pairs (plus optional teacher-forced ``suffix_ids``) into model inputs."""
        rows = [item.input_ids + list(suffix_ids) for item in items]
        images = [(item.pixel_values, item.image_grid_thw) for item in items]
        return left_pad_inputs(rows, self.pad_token_id, self.image_token_id, images)
