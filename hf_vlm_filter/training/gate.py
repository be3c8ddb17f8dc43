"""The source-quality gate: which source captions may be used as positives (score 10, level 3).

A web caption is not a good caption because it came with the image. The gate refuses, by the text
alone, originals that are URLs, file names, advertising, boilerplate, or shorter than ``min_words``
words. A refused original is never a positive: with ``gate="skip"`` (the default) its row gives no
examples; with ``gate="demote"`` its row gives one example, the caption itself, at the rubric score of
its reason (``gate_<reason>`` in :data:`~hf_vlm_filter.training.rubric.RUBRIC`: 1, or 3 for a short
one). The builder's report counts refusals by reason. Short refused captions that are *generic*
(:func:`is_generic_label`) become the source's generic labels.

A caption that describes another image ("a red bus" under a photo of a cat) passes this gate: it
needs an image-text model. Score the source with ``clip_scores`` or the judge and filter it first.

Example:
    >>> [gate_reason(text) for text in ("IMG_2041.JPG", "https://example.com/a.jpg", "Buy now! 50% off",
    ...                                 "Stock photo", "a dog", "A brown dog running on a sandy beach.")]
    ['file_name', 'url', 'spam', 'boilerplate', 'too_short', None]
"""

from __future__ import annotations

import re

from .words import bare, is_generic

GATE_MODES = ("skip", "demote", "off")
REASONS = ("url", "file_name", "spam", "boilerplate", "too_short")
DEFAULT_MIN_WORDS = 5

_URL = re.compile(r"(https?://|www\.|\b[\w-]+\.(com|net|org|io|co|html?|php)\b)", re.IGNORECASE)
_IMAGE_EXTENSION = r"\.(jpe?g|png|gif|webp|bmp|tiff?|heic|svg)"
_FILE_NAME = re.compile(
    rf"(^\S+{_IMAGE_EXTENSION}$)|(\b(img|dsc|dscn|dscf|pxl|pict?|screenshot|photo|image)[-_ ]?\d{{2,}})|(^[\w-]*\d[\w-]*$)",
    re.IGNORECASE,
)
_SPAM = re.compile(
    r"\b(buy now|shop now|order now|free shipping|click here|best price|discount|on sale|for sale|% off|cheap|"
    r"coupon|promo code|subscribe|limited offer|add to cart|wholesale|sign up)\b|\$\s?\d|\d\s?(usd|eur)\b|%\s*off",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"\b(stock photo|stock image|royalty[- ]free|all rights reserved|copyright|getty images|shutterstock|alamy|"
    r"istock|image may contain|no description|not available|placeholder|click to enlarge|thumbnail|"
    r"photo credit|credit:|untitled)\b|©|^\s*(photo|image|picture)\s+by\b",
    re.IGNORECASE,
)


def gate_reason(caption: str, min_words: int = DEFAULT_MIN_WORDS) -> str | None:
    """Why ``caption`` may not be a positive (one of :data:`REASONS`), or ``None`` when it passes.

    Reasons are checked in the order url, file_name, spam, boilerplate, too_short (the first that
    applies is given).
    """
    text = caption.strip()
    if _URL.search(text):
        return "url"
    if _FILE_NAME.search(text):
        return "file_name"
    if _SPAM.search(text):
        return "spam"
    if _BOILERPLATE.search(text):
        return "boilerplate"
    if len([word for word in text.split() if bare(word)]) < min_words:
        return "too_short"
    return None


def is_generic_label(caption: str) -> bool:
    """Whether a refused short caption is a *generic* label (made of generic words only: "a photo",
    "image 3", "untitled picture") — the kind the builder borrows as ``generic_label`` negatives."""
    return is_generic(caption)


__all__ = ["DEFAULT_MIN_WORDS", "GATE_MODES", "REASONS", "gate_reason", "is_generic_label"]
