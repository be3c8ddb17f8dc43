"""A resumable streaming score/filter job: read a stream, score, filter, write bounded Parquet shards,
upload each finished shard, checkpoint, and end with a dataset card.

One process (or one torchrun rank) runs :func:`run_streaming_filter`; when every rank is done,
:func:`finalize_job` merges their states into ``manifest.json`` and writes (and pushes) the card.
:func:`streaming_filter_job` does both for a single process. Folder layout (details and the
atomicity rules in :mod:`hf_vlm_filter.jobs.state`)::

    OUT/data/train-r{rank:03d}-{index:05d}.parquet    kept rows; uploaded to the same path in the repo
    OUT/state/rank-{rank:03d}.json                    RankState: dataset state_dict, next shard, counters, done
    OUT/state/rank-{rank:03d}-{carry|scores}-{n:05d}.parquet   side files named by that state
    OUT/manifest.json, summary.txt, README.md, score_histogram.png    finalize_job

How a rank works:

* The source is split with ``datasets.distributed.split_dataset_by_node(ds, rank, world_size)``
  (``rank`` / ``world_size`` default to the ``RANK`` / ``WORLD_SIZE`` environment variables that
  torchrun sets, else 0 / 1), scored with ``map_with_scorer`` and read as Arrow batches.
* Each batch feeds the :class:`~hf_vlm_filter.summary.RunSummary`; ``threshold_filter`` picks the
  kept rows, which are buffered and cut into shards of ``shard_rows`` rows (fewer when
  ``max_shard_bytes`` of Arrow data is reached first); the last shard holds the rest.
* A checkpoint follows every batch that completed a shard, and every ``checkpoint_every`` batches:
  shards are renamed into place first, then the kept rows still buffered (carry file) and the score
  columns read since the last checkpoint (scores file), then the state JSON, which records
  ``IterableDataset.state_dict()`` taken after the whole batch was consumed. A job killed at any
  instant (even ``kill -9``) resumes from its last state with ``resume=True``: leftover files are
  deleted, the stream restarts where the state says, and the output is row for row the output of an
  uninterrupted run (``datasets`` replays a partly consumed ``map`` batch from its start, so the
  scorer sees the same batches).
* With ``push_to``, each shard is uploaded (``HfApi.upload_file``, retried with backoff on HTTP
  5xx) right after the checkpoint that names it; the state records uploaded shards. An upload that
  still fails stops the job with :class:`~hf_vlm_filter.hub.retry.HubUploadError`; the shard stays
  on disk and resuming uploads it first.

Example:
    >>> from hf_vlm_filter import VLMJudge
    >>> from hf_vlm_filter.hub import FilterRun
    >>> from hf_vlm_filter.sources import load_source
    >>> ds, root = load_source("user/pairs", streaming=True)                          # doctest: +SKIP
    >>> judge = VLMJudge("./judge", image_root=root)                                  # doctest: +SKIP
    >>> run = FilterRun.from_scorer(judge, "user/pairs", thresholds={"judge_score": 9.0})  # doctest: +SKIP
    >>> streaming_filter_job(ds, judge, "out/job", run, push_to="me/pairs-hq", resume=True)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..hub.retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, HubRetry
from ..hub.run_record import FilterRun
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

DEFAULT_SHARD_ROWS = 10_000
DEFAULT_MAX_SHARD_BYTES = 512 * 2**20
DEFAULT_CHECKPOINT_EVERY = 50
SUMMARY_FILE = "summary.txt"
#: Options of :func:`run_streaming_filter` that :func:`finalize_job` takes too (uploading the card).
FINALIZE_OPTIONS = ("push_to", "token", "attempts", "base_delay")


class JobStateError(RuntimeError):
    """The job folder holds a job that cannot be continued as asked (resume mismatch, not finished...)."""


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
    repo_id: str | None = None

    @property
    def kept(self) -> int:
        return sum(shard.rows for shard in self.shards)


def run_streaming_filter(
    dataset: Any,
    scorer: Any,
    out_dir: str | Path,
    run: FilterRun,
    *,
    batch_size: int = 16,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    push_to: str | None = None,
    token: str | None = None,
    resume: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    progress: bool = True,
) -> RankState:
    """Score and filter this rank's part of the ``IterableDataset`` ``dataset`` into ``out_dir``.

    ``run.thresholds`` (column -> minimum) and ``run.keep_errors`` decide which rows are kept
    (``None`` thresholds: every row is kept, a score run). Returns the final :class:`RankState`.
    Raises :class:`JobStateError` when ``out_dir`` already holds this rank's state and ``resume`` is
    false, or when the saved job differs from this one.
    """
    from datasets import IterableDataset

    if not isinstance(dataset, IterableDataset):
        raise TypeError(f"run_streaming_filter needs an IterableDataset (streaming=True), got {type(dataset).__name__}")
    for name, value in (("batch_size", batch_size), ("shard_rows", shard_rows), ("max_shard_bytes", max_shard_bytes),
                        ("checkpoint_every", checkpoint_every)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    rank, world_size = node_rank(rank, world_size)
    out_dir = Path(out_dir)
    job = {
        "run": {**run.to_dict(), "summary": None, "command": None, "recipe": None},
        "batch_size": batch_size, "shard_rows": shard_rows, "max_shard_bytes": max_shard_bytes,
        "world_size": world_size, "push_to": push_to,
    }
    state = _start_state(out_dir, rank, world_size, job, resume)
    uploader = _Uploader(push_to, token, attempts, base_delay) if push_to else None
    if uploader is not None:
        uploader.create_repo()
        uploader.upload_pending(state, out_dir)
    if state.done:
        return state
    writer = _RankWriter(dataset, scorer, out_dir, state, run, batch_size, shard_rows, max_shard_bytes,
                         checkpoint_every, uploader)
    writer.run(progress)
    return state


def finalize_job(
    out_dir: str | Path,
    *,
    push_to: str | None = None,
    token: str | None = None,
    command: str | None = None,
    recipe: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
) -> JobResult:
    """Merge every rank's state into ``manifest.json``, write ``summary.txt``, ``README.md`` and
    ``score_histogram.png`` into ``out_dir``, and (with ``push_to``) commit card and histogram.

    Raises :class:`JobStateError` when a rank is missing or not done, or a shard is not uploaded.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..hub.cards import HISTOGRAM_FILE, build_dataset_card, data_files_config
    from ..hub.histogram import save_score_histogram

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
    if push_to:
        missing = [path for state in states for path in state.pending_uploads()]
        if missing or any(state.job.get("push_to") != push_to for state in states):
            raise JobStateError(f"shards not uploaded to {push_to}: {missing or 'the job pushed elsewhere'}")
    columns = [info.score_column for info in run.scorers]
    tables = [pq.read_table(out_dir / name) for state in states for name in state.score_files]
    merged = pa.concat_tables(tables) if tables else None
    scores = {c: merged.column(c).to_pylist() if merged is not None else [] for c in columns}
    histogram = save_score_histogram(scores, out_dir / HISTOGRAM_FILE, run.thresholds)
    card = build_dataset_card(run, push_to or out_dir.name, num_rows=sum(s.rows for s in shards),
                              configs=data_files_config(["train"], pattern=f"{DATA_DIR}/{{split}}-*.parquet"))
    manifest = {"run": run.to_dict(), "world_size": first.world_size,
                "shards": [shard.__dict__ for shard in shards], "repo_id": push_to}
    atomic_write_bytes(out_dir / MANIFEST, json.dumps(manifest, indent=1).encode())
    atomic_write_bytes(out_dir / SUMMARY_FILE, (summary.render() + "\n").encode())
    atomic_write_bytes(out_dir / "README.md", str(card).encode())
    if push_to:
        _Uploader(push_to, token, attempts, base_delay).commit_card(out_dir / "README.md", histogram)
    return JobResult(run=run, shards=shards, out_dir=out_dir, repo_id=push_to)


