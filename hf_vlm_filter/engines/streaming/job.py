"""A resumable streaming score/filter job: read a stream, score, keep, write bounded Parquet shards,
publish each finished shard, checkpoint, and end with the run record.

One process (or one torchrun rank) runs :func:`run_streaming_filter`; when every rank is done,
:func:`finalize_job` merges their states into ``manifest.json`` and ``summary.txt`` and hands the
merged :class:`JobResult` to its finishers (the dataset card, the Hub commit: see
:mod:`hf_vlm_filter.hub`). :func:`streaming_filter_job` does both for a single process. Folder layout
(details and the atomicity rules in :mod:`hf_vlm_filter.engines.streaming.state`)::

    OUT/data/train-r{rank:03d}-{index:05d}.parquet    kept rows; published to the same path in the repo
    OUT/state/rank-{rank:03d}.json                    RankState: dataset state_dict, next shard, counters, done
    OUT/state/rank-{rank:03d}-carry-{n:05d}.parquet   kept rows not yet in a shard
    OUT/manifest.json, summary.txt                    finalize_job (README.md, score_histogram.png: the card finisher)

How a rank works:

* The source is split with ``datasets.distributed.split_dataset_by_node(ds, rank, world_size)``
  (``rank`` / ``world_size`` default to the ``RANK`` / ``WORLD_SIZE`` environment variables that
  torchrun sets, else 0 / 1), scored with ``map_with_scorer`` and read as Arrow batches.
* Each batch is decided by the :class:`~hf_vlm_filter.engines.keep_rule.KeepRule` and counted in the
  :class:`~hf_vlm_filter.engines.summary.RunSummary`; the kept rows are buffered and cut into shards
  of ``shard_rows`` rows (fewer when ``max_shard_bytes`` of Arrow data is reached first); the last
  shard holds the rest.
* A checkpoint follows every batch that completed a shard, and every ``checkpoint_every`` batches:
  shards are renamed into place first, then the kept rows still buffered (carry file), then the
  state JSON, which records ``IterableDataset.state_dict()`` taken after the whole batch was
  consumed. A job killed at any instant (even ``kill -9``) resumes from its last state with
  ``resume=True``: leftover files are deleted, the stream restarts where the state says, and the
  output is row for row the output of an uninterrupted run (``datasets`` replays a partly consumed
  ``map`` batch from its start, so the scorer sees the same batches).
* The job's identity — the context (source, split, limit), every scorer's configuration (all
  fields that can change a score), the keep rule, the shard layout and the publisher's target — is
  saved with the first state; resuming with any of them changed is refused, naming what changed.
* With a ``publisher`` (e.g. :class:`hf_vlm_filter.hub.HubPublisher`), each shard is published right
  after the checkpoint that names it; the state records published shards. A publish that fails
  stops the job; the shard stays on disk and resuming publishes it first.

Example:
    >>> from hf_vlm_filter import VLMJudge
    >>> from hf_vlm_filter.engines import KeepRule, RunContext
    >>> from hf_vlm_filter.hub import DatasetCardWriter
    >>> from hf_vlm_filter.inputs.sources import load_source
    >>> ds, root = load_source("user/pairs", streaming=True)                          # doctest: +SKIP
    >>> judge = VLMJudge("./judge", image_root=root)                                  # doctest: +SKIP
    >>> rule = KeepRule.from_thresholds(judge, {"judge_score": 9.0})                  # doctest: +SKIP
    >>> streaming_filter_job(ds, judge, "out/job", RunContext("user/pairs"), rule,
    ...                      finishers=[DatasetCardWriter()], resume=True)            # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ...scorers.config import identity
from ..keep_rule import KeepRule
from ..observers import RowObserver
from ..options import JobOptions, OutputSpec
from ..run_record import FilterRun, RunContext
from ..summary import RunSummary
from .state import (
    DATA_DIR,
    MANIFEST,
    RankState,
    ShardRecord,
    atomic_write_bytes,
    atomic_write_table,
    shard_name,
    side_file_name,
)

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.txt"
#: The column of rejected rows that says which rule dropped them.
DROPPED_BY = "dropped_by"


class JobStateError(RuntimeError):
    """The job folder holds a job that cannot be continued as asked (resume mismatch, not finished...)."""


class ShardPublisher(Protocol):
    """Where finished shards go while a job runs (the Hub, a bucket...)."""

    #: Where the shards go, in words (``"hf://datasets/me/pairs-hq"``); part of the job's identity.
    target: str

    def open(self) -> None:
        """Prepare the target (create the repository); called before the first shard."""

    def put_shard(self, local_path: Path, path_in_repo: str) -> None:
        """Publish one finished shard; raise to stop the job (resuming publishes it again)."""


class JobFinisher(Protocol):
    """What runs once a job is merged: writing the dataset card, committing it, a report..."""

    def finish(self, result: JobResult) -> None:
        """Act on the merged result (files go under ``result.out_dir``)."""


def node_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the arguments, else ``RANK`` / ``WORLD_SIZE`` from the environment, else 0 / 1."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    return rank, world_size


@dataclass
class JobResult:
    """What :func:`finalize_job` produced: the merged run record, shards in order, and where it is."""

    run: FilterRun
    shards: list[ShardRecord]
    out_dir: Path
    published_to: str | None = None
    rejected_shards: list[ShardRecord] = field(default_factory=list)
    observers: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return sum(shard.rows for shard in self.shards)


def job_identity(context: RunContext, scorer: Any, rule: KeepRule, options: JobOptions, world_size: int,
                 publisher: ShardPublisher | None, outputs: OutputSpec = OutputSpec()) -> dict[str, Any]:
    """Everything that decides the output of a job, JSON-ready: a resumed job must match it."""
    where = asdict(context)
    where.pop("command")
    where.pop("recipe")
    return {
        "run": FilterRun.of(RunContext(**where), scorer, rule).to_dict(),
        "configs": [{"class": type(member).__name__, **identity(member.config)} for member in scorer.members()],
        "options": options.identity(), "world_size": world_size,
        "publisher": publisher.target if publisher is not None else None,
        "outputs": outputs.identity(),
    }


def run_streaming_filter(
    dataset: Any,
    scorer: Any,
    out_dir: str | Path,
    context: RunContext,
    rule: KeepRule = KeepRule(),
    options: JobOptions = JobOptions(),
    *,
    resume: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    publisher: ShardPublisher | None = None,
    outputs: OutputSpec = OutputSpec(),
    observers: Sequence[RowObserver] = (),
) -> RankState:
    """Score this rank's part of the ``IterableDataset`` ``dataset`` into ``out_dir`` under ``rule``.

    ``outputs`` says how rows are written (format, transform, a folder for the rejected rows);
    ``observers`` see every scored batch and are checkpointed with the rank.

    Returns the final :class:`RankState`. Raises :class:`JobStateError` when ``out_dir`` already
    holds this rank's state and ``resume`` is false, or when the saved job differs from this one;
    ``ValueError`` for a fraction rule (its cut-off needs every row: score first, then select).
    """
    from datasets import IterableDataset

    if not isinstance(dataset, IterableDataset):
        raise TypeError(f"run_streaming_filter needs an IterableDataset (streaming=True), got {type(dataset).__name__}")
    if rule.needs_whole_column:
        raise ValueError(f"{rule.criteria}: a fraction needs every row's score; a streaming job keeps rows by "
                         "threshold (score the stream, then select the fraction from its output)")
    rule.check_columns(scorer)
    rank, world_size = node_rank(rank, world_size)
    out_dir = Path(out_dir)
    job = job_identity(context, scorer, rule, options, world_size, publisher, outputs)
    state = _start_state(out_dir, rank, world_size, job, resume, outputs.rejected_dir)
    if publisher is not None:
        publisher.open()
        _publish_pending(state, out_dir, publisher)
    if state.done:
        return state
    writer = _RankWriter(dataset, scorer, out_dir, state, rule, options, publisher, outputs, observers)
    writer.run()
    return state


def finalize_job(
    out_dir: str | Path,
    *,
    finishers: Sequence[JobFinisher] = (),
    command: str | None = None,
    recipe: str | None = None,
    published_to: str | None = None,
    observers: Sequence[RowObserver] = (),
) -> JobResult:
    """Merge every rank's state into ``manifest.json`` and ``summary.txt`` in ``out_dir``, then run
    each finisher on the result (the card writer, the Hub commit...).

    Each of ``observers`` is set to every rank's saved state, merged (its own state is replaced), and
    handed to the finishers in ``result.observers``.

    ``published_to``: the target every shard must have been published to (``JobStateError`` otherwise).
    Raises :class:`JobStateError` when a rank is missing or not done.
    """
    out_dir = Path(out_dir)
    first = RankState.load(out_dir, 0)
    if first is None:
        raise JobStateError(f"{out_dir} holds no job state (state/rank-000.json is missing)")
    states, unfinished = RankState.load_all(out_dir, first.world_size)
    if unfinished:
        raise JobStateError(f"ranks {unfinished} of {out_dir} have not finished; resume them first")
    summary = RunSummary.from_dict(states[0].summary)
    for state in states[1:]:
        summary = summary.merge(RunSummary.from_dict(state.summary))
    run = FilterRun.from_dict({**states[0].job["run"], "summary": summary.to_dict(), "command": command,
                               "recipe": recipe})
    shards = [shard for state in states for shard in state.shards]
    if published_to is not None:
        missing = [path for state in states for path in state.pending_uploads()]
        if missing or any(state.job.get("publisher") != published_to for state in states):
            raise JobStateError(f"shards not published to {published_to}: {missing or 'the job published elsewhere'}")
    rejected = [shard for state in states for shard in state.rejected_shards]
    manifest = {"run": run.to_dict(), "world_size": first.world_size,
                "shards": [shard.__dict__ for shard in shards], "published_to": published_to,
                "rejected_shards": [shard.__dict__ for shard in rejected],
                "rejected_dir": states[0].job.get("outputs", {}).get("rejected_dir")}
    atomic_write_bytes(out_dir / MANIFEST, json.dumps(manifest, indent=1).encode())
    atomic_write_bytes(out_dir / SUMMARY_FILE, (summary.render() + "\n").encode())
    merged = {}
    for observer in observers:
        saved = [(out_dir / state.observer_files[observer.name]).read_bytes()
                 for state in states if observer.name in state.observer_files]
        if saved:
            observer.load(saved[0])
            observer.merge(saved[1:])
        merged[observer.name] = observer
    result = JobResult(run=run, shards=shards, out_dir=out_dir, published_to=published_to,
                       rejected_shards=rejected, observers=merged)
    for finisher in finishers:
        finisher.finish(result)
    return result


def streaming_filter_job(
    dataset: Any, scorer: Any, out_dir: str | Path, context: RunContext, rule: KeepRule = KeepRule(),
    options: JobOptions = JobOptions(), *, finishers: Sequence[JobFinisher] = (), **rank_options: Any,
) -> JobResult:
    """:func:`run_streaming_filter` on one process (rank 0 of 1), then :func:`finalize_job`."""
    rank_options.setdefault("rank", 0)
    rank_options.setdefault("world_size", 1)
    observers = rank_options.pop("observers", ())
    run_streaming_filter(dataset, scorer, out_dir, context, rule, options, observers=observers, **rank_options)
    publisher = rank_options.get("publisher")
    return finalize_job(out_dir, finishers=finishers, command=context.command, recipe=context.recipe,
                        published_to=publisher.target if publisher is not None else None, observers=observers)


def read_job_output(out_dir: str | Path) -> Any:
    """All kept rows of a job folder as one Arrow table, shards in order (rank, then index)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    paths = sorted((out_dir / DATA_DIR).glob("train-r*-*.parquet"))
    return pa.concat_tables([pq.read_table(path) for path in paths]) if paths else pa.table({})


