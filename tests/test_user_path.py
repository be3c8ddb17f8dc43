"""The user's real path: a plain install (no matplotlib), templates inside the package, scores that
follow the checkpoint, the judge's recorded pixel budget, one-line errors, and output that can be
fed back in."""

from __future__ import annotations

import errno
import json
import logging
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Image, load_dataset, load_from_disk

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.cli import main
from hf_vlm_filter.models.loading import checkpoint_identity
from hf_vlm_filter.models.tiny import save_tiny_model

from ._hub_helpers import TOKEN, hub  # noqa: F401 - hub is a fixture
from .conftest import random_image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample" / "pairs.json"
SAMPLE_ROWS = json.loads(SAMPLE.read_text())


def messages(capsys) -> list[str]:
    """What the command printed on stderr, progress bars left out."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.replace("\r", "\n").splitlines() if line.startswith(("hf-vlm-filter", "  "))]


def one_line_error(capsys) -> str:
    lines = messages(capsys)
    assert len(lines) == 1, lines
    return lines[0]


def test_a_streaming_run_without_matplotlib_writes_everything_but_the_png(tiny_judge_path, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # what a plain install lacks
    import hf_vlm_filter.hub.histogram as histogram

    monkeypatch.setattr(histogram, "_warned", False)
    out = tmp_path / "job"
    with caplog.at_level(logging.WARNING, logger="hf_vlm_filter.hub.histogram"):
        assert main(["filter", str(SAMPLE), "--model", tiny_judge_path, "--threshold", "0", "--streaming",
                     "--out", str(out)]) == 0
    assert {"README.md", "manifest.json", "summary.txt"} <= {p.name for p in out.iterdir()}
    assert not (out / "score_histogram.png").exists()
    card = (out / "README.md").read_text()
    assert "judge_score histogram (1 to 10, higher is better):" in card and "score_histogram.png" not in card
    warnings = [r for r in caplog.records if "matplotlib" in r.getMessage()]
    assert len(warnings) == 1 and "pip install 'hf_vlm_filter[hub]'" in warnings[0].getMessage()
    # and --resume on the finished job ends the same way
    assert main(["filter", str(SAMPLE), "--model", tiny_judge_path, "--threshold", "0", "--streaming",
                 "--out", str(out), "--resume"]) == 0


@pytest.mark.slow
def test_the_wheel_carries_the_card_templates_and_data_files(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("hf_vlm_filter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("hf_vlm_filter/hub/templates/dataset_card.md", "hf_vlm_filter/hub/templates/compact_judge.md",
                 "hf_vlm_filter/visa/tags.txt", "hf_vlm_filter/training/prompts/model_generic.txt"):
        assert name in names, name
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)


def test_new_weights_in_the_same_folder_are_not_served_from_the_cache(tmp_path):
    folder = save_tiny_model(tmp_path / "judge", seed=0)
    pairs = Dataset.from_dict({"image": [random_image(60, 40, seed=i) for i in range(3)], "caption": ["a", "b", "c"]})
    pairs.save_to_disk(tmp_path / "pairs")
    on_disk = load_from_disk(str(tmp_path / "pairs"))  # a cached map needs data on disk
    judge = VLMJudge(str(folder), device="cpu")
    before = on_disk.map(judge, batched=True)["judge_score"]
    cached = on_disk.map(judge, batched=True)
    assert cached["judge_score"] == before and len(cached.cache_files) == 1  # a cache hit: the same Arrow file
    identity = checkpoint_identity(str(folder))
    save_tiny_model(folder, seed=1)  # retrained: new weights, same folder
    assert checkpoint_identity(str(folder)) != identity
    after = on_disk.map(judge, batched=True)["judge_score"]
    fresh = VLMJudge(str(save_tiny_model(tmp_path / "fresh", seed=1)), device="cpu")(on_disk[:])["judge_score"]
    assert not np.allclose(after, before) and np.allclose(after, fresh, atol=1e-5)


def test_a_hub_checkpoint_s_identity_is_its_commit(hub, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(token=TOKEN)
    api.create_repo("user/judge")
    folder = save_tiny_model(tmp_path / "judge")
    first = api.upload_folder(folder_path=str(folder), repo_id="user/judge").oid
    assert checkpoint_identity("user/judge") == first
    second = api.upload_file(path_or_fileobj=b"{}", path_in_repo="extra.json", repo_id="user/judge").oid
    assert second != first and checkpoint_identity("user/judge", "main") == second


def test_the_judge_reads_at_the_budget_its_checkpoint_records(tmp_path):
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    folder = save_tiny_model(tmp_path / "judge")
    Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28).save_pretrained(folder)  # trained at 16 tokens
    judge = VLMJudge(str(folder), device="cpu")
    assert judge.preprocessing.pixel_budget == (4 * 28 * 28, 16 * 28 * 28)
    assert judge.preprocessing.builder.image_tokens(112, 112) == 16  # a 112 px training image: 16 visual tokens
    wide = VLMJudge(str(folder), device="cpu", max_pixels=1280 * 28 * 28)  # the caller overrides it
    assert wide.preprocessing.pixel_budget == (4 * 28 * 28, 1280 * 28 * 28)
    assert wide.preprocessing.builder.image_tokens(448, 448) == 256
    Qwen2VLImageProcessorPil().save_pretrained(folder)  # the family default records no training budget
    assert VLMJudge(str(folder), device="cpu").preprocessing.pixel_budget == (256 * 28 * 28, 1280 * 28 * 28)


def test_cli_errors_are_one_line(tiny_judge_path, tmp_path, capsys, monkeypatch):
    base = ["score", str(SAMPLE), "--out", str(tmp_path / "o")]
    assert main([*base, "--model", tiny_judge_path, "--device", "cuda"]) == 2
    assert "no usable CUDA device" in one_line_error(capsys)
    assert main([*base, "--model", tiny_judge_path, "--device", "gpu"]) == 2
    assert "unknown --device 'gpu'; use cuda, cuda:N or cpu" in one_line_error(capsys)
    clip = save_tiny_model(tmp_path / "clip", kind="clip")
    assert main([*base, "--model", str(clip)]) == 1
    assert "holds a 'clip' checkpoint; the compact scorer reads qwen2_vl" in one_line_error(capsys)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert main([*base, "--model", "out/nope"]) == 1
    assert "the local folder 'out/nope' does not exist" in one_line_error(capsys)
    assert main(["filter", str(SAMPLE), "--model", tiny_judge_path, "--threshold", "15", "--out", str(tmp_path / "o")]) == 2
    assert "threshold 15 on judge_score can never pass: judge_score is 1 to 10, higher is better" in one_line_error(capsys)


def test_version_flag(capsys):
    from hf_vlm_filter import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"hf-vlm-filter {__version__}"


def test_an_unreachable_hub_is_reported_at_once(tmp_path, capsys, monkeypatch):
    """The default judge with no HF_HUB_OFFLINE and a Hub that cannot be reached (a closed port)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert main(["score", str(SAMPLE), "--out", str(tmp_path / "o")]) == 1
    err = one_line_error(capsys)
    assert "the Hugging Face Hub cannot be reached" in err and "hf download Dauka-transformers/Compact_VLM_filter" in err