def streaming_filter_job(
    dataset: Any, scorer: Any, out_dir: str | Path, run: FilterRun, **options: Any
) -> JobResult:
    """:func:`run_streaming_filter` on one process (rank 0 of 1), then :func:`finalize_job`."""
    options.setdefault("rank", 0)
    options.setdefault("world_size", 1)
    run_streaming_filter(dataset, scorer, out_dir, run, **options)
    return finalize_job(out_dir, command=run.command, recipe=run.recipe,
                        **{k: options[k] for k in FINALIZE_OPTIONS if k in options})


def read_job_output(out_dir: str | Path) -> Any:
    """All kept rows of a job folder as one Arrow table, shards in order (rank, then index)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    paths = sorted((out_dir / DATA_DIR).glob("train-r*-*.parquet"))
    return pa.concat_tables([pq.read_table(path) for path in paths]) if paths else pa.table({})


# ---- internals ------------------------------------------------------------------------------------


def _start_state(out_dir: Path, rank: int, world_size: int, job: dict[str, Any], resume: bool) -> RankState:
    state = RankState.load(out_dir, rank)
    if state is None:
        stale = sorted((out_dir / DATA_DIR).glob(f"train-r{rank:03d}-*.parquet"))
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
    if state.job != json.loads(json.dumps(job)):
        changed = sorted(k for k in job if json.dumps(job[k], sort_keys=True) != json.dumps(state.job.get(k), sort_keys=True))
        raise JobStateError(f"cannot resume {out_dir}: the job differs from the saved one in {changed}")
    removed = state.remove_leftovers(out_dir)
    if removed:
        logger.info("resume: removed %d files written after the last checkpoint", len(removed))
    return state


class _Uploader:
    """Uploads finished shards and the card to ``repo_id`` with retries; records uploads in the state."""

    def __init__(self, repo_id: str, token: str | None, attempts: int, base_delay: float) -> None:
        from huggingface_hub import HfApi

        self.repo_id = repo_id
        self.api = HfApi(token=token)
        self._retry = HubRetry(attempts, base_delay)

    def create_repo(self) -> None:
        self._retry(lambda: self.api.create_repo(self.repo_id, repo_type="dataset", exist_ok=True),
                    f"create dataset repo {self.repo_id}")

    def upload_pending(self, state: RankState, out_dir: Path) -> None:
        for path in state.pending_uploads():
            self._retry(
                lambda: self.api.upload_file(path_or_fileobj=str(out_dir / path), path_in_repo=path,
                                             repo_id=self.repo_id, repo_type="dataset", commit_message=f"Add {path}"),
                f"upload {path} to {self.repo_id} (the shard stays in {out_dir}; resume the job to retry)",
            )
            state.uploaded.append(path)
            state.save(out_dir)

    def commit_card(self, readme: Path, histogram: Path) -> None:
        from ..hub.push import commit_dataset_card

        commit_dataset_card(self.api, self.repo_id, readme, histogram, self._retry)


def _warn_if_every_rank_reads_every_row(dataset: Any, world_size: int) -> None:
    """``split_dataset_by_node`` gives whole files to ranks only when their number divides by the
    world size; otherwise every rank reads (downloads, decodes) every row and keeps its share."""
    files = getattr(dataset, "num_shards", None)
    if files and files % world_size:
        logger.warning(
            "the source has %d file(s) for %d ranks: every rank reads every row and keeps one in %d; "
            "give it a multiple of %d files to read each file once", files, world_size, world_size, world_size,
        )


class _RankWriter:
    """The scoring loop of one rank: batches in, shards and checkpoints out."""

    def __init__(self, dataset: Any, scorer: Any, out_dir: Path, state: RankState, run: FilterRun, batch_size: int,
                 shard_rows: int, max_shard_bytes: int, checkpoint_every: int, uploader: _Uploader | None) -> None:
        from datasets.distributed import split_dataset_by_node

        from ..scorers.base import map_with_scorer

        self.out_dir, self.state, self.record, self.uploader = out_dir, state, run, uploader
        self.batch_size, self.shard_rows, self.max_shard_bytes = batch_size, shard_rows, max_shard_bytes
        self.checkpoint_every = checkpoint_every
        if state.world_size > 1:
            _warn_if_every_rank_reads_every_row(dataset, state.world_size)
            dataset = split_dataset_by_node(dataset, rank=state.rank, world_size=state.world_size)
        scored = map_with_scorer(dataset, scorer, batch_size=batch_size)
        self.schema = scored.features.arrow_schema if scored.features is not None else None
        self.stream = scored.with_format("arrow")
        if state.dataset_state is not None:
            self.stream.load_state_dict(state.dataset_state)
        self.score_columns = [info.score_column for info in run.scorers]
        self.summary = (RunSummary.from_dict(state.summary) if state.summary else
                        RunSummary(threshold=(run.thresholds or {}).get(self.score_columns[0]),
                                   keep_errors=run.keep_errors, thresholds=run.thresholds))
        self.buffer = self._read_side(state.carry_file)
        self.new_scores: list[Any] = []
        self.new_shards: list[str] = []

    def run(self, progress: bool) -> None:
        from tqdm.auto import tqdm

        batches_since_checkpoint = 0
        with tqdm(unit="rows", desc=f"scoring (rank {self.state.rank})", initial=self.summary.rows,
                  disable=not progress) as bar:
            for table in self.stream.iter(batch_size=self.batch_size):
                self._consume(table)
                bar.update(table.num_rows)
                batches_since_checkpoint += 1
                if self.new_shards or batches_since_checkpoint >= self.checkpoint_every:
                    self._checkpoint(done=False)
                    batches_since_checkpoint = 0
        self._cut_shards(final=True)
        self._checkpoint(done=True)

    def _consume(self, table: Any) -> None:
        import pyarrow as pa

        from ..predicates import threshold_filter

        if self.schema is not None:
            table = table.cast(self.schema)
        first = self.record.scorers[0]
        scores = table.column(first.score_column).to_pylist()
        mask = [True] * table.num_rows
        if self.record.thresholds:
            columns = {name: table.column(name).to_pylist() for name in self.record.thresholds}
            mask = threshold_filter(columns, self.record.thresholds, keep_errors=self.record.keep_errors)
        self.summary.add(scores, table.column(first.error_column).to_pylist(), kept_mask=mask)
        self.new_scores.append(table.select(self.score_columns))
        kept = table.filter(pa.array(mask, type=pa.bool_())) if self.record.thresholds else table
        if kept.num_rows:
            self.buffer = kept if self.buffer is None else pa.concat_tables([self.buffer, kept])
        self._cut_shards(final=False)

    def _shard_limit(self) -> int:
        """Rows of the next shard: ``shard_rows``, fewer when ``max_shard_bytes`` is reached first."""
        per_row = self.buffer.nbytes / max(self.buffer.num_rows, 1)
        return max(1, min(self.shard_rows, math.floor(self.max_shard_bytes / per_row) if per_row else self.shard_rows))

    def _cut_shards(self, final: bool) -> None:
        while self.buffer is not None and self.buffer.num_rows and (
            self.buffer.num_rows >= self._shard_limit() or final
        ):
            count = min(self._shard_limit(), self.buffer.num_rows)
            self._write_shard(self.buffer.slice(0, count))
            rest = self.buffer.slice(count)
            self.buffer = rest if rest.num_rows else None
        if final and not self.state.shards and not self.new_shards:
            # Nothing kept: one empty shard keeps the schema, so the output still loads.
            empty = self.schema.empty_table() if self.schema is not None else None
            if empty is not None:
                self._write_shard(empty)

    def _write_shard(self, table: Any) -> None:
        name = shard_name(self.state.rank, self.state.next_shard + len(self.new_shards))
        size = atomic_write_table(self.out_dir / name, table.combine_chunks())
        self.state.shards.append(ShardRecord(path=name, rows=table.num_rows, bytes=size))
        self.new_shards.append(name)

    def _checkpoint(self, done: bool) -> None:
        import copy

        import pyarrow as pa

        state, old_carry = self.state, self.state.carry_file
        state.checkpoint += 1
        state.carry_file = None
        if self.buffer is not None and self.buffer.num_rows:
            state.carry_file = side_file_name(state.rank, "carry", state.checkpoint)
            atomic_write_table(self.out_dir / state.carry_file, self.buffer.combine_chunks())
        if self.new_scores:
            scores_file = side_file_name(state.rank, "scores", state.checkpoint)
            atomic_write_table(self.out_dir / scores_file, pa.concat_tables(self.new_scores).combine_chunks())
            state.score_files.append(scores_file)
        state.next_shard += len(self.new_shards)
        state.dataset_state = copy.deepcopy(self.stream.state_dict())
        state.summary = self.summary.to_dict()
        state.done = done
        state.save(self.out_dir)
        if old_carry and old_carry != state.carry_file:
            (self.out_dir / old_carry).unlink(missing_ok=True)
        self.new_scores, self.new_shards = [], []
        if self.uploader is not None:
            self.uploader.upload_pending(state, self.out_dir)

    def _read_side(self, name: str | None) -> Any:
        import pyarrow.parquet as pq

        if name is None:
            return None
        table = pq.read_table(self.out_dir / name)
        return table.cast(self.schema) if self.schema is not None else table
