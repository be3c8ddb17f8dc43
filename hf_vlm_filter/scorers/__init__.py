"""Scorers: one module each, all following the contract in :mod:`hf_vlm_filter.scorers.base`.

``SCORERS`` maps the names the CLI accepts to scorer classes; adding a scorer is one new module
and one line here.
"""

from .base import Scorer, map_with_scorer
from .pipeline import PipelineOptions
from .caption_perplexity import CaptionPerplexity, PerplexityConfig, caption_perplexity
from .composite import CompositeScorer
from .clip_score import ClipConfig, ClipScorer, clip_scores
from .compact_judge import JudgeConfig, VLMJudge, judge_scores
from .unifilter_score import UniFilterConfig, UniFilterScorer, unifilter_scores
from .unifilter_documents import UniFilterDocumentConfig, UniFilterDocumentScorer, unifilter_document_scores

SCORERS: dict[str, type[Scorer]] = {
    "compact": VLMJudge,
    "clip": ClipScorer,
    "ppl": CaptionPerplexity,
    "unifilter": UniFilterScorer,
    "unifilter-docs": UniFilterDocumentScorer,
}

__all__ = [
    "SCORERS",
    "CaptionPerplexity",
    "ClipConfig",
    "ClipScorer",
    "CompositeScorer",
    "JudgeConfig",
    "PerplexityConfig",
    "PipelineOptions",
    "Scorer",
    "UniFilterConfig",
    "UniFilterDocumentConfig",
    "UniFilterDocumentScorer",
    "UniFilterScorer",
    "VLMJudge",
    "caption_perplexity",
    "clip_scores",
    "judge_scores",
    "map_with_scorer",
    "unifilter_document_scores",
    "unifilter_scores",
]
