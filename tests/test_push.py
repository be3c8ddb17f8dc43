"""push_filtered / push_checkpoint round trips through the real huggingface_hub and datasets clients
against the loopback Hub server; cards parsed back with huggingface_hub's card classes."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import DatasetDict, load_dataset
from huggingface_hub import DatasetCard, HfApi, ModelCard, snapshot_download

from hf_vlm_filter import KeepRule, VLMJudge, map_with_scorer
from hf_vlm_filter.cli import main
from hf_vlm_filter.engines import FilterRun, RunContext, run_in_memory
from hf_vlm_filter.hub import EvalMetric, HubUploadError, push_checkpoint, push_filtered, size_category
from hf_vlm_filter.inputs.sources import load_source
from hf_vlm_filter.models.judge_prompt import prompt_text
from hf_vlm_filter.testing import save_tiny_model

from ._hub_helpers import TOKEN, hub, write_pairs  # noqa: F401 - hub is a fixture

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample" / "pairs.json"
RECIPE = "ds.map(VLMJudge('./judge'), batched=True).filter(threshold_filter, ...)"


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_judge_path):
    """A small scored dataset (two broken rows), its judge, threshold, summary and kept rows."""
    path = write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.parquet", 12, {2: "caption", 7: "image"})
    dataset, root = load_source(str(path))
    judge = VLMJudge(tiny_judge_path, image_root=root)
    values = sorted(s for s in map_with_scorer(dataset, judge, batch_size=4)["judge_score"] if not math.isnan(s))
    thresholds = {"judge_score": values[len(values) // 2]}
    result = run_in_memory(dataset, judge, KeepRule.from_thresholds(judge, thresholds),
                           RunContext("user/pairs", source_revision="abc123", recipe=RECIPE))
    return judge, thresholds, result.run, result.scored, result.kept


def run_record(judge, thresholds, run) -> FilterRun:
    """The record of the fixture's run (made by ``run_in_memory``, the engine every push reads)."""
    assert run.thresholds == thresholds and run.scorers[0].model == judge.config.model
    return run


def pushed_rows(repo_id: str, split: str = "train") -> list[dict]:
    return load_dataset(repo_id, split=split).with_format("arrow")[:].to_pylist()


@pytest.mark.parametrize("kind", ["dataset", "dataset_dict", "iterable"])
def test_push_filtered_round_trip_with_card_from_the_run(hub, scored, kind, tiny_judge_path):
    judge, thresholds, summary, all_rows, kept = scored
    payload = {"dataset": kept, "dataset_dict": DatasetDict(train=kept, test=kept.select([0])),
               "iterable": kept.to_iterable_dataset(num_shards=2)}[kind]
    result = push_filtered(payload, "user/pairs-hq", run_record(judge, thresholds, summary), token=TOKEN)

    expected = kept.with_format("arrow")[:].to_pylist()
    assert pushed_rows("user/pairs-hq") == expected
    if kind == "dataset_dict":
        assert pushed_rows("user/pairs-hq", "test") == expected[:1]
    assert {"README.md", "score_histogram.png"} <= set(result.files)
    assert any(name.startswith("data/train-") and name.endswith(".parquet") for name in result.files)
    assert hub.state.files("dataset", "user/pairs-hq")["score_histogram.png"].startswith(b"\x89PNG\r\n\x1a\n")
    assert any(method == "PUT" and "/lfs-upload/" in path for method, path, _ in hub.state.requests)  # real LFS

    card = DatasetCard.load("user/pairs-hq", repo_type="dataset")
    data = card.data
    assert data.source_datasets == ["user/pairs"]
    assert data.size_categories == [size_category(len(kept))]
    assert data.task_categories == ["image-to-text", "text-to-image"]
    assert {"hf_vlm_filter", "data-filtering", "scorer-vlmjudge"} <= set(data.tags)
    assert data.configs[0]["config_name"] == "default"
    record = data.to_dict()["hf_vlm_filter"]
    assert record["scorers"] == [{"name": "VLMJudge", "model": tiny_judge_path, "revision": None,
                                  "score_column": "judge_score", "error_column": "judge_error", "mode": "fast",
                                  "direction": "higher",
                                  "facts": {"scorer": "compact", "min_pixels": 4 * 28 * 28, "max_pixels": 64 * 28 * 28,
                                            "max_new_tokens": 512, "seed_image_path": False, "stop_at_score": True,
                                            "attn_implementation": None,
                                            "prompt": prompt_text()}}]
    assert record["thresholds"] == thresholds and record["source_revision"] == "abc123"
    assert record["summary"]["errors"] == {"empty caption": 1, "not an image (unrecognised format)": 1}
    text = card.text
    rows, kept_count = summary.summary.rows, len(kept) if kind != "dataset_dict" else len(kept) + 1
    assert f"| read | {rows} |" in text and f"| kept | {kept_count} ({kept_count / rows:.1%}) |" in text
    assert "| empty caption | 1 |" in text and "| not an image (unrecognised format) | 1 |" in text
    assert f"judge_score >= {thresholds['judge_score']:g}, error rows dropped" in text
    assert "(revision `abc123`)" in text and "Analyze and assess the quality of following image-caption pair" in text
    assert "![score histogram](score_histogram.png)" in text and RECIPE in text
    assert f"| VLMJudge | `{tiny_judge_path}` | default branch | `judge_score` | fast |" in text


