"""How an engine runs a job: batch sizes, shard bounds, checkpoints, progress (one object for all engines)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_BATCH_SIZE = 256  # rows per map batch: several micro-batches, so decoding overlaps the model
DEFAULT_SHARD_ROWS = 10_000
DEFAULT_MAX_SHARD_BYTES = 512 * 2**20
DEFAULT_CHECKPOINT_EVERY = 50


@dataclass(frozen=True)
class JobOptions:
    """Options of a run that change how it is cut, never which rows it keeps or their scores.

    Args:
        batch_size: rows per ``map`` batch (the scorer cuts it into micro-batches).
        shard_rows: streaming: rows per output shard at most.
        max_shard_bytes: streaming: Arrow bytes per output shard at most.
        checkpoint_every: streaming: batches between checkpoints (also after every finished shard).
        progress: show a progress bar.

    Example:
        >>> JobOptions(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: batch_size must be >= 1, got 0
    """

    batch_size: int = DEFAULT_BATCH_SIZE
    shard_rows: int = DEFAULT_SHARD_ROWS
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "shard_rows", "max_shard_bytes", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    def identity(self) -> dict[str, Any]:
        """The options a resumed job must keep (the shard layout depends on them)."""
        data = asdict(self)
        data.pop("progress")
        data.pop("checkpoint_every")
        return data


@dataclass(frozen=True)
class OutputSpec:
    """What a run writes besides the kept rows' scores: their format, their transform, the rejected rows.

    Args:
        format: the shard format (``ParquetFormat()``, or ``WebDatasetFormat(...)`` for tar shards).
        transform: applied to the scored rows before they are kept and written (e.g.
            :class:`~hf_vlm_filter.inputs.portable.PortableImages`).
        rejected_dir: when given, the rows the rule dropped are written there too, in the same format,
            with a ``dropped_by`` column saying which rule (``"judge_score < 9"``) or ``"error"``.
    """

    format: Any = None
    transform: Any = None
    rejected_dir: Any = None

    def shard_format(self) -> Any:
        from .shard_formats import ParquetFormat

        return self.format if self.format is not None else ParquetFormat()

    def identity(self) -> dict[str, Any]:
        """What a resumed job must keep (the bytes it writes depend on it)."""
        describe = (lambda value: value.to_dict() if hasattr(value, "to_dict") else
                    (repr(value) if value is not None else None))
        return {"format": describe(self.shard_format()), "transform": describe(self.transform),
                "rejected_dir": str(self.rejected_dir) if self.rejected_dir is not None else None}
