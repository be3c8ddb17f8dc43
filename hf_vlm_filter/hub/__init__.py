"""Publishing to the Hugging Face Hub: dataset and model cards, score histograms, retried uploads,
and the publisher / card writer of streaming jobs. Reads the engines' run record; never drives a run.

Example:
    >>> from hf_vlm_filter.hub import push_filtered                                 # doctest: +SKIP
    >>> result = run_in_memory(ds, judge, rule, RunContext("user/pairs"))           # doctest: +SKIP
    >>> push_filtered(result.kept, "me/pairs-hq", result.run)                       # doctest: +SKIP
"""

from .cards import EvalMetric, build_dataset_card, build_model_card, size_category
from .histogram import save_score_histogram
from .job_publishing import DatasetCardWriter, HubPublisher
from .push import PushResult, push_checkpoint, push_filtered
from .retry import HubUploadError, with_hub_retries

__all__ = [
    "DatasetCardWriter",
    "EvalMetric",
    "HubPublisher",
    "HubUploadError",
    "PushResult",
    "build_dataset_card",
    "build_model_card",
    "push_checkpoint",
    "push_filtered",
    "save_score_histogram",
    "size_category",
    "with_hub_retries",
]
