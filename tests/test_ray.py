"""Ray Data: scorers as actors give the scores of the single-process ``ds.map``, row for row; bad rows
become NaN + reason inside Ray; the filter path; Ray stays optional. One local Ray instance per module."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hf_vlm_filter import ColumnRule, KeepRule, VLMJudge, map_with_scorer, threshold_filter
from hf_vlm_filter.inputs.sources import load_source

from ._hub_helpers import TOKEN, hub_env, point_clients_at, write_pairs
from .hub_server import serve_hub

ray = pytest.importorskip("ray")
from hf_vlm_filter.engines.ray import ScorerActor, read_source, score_with_ray  # noqa: E402 - after importorskip

ROOT = Path(__file__).resolve().parents[1]
BROKEN = {3: "caption", 7: "image"}
ERRORS = {3: "empty caption", 7: "not an image (unrecognised format)"}
ROWS = 14


@pytest.fixture(scope="module")
def loopback_hub():
    """A loopback Hub for the module; Ray's workers are pointed at it (they start with the module)."""
    with serve_hub() as running:
        yield running


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf-home")


@pytest.fixture(scope="module")
def local_ray(loopback_hub, hub_home):
    """One small local Ray instance for the module (2 CPUs, no dashboard); its workers talk to the
    loopback Hub only (the tiny judge is a local folder)."""
    env = hub_env(loopback_hub.url, hub_home)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("ray-pairs") / "pairs.parquet", ROWS, BROKEN)


@pytest.fixture(scope="module")
def judge(tiny_judge_path) -> VLMJudge:
    """The tiny judge with a small pixel budget (4-16 merged patches), so that CPU scoring is quick."""
    return VLMJudge(tiny_judge_path, micro_batch_size=3, return_probs=True, min_pixels=4 * 28 * 28,
                    max_pixels=16 * 28 * 28)


@pytest.fixture(scope="module")
def reference(pairs, judge) -> list[dict]:
    """The single-process ``ds.map`` output, the rows Ray must reproduce."""
    dataset, _ = load_source(str(pairs))
    return map_with_scorer(dataset, judge, batch_size=4).with_format("arrow")[:].to_pylist()


def by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: row["id"])


def plain(row: dict) -> dict:
    """A row with numpy values (Ray's numpy output) as Python values."""
    return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in row.items()}


def assert_same_rows(actual: list[dict], expected: list[dict]) -> None:
    assert [row["id"] for row in actual] == [row["id"] for row in expected]
    for got, want in zip(actual, expected):
        got = plain(got)
        assert set(got) == set(want), got["id"]
        assert got["judge_score"] == pytest.approx(want["judge_score"], abs=1e-5, nan_ok=True), got["id"]
        assert got["judge_probs"] == pytest.approx(want["judge_probs"], abs=1e-5, nan_ok=True), got["id"]
        for key in ("judge_error", "caption", "image"):
            assert got[key] == want[key], (got["id"], key)


def test_reference_has_the_broken_rows(reference):
    assert {row["id"]: row["judge_error"] for row in reference if row["judge_error"]} == ERRORS
    assert all(math.isnan(reference[i]["judge_score"]) for i in ERRORS)


@pytest.mark.slow
def test_ray_scores_equal_ds_map_row_for_row(local_ray, pairs, judge, reference):
    """Parquet in, pyarrow batches, an actor: the scores of ``ds.map``; the failing rows were scored
    inside an actor and came back as NaN + reason (no task failed)."""
    rows = score_with_ray(pairs, judge, batch_size=5, concurrency=1).take_all()
    assert_same_rows(by_id(rows), reference)
    errors = {row["id"]: row["judge_error"] for row in rows if row["judge_error"]}
    assert errors == ERRORS and all(math.isnan(row["judge_score"]) for row in rows if row["id"] in ERRORS)


