"""Multi-GPU and multi-node streaming jobs with the torch launcher (``torchrun`` / ``accelerate launch``).

We write no scheduler: the launcher starts one process per GPU and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Each process runs the same streaming job
(:mod:`hf_vlm_filter.engines.streaming`) on its own part of the source —
``datasets.distributed.split_dataset_by_node`` gives each rank whole shards when the number of
source files divides by the world size, else every ``world_size``-th row — with one judge on its
own GPU, writing its own shards (``data/train-r{rank}-*.parquet``) and resume state
(``state/rank-{rank}.json``). When every rank is done, rank 0 alone merges the states into one
``manifest.json``, summary and dataset card (:func:`~hf_vlm_filter.engines.streaming.finalize_job`).
Every input row is scored by exactly one rank.

The launcher recipe (every node runs the same line)::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m hf_vlm_filter filter user/pairs --streaming --out /shared/job --threshold 9 --push-to me/pairs-hq

``OUT`` must be a folder every node can write (a shared file system). A killed job is resumed by
launching the same command with ``--resume``: each rank continues from its own checkpoint and
finished ranks return at once.

Example:
    >>> from hf_vlm_filter.engines.torchrun import run_distributed_job, torch_rank
    >>> torch_rank()            # outside a launcher: rank 0 of 1
    (0, 1)
    >>> result = run_distributed_job(stream, judge, "out/job", context, rule)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from .keep_rule import KeepRule
from .observers import RowObserver
from .options import JobOptions, OutputSpec
from .run_record import RunContext
from .streaming import (
    JobFinisher,
    JobResult,
    JobStateError,
    RankState,
    ShardPublisher,
    finalize_job,
    node_rank,
    run_streaming_filter,
)

logger = logging.getLogger(__name__)

#: How long a rank may wait for the slowest rank before the job gives up (ranks differ in speed).
DEFAULT_WAIT_TIMEOUT = timedelta(hours=48)
DEFAULT_POLL_SECONDS = 5.0

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "barrier",
    "init_process_group",
    "local_rank",
    "on_local_device",
    "run_distributed_job",
    "torch_rank",
    "wait_for_ranks",
]


def torch_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: from an initialised ``torch.distributed`` group, else
    from the launcher's ``RANK`` / ``WORLD_SIZE`` environment variables, else ``(0, 1)``.

    Example:
        >>> torch_rank()
        (0, 1)
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return node_rank()


def local_rank() -> int:
    """This process's GPU index on its node: ``LOCAL_RANK`` (set by torchrun / accelerate), else 0."""
    value = os.environ.get("LOCAL_RANK", "0")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"LOCAL_RANK must be an integer, got {value!r}") from None


def init_process_group(backend: str | None = None, timeout: timedelta = DEFAULT_WAIT_TIMEOUT) -> bool:
    """Join the launcher's process group when there is one to join; returns whether a group is active.

    A group is created only when ``WORLD_SIZE`` > 1 and ``MASTER_ADDR`` / ``MASTER_PORT`` are set
    (torchrun, ``accelerate launch``); ``backend`` defaults to ``nccl`` on CUDA and ``gloo`` on CPU.
    ``timeout`` bounds :func:`barrier` (the slowest rank may take hours longer than the fastest).
    An already initialised group is used as it is.
    """
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    _, world_size = node_rank()
    if world_size == 1 or not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend=backend, timeout=timeout)
    return True


def on_local_device(scorer: Any) -> Any:
    """``scorer`` on this rank's GPU (``cuda:LOCAL_RANK``): one judge per GPU.

    Only scorers left on the default CUDA device (``device`` ``None`` or ``"cuda"``) are moved, and
    only when CUDA is available; an explicit ``cuda:N`` or ``cpu`` is kept. Call it before the
    scorer loads its model: a model already loaded on the default device stays there.
    """
    import torch

    if not torch.cuda.is_available():
        return scorer
    index = local_rank() % torch.cuda.device_count()
    torch.cuda.set_device(index)
    if index == 0:
        return scorer  # GPU 0 is the default device already: keep the model it may have loaded
    return scorer.on_device(f"cuda:{index}")


