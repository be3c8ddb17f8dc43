"""Scorers: one module each, all following the contract in :mod:`hf_vlm_filter.scorers.base`.

``SCORERS`` maps the names the CLI accepts to scorer classes; adding a scorer is one new module
and one line here.
"""

from .base import Scorer, map_with_scorer
from .compact_judge import JudgeConfig, VLMJudge, judge_scores

SCORERS: dict[str, type[Scorer]] = {
    "compact": VLMJudge,
}

__all__ = ["SCORERS", "JudgeConfig", "Scorer", "VLMJudge", "judge_scores", "map_with_scorer"]