def test_bad_card_metadata_is_refused_with_the_hub_message(hub, scored):
    judge, thresholds, summary, _, kept = scored
    with pytest.raises(HubUploadError, match=r"validate the card metadata of user/bad failed: .*"
                                             r"\"task_categories\" has an invalid value 'not-a-task'"):
        push_filtered(kept, "user/bad", run_record(judge, thresholds, summary), token=TOKEN,
                      task_categories=["not-a-task"])
    assert hub.state.repo("dataset", "user/bad") is None  # refused before anything was uploaded
    with pytest.raises(TypeError, match="needs a datasets Dataset"):
        push_filtered(kept.to_dict(), "user/bad", run_record(judge, thresholds, summary))


def test_push_filtered_retries_a_failed_commit(hub, scored):
    judge, thresholds, summary, _, kept = scored
    hub.state.fail_next("commit", 1)
    push_filtered(kept, "user/retry", run_record(judge, thresholds, summary), token=TOKEN, base_delay=0.01)
    assert hub.state.failures("/commit/") == 1
    assert pushed_rows("user/retry") == kept.with_format("arrow")[:].to_pylist()


def test_push_checkpoint_round_trip(hub, tmp_path, scored):
    judge_dir = save_tiny_model(tmp_path / "judge")
    metrics = [EvalMetric("accuracy", 0.75, "user/judge-eval", split="test"), EvalMetric("spearman", 0.5, "user/judge-eval")]
    result = push_checkpoint(judge_dir, "user/tiny-judge", datasets=["user/judge-train"], metrics=metrics,
                             threshold=8.5, threshold_note="Calibrated on user/judge-eval.", token=TOKEN)
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= set(result.files)

    card = ModelCard.load("user/tiny-judge")
    assert card.data.base_model == "Qwen/Qwen2-VL-2B-Instruct"
    assert card.data.datasets == ["user/judge-train"]
    assert [(r.metric_type, r.metric_value, r.dataset_name, r.dataset_split) for r in card.data.eval_results] == [
        ("accuracy", 0.75, "user/judge-eval", "test"), ("spearman", 0.5, "user/judge-eval", None)]
    assert 'VLMJudge.from_pretrained("user/tiny-judge"' in card.text
    assert 'fn_kwargs={"threshold": 8.5}' in card.text and "Calibrated on user/judge-eval." in card.text
    assert "| accuracy | 0.75 | user/judge-eval |" in card.text

    # The pushed folder is a complete judge: it scores exactly like the local one.
    downloaded = snapshot_download("user/tiny-judge", cache_dir=str(tmp_path / "cache"))
    _, _, _, all_rows, _ = scored
    batch = all_rows.select([0, 1, 3, 4]).remove_columns(["judge_score", "judge_error"])[:]  # row 2 is broken
    root = scored[0].config.image_root
    local = VLMJudge(str(judge_dir), image_root=root)(batch)["judge_score"]
    remote = VLMJudge(downloaded, image_root=root)(batch)["judge_score"]
    assert not any(math.isnan(value) for value in local)
    assert list(remote) == pytest.approx(list(local), abs=1e-6)


