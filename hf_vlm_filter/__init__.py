"""hf_vlm_filter: judge image-text data quality with compact VLMs inside ``datasets`` map/filter.

Example:
    >>> from datasets import load_dataset                                                # doctest: +SKIP
    >>> from hf_vlm_filter import judge_scores, judge_filter
    >>> ds = load_dataset("parquet", data_files="pairs.parquet", split="train")          # doctest: +SKIP
    >>> ds = ds.map(judge_scores, batched=True)                                          # doctest: +SKIP
    >>> kept = ds.filter(judge_filter, batched=True, fn_kwargs={"threshold": 9})         # doctest: +SKIP
"""

from . import scorers
from ._version import __version__
from .engines.keep_rule import ColumnRule, KeepRule
from .engines.predicates import judge_filter, threshold_filter, top_fraction
from .inputs import ImagePolicy, RowError, clean_caption, load_image
from .models.loading import CheckpointUnavailableError
from .scorers import *  # noqa: F403 -- the scorers' public API, listed once in scorers.__all__

__all__ = [
    *scorers.__all__,
    "CheckpointUnavailableError",
    "ColumnRule",
    "ImagePolicy",
    "KeepRule",
    "RowError",
    "__version__",
    "clean_caption",
    "judge_filter",
    "load_image",
    "threshold_filter",
    "top_fraction",
]
