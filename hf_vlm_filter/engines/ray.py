"""Run any scorer on a Ray cluster with Ray Data: an actor pool, one model per actor, Parquet in and out.

Ray is an optional extra (``pip install 'hf_vlm_filter[ray]'``); ``import hf_vlm_filter`` never
imports it, only ``import hf_vlm_filter.engines.ray`` does.

* :class:`ScorerActor` is the callable class handed to ``ray.data.Dataset.map_batches``: its
  ``__init__`` loads the scorer's model once per actor (a scorer pickles to its frozen config, so
  Ray ships a few hundred bytes to each actor), its ``__call__`` takes a ``"pyarrow"``, ``"numpy"``
  or ``"pandas"`` batch, hands the scorer the dict of lists it expects, and returns the batch with
  the scorer's columns added (and, with a filtering ``rule``, only the kept rows). The scorer contract
  holds inside Ray: a row that cannot be scored gets ``NaN`` and a reason, never a failed task.
* :func:`score_with_ray` builds the whole pipeline: read (Parquet files or folders, ``hf://``
  Hub paths, a ``datasets.Dataset`` or a ``ray.data.Dataset``), score on ``concurrency`` actors
  with ``num_gpus`` each, optionally filter, optionally write Parquet.

Example:
    >>> import ray                                                                       # doctest: +SKIP
    >>> from hf_vlm_filter import KeepRule, VLMJudge
    >>> from hf_vlm_filter.engines.ray import score_with_ray                             # doctest: +SKIP
    >>> ray.init()                                                                       # doctest: +SKIP
    >>> judge = VLMJudge("Dauka-transformers/Compact_VLM_filter", micro_batch_size=64)
    >>> rule = KeepRule.from_thresholds(judge, {"judge_score": 9})
    >>> score_with_ray("s3://bucket/pairs/", judge, rule=rule, concurrency=8, num_gpus=1, batch_size=512,
    ...                output_path="s3://bucket/kept/")                                  # doctest: +SKIP

The recipe for a cluster is in ``examples/ray_cluster.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "hf_vlm_filter.ray needs Ray Data, which is an optional extra: pip install 'hf_vlm_filter[ray]'"
    ) from exc

from .keep_rule import KeepRule

BATCH_FORMATS = ("pyarrow", "numpy", "pandas")
HF_PREFIX = "hf://"

__all__ = ["BATCH_FORMATS", "ScorerActor", "read_source", "score_with_ray"]


class ScorerActor:
    """A scorer as a Ray Data callable class: the model is loaded once, in ``__init__``.

    Args:
        scorer: any scorer of this package (``VLMJudge``, ``ClipScorer``, ``CompositeScorer``…);
            only its configuration travels to the actor.
        rule: the keep rule; only the rows it keeps are returned (``None``: every row, a score run).
        load: load the model in ``__init__`` (default); ``False`` defers it to the first batch.

    Example:
        >>> import pyarrow as pa
        >>> from hf_vlm_filter import VLMJudge
        >>> actor = ScorerActor(VLMJudge("./judge"))                                     # doctest: +SKIP
        >>> actor(pa.table({"image": [png], "caption": ["a cat"]})).column_names         # doctest: +SKIP
        ['image', 'caption', 'judge_score', 'judge_error']
        >>> ds.map_batches(ScorerActor, fn_constructor_args=(judge,), concurrency=4,
        ...                num_gpus=1, batch_size=256, batch_format="pyarrow")            # doctest: +SKIP
    """

    def __init__(self, scorer: Any, rule: KeepRule | None = None, load: bool = True) -> None:
        if not callable(scorer) or not hasattr(scorer, "output_features") or not hasattr(scorer, "score_specs"):
            raise TypeError(f"ScorerActor needs a scorer of hf_vlm_filter, got {type(scorer).__name__}")
        self.scorer = scorer
        self.rule = rule if rule is not None and rule.is_filter else None
        self.features = scorer.output_features()
        if self.rule is not None:
            if self.rule.needs_whole_column:
                raise ValueError(f"{self.rule.criteria}: a fraction needs every row's score; Ray actors see one "
                                 "batch each (score first, then select the fraction)")
            self.rule.check_columns(scorer)
        if load:
            scorer.load()

    def __call__(self, batch: Any) -> Any:
        """Score a Ray Data batch (``pyarrow.Table``, dict of numpy arrays or ``pandas.DataFrame``)."""
        import pyarrow as pa

        if isinstance(batch, pa.Table):
            return self._call_arrow(batch)
        if isinstance(batch, Mapping):
            return self._call_numpy(batch)
        if type(batch).__name__ == "DataFrame":
            return self._call_pandas(batch)
        raise TypeError(f"ScorerActor takes a pyarrow, numpy or pandas batch, got {type(batch).__name__}")

    # ---- one method per batch format ------------------------------------------------------------
    def _score(self, rows: Mapping[str, list[Any]]) -> tuple[dict[str, Any], list[bool] | None]:
        columns = self.scorer(rows)
        mask = self.rule.mask(columns) if self.rule is not None else None
        return columns, mask

    def _call_arrow(self, table: Any) -> Any:
        import pyarrow as pa

        columns, mask = self._score(table.to_pydict())
        schema = self.features.arrow_schema
        for name in self.features:
            array = pa.array(_plain(columns[name]), type=schema.field(name).type)
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, array)
            else:
                table = table.append_column(name, array)
        return table if mask is None else table.filter(pa.array(mask, type=pa.bool_()))

    def _call_numpy(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        columns, mask = self._score({name: _plain(values) for name, values in batch.items()})
        out = dict(batch)
        for name in self.features:
            out[name] = _to_numpy(columns[name], self.features[name])
        if mask is not None:
            keep = np.asarray(mask, dtype=bool)
            out = {name: values[keep] for name, values in out.items()}
        return out

    def _call_pandas(self, frame: Any) -> Any:
        columns, mask = self._score({name: frame[name].tolist() for name in frame.columns})
        frame = frame.copy()
        for name in self.features:
            frame[name] = list(_plain(columns[name]))
        return frame if mask is None else frame[mask].reset_index(drop=True)


def read_source(source: Any, **read_options: Any) -> Any:
    """``source`` as a ``ray.data.Dataset``.

    ``source`` may be a ``ray.data.Dataset`` (returned as is), a ``datasets.Dataset`` (its Arrow
    table, for data already on the driver; a big Hub dataset is better read as ``hf://`` Parquet
    paths, so that Ray's workers read it in parallel), or Parquet file(s) / folder(s): local paths, cloud URIs
    (``s3://``, ``gs://``…) or ``hf://datasets/{repo}/{path}`` Hub paths (read through
    ``huggingface_hub.HfFileSystem``). ``read_options`` go to ``ray.data.read_parquet``.

    Example:
        >>> ds = read_source("hf://datasets/user/pairs/data/")                           # doctest: +SKIP
    """
    if isinstance(source, ray.data.Dataset):
        return source
    if type(source).__name__ == "IterableDataset" and hasattr(source, "features"):
        raise TypeError("score_with_ray reads a datasets.Dataset, not a streaming IterableDataset: pass the "
                        "dataset's Parquet files (hf://datasets/{repo}/... paths) instead")
    if type(source).__name__ == "Dataset" and hasattr(source, "features"):
        return ray.data.from_arrow(source.with_format("arrow")[:])  # the memory-mapped table, zero-copy
    paths = [str(source)] if isinstance(source, (str, Path)) else [str(path) for path in source]
    if not paths:
        raise ValueError("score_with_ray needs at least one Parquet path")
    hub = [path.startswith(HF_PREFIX) for path in paths]
    if any(hub):
        if not all(hub):
            raise ValueError("do not mix hf:// paths with other paths in one source")
        if "filesystem" not in read_options:
            from huggingface_hub import HfFileSystem, constants

            # The driver's endpoint travels with the filesystem to Ray's read tasks; each worker
            # authenticates with its own HF_TOKEN (no token is shipped from the driver).
            read_options["filesystem"] = HfFileSystem(endpoint=constants.ENDPOINT)
        paths = [path[len(HF_PREFIX):] for path in paths]
    else:
        missing = [path for path in paths if "://" not in path and not Path(path).exists()]
        if missing:
            raise FileNotFoundError(f"Parquet source not found: {missing}")
    return ray.data.read_parquet(paths if len(paths) > 1 else paths[0], **read_options)


def score_with_ray(
    source: Any,
    scorer: Any,
    *,
    rule: KeepRule | None = None,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float = 0,
    num_cpus: float | None = None,
    batch_size: int = 256,
    batch_format: str = "pyarrow",
    output_path: str | Path | None = None,
    read_options: Mapping[str, Any] | None = None,
) -> Any:
    """Score (and with a ``rule`` filter) ``source`` on a pool of Ray actors; returns a ``ray.data.Dataset``.

    Args:
        source: see :func:`read_source` (Parquet paths, ``hf://`` paths, a ``datasets.Dataset`` or a
            ``ray.data.Dataset``).
        scorer: any scorer of this package; each actor loads its model once.
        rule: the keep rule (a threshold rule); ``None`` keeps every row (a score run).
        concurrency: number of actors, or ``(min, max)`` for an autoscaling pool.
        num_gpus: GPUs per actor (1 for one judge per GPU; 0 on CPU-only clusters).
        num_cpus: CPUs per actor (Ray's default when ``None``).
        batch_size: rows per ``map_batches`` batch (the scorer cuts it into micro-batches).
        batch_format: ``"pyarrow"`` (default, no copies), ``"numpy"`` or ``"pandas"``.
        output_path: when given, the result is written there as Parquet (local folder or cloud
            URI) and the returned dataset reads it back lazily; otherwise the returned dataset is
            lazy and nothing runs until it is consumed.
        read_options: keyword arguments for ``ray.data.read_parquet``.

    Raises:
        ValueError: on a bad ``batch_format``, ``batch_size`` or ``num_gpus``, or a rule on a
            column the scorer does not write.
    """
    if batch_format not in BATCH_FORMATS:
        raise ValueError(f"batch_format must be one of {BATCH_FORMATS}, got {batch_format!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    if rule is not None:
        rule.check_columns(scorer)
    dataset = read_source(source, **dict(read_options or {}))
    resources: dict[str, Any] = {"num_gpus": num_gpus} if num_gpus else {}
    if num_cpus is not None:
        resources["num_cpus"] = num_cpus
    scored = dataset.map_batches(
        ScorerActor,
        fn_constructor_args=(scorer,),
        fn_constructor_kwargs={"rule": rule},
        batch_size=batch_size,
        batch_format=batch_format,
        concurrency=concurrency,
        **resources,
    )
    if output_path is None:
        return scored
    scored.write_parquet(str(output_path))
    return ray.data.read_parquet(str(output_path))


# ---- internals ------------------------------------------------------------------------------------


def _plain(values: Any) -> list[Any]:
    """A column as a list of Python cells: numpy arrays (the scorer's, or Ray's) become lists, object
    arrays keep their cells (dicts, bytes, None), tensor columns give one nested list per row; NaN stays NaN."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _to_numpy(values: Any, feature: Any) -> Any:
    import numpy as np
    from datasets import List, Value

    if isinstance(feature, Value) and feature.dtype == "string":
        return np.asarray(list(values), dtype=object)
    if isinstance(feature, Value) and feature.dtype.startswith("float"):
        return np.asarray(values, dtype=np.float32)
    if isinstance(feature, List) and isinstance(feature.feature, Value) and feature.feature.dtype.startswith("float"):
        return np.asarray(_plain(values), dtype=np.float32)  # fixed-length float lists: a tensor column
    return np.asarray(_plain(values))