def read_rejected_rows(rejected_dir: str | Path) -> Any:
    """The rejected rows a job wrote (Parquet format), shards in order."""
    return read_job_output(rejected_dir)


# ---- internals ------------------------------------------------------------------------------------


def _start_state(out_dir: Path, rank: int, world_size: int, job: dict[str, Any], resume: bool,
                 rejected_dir: Path | None = None) -> RankState:
    state = RankState.load(out_dir, rank)
    if state is None:
        stale = sorted((out_dir / DATA_DIR).glob(f"train-r{rank:03d}-*"))
        if stale:
            raise JobStateError(f"{out_dir / DATA_DIR} already holds shards of rank {rank} but no state; use a fresh --out")
        state = RankState(rank=rank, world_size=world_size, job=job)
        state.save(out_dir)
        return state
    if not resume:
        raise JobStateError(
            f"{out_dir} already holds a job (state/rank-{rank:03d}.json); pass resume=True (--resume) to continue it, "
            "or use a fresh output folder"
        )
    saved, wanted = state.job, json.loads(json.dumps(job))
    if saved != wanted:
        raise JobStateError(f"cannot resume {out_dir}: the job differs from the saved one in "
                            f"{', '.join(_differences(saved, wanted)) or 'its layout'}; use a fresh output folder "
                            "or the options of the saved job")
    removed = state.remove_leftovers(out_dir, rejected_dir)
    if removed:
        logger.info("resume: removed %d files written after the last checkpoint", len(removed))
    return state