def test_push_checkpoint_refuses_an_incomplete_folder(tmp_path):
    judge_dir = save_tiny_model(tmp_path / "judge")
    for name in ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
        (judge_dir / name).unlink()
    with pytest.raises(ValueError, match=r"no processor files .*processor.save_pretrained"):
        push_checkpoint(judge_dir, "user/x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_checkpoint(tmp_path / "missing", "user/x")


def test_cli_filter_push_to(hub, tiny_judge_path, tmp_path):
    out = tmp_path / "out"
    assert main(["filter", str(SAMPLE), "--model", tiny_judge_path, "--threshold", "0", "--out", str(out),
                 "--push-to", "user/sample-hq"]) == 0
    assert pushed_rows("user/sample-hq") == pq.read_table(out / "data.parquet").to_pylist()
    card = DatasetCard.load("user/sample-hq", repo_type="dataset")
    record = card.data.to_dict()["hf_vlm_filter"]
    assert record["command"] == (f"hf-vlm-filter filter {SAMPLE} --model {tiny_judge_path} --threshold 0 "
                                 f"--out {out} --push-to user/sample-hq")
    assert record["summary"]["rows"] == 14 and record["summary"]["kept"] == 11
    assert card.data.source_datasets is None  # a local file is not a Hub source
    assert record["command"] in card.text
    assert "score_histogram.png" in HfApi().list_repo_files("user/sample-hq", repo_type="dataset")


@pytest.mark.slow
def test_dataset_scripts_push_against_the_server(hub, tiny_judge_path, tmp_path):
    import os
    import subprocess
    import sys

    from ._hub_helpers import hub_env

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, **hub_env(hub.url, tmp_path / "hf-home-child")}
    done = subprocess.run(
        [sys.executable, "dataset_scripts/push_filtered.py", str(SAMPLE), "user/recipe-hq", "--model", tiny_judge_path,
         "--threshold", "0"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pushed 11 rows to user/recipe-hq" in done.stdout
    assert len(pushed_rows("user/recipe-hq")) == 11
    card = DatasetCard.load("user/recipe-hq", repo_type="dataset")
    assert card.data.to_dict()["hf_vlm_filter"]["recipe"].startswith("python dataset_scripts/push_filtered.py")
    assert "## The cut" in card.text and "(assets/kept-00.jpg)" in card.text  # the thumbnails of the cut
    files = HfApi().list_repo_files("user/recipe-hq", repo_type="dataset")
    assert "report.html" in files and "assets/kept-00.jpg" in files

    done = subprocess.run(
        [sys.executable, "dataset_scripts/push_checkpoint.py", tiny_judge_path, "user/recipe-judge",
         "--dataset", "user/train", "--metric", "accuracy=0.9@user/eval"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    card = ModelCard.load("user/recipe-judge")
    assert card.data.eval_results[0].metric_value == 0.9 and card.data.datasets == ["user/train"]


def test_with_hub_retries_backs_off_on_5xx_and_not_on_4xx():
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    from hf_vlm_filter.hub import with_hub_retries

    def http_error(status: int) -> HfHubHTTPError:
        response = httpx2.Response(status, request=httpx2.Request("POST", "http://127.0.0.1/api/x"))
        return HfHubHTTPError(f"{status} from the Hub", response=response)

    outcomes, sleeps = [http_error(503), http_error(500), "ok"], []

    def call():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_hub_retries(call, "upload x", attempts=3, base_delay=0.5, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 1.0]
    outcomes[:] = [http_error(500)] * 3
    with pytest.raises(HubUploadError, match=r"upload x failed after 2 attempts; last error: HfHubHTTPError: 500"):
        with_hub_retries(call, "upload x", attempts=2, base_delay=0.5, sleep=sleeps.append)
    outcomes[:] = [http_error(403)]
    with pytest.raises(HubUploadError, match=r"^upload x failed: HfHubHTTPError: 403"):
        with_hub_retries(call, "upload x", attempts=5, sleep=sleeps.append)
    assert sleeps == [0.5, 1.0, 0.5] and outcomes == []


def test_histogram_png_and_missing_matplotlib(tmp_path, monkeypatch):
    import sys

    from hf_vlm_filter import ClipScorer
    from hf_vlm_filter.engines import ScoreHistogram
    from hf_vlm_filter.hub import save_score_histogram
    from hf_vlm_filter.hub.histogram import try_save_score_histogram

    judge, clip = ScoreHistogram(VLMJudge("./j").score_spec), ScoreHistogram(ClipScorer("./c").score_spec)
    judge.add([9.5, 3.0, math.nan, 7.0])
    clip.add([0.2, 0.3])
    path = save_score_histogram([judge, clip], tmp_path / "h.png", {"judge_score": 9})
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="at least one score column"):
        save_score_histogram([], tmp_path / "e.png")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'hf_vlm_filter\[hub\]'"):
        save_score_histogram([judge], tmp_path / "m.png")
    assert try_save_score_histogram([judge], tmp_path / "m.png") is None and not (tmp_path / "m.png").exists()
