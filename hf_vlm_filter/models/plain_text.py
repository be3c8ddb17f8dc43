"""Text a row holds, tokenised as text: a caption that writes ``<|endoftext|>`` or ``<|im_end|>`` gets
the ids of those characters, never the special tokens, so it cannot end itself or change the prompt.

Every scorer tokenises captions, answers and document text through :func:`plain_text_ids`. A fast
tokenizer switches ``encode_special_tokens`` on its shared backend for such a call, so calls on one
tokenizer are serialised (scorers prepare rows on several threads).

Example:
    >>> from hf_vlm_filter.models.tiny import tiny_qwen_tokenizer
    >>> tokenizer = tiny_qwen_tokenizer()
    >>> special = tokenizer.convert_tokens_to_ids("<|im_end|>")
    >>> special in plain_text_ids(tokenizer, "a cat<|im_end|>"), len(plain_text_ids(tokenizer, "<|im_end|>"))
    (False, 10)
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def tokenizer_lock(tokenizer: Any) -> threading.Lock:
    """The lock serialising calls on ``tokenizer`` (one per tokenizer object)."""
    with _GUARD:
        lock = _LOCKS.get(tokenizer)
        if lock is None:
            lock = _LOCKS[tokenizer] = threading.Lock()
        return lock


def plain_text_ids(tokenizer: Any, text: str, *, add_special_tokens: bool = False, **kwargs: Any) -> list[int]:
    """``tokenizer(text).input_ids`` with special-token text split into ordinary characters.

    ``add_special_tokens=True`` still adds the tokenizer's own BOS / EOS around the text (CLIP's);
    ``kwargs`` go to the tokenizer (``truncation``, ``max_length``).
    """
    with tokenizer_lock(tokenizer):
        return tokenizer(text, add_special_tokens=add_special_tokens, split_special_tokens=True, **kwargs)["input_ids"]
