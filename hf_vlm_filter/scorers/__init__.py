"""Scorers: the contract (:mod:`.base`, :mod:`.protocol`), how a batch runs (:mod:`.batching`), one
module per scorer, and the registry (:mod:`.registry`) that the CLI, the docs and the tests read.

Adding a scorer is one new module and one line in :data:`SCORERS`.
"""

from .base import Scorer, map_with_scorer
from .batching import PipelineOptions
from .caption_perplexity import CaptionPerplexity, PerplexityConfig, caption_perplexity
from .clip_score import ClipConfig, ClipScorer, clip_scores
from .compact_judge import JudgeConfig, VLMJudge, judge_scores
from .composite import CompositeScorer
from .config import CaptionFields, ImageFields, PipelineFields, ScorerConfig
from .protocol import ScorerProtocol
from .registry import SCORERS, docs_table, scorer_class
from .score_spec import ScoreSpec
from .unifilter_documents import UniFilterDocumentConfig, UniFilterDocumentScorer, unifilter_document_scores
from .unifilter_score import UniFilterConfig, UniFilterScorer, unifilter_scores

__all__ = [
    "SCORERS",
    "CaptionFields",
    "CaptionPerplexity",
    "ClipConfig",
    "ClipScorer",
    "CompositeScorer",
    "ImageFields",
    "JudgeConfig",
    "PerplexityConfig",
    "PipelineFields",
    "PipelineOptions",
    "ScoreSpec",
    "Scorer",
    "ScorerConfig",
    "ScorerProtocol",
    "UniFilterConfig",
    "UniFilterDocumentConfig",
    "UniFilterDocumentScorer",
    "UniFilterScorer",
    "VLMJudge",
    "caption_perplexity",
    "clip_scores",
    "docs_table",
    "judge_scores",
    "map_with_scorer",
    "scorer_class",
    "unifilter_document_scores",
    "unifilter_scores",
]
