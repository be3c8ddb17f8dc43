"""Long-running jobs: the resumable, shard-writing, uploading streaming filter.

Example:
    >>> from hf_vlm_filter.jobs import streaming_filter_job                     # doctest: +SKIP
    >>> streaming_filter_job(stream, judge, "out/job", run, push_to="me/pairs-hq", resume=True)  # doctest: +SKIP
"""

from .state import RankState, ShardRecord, shard_name, state_path
from .streaming_filter import (
    JobResult,
    JobStateError,
    finalize_job,
    node_rank,
    read_job_output,
    run_streaming_filter,
    streaming_filter_job,
)

__all__ = [
    "JobResult",
    "JobStateError",
    "RankState",
    "ShardRecord",
    "finalize_job",
    "node_rank",
    "read_job_output",
    "run_streaming_filter",
    "shard_name",
    "state_path",
    "streaming_filter_job",
]
