"""Attention of a Qwen-VL vision tower over a whole micro-batch of images in one call.

A Qwen-VL vision tower packs the patches of every image of a batch into one sequence and attends
within each image. With ``attn_implementation="sdpa"`` (transformers' default) each of its layers
reads the images' lengths back from the GPU (a synchronisation) and calls attention once per image:
for 64 images and 32 layers that is 32 stalls and 2,048 small kernel launches per forward, during
which the GPU mostly waits. With flash-attention installed, ``flash_attention_2`` avoids this with
its variable-length kernel.

:func:`packed_vision_sdpa` is the same attention through ``torch.nn.functional.scaled_dot_product_attention``,
registered with transformers' ``AttentionInterface``: the micro-batches the judge builds hold
images of one visual-token count (``group_by_length``), so all their lengths are equal and the
packed sequence is just reshaped to ``(images, heads, length, head_dim)`` for one call per layer;
images of unequal lengths are attended in runs of equal length. Transformers hands the packed
boundaries (``cu_seq_lens_q``) and the longest length, computed once per forward, only to
implementations whose name contains ``"flash"``: hence the registered name.

Example:
    >>> from hf_vlm_filter.models.tiny import save_tiny_model
    >>> from transformers import AutoModelForImageTextToText
    >>> model = AutoModelForImageTextToText.from_pretrained(save_tiny_model("/tmp/tiny-judge"))
    >>> use_packed_vision_attention(model)
    True
    >>> model.config.vision_config._attn_implementation, model.config.text_config._attn_implementation
    ('flash_packed_vision_sdpa', 'sdpa')
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

#: The name registered with transformers' ``AttentionInterface`` (see the module docstring for the "flash").
PACKED_VISION_ATTENTION = "flash_packed_vision_sdpa"


def packed_vision_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Bidirectional attention within each image of a packed ``(1, heads, patches, head_dim)`` sequence.

    Returns ``(output of shape (1, patches, heads, head_dim), None)``, as transformers' attention
    functions do. Without ``cu_seq_lens_q`` the whole sequence is one image.
    """
    if attention_mask is not None:
        raise ValueError("packed_vision_sdpa attends within images only; it takes no attention mask")
    if query.shape[0] != 1 or cu_seq_lens_q is None:
        out = F.scaled_dot_product_attention(query, key, value, scale=scaling, dropout_p=dropout)
        return out.transpose(1, 2), None
    images = cu_seq_lens_q.shape[0] - 1
    total = query.shape[2]
    if max_length_q is not None and max_length_q * images == total:  # the longest is the mean: all equal
        runs = [(images, max_length_q)]
    else:
        runs = _equal_length_runs((cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).tolist())
    outputs = []
    start = 0
    for count, length in runs:
        span = slice(start, start + count * length)
        q, k, v = (_by_image(t[:, :, span], count, length) for t in (query, key, value))
        out = F.scaled_dot_product_attention(q, k, v, scale=scaling, dropout_p=dropout)  # (count, H, length, d)
        outputs.append(out.transpose(1, 2).reshape(1, count * length, out.shape[1], out.shape[3]))
        start += count * length
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)), None


def _by_image(packed: torch.Tensor, count: int, length: int) -> torch.Tensor:
    """``(1, H, count * length, d)`` -> ``(count, H, length, d)``."""
    return packed[0].unflatten(1, (count, length)).transpose(0, 1)


def _equal_length_runs(lengths: list[int]) -> list[tuple[int, int]]:
    """``(images, length)`` of each run of consecutive images of one length.

    Example:
        >>> _equal_length_runs([4, 4, 9, 4])
        [(2, 4), (1, 9), (1, 4)]
    """
    runs: list[tuple[int, int]] = []
    for length in lengths:
        if runs and runs[-1][1] == length:
            runs[-1] = (runs[-1][0] + 1, length)
        else:
            runs.append((1, length))
    return runs


def use_packed_vision_attention(model: torch.nn.Module) -> bool:
    """Switch a loaded Qwen-VL model's vision tower from per-image ``sdpa`` to :func:`packed_vision_sdpa`.

    Only for Qwen2-VL models whose vision tower uses ``sdpa`` (an explicit ``eager`` or
    ``flash_attention_2`` is kept); the language model is untouched.
    Returns whether the switch was made.
    """
    from transformers import AttentionInterface

    vision = getattr(getattr(model, "config", None), "vision_config", None)
    if vision is None or getattr(vision, "_attn_implementation", None) != "sdpa":
        return False
    if getattr(model.config, "model_type", "") != "qwen2_vl":  # the vision attention this was checked on
        return False
    AttentionInterface.register(PACKED_VISION_ATTENTION, packed_vision_sdpa)
    model.set_attn_implementation({"vision_config": PACKED_VISION_ATTENTION})
    return True
