"""Multi-rank streaming jobs: 2 and 3 ranks over 2 and 3 source shards score every row exactly once
and end with one manifest and card; real torchrun-style processes meet over gloo."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from hf_vlm_filter import KeepRule, VLMJudge, map_with_scorer, threshold_filter
from hf_vlm_filter.engines import JobOptions, RunContext
from hf_vlm_filter.engines.streaming import JobStateError, RankState, read_job_output, run_streaming_filter
from hf_vlm_filter.engines.torchrun import local_rank, run_distributed_job, torch_rank, wait_for_ranks
from hf_vlm_filter.hub import DatasetCardWriter
from hf_vlm_filter.inputs.sources import load_source

from ._distributed_helpers import launch_ranks, write_pair_shards

ROWS = 12
BROKEN = {4: "image", 9: "caption"}
PIXELS = {"min_pixels": 4 * 28 * 28, "max_pixels": 16 * 28 * 28}  # a small budget keeps CPU scoring quick
RANK_OPTIONS = JobOptions(batch_size=2, shard_rows=3, progress=False)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[int, Path]:
    """The same 12 pairs as 2 and as 3 Parquet shards."""
    root = tmp_path_factory.mktemp("sharded")
    return {shards: write_pair_shards(root / f"shards-{shards}", ROWS, shards, BROKEN) for shards in (2, 3)}


@pytest.fixture(scope="module")
def reference(sources, tiny_judge_path) -> dict[int, dict]:
    """id -> row of the single-process in-memory ``map``."""
    dataset, root = load_source(str(sources[2]))
    scored = map_with_scorer(dataset, VLMJudge(tiny_judge_path, image_root=root, **PIXELS), batch_size=4)
    return {row["id"]: row for row in scored.with_format("arrow")[:].to_pylist()}


def job_inputs(source: Path, judge_path: str):
    """The stream, its judge and the run's context (every test here is a score run)."""
    stream, root = load_source(str(source), streaming=True)
    judge = VLMJudge(judge_path, image_root=root, **PIXELS)
    return stream, judge, RunContext(str(source))