def test_limit_zero_is_an_empty_run(tiny_judge_path, tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["score", str(SAMPLE), "--model", tiny_judge_path, "--limit", "0", "--out", str(out)]) == 0
    table = pq.read_table(out / "data.parquet")
    assert table.num_rows == 0 and {"judge_score", "judge_error"} <= set(table.column_names)
    assert "rows read   0" in capsys.readouterr().out


@pytest.mark.parametrize("streaming", [False, True])
def test_ctrl_c_is_one_line_and_names_the_resume_command(tiny_judge_path, tmp_path, capsys, monkeypatch, streaming):
    from hf_vlm_filter.engines import in_memory, torchrun

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(in_memory, "run_in_memory", interrupted)  # the engines the CLI runs: Ctrl-C mid-run
    monkeypatch.setattr(torchrun, "run_distributed_job", interrupted)
    out = tmp_path / "job"
    argv = ["filter", str(SAMPLE), "--model", tiny_judge_path, "--threshold", "0", "--out", str(out)]
    assert main([*argv, *(["--streaming"] if streaming else [])]) == 130
    lines = messages(capsys)
    assert lines[0] == "hf-vlm-filter: interrupted"
    if streaming:
        assert len(lines) == 3 and lines[-1].strip().endswith(f"--out {out} --streaming --resume")
    else:
        assert len(lines) == 1


