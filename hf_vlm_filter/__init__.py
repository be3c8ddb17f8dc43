"""hf_vlm_filter: judge image-text data quality with compact VLMs inside ``datasets`` map/filter.

Example:
    >>> from datasets import load_dataset                                                # doctest: +SKIP
    >>> from hf_vlm_filter import judge_scores, judge_filter
    >>> ds = load_dataset("parquet", data_files="pairs.parquet", split="train")          # doctest: +SKIP
    >>> ds = ds.map(judge_scores, batched=True)                                          # doctest: +SKIP
    >>> kept = ds.filter(judge_filter, batched=True, fn_kwargs={"threshold": 9})         # doctest: +SKIP
"""

from .inputs import ImagePolicy, RowError, clean_caption, load_image
from .models.loading import CheckpointUnavailableError
from .predicates import judge_filter, threshold_filter, top_fraction
from .scorers import (
    SCORERS,
    CaptionPerplexity,
    ClipConfig,
    ClipScorer,
    CompositeScorer,
    JudgeConfig,
    PerplexityConfig,
    Scorer,
    UniFilterConfig,
    UniFilterDocumentConfig,
    UniFilterDocumentScorer,
    UniFilterScorer,
    VLMJudge,
    caption_perplexity,
    clip_scores,
    judge_scores,
    map_with_scorer,
    unifilter_document_scores,
    unifilter_scores,
)

__version__ = "0.1.0"

__all__ = [
    "SCORERS",
    "CaptionPerplexity",
    "CheckpointUnavailableError",
    "ClipConfig",
    "ClipScorer",
    "CompositeScorer",
    "ImagePolicy",
    "JudgeConfig",
    "PerplexityConfig",
    "RowError",
    "Scorer",
    "UniFilterConfig",
    "UniFilterDocumentConfig",
    "UniFilterDocumentScorer",
    "UniFilterScorer",
    "VLMJudge",
    "__version__",
    "caption_perplexity",
    "clean_caption",
    "clip_scores",
    "judge_filter",
    "judge_scores",
    "load_image",
    "map_with_scorer",
    "threshold_filter",
    "top_fraction",
    "unifilter_document_scores",
    "unifilter_scores",
]
