"""The scorer contract every scorer in this package follows, and the base class that implements it.

A scorer is a plain callable object shaped for ``datasets.Dataset.map(scorer, batched=True)``:

* **batch in, columns out** — ``scorer(batch)`` takes a batch (a dict of equal-length lists, as
  ``map(batched=True)`` passes it) and returns a dict holding only the scorer's *new* columns, one
  value per input row, in input order. ``datasets`` merges them with the input columns, so every
  input row, column and order is kept.
* **a bad row never sinks a batch** — a row that cannot be scored gets ``NaN`` in its score column
  and a short reason in its error column; rows that were scored have the empty string there (never
  ``None``: ``datasets`` fixes a column's type from the first batch written, and an all-``None``
  first batch would make the column unable to hold a reason later).
* **declared schema and meaning** — :meth:`Scorer.output_features` gives the new columns'
  ``Features`` (so a streaming ``IterableDataset.map(..., features=...)`` keeps its schema, see
  :func:`map_with_scorer`), and :attr:`Scorer.score_specs` each score's direction and range.
* **picklable configuration** — pickling keeps only the frozen config dataclass, never the model:
  ``datasets`` fingerprints stay stable (a second identical ``map`` reuses the cache) and ``num_proc``
  workers receive a few hundred bytes, then load the model themselves on first use.
* **engine-agnostic** — ``prepare`` (CPU: decoding, tokenising) and ``score_prepared`` (the model)
  are separate, as in transformers pipelines, so any engine can drive them (see
  :mod:`hf_vlm_filter.scorers.batching` for how one ``map`` batch is run). ``rank``
  (``map(with_rank=True)``) selects a GPU.

A subclass is declarative: it names its config class, its columns, its score's direction and range,
the config fields naming its input columns, its preprocessing (tokenizer, processor: built once per
process) and its two hooks. The base class builds it, caches processors and models per process,
checks columns with one message, and runs the batch::

    class MyScorer(Scorer):
        name = "mine"                                  # the registry / CLI name
        config_class = MyConfig                        # a frozen dataclass (see scorers.config)
        prefix = "mine"                                # columns mine_score and mine_error
        direction, score_range = "higher", (0.0, 1.0)
        input_fields = ("image_column", "text_column")
        preprocessing_class = _MyPreprocessing         # built from the config, once per process

        def load_model(self, device, dtype): ...
        def prepare(self, batch, index): ...           # one row, CPU; raise RowError for a bad row
        def score_prepared(self, items, rank=None): ...  # a micro-batch, the model

Column names: by default ``{prefix}_score`` and ``{prefix}_error``; a scorer sets ``score_name``
to name its score otherwise: ``prefix = "caption"``, ``score_name = "ppl"`` gives ``caption_ppl`` and
``caption_ppl_error``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from datasets import Features, Value

from ..inputs import ImagePolicy
from .batching import MAX_AUTO_WORKERS, PipelineOptions, score_batch
from .config import ScorerConfig
from .score_spec import ScoreSpec

Batch = Mapping[str, Sequence[Any]]
T = TypeVar("T")
S = TypeVar("S", bound="Scorer")

logger = logging.getLogger(__name__)
_CACHE_LOCK = threading.RLock()
#: Process-wide models, processors and scorers shared by every scorer (see ``Scorer.model`` / ``Scorer.shared``).
_SHARED: dict[Any, Any] = {}
#: The seed layout's image column, used when ``image_column`` is the default and absent.
SEED_IMAGE_COLUMN = "image_path"


def cached(cache: dict, key: Any, build: Callable[[], T]) -> T:
    """``cache[key]``, built once with ``build()`` under a process-wide lock (models, tokenizers…)."""
    with _CACHE_LOCK:
        if key not in cache:
            cache[key] = build()
        return cache[key]


class Scorer:
    """Base class: turns the declarations and the ``prepare``/``score_prepared`` hooks into the contract."""

    # ---- declarations (class attributes) ----------------------------------------------------
    #: The name the registry, the CLI's ``--scorer`` and the docs table use.
    name: ClassVar[str] = ""
    #: The frozen dataclass holding this scorer's options (its fields are what ``with_options``,
    #: ``fn_kwargs`` and the CLI may set).
    config_class: ClassVar[type[ScorerConfig]] = ScorerConfig
    #: One line for the docs table: the method and its paper.
    summary: ClassVar[str] = ""
    #: Column prefix: the scorer writes ``{prefix}_score`` and ``{prefix}_error``.
    prefix: ClassVar[str] = "score"
    #: Name of the score after the prefix; anything but ``"score"`` also renames the error column
    #: to ``{prefix}_{score_name}_error``.
    score_name: ClassVar[str] = "score"
    #: ``"higher"`` or ``"lower"``: which scores are better (the keep rule's direction).
    direction: ClassVar[str] = "higher"
    #: Declared ``(low, high)`` of the score (``None``: unbounded on that side).
    score_range: ClassVar[tuple[float | None, float | None]] = (None, None)
    #: Histogram edges of a rubric scale; ``None``: summaries bin the observed range.
    score_bins: ClassVar[tuple[float, ...] | None] = None
    #: Config fields naming the columns a row is read from (checked by :meth:`check_columns`).
    input_fields: ClassVar[tuple[str, ...]] = ()
    #: Built once per process from the config (tokenizer, image processor...); ``None``: nothing.
    preprocessing_class: ClassVar[Callable[[Any], Any] | None] = None
    #: Config fields the preprocessing depends on (its cache key).
    preprocessing_fields: ClassVar[tuple[str, ...]] = ("model", "revision")
    #: Config fields that identify the weights (scorers agreeing on them share one loaded model).
    model_fields: ClassVar[tuple[str, ...]] = ("model", "revision")
    #: Config fields naming checkpoints (local folders or Hub ids) whose contents are part of the
    #: scorer's identity: new weights in the same folder change its fingerprint and reload its model.
    checkpoint_fields: ClassVar[tuple[str, ...]] = ("model",)
    #: ``model_type`` s of the checkpoints this scorer reads (``None``: any); a local folder holding
    #: another kind is refused when the scorer loads, with one clear line.
    model_types: ClassVar[tuple[str, ...] | None] = None
    #: Options of this scorer the CLI exposes as flags (``--max-pixels`` for ``max_pixels``...).
    cli_fields: ClassVar[tuple[str, ...]] = ()
    #: Cap on the background workers picked automatically (``prefetch_workers=None``) on a GPU
    #: machine; ``None``: every core but one (decode-bound scorers).
    max_auto_prefetch_workers: ClassVar[int | None] = MAX_AUTO_WORKERS
    #: Most rows per model call after an out-of-memory error (``None``: no limit learned yet).
    _rows_that_fit: int | None = None

    def __init__(self, model: Any = None, **options: Any) -> None:
        if model is not None:
            options["model"] = str(model)
        self.config = self.config_class(**options)

    # ---- hooks for subclasses -------------------------------------------------------------
    def prepare(self, batch: Batch, index: int) -> Any:
        """CPU work for row ``index`` of ``batch``; raise :class:`~hf_vlm_filter.inputs.RowError` for a bad row."""
        raise NotImplementedError(f"{type(self).__name__} does not implement prepare")

    def score_prepared(self, items: list[Any], rank: int | None = None) -> list[dict[str, Any]]:
        """Model work for prepared rows; returns one dict of column values per item.

        Each dict holds the score column and any extra columns. An item-level failure may be
        reported by putting a :class:`~hf_vlm_filter.inputs.RowError` under the key ``"error"``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement score_prepared")

    def extra_features(self) -> dict[str, Any]:
        """Features of the columns this scorer writes besides score and error (default none)."""
        return {}

    def length_hint(self, batch: Batch, index: int) -> Any:
        """A cheap, sortable cost estimate of row ``index`` (``None``: rows are not grouped).

        Rows with equal hints are put in the same micro-batch so that little padding is needed (the
        judge returns its visual-token count, read from the image header without decoding). Should
        not raise; if it does, the row becomes an error with that reason.
        """
        return None

    def collate(self, items: list[Any], rank: int | None = None) -> Any:
        """Optional: stack prepared rows into model inputs on the CPU (default ``None``: not used).

        When it returns something, the pipeline calls it in a background thread and attaches the
        result to the :class:`~hf_vlm_filter.scorers.batching.PreparedBatch` it hands to
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

    def load_model(self, device: Any, dtype: Any) -> Any:
        """Load this scorer's model onto ``device`` in ``dtype``, in eval mode (scorers with a model)."""
        raise NotImplementedError(f"{type(self).__name__} has no model")

    def image_policy(self) -> ImagePolicy:
        """How this scorer decodes its images (``load_image``'s limits, ``image_root``, draft size).

        Scorers that decode with the same policy can share one decoded image (see
        :class:`~hf_vlm_filter.scorers.composite.CompositeScorer`).
        """
        return ImagePolicy(image_root=getattr(self.config, "image_root", None))

    def image_columns(self, batch: Batch) -> list[str]:
        """The columns holding one image per row that :meth:`prepare` decodes with :meth:`image_policy`."""
        if "image_column" not in self.input_fields:
            return []
        return [self.column(batch, "image_column")]

    def card_facts(self) -> list[dict[str, Any]]:
        """The facts a dataset card states about this scorer: registry name, class, checkpoint,
        revision, and the config fields in :attr:`cli_fields` (mode, pixel budget...)."""
        facts = {"scorer": self.name, "class": type(self).__name__, "model": getattr(self.config, "model", None),
                 "revision": getattr(self.config, "revision", None)}
        for name in self.cli_fields:
            value = getattr(self.config, name)
            facts[name] = list(value) if isinstance(value, tuple) else value
        return [facts]

    # ---- columns ----------------------------------------------------------------------------
    @property
    def score_column(self) -> str:
        return f"{self.prefix}_{self.score_name}"

    @property
    def error_column(self) -> str:
        if self.score_name == "score":
            return f"{self.prefix}_error"
        return f"{self.score_column}_error"

    @property
    def score_spec(self) -> ScoreSpec:
        """The main score column's spec (direction, range, rubric bins)."""
        low, high = self.score_range
        return ScoreSpec(self.score_column, self.error_column, self.direction, low, high, self.score_bins)

    @property
    def score_specs(self) -> tuple[ScoreSpec, ...]:
        """Every score column this scorer writes (the main one first)."""
        return (self.score_spec,)

    def output_features(self, input_features: Features | None = None) -> Features:
        """The new columns' features, merged after ``input_features`` when given.

        Example:
            >>> from hf_vlm_filter import VLMJudge
            >>> VLMJudge(model="./judge").output_features()["judge_score"]
            Value('float32')
        """
        new = {self.score_column: Value("float32"), self.error_column: Value("string")}
        for spec in self.score_specs[1:]:
            new[spec.column] = Value("float32")
        new.update(self.extra_features())
        merged = dict(input_features or {})
        merged.update(new)
        return Features(merged)

    def column(self, batch: Batch, field: str) -> str:
        """The batch column that config field ``field`` names; the seed layout's ``image_path``
        stands in for an absent default ``image`` column."""
        name = getattr(self.config, field)
        if field == "image_column" and name == "image" and name not in batch and SEED_IMAGE_COLUMN in batch:
            return SEED_IMAGE_COLUMN
        return name

    def check_columns(self, batch: Batch) -> None:
        """Raise ``KeyError`` naming the missing columns and the options that set them."""
        missing = {field: self.column(batch, field) for field in self.input_fields
                   if self.column(batch, field) not in batch}
        if missing:
            flags = " / ".join(f"{field}=..." for field in missing)
            raise KeyError(f"column(s) {list(missing.values())} not in the batch (columns: {sorted(batch)}); "
                           f"pass {flags} (fn_kwargs, or --{' / --'.join(f.replace('_', '-') for f in missing)})")

    def cell(self, batch: Batch, field: str, index: int) -> Any:
        """Row ``index`` of the column config field ``field`` names."""
        return batch[self.column(batch, field)][index]

    # ---- the protocol (see scorers.protocol) ------------------------------------------------
    def __call__(self, batch: Batch, rank: int | None = None) -> dict[str, Any]:
        """Score a batch; see the module docstring for the contract."""
        return score_batch(self, batch, rank)

    def members(self) -> tuple[Scorer, ...]:
        return (self,)

    def on_device(self: S, device: str) -> S:
        """This scorer on ``device`` when it is left on the default device (``None`` or ``"cuda"``)."""
        current = getattr(self.config, "device", None)
        if current not in (None, "cuda") or device == current:
            return self
        return self.with_options(device=device)

    # ---- loading (shared by every scorer with a model) ------------------------------------
    def checkpoint_identity(self) -> tuple[str | None, ...]:
        """What the checkpoints behind :attr:`checkpoint_fields` are now (a digest of a local folder's
        files, a Hub commit): part of the fingerprint and of the model and processor cache keys."""
        from ..models.loading import checkpoint_identity

        revision = getattr(self.config, "revision", None)
        return tuple(checkpoint_identity(getattr(self.config, name, None), revision) for name in self.checkpoint_fields)

    @property
    def preprocessing(self) -> Any:
        """The tokenizer / processor bundle of :attr:`preprocessing_class`, built once per process
        (and again when the checkpoint changes)."""
        if self.preprocessing_class is None:
            return None
        key = (*(getattr(self.config, name) for name in self.preprocessing_fields), self.checkpoint_identity())
        return self.shared(self.preprocessing_class, key)

    def load_processors(self) -> Any:
        """Load tokenizers / processors now (the :attr:`preprocessing` bundle)."""
        return self.preprocessing

    def model_key(self) -> tuple:
        """The config values that identify the weights (:attr:`model_fields`) and what the
        checkpoints are now (:meth:`checkpoint_identity`)."""
        return (*(getattr(self.config, name, None) for name in self.model_fields), self.checkpoint_identity())

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

    def has_model(self) -> bool:
        return type(self).load_model is not Scorer.load_model

    def check_checkpoint_kind(self) -> None:
        """Refuse a local checkpoint of another kind (a CLIP folder given to the judge) before loading it."""
        from ..models.loading import CheckpointUnavailableError, local_model_type

        model = getattr(self.config, "model", None)
        kind = local_model_type(model) if self.model_types and model else None
        if kind is not None and kind not in self.model_types:
            raise CheckpointUnavailableError(
                f"{model!r} holds a {kind!r} checkpoint; the {self.name} scorer reads {' / '.join(self.model_types)} "
                "checkpoints (pick another --scorer, or point --model at such a checkpoint)")

    def load(self, rank: int | None = None) -> Any:
        """Load processors and model now (so a bad id or an offline Hub fails here); returns the model."""
        self.check_checkpoint_kind()
        self.load_processors()
        return self.model(rank) if self.has_model() else None

    def shared(self, build: Callable[[Any], T], key: tuple) -> T:
        """``build(self.config)``, built once per process for ``(build, key)`` (tokenizers, processors…)."""
        return cached(_SHARED, ("shared", build, key), lambda: build(self.config))

    @classmethod
    def from_pretrained(cls: type[S], *args: Any, **options: Any) -> S:
        """Build a scorer (same arguments as the constructor) and load its checkpoint now."""
        scorer = cls(*args, **options)
        scorer.load()
        return scorer

    @classmethod
    def shared_instance(cls: type[S], **options: Any) -> S:
        """The process-wide scorer of this class for these :attr:`config_class` options (what the
        module-level map functions ``judge_scores``, ``clip_scores``… call on each batch)."""
        config = cls.config_class(**options)
        return cached(_SHARED, ("scorer", cls, config), lambda: cls.from_config(config))

    def pipeline_options(self) -> PipelineOptions:
        """Micro-batching and prefetch settings from the config's pipeline fields (defaults: the
        whole batch at once, in the calling thread)."""
        return PipelineOptions.from_config(self.config, self.resolved_device_type(), self.max_auto_prefetch_workers)

    def resolved_device_type(self) -> str:
        """``"cuda"`` or ``"cpu"``…: where this scorer's model runs (from ``config.device``)."""
        from ..models.loading import resolve_device

        return resolve_device(getattr(self.config, "device", None)).type

    # ---- configuration-only state ---------------------------------------------------------
    @classmethod
    def from_config(cls: type[S], config: Any) -> S:
        """A scorer of this class around an existing (frozen) config."""
        if not isinstance(config, cls.config_class):
            raise TypeError(f"{cls.__name__} needs a {cls.config_class.__name__}, got {type(config).__name__}")
        scorer = cls.__new__(cls)
        scorer.config = config
        return scorer

    def with_options(self: S, **options: Any) -> S:
        """A scorer of the same configuration with some options changed."""
        return self.from_config(replace(self.config, **options))

    @classmethod
    def option_fields(cls) -> tuple[str, ...]:
        """Every option (config field) of this scorer."""
        return tuple(item.name for item in dataclasses.fields(cls.config_class))

    def __getstate__(self) -> dict[str, Any]:
        """The config, and what its checkpoints are now: ``datasets`` fingerprints this, so scores
        cached for old weights are not reused after new ones are written into the same folder."""
        if not self.has_model():
            return {"config": self.config}
        return {"config": self.config, "checkpoint": self.checkpoint_identity()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def map_with_scorer(dataset: Any, scorer: Any, **map_kwargs: Any) -> Any:
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
