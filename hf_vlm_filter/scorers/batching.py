"""One ``map`` batch through a scorer's hooks: micro-batches, prefetch, and a bad row that never sinks the batch.

``ds.map(scorer, batched=True, batch_size=B)`` hands the scorer ``B`` rows; :func:`score_batch` is
what the scorer does with them:

1. **plan** — the rows are cut into micro-batches of ``micro_batch_size`` rows; with
   ``group_by_length`` they are first ordered by the scorer's cheap cost hint
   (:meth:`~hf_vlm_filter.scorers.base.Scorer.length_hint`, e.g. the judge's visual-token count read
   from the image header), so each micro-batch pads little. A hint that raises makes that row an
   error (its reason is the exception), never the batch.
2. **prepare** — each row's CPU work (decode, resize, patchify, tokenise). A :class:`RowError`, or
   any other exception, becomes that row's reason (``"TypeError: ..."``: type and first line).
   With ``prefetch_workers`` > 0 a background thread pool prepares the next micro-batches (one task
   per row, then one for the scorer's optional ``collate``: stack, cast, pin) while the calling
   thread runs the model on the current one; PIL and numpy release the GIL.
3. **score** — ``score_prepared`` on each micro-batch. A call that fails is split in halves until
   only the failing rows get ``model failed: ...``; after a real ``torch.OutOfMemoryError`` on ``n``
   rows the scorer calls its model with at most ``n // 2`` rows from then on.
4. **columns** — one value per input row in every declared column, in input order (``NaN`` / ``""``
   / a list of ``NaN`` for rows that were not scored: never ``None``).

What changes nothing: the number of workers (the same micro-batches are built either way, so the
scores are bit-for-bit those of the serial path). What may change the last float bits: the
micro-batch size and grouping (a row meets different neighbours, hence different padding widths).

Example:
    >>> judge = VLMJudge("./judge", micro_batch_size=64, prefetch_workers=6)       # doctest: +SKIP
    >>> scored = ds.map(judge, batched=True, batch_size=1024)                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..inputs import RowError

Batch = Mapping[str, Sequence[Any]]
logger = logging.getLogger(__name__)

#: Most background workers chosen automatically on a GPU machine for a model-bound scorer (the
#: judge prepares ~65 pairs/s per core at 448x448, so 8 cores outrun the GPU); a decode-bound
#: scorer (CLIP) lifts the cap with ``Scorer.max_auto_prefetch_workers = None``.
MAX_AUTO_WORKERS = 8
#: Micro-batches staged at once with workers: the one being scored's successor, and one more.
STAGED_AHEAD = 2


class BatchHooks(Protocol):
    """The scorer hooks this module drives (see :class:`~hf_vlm_filter.scorers.base.Scorer`)."""

    _rows_that_fit: int | None

    def prepare(self, batch: Batch, index: int) -> Any: ...
    def score_prepared(self, items: list[Any], rank: int | None = None) -> list[dict[str, Any]]: ...
    def collate(self, items: list[Any], rank: int | None = None) -> Any: ...
    def length_hint(self, batch: Batch, index: int) -> Any: ...
    def pipeline_options(self) -> PipelineOptions: ...
    def check_columns(self, batch: Batch) -> None: ...
    def output_features(self, input_features: Any = None) -> Any: ...
    @property
    def score_column(self) -> str: ...
    @property
    def error_column(self) -> str: ...


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


# ---- the whole batch -------------------------------------------------------------------------------


def score_batch(scorer: BatchHooks, batch: Batch, rank: int | None = None) -> dict[str, Any]:
    """Score one ``map`` batch with ``scorer``'s hooks; see the module docstring."""
    from ..models.loading import configure_worker_threads

    configure_worker_threads()  # before any torch op: a forked num_proc worker must not use the dead pool
    scorer.check_columns(batch)
    size = batch_size(batch)
    results: list[dict[str, Any] | None] = [None] * size
    errors: list[str] = [""] * size
    for indices, items in run_pipeline(scorer, batch, size, rank, errors):
        for index, result in zip(indices, score_within_memory(scorer, items, rank)):
            error = result.pop("error", None)
            if error is not None:
                errors[index] = str(error)
                result.pop(scorer.score_column, None)
            results[index] = result
    return output_columns(scorer.output_features(), scorer.error_column, results, errors)


