"""The resumable, shard-writing, publishing streaming job (see :mod:`.job` and :mod:`.state`)."""

from .job import (
    JobFinisher,
    JobResult,
    JobStateError,
    ShardPublisher,
    finalize_job,
    job_identity,
    node_rank,
    read_job_output,
    run_streaming_filter,
    streaming_filter_job,
)
from .state import RankState, ShardRecord, shard_name, state_path

__all__ = [
    "JobFinisher",
    "JobResult",
    "JobStateError",
    "RankState",
    "ShardPublisher",
    "ShardRecord",
    "finalize_job",
    "job_identity",
    "node_rank",
    "read_job_output",
    "run_streaming_filter",
    "shard_name",
    "state_path",
    "streaming_filter_job",
]
