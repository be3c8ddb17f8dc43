"""Micro-batching with decode + preprocessing overlapped with the model, inside one ``map`` batch.

A ``ds.map(scorer, batched=True, batch_size=B)`` call hands the scorer ``B`` rows. The scorer cuts
them into micro-batches of ``micro_batch_size`` rows and, with ``prefetch_workers`` > 0, stages the
next micro-batch in a background thread pool (``prepare`` of each row as its own task: decode,
resize, patchify, tokenise; then one task for the scorer's optional ``collate``: stack, cast, pin)
while the calling thread runs the model on the current one. PIL decoding and resizing and numpy's array work release the GIL, so
the threads run in parallel with each other and with the model.

With ``group_by_length`` the rows are first ordered by the scorer's cheap cost hint
(:meth:`~hf_vlm_filter.scorers.base.Scorer.length_hint`, e.g. the judge's visual-token count read
from the image header), so each micro-batch holds rows of similar length and needs little padding.
Results are always written back to their own rows: the output order is the input order.

What changes nothing: the number of workers (the same micro-batches are built either way, so the
scores are bit-for-bit those of the serial path). What may change the last float bits: the
micro-batch size and grouping (a row meets different neighbours, hence different padding widths).

Example:
    >>> judge = VLMJudge("./judge", micro_batch_size=64, prefetch_workers=6)       # doctest: +SKIP
    >>> scored = ds.map(judge, batched=True, batch_size=1024)                      # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..inputs import RowError

if TYPE_CHECKING:
    from .base import Scorer

Batch = Mapping[str, Sequence[Any]]

#: Most background workers chosen automatically on a GPU machine for a model-bound scorer (the
#: judge prepares ~65 pairs/s per core at 448x448, so 8 cores outrun the GPU); a decode-bound
#: scorer (CLIP) lifts the cap with ``Scorer.max_auto_prefetch_workers = None``.
MAX_AUTO_WORKERS = 8


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_prefetch_workers(device_type: str, cap: int | None = MAX_AUTO_WORKERS) -> int:
    """Workers used when ``prefetch_workers=None``: all cores but one on a GPU machine (at most
    ``cap``; ``None``: no cap); ``0`` on CPU, where the model's own threads already use every core.

    Example:
        >>> default_prefetch_workers("cpu"), default_prefetch_workers("cuda", cap=1)
        (0, 1)
    """
    if device_type == "cpu":
        return 0
    cores = available_cores() - 1
    return max(1, cores if cap is None else min(cap, cores))


@dataclass(frozen=True)
class PipelineOptions:
    """How a scorer cuts a ``map`` batch into micro-batches and stages them.

    Args:
        prefetch_workers: background threads that prepare (and collate) the next micro-batches;
            ``0`` prepares in the calling thread, one micro-batch after another.
        micro_batch_size: rows per model call; ``None`` = the whole ``map`` batch in one call.
        group_by_length: order rows by the scorer's ``length_hint`` before cutting micro-batches.
    """

    prefetch_workers: int = 0
    micro_batch_size: int | None = None
    group_by_length: bool = False

    def __post_init__(self) -> None:
        if self.prefetch_workers < 0:
            raise ValueError(f"prefetch_workers must be >= 0, got {self.prefetch_workers}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1 or None, got {self.micro_batch_size}")

    @classmethod
    def from_config(
        cls, config: Any, device_type: str = "cpu", max_auto_workers: int | None = MAX_AUTO_WORKERS
    ) -> PipelineOptions:
        """Options from a scorer config's ``prefetch_workers`` / ``micro_batch_size`` /
        ``group_by_length`` fields (absent fields: serial, whole batch, no grouping;
        ``prefetch_workers=None``: :func:`default_prefetch_workers` with ``max_auto_workers``)."""
        workers = getattr(config, "prefetch_workers", 0)
        if workers is None:
            workers = default_prefetch_workers(device_type, max_auto_workers)
        return cls(
            prefetch_workers=workers,
            micro_batch_size=getattr(config, "micro_batch_size", None),
            group_by_length=getattr(config, "group_by_length", False),
        )


class PreparedBatch(list):
    """The prepared rows of one micro-batch (a ``list``), plus ``collated``: the scorer's
    ``collate`` result built in the background, or ``None``. Slicing gives a plain list."""

    collated: Any = None


def plan_micro_batches(scorer: Scorer, batch: Batch, size: int, options: PipelineOptions) -> list[list[int]]:
    """Row indices of each micro-batch: input order, or ordered by ``length_hint`` when grouping."""
    order = list(range(size))
    step = options.micro_batch_size or max(size, 1)
    if options.group_by_length and size > step:
        hints = [scorer.length_hint(batch, index) for index in order]
        if all(hint is not None for hint in hints):
            order.sort(key=lambda index: hints[index])  # stable: ties keep input order
    return [order[start : start + step] for start in range(0, size, step)]


def stage_micro_batch(
    scorer: Scorer, batch: Batch, indices: list[int], rank: int | None
) -> tuple[list[int], PreparedBatch, dict[int, str]]:
    """Prepare rows ``indices`` (a :class:`RowError` becomes that row's reason) and collate them.

    Returns the indices that were prepared, their items, and ``{index: reason}`` for the others.
    A failing ``collate`` is not an error here (see :func:`_collate_into`).
    """
    return _gather(scorer, indices, [_prepare_row(scorer, batch, index) for index in indices], rank)


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def prefetch_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads (a forked ``num_proc`` worker gets its own)."""
    key = (os.getpid(), workers)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="hf-vlm-filter-prefetch")
        return _POOLS[key]


