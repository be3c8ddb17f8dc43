"""The one mapping between UniFilter's quality levels (0-3) and the compact judge's 1-10 rubric.

UniFilter trains on four semi-synthetic levels; the compact judge answers ``score: {N}`` on a 1-10
rubric and keeps ``N >= 9``. A graded example carries both: its ``level`` and the rubric ``score``
that level stands for, chosen so that the judge's keep threshold (9) keeps exactly level 3.

=====  ===================  =====  ======================================================
level  name                 score  rubric band (score range read back as this level)
=====  ===================  =====  ======================================================
3      accurate             10     9-10: detailed and fully accurate (kept at threshold 9)
2      partially_accurate   7      6-8: basic, or one detail wrong / details dropped
1      loosely_related      4      3-5: generic label or main object wrong
0      mismatched           1      1-2: another image's caption, or disfluent text
=====  ===================  =====  ======================================================

Example:
    >>> score_for_level(3), level_for_score(9), level_for_score(5.5)
    (10, 3, 1)
    >>> judge_target(2), judge_target(0, "The caption describes another image.")
    ('score: {7}', 'The caption describes another image. score: {1}')
"""

from __future__ import annotations

import math

from datasets import ClassLabel, Features, Image, Value

LEVEL_NAMES: tuple[str, ...] = ("mismatched", "loosely_related", "partially_accurate", "accurate")
SCORE_FOR_LEVEL: dict[int, int] = {0: 1, 1: 4, 2: 7, 3: 10}
# Lowest rubric score read back as each level (level 3 starts at the judge's keep threshold, 9).
LEVEL_LOWER_BOUNDS: tuple[float, ...] = (1.0, 3.0, 6.0, 9.0)
JUDGE_KEEP_THRESHOLD = 9


def score_for_level(level: int) -> int:
    """The 1-10 rubric score that stands for ``level`` (0-3)."""
    if level not in SCORE_FOR_LEVEL:
        raise ValueError(f"level must be one of 0, 1, 2, 3, got {level!r}")
    return SCORE_FOR_LEVEL[level]


def level_for_score(score: float) -> int:
    """The level (0-3) a 1-10 rubric score falls in: 1-2 -> 0, 3-5 -> 1, 6-8 -> 2, 9-10 -> 3.

    Fractional scores (the judge's expected score) fall in the band whose lower bound they reach.
    """
    if not isinstance(score, (int, float)) or math.isnan(score) or not 1 <= score <= 10:
        raise ValueError(f"score must be a number in [1, 10], got {score!r}")
    return max(level for level, bound in enumerate(LEVEL_LOWER_BOUNDS) if score >= bound)


def judge_target(level: int, justification: str = "") -> str:
    """The generative judge's training answer for ``level``: ``score: {N}``, after an optional justification."""
    answer = f"score: {{{score_for_level(level)}}}"
    justification = justification.strip()
    return f"{justification} {answer}" if justification else answer


def graded_caption_features() -> Features:
    """Features of a graded caption-pair dataset (see :mod:`hf_vlm_filter.training`)."""
    return Features({
        "image": Image(),
        "text": Value("string"),
        "level": ClassLabel(names=list(LEVEL_NAMES)),
        "score": Value("int32"),
        "target": Value("string"),
        "generator": Value("string"),
        "source_id": Value("string"),
    })
