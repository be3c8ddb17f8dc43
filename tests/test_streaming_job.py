"""The resumable streaming filter job: shards, parity with the in-memory filter, kill -9 and resume,
upload failures, ranks — against the loopback Hub server with the real clients."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from hf_vlm_filter import KeepRule, VLMJudge, map_with_scorer, threshold_filter
from hf_vlm_filter.cli import main
from hf_vlm_filter.engines import JobOptions, RunContext
from hf_vlm_filter.engines.streaming import (
    JobStateError,
    RankState,
    finalize_job,
    read_job_output,
    run_streaming_filter,
    streaming_filter_job,
)
from hf_vlm_filter.hub import HubPublisher, HubUploadError
from hf_vlm_filter.inputs.sources import load_source

from ._hub_helpers import TOKEN, hub, hub_env, write_pairs  # noqa: F401 - hub is a fixture

BROKEN = {3: "caption", 10: "image", 17: "caption"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.parquet", 24, BROKEN)


@pytest.fixture(scope="module")
def in_memory(pairs, tiny_judge_path):
    """The same source scored in memory with ``map`` (the reference output)."""
    dataset, root = load_source(str(pairs))
    return map_with_scorer(dataset, VLMJudge(tiny_judge_path, image_root=root), batch_size=4)


def job_inputs(pairs: Path, judge_path: str, thresholds: dict[str, float] | None):
    """The stream, its judge, the run's context and its keep rule (``None``: a score run)."""
    stream, root = load_source(str(pairs), streaming=True)
    judge = VLMJudge(judge_path, image_root=root)
    rule = KeepRule.from_thresholds(judge, thresholds) if thresholds else KeepRule()
    return stream, judge, RunContext(str(pairs), recipe="streaming_filter_job(...)"), rule


def options(**values) -> JobOptions:
    return JobOptions(**{"progress": False, **values})


def counts_of(summary_file: Path) -> str:
    """A summary's text without its timing line (the only part a resumed run may change)."""
    return "\n".join(line for line in summary_file.read_text().splitlines() if not line.startswith("elapsed "))


def rows_of(table) -> list[dict]:
    return table.to_pylist()