def wait_for_ranks(
    out_dir: str | Path,
    world_size: int,
    *,
    timeout: timedelta | float = DEFAULT_WAIT_TIMEOUT,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
) -> list[RankState]:
    """Wait until the state of every rank of ``out_dir`` says ``done``; returns the states.

    The file-based barrier for ranks that share no process group (each rank writes
    ``state/rank-{rank}.json`` atomically, so a state read here is always whole).

    Raises:
        JobStateError: a rank's state records another ``world_size`` (a different job), or the
            ranks are not all done after ``timeout`` (seconds or a ``timedelta``).
    """
    seconds = _as_timedelta(timeout).total_seconds()
    deadline = time.monotonic() + seconds
    out_dir = Path(out_dir)
    while True:
        states, waiting = RankState.load_all(out_dir, world_size)
        wrong = [s.rank for s in states if s is not None and s.world_size != world_size]
        if wrong:
            raise JobStateError(f"ranks {wrong} of {out_dir} belong to a job with another world size")
        if not waiting:
            return states  # type: ignore[return-value] - none is None here
        if time.monotonic() >= deadline:
            raise JobStateError(f"ranks {waiting} of {out_dir} did not finish within {seconds:.0f} s")
        logger.info("waiting for ranks %s of %s", waiting, out_dir)
        time.sleep(poll_seconds)


def barrier(out_dir: str | Path, world_size: int, **wait_options: Any) -> None:
    """Return when every rank is done: ``torch.distributed.barrier()`` when a process group is
    active, else :func:`wait_for_ranks` on the job folder (``wait_options``: ``timeout``, ``poll_seconds``)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    else:
        wait_for_ranks(out_dir, world_size, **wait_options)


def run_distributed_job(
    dataset: Any,
    scorer: Any,
    out_dir: str | Path,
    context: RunContext,
    rule: KeepRule = KeepRule(),
    options: JobOptions = JobOptions(),
    *,
    rank: int | None = None,
    world_size: int | None = None,
    backend: str | None = None,
    wait_timeout: timedelta | float = DEFAULT_WAIT_TIMEOUT,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    resume: bool = False,
    publisher: ShardPublisher | None = None,
    finishers: Sequence[JobFinisher] = (),
    outputs: OutputSpec = OutputSpec(),
    observers: Sequence[RowObserver] = (),
) -> JobResult | None:
    """Run this rank's part of a streaming job; on rank 0, wait for all ranks and finalize.

    ``rank`` / ``world_size`` default to :func:`torch_rank` (the launcher's). With several ranks a
    process group is joined when the launcher provides one (:func:`init_process_group`), else the
    ranks meet through their state files (:func:`wait_for_ranks`). Returns the :class:`JobResult` on
    rank 0 (after its ``finishers`` ran) and ``None`` on the other ranks.

    Example:
        >>> # under torchrun --nproc-per-node 4, in every process:
        >>> result = run_distributed_job(stream, judge, "out/job", context, rule, JobOptions(batch_size=256))   # doctest: +SKIP
    """
    if world_size is None or rank is None:
        env_rank, env_world = torch_rank()
        rank = env_rank if rank is None else rank
        world_size = env_world if world_size is None else world_size
    rank, world_size = node_rank(rank, world_size)
    group = world_size > 1 and init_process_group(backend, timeout=_as_timedelta(wait_timeout))
    if world_size > 1:
        scorer = on_local_device(scorer)
    run_streaming_filter(dataset, scorer, out_dir, context, rule, options, resume=resume, rank=rank,
                         world_size=world_size, publisher=publisher, outputs=outputs, observers=observers)
    if world_size > 1:
        if group:
            barrier(out_dir, world_size)
        elif rank == 0:
            wait_for_ranks(out_dir, world_size, timeout=wait_timeout, poll_seconds=poll_seconds)
    result = None
    if rank == 0:
        result = finalize_job(out_dir, finishers=finishers, command=context.command, recipe=context.recipe,
                              published_to=publisher.target if publisher is not None else None, observers=observers)
    if group:
        import torch.distributed as dist

        dist.destroy_process_group()
    return result


def _as_timedelta(timeout: timedelta | float) -> timedelta:
    return timeout if isinstance(timeout, timedelta) else timedelta(seconds=float(timeout))
