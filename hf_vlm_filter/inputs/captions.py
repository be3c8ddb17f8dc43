"""Caption normalisation shared by every scorer.

A caption is stripped of surrounding whitespace; ``None``, non-text values and empty or
whitespace-only strings are refused with a reason. Length limits are applied later, in tokens, by
the scorer that knows its tokenizer.
"""

from __future__ import annotations

from typing import Any

from .images import RowError


def clean_caption(value: Any) -> str:
    """Return the caption as a stripped ``str`` or raise :class:`RowError`.

    Example:
        >>> clean_caption("  a red bus \\n")
        'a red bus'
        >>> clean_caption("   ")
        Traceback (most recent call last):
        ...
        hf_vlm_filter.inputs.images.RowError: empty caption
    """
    if value is None:
        raise RowError("missing caption")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise RowError("caption bytes are not UTF-8") from None
    if not isinstance(value, str):
        raise RowError(f"caption is not text ({type(value).__name__})")
    text = value.strip()
    if not text:
        raise RowError("empty caption")
    return text