def batch_size(batch: Batch) -> int:
    """Rows in ``batch``; ``ValueError`` when its columns differ in length."""
    sizes = {len(values) for values in batch.values()}
    if len(sizes) > 1:
        raise ValueError(f"batch columns have different lengths: {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def output_columns(
    features: Mapping[str, Any], error_column: str, results: Sequence[Mapping[str, Any] | None], errors: Sequence[str]
) -> dict[str, Any]:
    """Every declared column, one value per row: the result's value, the row's reason in
    ``error_column``, or the feature's missing value (float columns as float32 numpy arrays)."""
    columns: dict[str, list[Any]] = {name: [] for name in features}
    for result, error in zip(results, errors):
        for name, feature in features.items():
            if name == error_column:
                columns[name].append(error)
            elif result is None or name not in result:
                columns[name].append(missing_value(feature))
            else:
                columns[name].append(result[name])
    for name, feature in features.items():
        if is_float_feature(feature) or is_float_list_feature(feature):
            columns[name] = np.asarray(columns[name], dtype=np.float32)
    return columns


def is_float_feature(feature: Any) -> bool:
    """Whether ``feature`` is a float ``Value`` (a score column)."""
    from datasets import Value

    return isinstance(feature, Value) and feature.dtype.startswith("float")


def is_float_list_feature(feature: Any) -> bool:
    """Whether ``feature`` is a list of float ``Value`` (a probability column)."""
    from datasets import List

    return isinstance(feature, List) and is_float_feature(feature.feature)


def missing_value(feature: Any) -> Any:
    """The value of a column for a row that was not scored: never ``None`` (``datasets`` fixes a
    column's type from the first batch it writes; an all-``None`` batch would make it ``null``)."""
    from datasets import List, Value

    if is_float_feature(feature):
        return math.nan
    if isinstance(feature, List) and is_float_feature(feature.feature) and feature.length > 0:
        return [math.nan] * feature.length
    if isinstance(feature, Value) and feature.dtype == "string":
        return ""
    raise TypeError(f"no missing-value convention for feature {feature!r}")


def reason(exc: BaseException, limit: int = 160) -> str:
    """A row's reason for an unexpected exception: ``"TypeError: first line of the message"``.

    Example:
        >>> reason(ValueError("bad\\nmore"))
        'ValueError: bad'
    """
    if isinstance(exc, RowError):
        return str(exc)
    text = f"{type(exc).__name__}: {first_line(exc)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of ``str(exc)``, cut to ``limit`` characters."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- planning and staging --------------------------------------------------------------------------


def plan_micro_batches(scorer: BatchHooks, batch: Batch, size: int, options: PipelineOptions,
                       errors: list[str] | None = None) -> list[list[int]]:
    """Row indices of each micro-batch: input order, or ordered by ``length_hint`` when grouping.

    A row whose hint raises gets the exception as its reason in ``errors`` (when given) and is left
    out of every micro-batch; ``length_hint`` is a scorer's promise not to raise, kept here for all.
    """
    order = list(range(size))
    step = options.micro_batch_size or max(size, 1)
    if options.group_by_length and size > step:
        hints: dict[int, Any] = {}
        for index in order:
            try:
                hints[index] = scorer.length_hint(batch, index)
            except Exception as exc:  # noqa: BLE001 - a raising hint is this row's error, not the batch's
                if errors is None:
                    hints[index] = None
                else:
                    errors[index] = reason(exc)
        order = [index for index in order if index in hints]
        values = [hints[index] for index in order]
        if all(value is not None for value in values):
            try:
                order.sort(key=lambda index: hints[index])  # stable: ties keep input order
            except TypeError:  # unsortable hints: keep input order
                pass
    return [order[start : start + step] for start in range(0, len(order), step)]


def stage_micro_batch(
    scorer: BatchHooks, batch: Batch, indices: list[int], rank: int | None
) -> tuple[list[int], PreparedBatch, dict[int, str]]:
    """Prepare rows ``indices`` (a failure becomes that row's reason) and collate them.

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
    scorer: BatchHooks, batch: Batch, size: int, rank: int | None, errors: list[str]
) -> Iterator[tuple[list[int], PreparedBatch]]:
    """Yield ``(row indices, prepared items)`` per micro-batch, staged ahead in the background.

    Rows that could not be planned or prepared get their reason in ``errors`` and are not yielded.
    With workers, every row is prepared as its own pool task (so even the first micro-batch of a
    ``map`` batch is ready after ``rows / workers`` preparations), then one task per micro-batch
    collates; while the caller scores micro-batch ``k``, micro-batch ``k + 1`` is staged.
    """
    options = scorer.pipeline_options()
    groups = plan_micro_batches(scorer, batch, size, options, errors)
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


def _prepare_row(scorer: BatchHooks, batch: Batch, index: int) -> tuple[bool, Any]:
    """``(True, item)`` or ``(False, reason)`` for one row (pool task): any exception is the row's."""
    from ..models.loading import configure_worker_threads

    configure_worker_threads()  # also in pool threads: a forked worker's torch must stay single-threaded
    try:
        return True, scorer.prepare(batch, index)
    except Exception as exc:  # noqa: BLE001 - a row that cannot be prepared is that row's error
        return False, reason(exc)