def run_pipeline(
    scorer: Scorer, batch: Batch, size: int, rank: int | None, errors: list[str]
) -> Iterator[tuple[list[int], PreparedBatch]]:
    """Yield ``(row indices, prepared items)`` per micro-batch, staged ahead in the background.

    Rows that ``prepare`` refused get their reason in ``errors`` and are not yielded. With
    workers, every row is prepared as its own pool task (so even the first micro-batch of a
    ``map`` batch is ready after ``rows / workers`` preparations), then one task per micro-batch
    collates; while the caller scores micro-batch ``k``, micro-batch ``k + 1`` is staged.
    """
    options = scorer.pipeline_options()
    groups = plan_micro_batches(scorer, batch, size, options)
    if options.prefetch_workers == 0:
        for indices in groups:
            ready, items, refused = stage_micro_batch(scorer, batch, indices, rank)
            _record(errors, refused)
            if items:
                yield ready, items
        return
    pool = prefetch_pool(options.prefetch_workers)
    submitted: list[Future] = []

    def submit(indices: list[int]) -> Future:
        # Row tasks are queued before their collate task, and the pool is FIFO: when a worker
        # takes the collate task, every row it waits for is already running or done (no deadlock).
        rows = [pool.submit(_prepare_row, scorer, batch, index) for index in indices]
        submitted.extend(rows)
        return pool.submit(_collate_rows, scorer, indices, rows, rank)

    pending: deque[Future] = deque()
    upcoming = iter(groups)
    try:
        for indices in upcoming:
            pending.append(submit(indices))
            if len(pending) >= STAGED_AHEAD:
                break
        while pending:
            ready, items, refused = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:
                pending.append(submit(following))
            _record(errors, refused)
            if items:
                yield ready, items
    finally:
        for future in (*pending, *submitted):
            future.cancel()


#: Micro-batches staged at once with workers: the one being scored's successor, and one more.
STAGED_AHEAD = 2


def _prepare_row(scorer: Scorer, batch: Batch, index: int) -> tuple[bool, Any]:
    """``(True, item)`` or ``(False, reason)`` for one row (pool task)."""
    from ..models.loading import configure_worker_threads

    configure_worker_threads()  # also in pool threads: a forked worker's torch must stay single-threaded
    try:
        return True, scorer.prepare(batch, index)
    except RowError as exc:
        return False, str(exc)


def _collate_rows(
    scorer: Scorer, indices: list[int], rows: list[Future], rank: int | None
) -> tuple[list[int], PreparedBatch, dict[int, str]]:
    """Gather a micro-batch's prepared rows and collate them (pool task)."""
    return _gather(scorer, indices, [row.result() for row in rows], rank)


def _gather(
    scorer: Scorer, indices: list[int], outcomes: list[tuple[bool, Any]], rank: int | None
) -> tuple[list[int], PreparedBatch, dict[int, str]]:
    """The rows ``indices`` whose ``_prepare_row`` outcome is an item, their collated items, and
    ``{index: reason}`` for the others: the serial and the pooled path end here alike."""
    ready: list[int] = []
    items = PreparedBatch()
    errors: dict[int, str] = {}
    for index, (ok, value) in zip(indices, outcomes):
        if ok:
            ready.append(index)
            items.append(value)
        else:
            errors[index] = value
    _collate_into(scorer, items, rank)
    return ready, items, errors


def _collate_into(scorer: Scorer, items: PreparedBatch, rank: int | None) -> None:
    """Attach ``scorer.collate(items)``; a failing ``collate`` leaves ``None`` (``score_prepared``
    then collates, fails and isolates the failing rows itself)."""
    if items:
        try:
            items.collated = scorer.collate(list(items), rank)
        except Exception:  # noqa: BLE001 - see the docstring
            items.collated = None


def _record(errors: list[str], refused: dict[int, str]) -> None:
    for index, reason in refused.items():
        errors[index] = reason