def assert_rows_match(rows: list[dict], reference: dict[int, dict]) -> None:
    for row in rows:
        want = reference[row["id"]]
        assert row["judge_score"] == pytest.approx(want["judge_score"], abs=1e-5, nan_ok=True), row["id"]
        assert (row["judge_error"], row["caption"], row["image"]) == (want["judge_error"], want["caption"], want["image"])


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("shards", [2, 3])
def test_ranks_score_every_row_exactly_once(sources, reference, tiny_judge_path, tmp_path, world_size, shards, caplog):
    """Ranks run one after the other in this process, meeting through their state files (no process
    group); rank 0 runs last, waits for the others' ``done`` states and writes the one card."""
    caplog.set_level("WARNING", logger="hf_vlm_filter.engines.streaming.job")
    out = tmp_path / "job"
    for rank in [*range(1, world_size), 0]:
        stream, judge, context = job_inputs(sources[shards], tiny_judge_path)
        result = run_distributed_job(stream, judge, out, context, KeepRule(), RANK_OPTIONS, rank=rank,
                                     world_size=world_size, poll_seconds=0.01, wait_timeout=5,
                                     finishers=[DatasetCardWriter()])
        assert (result is None) == (rank != 0)

    rows = read_job_output(out).to_pylist()
    counts = Counter(row["id"] for row in rows)
    assert sorted(counts) == list(range(ROWS)) and set(counts.values()) == {1}  # union = input, no duplicates
    assert_rows_match(rows, reference)
    per_rank = {rank: [r["id"] for r in read_rank_rows(out, rank)] for rank in range(world_size)}
    assert all(per_rank.values()) and sum(map(len, per_rank.values())) == ROWS  # every rank had work
    if shards % world_size == 0:  # whole files per rank: rank r reads file r
        assert per_rank == {r: list(range(r * ROWS // shards, (r + 1) * ROWS // shards)) for r in range(world_size)}
    else:  # every world_size-th row per rank, and each rank was told it reads every row
        assert per_rank == {r: list(range(r, ROWS, world_size)) for r in range(world_size)}
    told = f"the source has {shards} file(s) for {world_size} ranks: every rank reads every row"
    assert caplog.text.count(told) == (world_size if shards % world_size else 0)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == world_size
    assert sum(shard["rows"] for shard in manifest["shards"]) == ROWS
    assert {shard["path"][len("data/train-r"):][:3] for shard in manifest["shards"]} == {f"{r:03d}" for r in range(world_size)}
    assert result.run.summary.rows == ROWS and result.run.summary.scored == ROWS - len(BROKEN)
    assert (out / "README.md").is_file() and (out / "summary.txt").is_file()

    # Each rank resumes on its own: a finished rank is a no-op with resume, and refused without it.
    stream, judge, context = job_inputs(sources[shards], tiny_judge_path)
    state = run_streaming_filter(stream, judge, out, context, KeepRule(), RANK_OPTIONS, rank=1, world_size=world_size,
                                 resume=True)
    assert state.done and [s.path for s in state.shards] == [s.path for s in RankState.load(out, 1).shards]
    with pytest.raises(JobStateError, match="pass resume=True"):
        run_streaming_filter(stream, judge, out, context, KeepRule(), RANK_OPTIONS, rank=1, world_size=world_size)


def read_rank_rows(out: Path, rank: int) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for path in sorted((out / "data").glob(f"train-r{rank:03d}-*.parquet"))
            for row in pq.read_table(path).to_pylist()]


@pytest.mark.slow
def test_torchrun_style_processes_filter_with_gloo(sources, reference, tiny_judge_path, tmp_path):
    """Two real rank processes over three shards (so split row by row), with the environment torchrun
    sets and a gloo group: together they keep exactly the rows the in-memory filter keeps, and rank 0
    writes one card."""
    scores = sorted(row["judge_score"] for row in reference.values() if not math.isnan(row["judge_score"]))
    threshold = scores[len(scores) // 2]
    out = tmp_path / "job"
    argv = ["filter", str(sources[3]), "--model", tiny_judge_path, "--streaming", "--out", str(out),
            "--threshold", repr(threshold), "--batch-size", "2", "--shard-rows", "2",
            "--min-pixels", str(PIXELS["min_pixels"]), "--max-pixels", str(PIXELS["max_pixels"])]
    results = launch_ranks(argv, world_size=2)
    for rank, result in enumerate(results):
        assert result.returncode == 0, (rank, result.stderr[-3000:])
    assert "rank 0 writes the card" in results[1].stdout
    assert "wrote" in results[0].stdout

    ids = [row["id"] for row in read_job_output(out).to_pylist()]
    mask = threshold_filter({"judge_score": [reference[i]["judge_score"] for i in range(ROWS)]},
                            {"judge_score": threshold})
    assert sorted(ids) == [i for i in range(ROWS) if mask[i]] and len(set(ids)) == len(ids)
    assert_rows_match(read_job_output(out).to_pylist(), reference)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["run"]["summary"]["rows"] == ROWS
    assert {shard["path"][:len("data/train-r000")] for shard in manifest["shards"]} == {"data/train-r000", "data/train-r001"}
    assert "--streaming" in (out / "README.md").read_text()


def test_rank_environment_and_file_barrier(tmp_path, monkeypatch, sources, tiny_judge_path):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torch_rank() == (2, 4) and local_rank() == 1
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size\)"):
        torch_rank()
    monkeypatch.setenv("LOCAL_RANK", "first")
    with pytest.raises(ValueError, match="LOCAL_RANK must be an integer"):
        local_rank()

    # The file barrier gives up after its timeout, naming the ranks it waited for.
    stream, judge, context = job_inputs(sources[2], tiny_judge_path)
    run_streaming_filter(stream, judge, tmp_path / "job", context, KeepRule(), JobOptions(batch_size=4, progress=False),
                         rank=0, world_size=3)
    with pytest.raises(JobStateError, match=r"ranks \[1, 2\] of .* did not finish within 0 s"):
        wait_for_ranks(tmp_path / "job", 3, timeout=0.05, poll_seconds=0.01)
    with pytest.raises(JobStateError, match=r"ranks \[0\] of .* belong to a job with another world size"):
        wait_for_ranks(tmp_path / "job", 2, timeout=0.05, poll_seconds=0.01)
