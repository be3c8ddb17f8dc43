"""The scorer contract every scorer in this package follows.

A scorer is a plain callable object shaped for ``datasets.Dataset.map(scorer, batched=True)``:

* **batch in, columns out** — ``scorer(batch)`` takes a batch (a dict of equal-length lists, as
  ``map(batched=True)`` passes it) and returns a dict holding only the scorer's *new* columns, one
  value per input row, in input order. ``datasets`` merges them with the input columns, so every
  input row, column and order is kept.
* **a bad row never sinks a batch** — a row that cannot be scored gets ``NaN`` in
  ``{prefix}_score`` and a short reason in ``{prefix}_error``; rows that were scored have the empty
  string there (never ``None``: ``datasets`` fixes a column's type from the first batch written, and
  an all-``None`` first batch would make the column unable to hold a reason later).
* **declared schema** — :meth:`Scorer.output_features` gives the new columns' ``Features``, so a
  streaming ``IterableDataset.map(..., features=...)`` keeps its schema (see :func:`map_with_scorer`).
* **picklable configuration** — pickling keeps only the frozen config dataclass, never the model:
  ``datasets`` fingerprints stay stable (a second identical ``map`` reuses the cache) and ``num_proc``
  workers receive a few hundred bytes, then load the model themselves on first use.
* **engine-agnostic** — ``prepare`` (CPU: decoding, tokenising) and ``score_prepared`` (the model)
  are separate, as in transformers pipelines, so any engine (``ds.map``, torchrun shards, Ray actors)
  can drive them. ``rank`` (``map(with_rank=True)``) selects a GPU.

Adding a scorer means one new module with a subclass that sets ``prefix``, ``extra_features`` and
the two hooks, and one line in :mod:`hf_vlm_filter.scorers` (the registry). Loading is shared too:
a scorer with a model implements :meth:`Scorer.load_model` (and, for tokenizers or processors,
:meth:`Scorer.load_processors` through :meth:`Scorer.shared`); the base class then provides
``from_pretrained``, ``load``, ``model(rank)`` (one cached model per checkpoint, device and dtype in
the process) and ``shared_instance`` (one scorer per configuration, for map functions).

Throughput: rows are prepared and scored in micro-batches (see :mod:`hf_vlm_filter.scorers.pipeline`):
with ``prefetch_workers`` > 0 a background thread pool decodes and preprocesses the next
micro-batches while the model scores the current one; rows may be grouped by a cost hint
(:meth:`Scorer.length_hint`); outputs are always written back in input order.

Column names: by default ``{prefix}_score`` and ``{prefix}_error``. A scorer whose score is better
named otherwise sets the class attribute ``score_name``: the score column becomes
``{prefix}_{score_name}`` and the error column ``{prefix}_{score_name}_error`` (for example
``prefix = "caption"``, ``score_name = "ppl"`` gives ``caption_ppl`` and ``caption_ppl_error``).
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

import numpy as np
from datasets import Features, List, Value

from ..inputs import RowError
from .pipeline import MAX_AUTO_WORKERS, PipelineOptions, run_pipeline

Batch = Mapping[str, Sequence[Any]]
T = TypeVar("T")
S = TypeVar("S", bound="Scorer")

logger = logging.getLogger(__name__)
_CACHE_LOCK = threading.RLock()
#: Process-wide models, processors and scorers shared by every scorer (see ``Scorer.model`` / ``Scorer.shared``).
_SHARED: dict[Any, Any] = {}


def cached(cache: dict, key: Any, build: Callable[[], T]) -> T:
    """``cache[key]``, built once with ``build()`` under a process-wide lock (models, tokenizers…)."""
    with _CACHE_LOCK:
        if key not in cache:
            cache[key] = build()
        return cache[key]


class Scorer(ABC):
    """Base class: turns ``prepare``/``score_prepared`` into the batched, row-safe map contract."""

    #: Column prefix: the scorer writes ``{prefix}_score`` and ``{prefix}_error``.
    prefix: ClassVar[str] = "score"
    #: Name of the score after the prefix; anything but ``"score"`` also renames the error column
    #: to ``{prefix}_{score_name}_error`` (see the module docstring).
    score_name: ClassVar[str] = "score"
    #: Cap on the background workers picked automatically (``prefetch_workers=None``) on a GPU
    #: machine; ``None``: every core but one (decode-bound scorers). See ``default_prefetch_workers``.
    max_auto_prefetch_workers: ClassVar[int | None] = MAX_AUTO_WORKERS
    #: The frozen dataclass holding this scorer's options (its fields are what ``with_options``,
    #: ``fn_kwargs`` and the CLI may set).
    config_class: ClassVar[type]

    def __init__(self, config: Any) -> None:
        self.config = config

    # ---- hooks for subclasses -------------------------------------------------------------
    @abstractmethod
    def prepare(self, batch: Batch, index: int) -> Any:
        """CPU work for row ``index`` of ``batch``; raise :class:`RowError` for a bad row."""

    @abstractmethod
    def score_prepared(self, items: list[Any], rank: int | None = None) -> list[dict[str, Any]]:
        """Model work for prepared rows; returns one dict of column values per item.

        Each dict holds ``{prefix}_score`` and any extra columns. An item-level failure may be
        reported by putting a :class:`RowError` instance under the key ``"error"``.
        """

    def extra_features(self) -> dict[str, Any]:
        """Features of the columns this scorer writes besides score and error (default none)."""
        return {}

    def check_columns(self, batch: Batch) -> None:
        """Raise ``KeyError`` with a helpful message when the batch lacks a required column."""

    def length_hint(self, batch: Batch, index: int) -> Any:
        """A cheap, sortable cost estimate of row ``index`` (``None``: rows are not grouped).

        Rows with equal hints are put in the same micro-batch so that little padding is needed (the
        judge returns its visual-token count, read from the image header without decoding). Must
        not raise: return anything sortable (e.g. ``0``) for a row that ``prepare`` will refuse.
        """
        return None

    def collate(self, items: list[Any], rank: int | None = None) -> Any:
        """Optional: stack prepared rows into model inputs on the CPU (default ``None``: not used).

        When it returns something, the pipeline calls it in a background thread and attaches the
        result to the :class:`~hf_vlm_filter.scorers.pipeline.PreparedBatch` it hands to
        ``score_prepared`` (as ``items.collated``), so stacking and pinning overlap with the model.
        ``score_prepared`` must still work on a plain list (it collates itself then): it reads its
        inputs with :meth:`collated`.
        """
        return None

    def collated(self, items: list[Any], rank: int | None = None) -> Any:
        """The inputs of ``items``: those the pipeline collated in the background
        (``PreparedBatch.collated``), else :meth:`collate` now (a plain list, or a failed collate)."""
        staged = getattr(items, "collated", None)
        return staged if staged is not None else self.collate(items, rank)

    # ---- loading (shared by every scorer with a model) ------------------------------------
    def load_processors(self) -> Any:
        """Load tokenizers / processors now (default: nothing); see :meth:`shared`."""
        return None

    def load_model(self, device: Any, dtype: Any) -> Any:
        """Load this scorer's model onto ``device`` in ``dtype``, in eval mode (scorers with a model)."""
        raise NotImplementedError(f"{type(self).__name__} has no model")

    def model_key(self) -> tuple:
        """The config fields that identify the weights (default: ``model`` and ``revision``)."""
        return (getattr(self.config, "model", None), getattr(self.config, "revision", None))

    def model(self, rank: int | None = None) -> Any:
        """The model for ``rank`` (GPU ``rank % device_count``), loaded once per process and shared.

        Scorers whose :meth:`load_model` is the same function and whose :meth:`model_key`, device
        and dtype agree share one model object.
        """
        from ..models.loading import configure_worker_threads, resolve_device, resolve_dtype

        configure_worker_threads()
        device = resolve_device(getattr(self.config, "device", None), rank)
        dtype = resolve_dtype(getattr(self.config, "dtype", None), device)
        key = ("model", type(self).load_model, self.model_key(), str(device), dtype)
        return cached(_SHARED, key, lambda: self.load_model(device, dtype))

    def load(self, rank: int | None = None) -> Any:
        """Load processors and model now (so a bad id or an offline Hub fails here); returns the model."""
        self.load_processors()
        if type(self).load_model is Scorer.load_model:
            return None
        return self.model(rank)

    def shared(self, build: Callable[[Any], T], key: tuple) -> T:
        """``build(self.config)``, built once per process for ``(build, key)`` (tokenizers, processors…).

        Example:
            >>> # in a subclass:  return self.shared(_Preprocessing, (self.config.model, self.config.revision))
        """
        return cached(_SHARED, ("shared", build, key), lambda: build(self.config))

    @classmethod
    def from_pretrained(cls: type[S], *args: Any, **options: Any) -> S:
        """Build a scorer (same arguments as the constructor) and load its checkpoint now."""
        scorer = cls(*args, **options)
        scorer.load()
        return scorer

    @classmethod
    def shared_instance(cls: type[S], **options: Any) -> S:
        """The process-wide scorer of this class for these :attr:`config_class` options.

        What the module-level map functions (``judge_scores``, ``clip_scores``…) call on each batch.
        """
        config = cls.config_class(**options)
        return cached(_SHARED, ("scorer", cls, config), lambda: cls.from_config(config))

    def pipeline_options(self) -> PipelineOptions:
        """Micro-batching and prefetch settings, from the config's ``prefetch_workers``,
        ``micro_batch_size`` and ``group_by_length`` fields when it has them (defaults otherwise:
        the whole batch at once, in the calling thread)."""
        return PipelineOptions.from_config(self.config, self.resolved_device_type(), self.max_auto_prefetch_workers)

    def resolved_device_type(self) -> str:
        """``"cuda"`` or ``"cpu"``…: where this scorer's model runs (from ``config.device``)."""
        from ..models.loading import resolve_device

        return resolve_device(getattr(self.config, "device", None)).type

    # ---- the contract ---------------------------------------------------------------------
    @property
    def score_column(self) -> str:
        return f"{self.prefix}_{self.score_name}"

    @property
    def error_column(self) -> str:
        if self.score_name == "score":
            return f"{self.prefix}_error"
        return f"{self.score_column}_error"

    # ---- configuration-only state (subclasses may override) --------------------------------
    @classmethod
    def from_config(cls: type[S], config: Any) -> S:
        """A scorer of this class around an existing (frozen) config."""
        scorer = cls.__new__(cls)
        Scorer.__init__(scorer, config)
        return scorer

    def with_options(self: S, **options: Any) -> S:
        """A scorer of the same configuration with some options changed."""
        return self.from_config(replace(self.config, **options))

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def output_features(self, input_features: Features | None = None) -> Features:
        """The new columns' features, merged after ``input_features`` when given.

        Example:
            >>> from hf_vlm_filter import VLMJudge
            >>> VLMJudge(model="./judge").output_features()["judge_score"]
            Value('float32')
        """
        new = {self.score_column: Value("float32"), self.error_column: Value("string"), **self.extra_features()}
        merged = dict(input_features or {})
        merged.update(new)
        return Features(merged)

    def __call__(self, batch: Batch, rank: int | None = None) -> dict[str, list[Any]]:
        """Score a batch; see the module docstring for the contract."""
        from ..models.loading import configure_worker_threads

        configure_worker_threads()  # before any torch op: a forked num_proc worker must not use the dead pool
        self.check_columns(batch)
        size = _batch_size(batch)
        results: list[dict[str, Any] | None] = [None] * size
        errors: list[str] = [""] * size
        for indices, items in run_pipeline(self, batch, size, rank, errors):
            for index, result in zip(indices, self._score_within_memory(items, rank)):
                error = result.pop("error", None)
                if error is not None:
                    errors[index] = str(error)
                    result.pop(self.score_column, None)
                results[index] = result
        return self._columns(results, errors)

    # ---- internals ------------------------------------------------------------------------
    #: Most rows per model call after an out-of-memory error (``None``: no limit learned yet).
    _rows_that_fit: int | None = None

    def _score_within_memory(self, items: list[Any], rank: int | None) -> list[dict[str, Any]]:
        """Score ``items`` in model calls of at most :attr:`_rows_that_fit` rows: once a call of
        ``n`` rows has run out of accelerator memory, later micro-batches are cut to ``n // 2`` up
        front instead of failing and being split again every time."""
        fit = self._rows_that_fit
        if fit is None or len(items) <= fit:
            return self._score_isolating_failures(items, rank)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), fit):
            results += self._score_isolating_failures(items[start : start + fit], rank)
        return results

    def _score_isolating_failures(self, items: list[Any], rank: int | None) -> list[dict[str, Any]]:
        """Run the model; when a sub-batch fails, split it so only the failing rows get an error.

        Out-of-memory errors are retried on halves as well, so any ``batch_size`` a user picks fits
        (and :meth:`_score_within_memory` remembers the smaller size).
        """
        try:
            return self.score_prepared(items, rank)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row error below
            if len(items) == 1:
                return [{"error": RowError(f"model failed: {type(exc).__name__}: {_first_line(exc)}")}]
            self._learn_memory_limit(exc, len(items))
            _release_accelerator_memory(exc)
            middle = len(items) // 2
            return self._score_isolating_failures(items[:middle], rank) + self._score_isolating_failures(
                items[middle:], rank
            )

    def _learn_memory_limit(self, exc: BaseException, rows: int) -> None:
        """After a real out-of-memory error (``torch.OutOfMemoryError``) on ``rows`` rows, call the
        model with at most ``rows // 2`` rows from now on (this scorer object, this process)."""
        import torch

        if isinstance(exc, torch.OutOfMemoryError) and (self._rows_that_fit is None or rows // 2 < self._rows_that_fit):
            self._rows_that_fit = rows // 2
            logger.warning("%s: %d rows ran out of accelerator memory; scoring at most %d rows per model call "
                           "from now on (a smaller micro_batch_size avoids the failed attempts)",
                           type(self).__name__, rows, self._rows_that_fit)

    def _columns(self, results: list[dict[str, Any] | None], errors: list[str]) -> dict[str, list[Any]]:
        features = self.output_features()
        columns: dict[str, list[Any]] = {name: [] for name in features}
        for result, error in zip(results, errors):
            for name in features:
                if name == self.error_column:
                    columns[name].append(error)
                elif result is None or name not in result:
                    columns[name].append(_missing_value(features[name]))
                else:
                    columns[name].append(result[name])
        for name, feature in features.items():
            if is_float_feature(feature) or (isinstance(feature, List) and is_float_feature(feature.feature)):
                columns[name] = np.asarray(columns[name], dtype=np.float32)
        return columns


def _batch_size(batch: Batch) -> int:
    sizes = {len(values) for values in batch.values()}
    if len(sizes) > 1:
        raise ValueError(f"batch columns have different lengths: {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def is_float_feature(feature: Any) -> bool:
    """Whether ``feature`` is a float ``Value`` (a score column)."""
    return isinstance(feature, Value) and feature.dtype.startswith("float")


def _missing_value(feature: Any) -> Any:
    """The value of a column for a row that was not scored: never ``None`` (see module docstring)."""
    if is_float_feature(feature):
        return math.nan
    if isinstance(feature, List) and is_float_feature(feature.feature) and feature.length > 0:
        return [math.nan] * feature.length
    if isinstance(feature, Value) and feature.dtype == "string":
        return ""
    raise TypeError(f"no missing-value convention for feature {feature!r}")


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _release_accelerator_memory(exc: BaseException) -> None:
    if "out of memory" in str(exc).lower():
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass


def map_with_scorer(dataset: Any, scorer: Scorer, **map_kwargs: Any) -> Any:
    """``dataset.map(scorer, batched=True, features=...)`` with the output schema declared.

    Works on ``Dataset`` and ``IterableDataset`` alike; for a streaming dataset the declared
    features keep the schema that ``IterableDataset.map`` would otherwise drop.

    Example:
        >>> from datasets import load_dataset                          # doctest: +SKIP
        >>> ds = load_dataset("parquet", data_files="pairs.parquet", split="train", streaming=True)  # doctest: +SKIP
        >>> scored = map_with_scorer(ds, VLMJudge(model="./judge"), batch_size=16)   # doctest: +SKIP
    """
    map_kwargs.setdefault("batched", True)
    features = getattr(dataset, "features", None)
    if features is not None:
        map_kwargs.setdefault("features", scorer.output_features(features))
    return dataset.map(scorer, **map_kwargs)
