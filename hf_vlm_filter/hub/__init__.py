"""Publishing to the Hugging Face Hub: dataset and model cards, score histograms, retried uploads.

Example:
    >>> from hf_vlm_filter.hub import FilterRun, push_filtered                     # doctest: +SKIP
    >>> run = FilterRun.from_scorer(judge, "user/pairs", thresholds={"judge_score": 9}, summary=summary)  # doctest: +SKIP
    >>> push_filtered(kept, "me/pairs-hq", run)                                    # doctest: +SKIP
"""

from .cards import EvalMetric, build_dataset_card, build_model_card, size_category
from .histogram import save_score_histogram
from .push import PushResult, push_checkpoint, push_filtered
from .retry import HubUploadError, with_hub_retries
from .run_record import FilterRun, ScorerInfo

__all__ = [
    "EvalMetric",
    "FilterRun",
    "HubUploadError",
    "PushResult",
    "ScorerInfo",
    "build_dataset_card",
    "build_model_card",
    "push_checkpoint",
    "push_filtered",
    "save_score_histogram",
    "size_category",
    "with_hub_retries",
]