def assert_same_rows(actual: list[dict], expected: list[dict]) -> None:
    """Row by row: every column equal, scores to float32 precision."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.keys() == want.keys()
        for key in want:
            if key == "judge_score":
                assert got[key] == pytest.approx(want[key], abs=1e-5, nan_ok=True), (got["id"], key)
            else:
                assert got[key] == want[key], (got["id"], key)


def test_job_equals_in_memory_filter_and_shards_are_bounded(pairs, tiny_judge_path, in_memory, tmp_path):
    scores = sorted(s for s in in_memory["judge_score"] if not math.isnan(s))
    thresholds = {"judge_score": scores[len(scores) // 3]}  # keeps about two thirds of the scored rows
    stream, judge, context, rule = job_inputs(pairs, tiny_judge_path, thresholds)
    result = streaming_filter_job(stream, judge, tmp_path / "job", context, rule, options(batch_size=4, shard_rows=5))

    expected = in_memory.filter(threshold_filter, batched=True, fn_kwargs={"thresholds": thresholds})
    expected_rows = rows_of(expected.with_format("arrow")[:])
    assert_same_rows(rows_of(read_job_output(tmp_path / "job")), expected_rows)
    sizes = [shard.rows for shard in result.shards]
    assert sizes == [5] * (len(expected_rows) // 5) + ([len(expected_rows) % 5] if len(expected_rows) % 5 else [])
    assert [s.path for s in result.shards] == [f"data/train-r000-{i:05d}.parquet" for i in range(len(sizes))]
    summary = result.run.summary
    assert (summary.rows, summary.scored, summary.kept) == (24, 21, len(expected_rows))
    assert summary.errors == {"empty caption": 2, "not an image (unrecognised format)": 1}
    assert (summary.rule.columns[0].threshold, summary.rule.thresholds) == (thresholds["judge_score"], thresholds)
    manifest = json.loads((tmp_path / "job" / "manifest.json").read_text())
    assert manifest["run"]["thresholds"] == thresholds and len(manifest["shards"]) == len(sizes)

    # max_shard_bytes bounds shards too: a budget of ~2 rows of Arrow data gives 2-row shards.
    row_bytes = pq.read_table(tmp_path / "job" / result.shards[0].path).nbytes / sizes[0]
    stream, judge, context, rule = job_inputs(pairs, tiny_judge_path, thresholds)
    small = streaming_filter_job(stream, judge, tmp_path / "small", context, rule,
                                 options(batch_size=4, shard_rows=100, max_shard_bytes=int(row_bytes * 2.5)))
    assert max(shard.rows for shard in small.shards) <= 2 < len(small.shards)
    assert_same_rows(rows_of(read_job_output(tmp_path / "small")), expected_rows)


def test_existing_job_needs_resume_and_same_configuration(pairs, tiny_judge_path, tmp_path):
    stream, judge, context, rule = job_inputs(pairs, tiny_judge_path, None)
    state = run_streaming_filter(stream, judge, tmp_path / "job", context, rule, options(batch_size=8, shard_rows=10))
    assert state.done and [s.rows for s in state.shards] == [10, 10, 4]  # a score run keeps every row
    with pytest.raises(JobStateError, match=r"pass resume=True"):
        run_streaming_filter(stream, judge, tmp_path / "job", context, rule, options(batch_size=8, shard_rows=10))
    with pytest.raises(JobStateError, match=r"differs from the saved one in options.batch_size \(saved 8, now 4\)"):
        run_streaming_filter(stream, judge, tmp_path / "job", context, rule, options(batch_size=4, shard_rows=10),
                             resume=True)
    with pytest.raises(JobStateError, match="holds no job state"):
        finalize_job(tmp_path / "nothing")


@pytest.mark.slow
def test_kill_9_and_resume_equals_uninterrupted_run(hub, pairs, tiny_judge_path, tmp_path):
    common = ["filter", str(pairs), "--model", tiny_judge_path, "--streaming", "--threshold", "0",
              "--batch-size", "2", "--shard-rows", "2"]
    assert main([*common, "--out", str(tmp_path / "full"), "--push-to", "user/full"]) == 0

    out = tmp_path / "killed"
    env = {**os.environ, **hub_env(hub.url, tmp_path / "hf-home-child")}
    child = subprocess.Popen([sys.executable, "-m", "hf_vlm_filter", *common, "--out", str(out), "--push-to", "user/resumed"],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "data").glob("train-r000-*.parquet"))) < 3:
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the job wrote no shards in time"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    killed_state = RankState.load(out, 0)
    assert killed_state is not None and not killed_state.done and killed_state.summary["rows"] < 24

    assert main([*common, "--out", str(out), "--push-to", "user/resumed", "--resume"]) == 0
    full_rows = rows_of(read_job_output(tmp_path / "full"))
    assert len(full_rows) == 21 and [r["id"] for r in full_rows] == [i for i in range(24) if i not in BROKEN]
    assert_same_rows(rows_of(read_job_output(out)), full_rows)
    assert sorted(p.name for p in (out / "data").glob("*.parquet")) == sorted(
        p.name for p in (tmp_path / "full" / "data").glob("*.parquet"))
    assert counts_of(out / "summary.txt") == counts_of(tmp_path / "full" / "summary.txt")
    # On the Hub too: every shard once, the same rows in the same order.
    pushed = load_dataset("user/resumed", split="train").with_format("arrow")[:]
    assert_same_rows(rows_of(pushed), full_rows)


def test_failed_commit_is_retried_or_stops_cleanly_and_resume_uploads_the_rest(hub, pairs, tiny_judge_path, tmp_path):
    hub.state.fail_next("commit", 1)
    stream, judge, context, rule = job_inputs(pairs, tiny_judge_path, {"judge_score": 0.0})
    hub_repo = HubPublisher("user/retried", token=TOKEN, base_delay=0.01)
    streaming_filter_job(stream, judge, tmp_path / "retried", context, rule, options(batch_size=4, shard_rows=8),
                         publisher=hub_repo, finishers=[hub_repo])
    assert hub.state.failures("/commit/") == 1
    local = rows_of(read_job_output(tmp_path / "retried"))
    assert_same_rows(rows_of(load_dataset("user/retried", split="train").with_format("arrow")[:]), local)

    hub.state.fail_next("commit", 100)
    stream, judge, context, rule = job_inputs(pairs, tiny_judge_path, {"judge_score": 0.0})
    out = tmp_path / "stopped"
    with pytest.raises(HubUploadError, match=r"upload data/train-r000-00000.parquet to user/stopped .*failed after 2 attempts"):
        run_streaming_filter(stream, judge, out, context, rule, options(batch_size=4, shard_rows=8),
                             publisher=HubPublisher("user/stopped", token=TOKEN, attempts=2, base_delay=0.01))
    state = RankState.load(out, 0)
    assert state.pending_uploads() == ["data/train-r000-00000.parquet"] and (out / state.pending_uploads()[0]).is_file()
    hub_repo = HubPublisher("user/stopped", token=TOKEN, base_delay=0.01)
    with pytest.raises(JobStateError, match="have not finished"):
        finalize_job(out, published_to=hub_repo.target)
    hub.state.clear_faults()
    run_streaming_filter(stream, judge, out, context, rule, options(batch_size=4, shard_rows=8), publisher=hub_repo,
                         resume=True)
    finalize_job(out, published_to=hub_repo.target, finishers=[hub_repo])
    assert_same_rows(rows_of(read_job_output(out)), local)
    assert_same_rows(rows_of(load_dataset("user/stopped", split="train").with_format("arrow")[:]), local)
    files = hub.state.files("dataset", "user/stopped")
    assert sorted(name for name in files if name.startswith("data/")) == [f"data/train-r000-0000{i}.parquet" for i in range(3)]
    assert files["score_histogram.png"].startswith(b"\x89PNG")


def test_ranks_split_the_stream_and_finalize_merges_them(pairs, tiny_judge_path, in_memory, tmp_path, monkeypatch):
    out = tmp_path / "ranks"
    monkeypatch.setenv("RANK", "0")  # rank and world size come from torchrun's environment by default
    monkeypatch.setenv("WORLD_SIZE", "2")
    stream, judge, context, rule = job_inputs(pairs, tiny_judge_path, None)
    run_streaming_filter(stream, judge, out, context, rule, options(batch_size=4, shard_rows=5))
    with pytest.raises(JobStateError, match=r"ranks \[1\] of .* have not finished"):
        finalize_job(out)
    stream, judge, context, rule = job_inputs(pairs, tiny_judge_path, None)
    run_streaming_filter(stream, judge, out, context, rule, options(batch_size=4, shard_rows=5), rank=1)
    result = finalize_job(out)

    rows = rows_of(read_job_output(out))
    assert sorted(row["id"] for row in rows) == list(range(24))
    assert (result.run.summary.rows, result.kept) == (24, 24)
    assert {shard.path[12:15] for shard in result.shards} == {"000", "001"}
    reference = {row["id"]: row for row in rows_of(in_memory.with_format("arrow")[:])}
    assert_same_rows(rows, [reference[row["id"]] for row in rows])
    for rank in (0, 1):  # each rank keeps its part of the stream in order
        ids = [row["id"] for shard in result.shards if shard.path[12:15] == f"{rank:03d}"
               for row in rows_of(pq.read_table(out / shard.path))]
        assert ids == sorted(ids) and RankState.load(out, rank).done