def _differences(saved: Any, wanted: Any, path: str = "") -> list[str]:
    """The dotted paths where two JSON values differ, with both values (``limit: 3 -> 5``)."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        found: list[str] = []
        for key in sorted(set(saved) | set(wanted)):
            found += _differences(saved.get(key), wanted.get(key), f"{path}.{key}" if path else str(key))
        return found
    if isinstance(saved, list) and isinstance(wanted, list) and len(saved) == len(wanted):
        found = []
        for index, (a, b) in enumerate(zip(saved, wanted)):
            found += _differences(a, b, f"{path}[{index}]")
        return found
    return [] if saved == wanted else [f"{path} (saved {saved!r}, now {wanted!r})"]


def _publish_pending(state: RankState, out_dir: Path, publisher: ShardPublisher) -> None:
    for path in state.pending_uploads():
        publisher.put_shard(out_dir / path, path)
        state.uploaded.append(path)
        state.save(out_dir)


def _warn_if_every_rank_reads_every_row(dataset: Any, world_size: int) -> None:
    """``split_dataset_by_node`` gives whole files to ranks only when their number divides by the
    world size; otherwise every rank reads (downloads, decodes) every row and keeps its share."""
    files = getattr(dataset, "num_shards", None)
    if files and files % world_size:
        logger.warning(
            "the source has %d file(s) for %d ranks: every rank reads every row and keeps one in %d; "
            "give it a multiple of %d files to read each file once", files, world_size, world_size, world_size,
        )


class _ShardStream:
    """Rows buffered and cut into bounded shards in one folder (the kept rows, or the rejected ones):
    the shard records and next index live in the rank state; unwritten rows go to a carry file."""

    def __init__(self, folder: Path, state: RankState, kind: str, fmt: Any, options: JobOptions, schema: Any) -> None:
        self.folder, self.state, self.kind, self.fmt, self.options, self.schema = folder, state, kind, fmt, options, schema
        self.buffer: Any = None
        self.new: list[str] = []

    # the rank state's fields of this stream
    @property
    def records(self) -> list[ShardRecord]:
        return self.state.shards if self.kind == "kept" else self.state.rejected_shards

    @property
    def next_index(self) -> int:
        return self.state.next_shard if self.kind == "kept" else self.state.rejected_next_shard

    @property
    def carry_key(self) -> str:
        return "carry_file" if self.kind == "kept" else "rejected_carry_file"

    def add(self, table: Any) -> None:
        import pyarrow as pa

        if table.num_rows:
            self.buffer = table if self.buffer is None else pa.concat_tables([self.buffer, table])
        self.cut(final=False)

    def cut(self, final: bool) -> None:
        while self.buffer is not None and self.buffer.num_rows and (self.buffer.num_rows >= self._limit() or final):
            count = min(self._limit(), self.buffer.num_rows)
            self._write(self.buffer.slice(0, count))
            rest = self.buffer.slice(count)
            self.buffer = rest if rest.num_rows else None
        if final and self.kind == "kept" and not self.records and self.schema is not None:
            # Nothing kept: one empty shard keeps the schema, so the output still loads.
            self._write(self.schema.empty_table())

    def _limit(self) -> int:
        """Rows of the next shard: ``shard_rows``, fewer when ``max_shard_bytes`` is reached first."""
        rows, limit = self.options.shard_rows, self.options.max_shard_bytes
        per_row = self.buffer.nbytes / max(self.buffer.num_rows, 1)
        return max(1, min(rows, math.floor(limit / per_row) if per_row else rows))

    def _write(self, table: Any) -> None:
        name = shard_name(self.state.rank, self.next_index + len(self.new), self.fmt.suffix)
        size = self.fmt.write(self.folder / name, table.combine_chunks())
        self.records.append(ShardRecord(path=name, rows=table.num_rows, bytes=size))
        self.new.append(name)

    def checkpoint(self, out_dir: Path) -> str | None:
        """Save the carry and advance the next index (the caller saves the state); returns the
        superseded carry file, to delete once the state is saved."""
        old = getattr(self.state, self.carry_key)
        carry = None
        if self.buffer is not None and self.buffer.num_rows:
            kind = "carry" if self.kind == "kept" else "rejected-carry"
            carry = side_file_name(self.state.rank, kind, self.state.checkpoint)
            atomic_write_table(out_dir / carry, self.buffer.combine_chunks())
        setattr(self.state, self.carry_key, carry)
        if self.kind == "kept":
            self.state.next_shard += len(self.new)
        else:
            self.state.rejected_next_shard += len(self.new)
        self.new = []
        return old if old and old != carry else None

    def restore(self, out_dir: Path) -> None:
        import pyarrow.parquet as pq

        name = getattr(self.state, self.carry_key)
        if name is not None:
            table = pq.read_table(out_dir / name)
            self.buffer = table.cast(self.schema) if self.schema is not None else table


class _RankWriter:
    """The scoring loop of one rank: batches in; kept (and rejected) shards, observers and checkpoints out."""

    def __init__(self, dataset: Any, scorer: Any, out_dir: Path, state: RankState, rule: KeepRule,
                 options: JobOptions, publisher: ShardPublisher | None, outputs: OutputSpec,
                 observers: Sequence[RowObserver]) -> None:
        from datasets.distributed import split_dataset_by_node

        from ...scorers.base import map_with_scorer

        self.out_dir, self.state, self.rule, self.options, self.publisher = out_dir, state, rule, options, publisher
        self.observers = list(observers)
        if state.world_size > 1:
            _warn_if_every_rank_reads_every_row(dataset, state.world_size)
            dataset = split_dataset_by_node(dataset, rank=state.rank, world_size=state.world_size)
        scored = map_with_scorer(dataset, scorer, batch_size=options.batch_size)
        if outputs.transform is not None:
            scored = outputs.transform(scored)
        self.features = scored.features
        self.schema = self.features.arrow_schema if self.features is not None else None
        # Python batches, turned into Arrow here with the declared schema: datasets' own Arrow
        # rebatching infers each batch's types, and a batch whose cells are all None becomes a
        # ``null`` column that cannot be concatenated with the next one.
        self.stream = scored
        if state.dataset_state is not None:
            self.stream.load_state_dict(state.dataset_state)
        self.summary = (RunSummary.from_dict(state.summary) if state.summary else RunSummary.for_scorer(scorer, rule))
        self.columns = list(dict.fromkeys(name for spec in self.summary.specs
                                          for name in (spec.column, spec.error_column)))
        fmt = outputs.shard_format()
        self.kept = _ShardStream(out_dir, state, "kept", fmt, options, self.schema)
        self.rejected = None
        if outputs.rejected_dir is not None:
            import pyarrow as pa

            schema = self.schema.append(pa.field(DROPPED_BY, pa.string())) if self.schema is not None else None
            self.rejected = _ShardStream(Path(outputs.rejected_dir), state, "rejected", fmt, options, schema)
        for stream in (self.kept, self.rejected):
            if stream is not None:
                stream.restore(out_dir)
        for observer in self.observers:
            if observer.name in state.observer_files:
                observer.load((out_dir / state.observer_files[observer.name]).read_bytes())
        self._clock = time.perf_counter()

    def run(self) -> None:
        from tqdm.auto import tqdm

        batches_since_checkpoint = 0
        with tqdm(unit="rows", desc=f"scoring (rank {self.state.rank})", initial=self.summary.rows,
                  disable=not self.options.progress) as bar:
            for batch in self.stream.iter(batch_size=self.options.batch_size):
                table = self._table(batch)
                self._consume(table)
                bar.update(table.num_rows)
                batches_since_checkpoint += 1
                if self.kept.new or (self.rejected is not None and self.rejected.new) or (
                        batches_since_checkpoint >= self.options.checkpoint_every):
                    self._checkpoint(done=False)
                    batches_since_checkpoint = 0
        for stream in (self.kept, self.rejected):
            if stream is not None:
                stream.cut(final=True)
        self._checkpoint(done=True)

    def _table(self, batch: dict[str, list[Any]]) -> Any:
        """One batch as an Arrow table of the declared schema (PIL images encoded as ``Image()`` cells)."""
        import pyarrow as pa

        if self.features is None:
            return pa.Table.from_pydict(batch)
        return pa.Table.from_pydict(self.features.encode_batch(batch), schema=self.schema)

    def _consume(self, table: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        columns = {name: table.column(name).to_pylist() for name in
                   dict.fromkeys([*self.columns, *(rule.column for rule in self.rule.columns)])}
        verdicts = self.rule.decide(columns)
        self.summary.add(columns, verdicts)
        for observer in self.observers:
            observer.observe(table, verdicts)
        if not self.rule.is_filter:
            self.kept.add(table)
            return
        kept = pa.array([verdict == "" for verdict in verdicts], type=pa.bool_())
        self.kept.add(table.filter(kept))
        if self.rejected is not None:
            dropped = table.append_column(DROPPED_BY, pa.array(verdicts, type=pa.string()))
            self.rejected.add(dropped.filter(pc.invert(kept)))

    def _checkpoint(self, done: bool) -> None:
        state = self.state
        state.checkpoint += 1
        superseded = [self.kept.checkpoint(self.out_dir)]
        if self.rejected is not None:
            superseded.append(self.rejected.checkpoint(self.out_dir))
        for observer in self.observers:
            name = side_file_name(state.rank, f"observer-{observer.name}", state.checkpoint, ".bin")
            atomic_write_bytes(self.out_dir / name, observer.dump())
            superseded.append(state.observer_files.get(observer.name))
            state.observer_files[observer.name] = name
        state.dataset_state = copy.deepcopy(self.stream.state_dict())
        now = time.perf_counter()
        self.summary.elapsed_seconds += now - self._clock
        self._clock = now
        state.summary = self.summary.to_dict()
        state.done = done
        state.save(self.out_dir)
        for old in superseded:
            if old:
                (self.out_dir / old).unlink(missing_ok=True)
        if self.publisher is not None:
            _publish_pending(state, self.out_dir, self.publisher)
