"""Loading a Qwen-VL-family checkpoint: its tokenizer, its PIL image processor and its model.

The one loader of the judge and of the ViSA agents that run a Qwen-VL chat model (DP, PT/IM), so a
checkpoint loads the same way, with the same errors, wherever it is used. The image processor is
loaded with ``backend="pil"`` (transformers' Qwen-VL processor needs torchvision for its video
sub-processor; the image processor alone does not).

Example:
    >>> from hf_vlm_filter.models.tiny import save_tiny_model
    >>> tokenizer, processor = load_qwen_vl_processors(str(save_tiny_model("/tmp/tiny-judge")), None,
    ...                                                min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28)
    >>> processor.size.longest_edge
    12544
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .loading import is_local, load_or_explain
from .vision_attention import use_packed_vision_attention

IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
#: Budgets a Qwen-VL image processor has when nobody chose one: the published Qwen2-VL-2B-Instruct
#: files (56² to 28²·16384 pixels) and today's transformers default (56² to 28²·1280). A checkpoint
#: holding one of these records no training budget of its own.
FAMILY_DEFAULT_BUDGETS = frozenset({(56 * 56, 28 * 28 * 16384), (56 * 56, 28 * 28 * 1280)})


def load_qwen_vl_processors(
    source: str, revision: str | None, *, min_pixels: int | None, max_pixels: int | None, what: str = "VLM"
) -> tuple[Any, Any]:
    """The tokenizer and PIL image processor of ``source`` (``min_pixels`` / ``max_pixels``: the
    pixel budget; ``None`` keeps the checkpoint's own)."""
    from transformers import AutoImageProcessor, AutoTokenizer

    budget = {key: value for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if value is not None}
    tokenizer = load_or_explain(AutoTokenizer.from_pretrained, source, f"{what} tokenizer", revision=revision)
    image_processor = load_or_explain(AutoImageProcessor.from_pretrained, source, f"{what} image processor",
                                      revision=revision, backend="pil", **budget)
    return tokenizer, image_processor


def pixel_budget(image_processor: Any) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` of a loaded Qwen-VL image processor (whatever file layout it came from)."""
    size = image_processor.size
    return int(size.shortest_edge), int(size.longest_edge)


def recorded_pixel_budget(image_processor: Any) -> tuple[int, int] | None:
    """The budget a checkpoint was trained at, as its image processor records it; ``None`` when it
    holds only the model family's default (:data:`FAMILY_DEFAULT_BUDGETS`).

    Example:
        >>> from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil
        >>> recorded_pixel_budget(Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28))
        (3136, 12544)
        >>> recorded_pixel_budget(Qwen2VLImageProcessorPil()) is None
        True
    """
    budget = pixel_budget(image_processor)
    return None if budget in FAMILY_DEFAULT_BUDGETS else budget


def ships_image_processor(source: str, revision: str | None) -> bool:
    """Whether ``source`` has its own image-processor config (local folder or Hub repo); ``True``
    when the Hub cannot be asked (the checkpoint itself is tried, and explains the failure)."""
    if is_local(source):
        return (Path(source).expanduser() / IMAGE_PROCESSOR_FILE).is_file()
    try:
        from huggingface_hub import file_exists

        return file_exists(source, IMAGE_PROCESSOR_FILE, revision=revision)
    except Exception:  # noqa: BLE001 - unreachable Hub: try the checkpoint itself and explain there
        return True


def load_qwen_vl_model(
    source: str, revision: str | None, dtype: torch.dtype, device: torch.device, *,
    attn_implementation: str | None = None, what: str = "VLM",
) -> torch.nn.Module:
    """``AutoModelForImageTextToText`` from ``source`` on ``device`` in eval mode.

    Without an ``attn_implementation``, the vision tower attends to a micro-batch's images in one
    call per layer (:mod:`hf_vlm_filter.models.vision_attention`) instead of one call per image.
    """
    from transformers import AutoModelForImageTextToText

    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = load_or_explain(AutoModelForImageTextToText.from_pretrained, source, what, revision=revision,
                            dtype=dtype, **extra)
    if attn_implementation is None:
        use_packed_vision_attention(model)
    return model.to(device).eval()
