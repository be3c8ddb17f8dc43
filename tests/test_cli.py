"""The command line on the shipped sample and on Parquet / image-folder sources (CPU, offline)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Image, Value

from hf_vlm_filter.cli import main

from .conftest import jpeg_bytes, random_image

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample" / "pairs.json"
SAMPLE_ROWS = json.loads(SAMPLE.read_text())
#: Expected judge_error prefix of each bad row of the sample ("" = scored).
SAMPLE_ERRORS = {11: "empty caption", 12: "image file not found", 13: "corrupt or truncated image"}


def written(path: str) -> str:
    """How the output records a sample image path: absolute, so it holds outside the sample's folder."""
    return str((SAMPLE.parent / path).resolve())


def run_cli(*args: str) -> None:
    assert main(list(args)) == 0


def read(out: Path) -> list[dict]:
    """Rows written by a run: ``data.parquet``, or a streaming job's shards under ``data/`` in order."""
    if (out / "data.parquet").is_file():
        return pq.read_table(out / "data.parquet").to_pylist()
    shards = sorted((out / "data").glob("train-r*-*.parquet"))
    assert shards, f"no output in {out}"
    return [row for shard in shards for row in pq.read_table(shard).to_pylist()]


def check_sample_rows(rows: list[dict], count: int) -> None:
    assert [r["image_path"] for r in rows] == [written(r["image_path"]) for r in SAMPLE_ROWS[:count]]
    assert [r["caption"] for r in rows] == [r["caption"] for r in SAMPLE_ROWS[:count]]
    for index, row in enumerate(rows):
        reason = SAMPLE_ERRORS.get(index)
        if reason is None:
            assert row["judge_error"] == "" and 1.0 <= row["judge_score"] <= 10.0, row
        else:
            assert row["judge_error"].startswith(reason) and math.isnan(row["judge_score"]), row


@pytest.mark.parametrize("streaming", [False, True])
def test_score_sample_keeps_every_row_in_order(tiny_judge_path, tmp_path, streaming, capsys):
    out = tmp_path / "scored"
    run_cli("score", str(SAMPLE), "--model", tiny_judge_path, "--out", str(out), "--batch-size", "4",
            *(["--streaming"] if streaming else []))
    rows = read(out)
    check_sample_rows(rows, len(SAMPLE_ROWS))
    assert rows[12]["judge_error"] == "image file not found: images/missing.jpg"
    summary = (out / "summary.txt").read_text()
    assert summary in capsys.readouterr().out
    assert "rows read   14\nscored      11\nerrors      3\n" in summary
    for line in ("corrupt or truncated image  1", "empty caption               1", "image file not found        1"):
        assert line in summary
    assert "kept        14 (100.0%; score run, nothing dropped)" in summary


def test_micro_batch_and_prefetch_flags_change_no_score(tiny_judge_path, tmp_path):
    default, tuned = tmp_path / "default", tmp_path / "tuned"
    run_cli("score", str(SAMPLE), "--model", tiny_judge_path, "--out", str(default))
    run_cli("score", str(SAMPLE), "--model", tiny_judge_path, "--out", str(tuned),
            "--batch-size", "6", "--micro-batch-size", "4", "--prefetch-workers", "2")
    expected, got = read(default), read(tuned)
    assert [r["judge_error"] for r in got] == [r["judge_error"] for r in expected]
    for want, row in zip(expected, got):
        if want["judge_error"] == "":
            assert row["judge_score"] == pytest.approx(want["judge_score"], abs=1e-5)


@pytest.mark.parametrize("streaming", [False, True])
def test_filter_sample(tiny_judge_path, tmp_path, streaming):
    flag = ["--streaming"] if streaming else []
    scored, kept = tmp_path / "scored", tmp_path / "kept"
    run_cli("score", str(SAMPLE), "--model", tiny_judge_path, "--out", str(scored), *flag)
    scores = [r["judge_score"] for r in read(scored)]
    threshold = sorted(s for s in scores if not math.isnan(s))[-4]  # keeps the top 4 (ties aside)
    run_cli("filter", str(SAMPLE), "--model", tiny_judge_path, "--out", str(kept), "--threshold", str(threshold), *flag)
    rows = read(kept)
    expected = [written(r["image_path"]) for r, s in zip(SAMPLE_ROWS, scores) if s >= threshold]
    assert [r["image_path"] for r in rows] == expected and len(rows) >= 4
    assert all(r["judge_score"] >= threshold for r in rows)
    assert f"kept        {len(rows)} (" in (kept / "summary.txt").read_text()
    assert "rows read   14\nscored      11\n" in (kept / "summary.txt").read_text()


def test_filter_threshold_zero_keep_errors_keeps_everything(tiny_judge_path, tmp_path):
    out = tmp_path / "all"
    run_cli("filter", str(SAMPLE), "--model", tiny_judge_path, "--out", str(out), "--threshold", "0", "--keep-errors")
    check_sample_rows(read(out), len(SAMPLE_ROWS))
    assert "kept        14 (100.0%; judge_score >= 0, errors kept)" in (out / "summary.txt").read_text()


@pytest.mark.parametrize("streaming", [False, True])
def test_limit(tiny_judge_path, tmp_path, streaming):
    out = tmp_path / "limited"
    run_cli("score", str(SAMPLE), "--model", tiny_judge_path, "--out", str(out), "--limit", "3",
            *(["--streaming"] if streaming else []))
    check_sample_rows(read(out), 3)
    assert "rows read   3\n" in (out / "summary.txt").read_text()