def _collate_rows(
    scorer: BatchHooks, indices: list[int], rows: list[Future], rank: int | None
) -> tuple[list[int], PreparedBatch, dict[int, str]]:
    """Gather a micro-batch's prepared rows and collate them (pool task)."""
    return _gather(scorer, indices, [row.result() for row in rows], rank)


def _gather(
    scorer: BatchHooks, indices: list[int], outcomes: list[tuple[bool, Any]], rank: int | None
) -> tuple[list[int], PreparedBatch, dict[int, str]]:
    """The rows ``indices`` whose ``_prepare_row`` outcome is an item, their collated items, and
    ``{index: reason}`` for the others: the serial and the pooled path end here alike."""
    ready: list[int] = []
    items = PreparedBatch()
    refused: dict[int, str] = {}
    for index, (ok, value) in zip(indices, outcomes):
        if ok:
            ready.append(index)
            items.append(value)
        else:
            refused[index] = value
    _collate_into(scorer, items, rank)
    return ready, items, refused


def _collate_into(scorer: BatchHooks, items: PreparedBatch, rank: int | None) -> None:
    """Attach ``scorer.collate(items)``; a failing ``collate`` leaves ``None`` (``score_prepared``
    then collates, fails and isolates the failing rows itself)."""
    if items:
        try:
            items.collated = scorer.collate(list(items), rank)
        except Exception:  # noqa: BLE001 - see the docstring
            items.collated = None


def _record(errors: list[str], refused: dict[int, str]) -> None:
    for index, text in refused.items():
        errors[index] = text


# ---- model calls -----------------------------------------------------------------------------------


def score_within_memory(scorer: BatchHooks, items: list[Any], rank: int | None) -> list[dict[str, Any]]:
    """Score ``items`` in model calls of at most ``scorer._rows_that_fit`` rows: once a call of ``n``
    rows has run out of accelerator memory, later micro-batches are cut to ``n // 2`` up front
    instead of failing and being split again every time."""
    fit = scorer._rows_that_fit
    if fit is None or len(items) <= fit:
        return score_isolating_failures(scorer, items, rank)
    results: list[dict[str, Any]] = []
    for start in range(0, len(items), fit):
        results += score_isolating_failures(scorer, items[start : start + fit], rank)
    return results


def score_isolating_failures(scorer: BatchHooks, items: list[Any], rank: int | None) -> list[dict[str, Any]]:
    """Run the model; when a sub-batch fails, split it so only the failing rows get an error.

    Out-of-memory errors are retried on halves as well, so any ``batch_size`` a user picks fits
    (and :func:`score_within_memory` remembers the smaller size).
    """
    try:
        return scorer.score_prepared(items, rank)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row error below
        if len(items) == 1:
            return [{"error": RowError(f"model failed: {type(exc).__name__}: {first_line(exc)}")}]
        _learn_memory_limit(scorer, exc, len(items))
        _release_accelerator_memory(exc)
        middle = len(items) // 2
        return score_isolating_failures(scorer, items[:middle], rank) + score_isolating_failures(
            scorer, items[middle:], rank
        )


def _learn_memory_limit(scorer: BatchHooks, exc: BaseException, rows: int) -> None:
    """After a real out-of-memory error (``torch.OutOfMemoryError``) on ``rows`` rows, call the
    model with at most ``rows // 2`` rows from now on (this scorer object, this process)."""
    import torch

    fit = scorer._rows_that_fit
    if isinstance(exc, torch.OutOfMemoryError) and (fit is None or rows // 2 < fit):
        scorer._rows_that_fit = rows // 2
        logger.warning("%s: %d rows ran out of accelerator memory; scoring at most %d rows per model call "
                       "from now on (a smaller micro_batch_size avoids the failed attempts)",
                       type(scorer).__name__, rows, rows // 2)


def _release_accelerator_memory(exc: BaseException) -> None:
    if "out of memory" in str(exc).lower():
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