def test_a_full_disk_is_one_line_and_the_job_resumes(tiny_judge_path, tmp_path, capsys, monkeypatch):
    from hf_vlm_filter.engines import shard_formats

    real, calls = shard_formats.atomic_write_table, {"n": 0}

    def full_once(path, table):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, table)

    monkeypatch.setattr(shard_formats, "atomic_write_table", full_once)  # the second shard meets a full disk
    out = tmp_path / "job"
    argv = ["filter", str(SAMPLE), "--model", tiny_judge_path, "--threshold", "0", "--streaming", "--out", str(out),
            "--batch-size", "2", "--shard-rows", "2"]
    assert main(argv) == 4
    err = one_line_error(capsys)
    assert "could not write the output" in err and "No space left on device" in err and "--resume" in err
    assert main([*argv, "--resume"]) == 0
    rows = [row for shard in sorted((out / "data").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    assert len(rows) == 11 and [r["caption"] for r in rows] == [r["caption"] for i, r in enumerate(SAMPLE_ROWS)
                                                               if i not in (11, 12, 13)]


def test_output_feeds_back_in_with_absolute_paths_and_embedded_images(tiny_judge_path, tmp_path, monkeypatch):
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(["score", str(SAMPLE), "--model", tiny_judge_path, "--out", str(first)]) == 0
    scored = pq.read_table(first / "data.parquet").to_pylist()
    assert all(Path(r["image_path"]).is_absolute() for r in scored)
    assert scored[12]["judge_error"] == "image file not found: images/missing.jpg"  # the reason names the source's path
    # the output is a source again: same scores from anywhere
    monkeypatch.chdir(tmp_path)
    assert main(["score", str(first / "data.parquet"), "--model", tiny_judge_path, "--out", str(again)]) == 0
    rescored = pq.read_table(again / "data.parquet").to_pylist()
    for want, got in zip(scored, rescored):
        assert got["judge_score"] == pytest.approx(want["judge_score"], abs=1e-5, nan_ok=True)

    embedded = tmp_path / "embedded"
    assert main(["score", str(SAMPLE), "--model", tiny_judge_path, "--embed-images", "--out", str(embedded)]) == 0
    loaded = load_dataset("parquet", data_files=str(embedded / "data.parquet"), split="train")
    assert isinstance(loaded.features["image"], Image)
    original = (SAMPLE.parent / SAMPLE_ROWS[0]["image_path"]).read_bytes()
    assert loaded.cast_column("image", Image(decode=False))[0]["image"]["bytes"] == original  # never re-encoded
    moved = tmp_path / "moved.parquet"
    (embedded / "data.parquet").rename(moved)
    assert main(["score", str(moved), "--model", tiny_judge_path, "--out", str(tmp_path / "from-bytes")]) == 0
    from_bytes = pq.read_table(tmp_path / "from-bytes" / "data.parquet").to_pylist()
    for want, got in zip(scored, from_bytes):
        assert got["judge_score"] == pytest.approx(want["judge_score"], abs=1e-5, nan_ok=True)


def test_refiltering_a_scored_file_reads_its_scores(tiny_judge_path, tmp_path, monkeypatch, capsys):
    scored_dir = tmp_path / "scored"
    assert main(["score", str(SAMPLE), "--model", tiny_judge_path, "--out", str(scored_dir)]) == 0
    scores = [r["judge_score"] for r in pq.read_table(scored_dir / "data.parquet").to_pylist()]
    threshold = sorted(s for s in scores if not math.isnan(s))[5]
    calls = {"n": 0}
    real = VLMJudge.score_prepared

    def counted(self, items, rank=None):
        calls["n"] += 1
        return real(self, items, rank)

    monkeypatch.setattr(VLMJudge, "score_prepared", counted)
    source = str(scored_dir / "data.parquet")
    kept = tmp_path / "kept"
    assert main(["filter", source, "--model", tiny_judge_path, "--threshold", repr(threshold), "--out", str(kept)]) == 0
    assert calls["n"] == 0 and "--rescore computes them again" in capsys.readouterr().out
    rows = pq.read_table(kept / "data.parquet").to_pylist()
    assert [r["judge_score"] for r in rows] == [s for s in scores if s >= threshold]
    assert main(["filter", source, "--model", tiny_judge_path, "--threshold", repr(threshold), "--rescore",
                 "--out", str(tmp_path / "rescored")]) == 0
    assert calls["n"] > 0


def test_refiltering_without_the_checkpoint_loads_nothing(tiny_judge_path, tmp_path, monkeypatch):
    """The default Hub judge, out of reach: the scores are in the file, so nothing of it is loaded."""
    scored_dir = tmp_path / "scored"
    assert main(["score", str(SAMPLE), "--model", tiny_judge_path, "--out", str(scored_dir)]) == 0

    def refuse(self):
        raise AssertionError("the judge's processors were loaded to re-filter a scored file")

    monkeypatch.setattr(VLMJudge, "preprocessing", property(refuse))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kept = tmp_path / "kept"
    assert main(["filter", str(scored_dir / "data.parquet"), "--threshold", "1", "--out", str(kept)]) == 0
    (facts,) = [info["facts"] for info in json.loads((kept / "report_sample.json").read_text())["run"]["scorers"]]
    assert facts["scores"] == "read from the source, not recomputed" and "max_pixels" not in facts