def test_ray_filter_with_numpy_batches_writes_the_kept_rows(local_ray, pairs, judge, reference, tmp_path):
    """A datasets.Dataset source, numpy batches (Image structs as object arrays of dicts), a threshold
    with keep_errors, Parquet written: exactly the rows ``threshold_filter`` keeps from ``ds.map``."""
    scores = sorted(row["judge_score"] for row in reference if not math.isnan(row["judge_score"]))
    thresholds = {"judge_score": scores[len(scores) // 2]}
    kept_mask = threshold_filter({"judge_score": [row["judge_score"] for row in reference]}, thresholds,
                                 keep_errors=True)
    expected = [row for row, keep in zip(reference, kept_mask) if keep]
    assert set(ERRORS) < {row["id"] for row in expected} and len(expected) < ROWS - 2

    source, _ = load_source(str(pairs))
    out = tmp_path / "kept"
    result = score_with_ray(source, judge, rule=KeepRule.from_thresholds(judge, thresholds, keep_errors=True), batch_size=4,
                            batch_format="numpy", output_path=out)
    written = pq.read_table(sorted(out.glob("*.parquet"))).to_pylist()
    assert_same_rows(by_id(written), expected)
    assert result.count() == len(expected)


def test_hub_parquet_is_read_through_hf_paths(local_ray, loopback_hub, hub_home, pairs):
    """``hf://datasets/...`` paths: Ray's read tasks read the Hub's Parquet files themselves."""
    from huggingface_hub import HfApi

    with point_clients_at(loopback_hub.url, hub_home):
        api = HfApi(token=TOKEN)
        api.create_repo("user/pairs", repo_type="dataset")
        for index, part in enumerate((pq.read_table(pairs).slice(0, 6), pq.read_table(pairs).slice(6))):
            pq.write_table(part, hub_home / f"part-{index}.parquet")
            api.upload_file(path_or_fileobj=str(hub_home / f"part-{index}.parquet"),
                            path_in_repo=f"data/train-{index:05d}.parquet", repo_id="user/pairs", repo_type="dataset")
        rows = read_source("hf://datasets/user/pairs/data/").take_all()
    assert by_id(rows) == pq.read_table(pairs).to_pylist()
    with pytest.raises(ValueError, match="do not mix hf:// paths"):
        read_source(["hf://datasets/user/pairs/data/", str(pairs)])


def test_actor_handles_every_batch_format_without_ray(judge, pairs, reference):
    """The callable class itself: arrow, numpy (object arrays of dicts) and pandas batches agree."""
    table = pq.read_table(pairs).slice(2, 7)  # ids 2..8: an empty caption and a corrupt image inside
    expected = reference[2:9]
    actor = ScorerActor(judge)

    arrow = actor(table)
    assert arrow.column_names == ["id", "image", "caption", "judge_score", "judge_error", "judge_probs"]
    assert arrow.schema.field("judge_score").type == pa.float32()
    assert_same_rows(arrow.to_pylist(), expected)

    numpy_batch = {name: np.asarray(table.column(name).to_pylist(), dtype=object) for name in table.column_names}
    numpy_out = actor(numpy_batch)
    assert numpy_out["judge_score"].dtype == np.float32 and numpy_out["judge_probs"].shape == (7, 10)
    assert_same_rows([{k: v[i] for k, v in numpy_out.items()} for i in range(7)], expected)

    frame = actor(table.to_pandas())
    assert isinstance(frame, pd.DataFrame)
    assert_same_rows(frame.to_dict("records"), expected)

    only_errors = ScorerActor(judge, KeepRule.from_thresholds(judge, {"judge_score": 99.0}, keep_errors=True), load=False)
    assert only_errors(table).column("id").to_pylist() == sorted(ERRORS)
    assert list(only_errors(numpy_batch)["id"]) == sorted(ERRORS)


def test_bad_arguments_are_refused(judge, pairs, tmp_path):
    with pytest.raises(ValueError, match=r"no selected scorer writes the score column 'clip_score'; they write \['judge_score'\]"):
        ScorerActor(judge, KeepRule((ColumnRule("clip_score", threshold=0.2),)), load=False)
    with pytest.raises(ValueError, match="batch_format must be one of"):
        score_with_ray(pairs, judge, batch_format="dicts")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        score_with_ray(pairs, judge, batch_size=0)
    with pytest.raises(FileNotFoundError, match="Parquet source not found"):
        read_source(tmp_path / "missing.parquet")
    with pytest.raises(TypeError, match="needs a scorer of hf_vlm_filter"):
        ScorerActor(len)
    with pytest.raises(TypeError, match="takes a pyarrow, numpy or pandas batch"):
        ScorerActor(judge, load=False)([1, 2])


def test_ray_is_an_optional_extra():
    """``import hf_vlm_filter`` never imports ray; without ray, ``hf_vlm_filter.engines.ray`` says how to install it."""
    code = (
        "import sys\n"
        "import hf_vlm_filter, hf_vlm_filter.cli, hf_vlm_filter.engines, hf_vlm_filter.engines.torchrun\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "sys.modules['ray'] = None\n"
        "try:\n"
        "    import hf_vlm_filter.engines.ray\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install 'hf_vlm_filter[ray]'" in result.stdout
