"""The Compact VLM judge's format ("Trust the Model", arXiv 2507.20156): its prompt, answer prefix and
pixel budget, as the published fine-tune was trained with them.

One place for what the scorer reads with, the trainer teaches and a model card states.

Example:
    >>> MIN_PIXELS // (28 * 28), MAX_PIXELS // (28 * 28)
    (256, 1280)
"""

from __future__ import annotations

#: The published judge checkpoint.
DEFAULT_JUDGE = "Dauka-transformers/Compact_VLM_filter"
#: The judge's base model; the seed loads its processor from it when a judge checkpoint ships none.
BASE_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
SYSTEM_PROMPT = "You are helpful AI assistant"
USER_PREFIX = "Analyze and assess the quality of following image-caption pair:\n"
#: Fast mode forces the answer to start with this, then reads the score digits.
FAST_ASSISTANT_PREFIX = "score: {"
#: The seed's pixel budget: 256 to 1280 merged 28x28 patches.
MIN_PIXELS = 256 * 28 * 28
MAX_PIXELS = 1280 * 28 * 28
#: The paper keeps pairs the judge scores 9 or more (about 18% of its data).
KEEP_THRESHOLD = 9.0


def prompt_text() -> str:
    """The prompt as a dataset card shows it (``{caption}`` stands for the caption).

    Example:
        >>> print(prompt_text())
        system: You are helpful AI assistant
        user: <image> Analyze and assess the quality of following image-caption pair:
        {caption}
    """
    return f"system: {SYSTEM_PROMPT}\nuser: <image> {USER_PREFIX}{{caption}}"