def test_parquet_with_image_bytes(tiny_judge_path, tmp_path):
    source = tmp_path / "pairs.parquet"
    images = [
        {"bytes": jpeg_bytes(random_image(64, 48, seed=1)), "path": None},
        {"bytes": jpeg_bytes(random_image(40, 80, seed=2))[:300], "path": None},  # truncated JPEG
        {"bytes": jpeg_bytes(random_image(50, 50, seed=3)), "path": None},
    ]
    features = Features({"img": Image(), "text": Value("string")})
    Dataset.from_dict({"img": images, "text": ["noise", "cut off", ""]}, features=features).to_parquet(str(source))
    out = tmp_path / "out"
    run_cli("score", str(source), "--model", tiny_judge_path, "--out", str(out),
            "--image-column", "img", "--text-column", "text")
    rows = read(out)
    assert [r["text"] for r in rows] == ["noise", "cut off", ""]
    assert rows[0]["judge_error"] == "" and 1 <= rows[0]["judge_score"] <= 10
    assert rows[1]["judge_error"].startswith("corrupt or truncated image")
    assert rows[2]["judge_error"] == "empty caption"
    assert rows[0]["img"]["bytes"] == images[0]["bytes"]  # lazy image struct written back as is


@pytest.mark.parametrize("streaming", [False, True])
def test_imagefolder_with_metadata(tiny_judge_path, tmp_path, streaming):
    folder = tmp_path / "folder"
    folder.mkdir()
    captions = {"astronaut.jpg": "an astronaut", "chelsea.jpg": "a cat", "coffee_alpha.png": "a cup of coffee"}
    for name in captions:
        shutil.copy(SAMPLE.parent / "images" / name, folder / name)
    (folder / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": n, "caption": c}) + "\n" for n, c in captions.items())
    )
    out = tmp_path / "out"
    run_cli("score", str(folder), "--model", tiny_judge_path, "--out", str(out),
            *(["--streaming"] if streaming else []))
    rows = read(out)
    assert sorted(r["caption"] for r in rows) == sorted(captions.values())
    assert all(r["judge_error"] == "" and 1 <= r["judge_score"] <= 10 for r in rows)


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["score", str(SAMPLE)]) == 2  # --out missing
    assert "--out" in capsys.readouterr().err
    assert main(["filter", str(SAMPLE), "--out", str(tmp_path / "o"), "--threshold", "high"]) == 2
    bad = tmp_path / "data.txt"
    bad.write_text("x")
    assert main(["score", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unsupported file type" in capsys.readouterr().err


def test_missing_checkpoint_exit_1(tmp_path, capsys):
    assert main(["score", str(SAMPLE), "--model", str(tmp_path / "no-judge"), "--out", str(tmp_path / "o")]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_and_module(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    script = shutil.which("hf-vlm-filter", path=str(Path(sys.executable).parent)) or "hf-vlm-filter"
    judge = tmp_path / "judge"
    done = subprocess.run([script, "tiny-model", str(judge)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(str(judge))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "hf_vlm_filter", "filter", str(SAMPLE), "--model", str(judge),
         "--threshold", "5", "--out", str(out)],
        capture_output=True, text=True, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "rows read   14" in done.stdout and (out / "data.parquet").is_file()


def test_streaming_job_flags(tiny_judge_path, tmp_path, capsys):
    out = tmp_path / "job"
    base = ["filter", str(SAMPLE), "--model", tiny_judge_path, "--out", str(out), "--threshold", "0"]
    assert main([*base, "--resume"]) == 2
    assert "--resume continues a --streaming job" in capsys.readouterr().err
    run_cli(*base, "--streaming", "--shard-rows", "4", "--batch-size", "3")
    shards = sorted(p.name for p in (out / "data").glob("*.parquet"))
    assert shards == [f"train-r000-0000{i}.parquet" for i in range(3)]  # 11 scored rows kept: 4 + 4 + 3
    assert [len(pq.read_table(out / "data" / name)) for name in shards] == [4, 4, 3]
    assert [r["image_path"] for r in read(out)] == [written(r["image_path"]) for i, r in enumerate(SAMPLE_ROWS)
                                                   if i not in SAMPLE_ERRORS]
    card = (out / "README.md").read_text()
    assert "hf-vlm-filter filter" in card and "--shard-rows 4" in card and (out / "score_histogram.png").is_file()
    # The folder now holds a finished job: running again without --resume is refused, with --resume it is a no-op.
    assert main([*base, "--streaming", "--shard-rows", "4", "--batch-size", "3"]) == 3
    assert "pass resume=True (--resume)" in capsys.readouterr().err
    run_cli(*base, "--streaming", "--shard-rows", "4", "--batch-size", "3", "--resume")
    assert sorted(p.name for p in (out / "data").glob("*.parquet")) == shards
    # Resuming with another configuration is refused.
    assert main([*base, "--streaming", "--shard-rows", "5", "--batch-size", "3", "--resume"]) == 3
    assert "the job differs from the saved one in options.shard_rows (saved 4, now 5)" in capsys.readouterr().err


def test_every_scorer_flag_has_its_whole_docstring_line_as_help(capsys, monkeypatch):
    """Help comes from the config docstrings: a continuation line that starts ``word:`` does not cut
    it, and Sphinx roles read as plain names."""
    monkeypatch.setenv("COLUMNS", "4000")  # argparse wraps (and hyphen-breaks) at the terminal width
    with pytest.raises(SystemExit):
        main(["filter", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("resize each image first as the seed script does (qwen-vl-utils' fetch_image: sides rounded to "
            "multiples of 28 within 4..16384 visual tokens, PIL's default filter), then into the pixel budget") in text
    assert "saved with DocumentFrequencies.save instead of inline" in text
    assert ":meth:" not in text and ":class:" not in text and ":mod:" not in text and "``" not in text
