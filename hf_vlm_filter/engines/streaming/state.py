"""The on-disk layout of a streaming filter job and its per-rank resume state, written atomically.

Layout of a job folder (``rank`` and shard ``index`` zero-padded)::

    OUT/data/train-r{rank:03d}-{index:05d}.parquet     kept rows, in stream order, shard by shard
    OUT/state/rank-{rank:03d}.json                     resume state of one rank (RankState)
    OUT/state/rank-{rank:03d}-carry-{n:05d}.parquet    kept rows not yet in a shard at checkpoint n
    OUT/state/rank-{rank:03d}-rejected-carry-{n:05d}.parquet  rejected rows not yet in a shard (``--rejected-out``)
    OUT/state/rank-{rank:03d}-observer-{name}-{n:05d}.bin     what a row observer (a report's sample) holds
    REJECTED/data/train-r{rank:03d}-{index:05d}.parquet  rejected rows, with ``dropped_by`` (``--rejected-out``)
    OUT/manifest.json, summary.txt                     written by finalize_job (and the card by its finishers)

Shards are ``.parquet`` or, with the WebDataset output format, ``.tar``.

Every file is written to a temporary name and renamed into place, and a rank's state is written
after the shards and the carry file it names: whatever instant a process dies at, the state on disk
describes complete files, and files it does not name (a shard at or beyond ``next_shard``, an
unlisted carry file) are leftovers that resuming deletes. The state's summary holds the counts and
the mergeable score histograms of every row read, so no score needs to be kept elsewhere.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = "data"
STATE_DIR = "state"
MANIFEST = "manifest.json"
SHARD_PATTERN = re.compile(r"^train-r(\d{3})-(\d{5})\.(parquet|tar)$")


def shard_name(rank: int, index: int, suffix: str = ".parquet") -> str:
    """Repo-relative path of shard ``index`` of ``rank``: ``data/train-r000-00000.parquet``."""
    return f"{DATA_DIR}/train-r{rank:03d}-{index:05d}{suffix}"


def state_path(out_dir: Path, rank: int) -> Path:
    """Path of the resume state of ``rank``."""
    return Path(out_dir) / STATE_DIR / f"rank-{rank:03d}.json"


def side_file_name(rank: int, kind: str, checkpoint: int, suffix: str = ".parquet") -> str:
    """Path (relative to the job folder) of a side file of a checkpoint (``kind``: ``carry``,
    ``rejected-carry``, ``observer-{name}``)."""
    return f"{STATE_DIR}/rank-{rank:03d}-{kind}-{checkpoint:05d}{suffix}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_table(path: Path, table: Any) -> int:
    """Write an Arrow table as Parquet to ``path`` atomically; returns the file size in bytes."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path.stat().st_size


@dataclass
class ShardRecord:
    """One finished shard: its repo-relative path, rows and bytes on disk."""

    path: str
    rows: int
    bytes: int


@dataclass
class RankState:
    """Resume state of one rank (see the module docstring).

    ``dataset_state`` is ``IterableDataset.state_dict()`` taken after every row counted in
    ``summary`` was consumed; ``next_shard`` the index the next shard will get; ``carry_file`` holds
    kept rows consumed but not yet in a shard; ``uploaded`` the shards already published;
    ``rejected_*`` the same for the rejected rows (paths relative to the rejected folder);
    ``observer_files`` each row observer's saved state; ``done`` is set when the stream is exhausted.
    """

    rank: int
    world_size: int
    job: dict[str, Any]
    next_shard: int = 0
    checkpoint: int = 0
    dataset_state: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    carry_file: str | None = None
    shards: list[ShardRecord] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    rejected_next_shard: int = 0
    rejected_carry_file: str | None = None
    rejected_shards: list[ShardRecord] = field(default_factory=list)
    observer_files: dict[str, str] = field(default_factory=dict)
    done: bool = False

    def save(self, out_dir: Path) -> None:
        """Write the state atomically to ``state/rank-NNN.json``."""
        atomic_write_bytes(state_path(out_dir, self.rank), json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, out_dir: Path, rank: int) -> "RankState | None":
        """The saved state of ``rank``, or ``None`` when there is none."""
        path = state_path(out_dir, rank)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["shards"] = [ShardRecord(**shard) for shard in data.get("shards", [])]
        data["rejected_shards"] = [ShardRecord(**shard) for shard in data.get("rejected_shards", [])]
        return cls(**data)

    @classmethod
    def load_all(cls, out_dir: Path, world_size: int) -> "tuple[list[RankState | None], list[int]]":
        """The states of ranks ``0 .. world_size - 1`` (``None`` where missing) and the ranks that
        are missing or not done yet."""
        states = [cls.load(out_dir, rank) for rank in range(world_size)]
        return states, [rank for rank, state in enumerate(states) if state is None or not state.done]

    def pending_uploads(self) -> list[str]:
        """Finished shards not yet uploaded, in order."""
        done = set(self.uploaded)
        return [shard.path for shard in self.shards if shard.path not in done]

    def remove_leftovers(self, out_dir: Path, rejected_dir: Path | None = None) -> list[Path]:
        """Delete this rank's files that the state does not name (work after the last checkpoint)."""
        out_dir = Path(out_dir)
        removed = _remove_shards_from(out_dir / DATA_DIR, self.rank, self.next_shard)
        if rejected_dir is not None:
            removed += _remove_shards_from(Path(rejected_dir) / DATA_DIR, self.rank, self.rejected_next_shard)
        named = {self.carry_file, self.rejected_carry_file, *self.observer_files.values()}
        for path in sorted((out_dir / STATE_DIR).glob(f"rank-{self.rank:03d}-*")):
            if path.suffix in (".parquet", ".bin") and f"{STATE_DIR}/{path.name}" not in named:
                path.unlink()
                removed.append(path)
        for path in (out_dir / STATE_DIR).glob(f".rank-{self.rank:03d}*.tmp-*"):
            path.unlink(missing_ok=True)
        return removed


def _remove_shards_from(folder: Path, rank: int, next_shard: int) -> list[Path]:
    """This rank's shards in ``folder`` numbered ``next_shard`` or more, and temporary files."""
    removed = []
    for path in sorted(folder.glob(f"train-r{rank:03d}-*")):
        match = SHARD_PATTERN.match(path.name)
        if match and int(match.group(2)) >= next_shard:
            path.unlink()
            removed.append(path)
    for path in folder.glob(f".train-r{rank:03d}-*.tmp-*"):
        path.unlink(missing_ok=True)
    return removed
