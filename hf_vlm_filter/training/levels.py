"""UniFilter's quality levels (0-3), the judge's ``score: {N}`` target, and the graded-data features.

A graded example carries both labels: its UniFilter ``level`` (the score head learns it) and the
compact judge's rubric ``score`` (the generative judge learns ``score: {N}``). Both come from the
transformation that made the example (:data:`~hf_vlm_filter.training.rubric.RUBRIC`, one table), so
a level stands for several scores: a colour swap is ``partially_accurate`` and scores 2 (a
hallucination), a dropped trailing phrase is ``partially_accurate`` and scores 7.

:data:`SCORE_FOR_LEVEL` is only the *nominal* score of a level, for hand-made rows that carry a level
and no rubric score; the builder and the scenes never use it. :func:`level_for_score` reads a 1-10
score back to the level whose nominal band it falls in (1-2 -> 0, 3-5 -> 1, 6-8 -> 2, 9-10 -> 3: the
keep threshold 9 is level 3).

Example:
    >>> judge_target(2), judge_target(10, "The caption describes the image accurately.")
    ('score: {2}', 'The caption describes the image accurately. score: {10}')
    >>> score_for_level(3), level_for_score(9), level_for_score(5.5)
    (10, 3, 1)
"""

from __future__ import annotations

import math

from datasets import ClassLabel, Features, Image, Value

LEVEL_NAMES: tuple[str, ...] = ("mismatched", "loosely_related", "partially_accurate", "accurate")
#: Nominal score of each level, for rows with a level and no rubric score (see the module docstring).
SCORE_FOR_LEVEL: dict[int, int] = {0: 1, 1: 4, 2: 7, 3: 10}
# Lowest rubric score read back as each level (level 3 starts at the judge's keep threshold, 9).
LEVEL_LOWER_BOUNDS: tuple[float, ...] = (1.0, 3.0, 6.0, 9.0)
JUDGE_KEEP_THRESHOLD = 9


def score_for_level(level: int) -> int:
    """The nominal 1-10 score of ``level`` (0-3), for rows that carry no rubric score."""
    if level not in SCORE_FOR_LEVEL:
        raise ValueError(f"level must be one of 0, 1, 2, 3, got {level!r}")
    return SCORE_FOR_LEVEL[level]


def level_for_score(score: float) -> int:
    """The level (0-3) whose nominal band a 1-10 score falls in: 1-2 -> 0, 3-5 -> 1, 6-8 -> 2, 9-10 -> 3.

    Fractional scores (the judge's expected score) fall in the band whose lower bound they reach.
    """
    if not isinstance(score, (int, float)) or math.isnan(score) or not 1 <= score <= 10:
        raise ValueError(f"score must be a number in [1, 10], got {score!r}")
    return max(level for level, bound in enumerate(LEVEL_LOWER_BOUNDS) if score >= bound)


def judge_target(score: int, justification: str = "") -> str:
    """The generative judge's training answer for a rubric ``score`` (1-10): ``score: {N}``, after an
    optional justification."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 10:
        raise ValueError(f"score must be an integer in 1-10, got {score!r}")
    answer = f"score: {{{score}}}"
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
        "transformation": Value("string"),
        "generator": Value("string"),
        "source_id": Value("string"),
    })
