"""WebDataset in and out, rejected rows, columns that don't collide, caption detection, globs (issue 18)."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from hf_vlm_filter import ClipScorer, CompositeScorer
from hf_vlm_filter.cli import main
from hf_vlm_filter.inputs.sources import load_source
from hf_vlm_filter.scorers.renamed import RenamedColumns

from .conftest import jpeg_bytes, png_bytes, random_image

ROOT = Path(__file__).resolve().parents[1]
ROWS_PER_SHARD = 6
#: (shard, index) -> what is wrong with that sample
HOSTILE = {(0, 1): "truncated", (0, 4): "no caption", (1, 2): "zero bytes", (1, 3): "png"}


def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, shards: int = 3, cut_last: bool = False) -> list[Path]:
    """``shards`` tar shards of img2dataset's layout (key.jpg, key.txt, key.json), hostile samples
    at :data:`HOSTILE`; with ``cut_last``, the last shard is cut off mid-file after 3 samples."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard in range(shards):
        path = folder / f"{shard:05d}.tar"
        with tarfile.open(path, "w") as archive:
            for index in range(ROWS_PER_SHARD):
                key = f"{shard:03d}{index:05d}"
                kind = HOSTILE.get((shard, index))
                image = random_image(48 + 5 * index, 36 + 3 * shard, seed=shard * 10 + index)
                data = png_bytes(image) if kind == "png" else jpeg_bytes(image)
                if kind == "truncated":
                    data = data[:200]
                if kind == "zero bytes":
                    data = b""
                add(archive, f"{key}.{'png' if kind == 'png' else 'jpg'}", data)
                if kind != "no caption":
                    add(archive, f"{key}.txt", f"photo {shard} {index}".encode())
                add(archive, f"{key}.json", json.dumps({"caption": f"json {shard} {index}", "width": 48 + index}).encode())
        if cut_last and shard == shards - 1:
            members = tarfile.open(path).getmembers()
            cut = members[9].offset_data + 10  # inside the 4th sample's image
            path.write_bytes(path.read_bytes()[:cut])
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wds")
    write_shards(folder)
    return folder


def test_shards_read_lazily_with_keys_captions_and_json_fields(shards):
    dataset, root = load_source(str(shards / "{00000..00002}.tar"))
    assert root == str(shards) and len(dataset) == 3 * ROWS_PER_SHARD
    row = dataset[0]
    assert row["__key__"] == "00000000" and row["__url__"].endswith("00000.tar")
    assert row["txt"] == "photo 0 0" and row["json.caption"] == "json 0 0" and row["json.width"] == "48"
    assert row["image"]["bytes"][:2] == b"\xff\xd8" and row["image"]["path"] == "00000000.jpg"  # undecoded
    assert dataset[4]["txt"] is None and dataset[8]["image"]["bytes"] == b""
    streamed, _ = load_source(str(shards / "*.tar"), streaming=True)
    assert [r["__key__"] for r in streamed] == dataset["__key__"]


def test_hostile_members_are_row_errors_and_a_cut_tar_keeps_what_came_before(tiny_judge_path, tmp_path, caplog):
    folder = tmp_path / "wds"
    write_shards(folder, cut_last=True)
    for streaming in (False, True):
        out = tmp_path / f"out-{streaming}"
        with caplog.at_level(logging.WARNING, logger="hf_vlm_filter.inputs.webdataset"):
            assert main(["score", str(folder / "*.tar"), "--model", tiny_judge_path, "--text-column", "txt",
                         "--out", str(out), *(["--streaming"] if streaming else [])]) == 0
        files = sorted((out / "data").glob("*.parquet")) if streaming else [out / "data.parquet"]
        rows = [row for path in files for row in pq.read_table(path).to_pylist()]
        assert len(rows) == 2 * ROWS_PER_SHARD + 3  # the cut shard keeps its first 3 samples
        errors = {row["__key__"]: row["judge_error"] for row in rows}
        assert errors["00000001"].startswith("corrupt or truncated image")
        assert errors["00000004"] == "missing caption" and errors["00100002"] == "empty image bytes"
        assert errors["00100003"] == "" and errors["00200002"] == ""  # the png, and the last sample before the cut
        assert sum(1 for reason in errors.values() if reason) == 3
        assert any("00002.tar is cut off or unreadable after 3 samples" in r.getMessage() for r in caplog.records)


def test_a_corrupt_exif_block_is_a_row_error(tiny_judge_path, monkeypatch):
    from PIL import ImageOps

    from hf_vlm_filter import VLMJudge

    def broken(image, **kwargs):
        raise ZeroDivisionError("division by zero")  # what PIL raises on a rational with denominator 0

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    out = VLMJudge(tiny_judge_path, device="cpu")({"image": [{"bytes": jpeg_bytes(random_image(40, 30)), "path": None}],
                                                   "caption": ["a photo"]})
    assert out["judge_error"][0] == "corrupt EXIF metadata: ZeroDivisionError: division by zero"


def test_webdataset_output_round_trips_and_both_readers_read_it(shards, tiny_judge_path, tmp_path):
    out = tmp_path / "out"
    assert main(["score", str(shards / "*.tar"), "--model", tiny_judge_path, "--text-column", "txt",
                 "--format", "webdataset", "--out", str(out)]) == 0
    archive = out / "data.tar"
    names = tarfile.open(archive).getnames()
    assert "00000000.jpg" in names and "00000000.txt" in names and "00100003.png" in names
    source_bytes = tarfile.open(shards / "00000.tar").extractfile("00000000.jpg").read()
    assert tarfile.open(archive).extractfile("00000000.jpg").read() == source_bytes  # never re-encoded
    meta = json.loads(tarfile.open(archive).extractfile("00000000.json").read())
    assert meta["caption"] == "json 0 0" and 1 <= meta["judge_score"] <= 10 and meta["judge_error"] == ""
    hf = load_dataset("webdataset", data_files=str(archive), split="train")
    assert len(hf) == 3 * ROWS_PER_SHARD and hf[0]["__key__"] == "00000000"
    import webdataset as wds

    samples = list(wds.WebDataset(str(archive), shardshuffle=False))
    assert [s["__key__"] for s in samples] == hf["__key__"]
    # re-read as a SOURCE: the same scores
    again = tmp_path / "again"
    assert main(["score", str(archive), "--model", tiny_judge_path, "--text-column", "txt", "--out", str(again)]) == 0
    first = {r["__key__"]: r for r in pq.read_table(out.parent / "again" / "data.parquet").to_pylist()}
    for sample in samples:
        want = json.loads(sample["json"])
        got = first[sample["__key__"]]
        assert got["judge_score"] == pytest.approx(want["judge_score"] if want["judge_score"] is not None else math.nan,
                                                  abs=1e-5, nan_ok=True)


def test_rejected_rows_are_kept_and_explained(shards, tiny_judge_path, tmp_path, capsys):
    scored = tmp_path / "scored"
    assert main(["score", str(shards / "*.tar"), "--model", tiny_judge_path, "--text-column", "txt",
                 "--out", str(scored)]) == 0
    scores = [r["judge_score"] for r in pq.read_table(scored / "data.parquet").to_pylist()]
    threshold = sorted(s for s in scores if not math.isnan(s))[6]
    for streaming in (False, True):
        out, rejected = tmp_path / f"kept-{streaming}", tmp_path / f"rejected-{streaming}"
        assert main(["filter", str(shards / "*.tar"), "--model", tiny_judge_path, "--text-column", "txt",
                     "--threshold", repr(threshold), "--rejected-out", str(rejected), "--out", str(out),
                     *(["--streaming", "--shard-rows", "4"] if streaming else [])]) == 0
        files = sorted((rejected / "data").glob("*.parquet")) if streaming else [rejected / "data.parquet"]
        dropped = [row for path in files for row in pq.read_table(path).to_pylist()]
        assert len(dropped) == sum(1 for s in scores if math.isnan(s) or s < threshold)
        assert {row["dropped_by"] for row in dropped} == {f"judge_score < {threshold:g}", "error"}
        assert all((row["dropped_by"] == "error") == bool(row["judge_error"]) for row in dropped)
        summary = (out / "summary.txt").read_text()
        assert f"dropped: judge_score < {threshold:g}" in summary and "dropped: error" in summary


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_kill_9_mid_shard_and_resume_gives_the_same_rows_and_bytes(tiny_judge_path, tmp_path, fmt):
    folder = tmp_path / "wds"
    write_shards(folder)
    common = ["filter", str(folder / "*.tar"), "--model", tiny_judge_path, "--text-column", "txt", "--threshold", "0",
              "--streaming", "--batch-size", "1", "--shard-rows", "2", "--format", fmt]
    assert main([*common, "--out", str(tmp_path / "full")]) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, "-m", "hf_vlm_filter", *common, "--out", str(out)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "data").glob("train-r000-*"))) < 4:  # mid-way through the second source shard
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    assert main([*common, "--out", str(out), "--resume"]) == 0
    full = sorted((tmp_path / "full" / "data").glob("train-r000-*"))
    resumed = sorted((out / "data").glob("train-r000-*"))
    assert [p.name for p in resumed] == [p.name for p in full]
    if fmt == "parquet":
        for a, b in zip(full, resumed):
            assert pq.read_table(a).to_pylist() == pq.read_table(b).to_pylist()
    else:
        for a, b in zip(full, resumed):
            ta, tb = tarfile.open(a), tarfile.open(b)
            assert ta.getnames() == tb.getnames()
            for name in ta.getnames():
                assert ta.extractfile(name).read() == tb.extractfile(name).read(), name


def test_two_clip_scorers_side_by_side(shards, tiny_checkpoints, tmp_path):
    clip, other = tiny_checkpoints.path("clip"), tiny_checkpoints.path("clip", seed=1)
    out = tmp_path / "two"
    assert main(["score", str(shards / "00000.tar"), "--text-column", "txt", "--scorer", "clip", "--scorer", "clip:b",
                 "--model-for", f"clip={clip}", "--model-for", f"clip:b={other}", "--out", str(out)]) == 0
    rows = pq.read_table(out / "data.parquet").to_pylist()
    assert {"clip_score", "clip_error", "clip_b_score", "clip_b_error"} <= set(rows[0])
    batch, _ = load_source(str(shards / "00000.tar"))
    alone = ClipScorer(other, device="cpu", text_column="txt")(batch[:])["clip_score"]
    np.testing.assert_allclose([r["clip_b_score"] for r in rows], alone, atol=1e-5)
    renamed = CompositeScorer([ClipScorer(clip, device="cpu"), RenamedColumns(ClipScorer(other, device="cpu"), "siglip")])
    assert {"clip_score", "siglip_score", "siglip_error"} <= set(renamed.output_features())
    out2 = tmp_path / "named"
    assert main(["score", str(shards / "00000.tar"), "--text-column", "txt", "--scorer", "clip", "--model", clip,
                 "--column-prefix", "clip=mine", "--out", str(out2)]) == 0
    assert "mine_score" in pq.read_table(out2 / "data.parquet").column_names
    with pytest.raises(ValueError, match="column 'clip_score' is written by both"):
        CompositeScorer([ClipScorer(clip), ClipScorer(other)])


def test_caption_column_is_found_or_the_candidates_are_listed(shards, tiny_judge_path, tmp_path, capsys):
    assert main(["score", str(shards / "00000.tar"), "--model", tiny_judge_path, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "several caption columns ['txt', 'json.caption']" in err and "--text-column" in err
    only_txt = tmp_path / "only-txt.parquet"
    dataset, _ = load_source(str(shards / "00000.tar"))
    dataset.select_columns(["image", "txt"]).to_parquet(str(only_txt))
    assert main(["score", str(only_txt), "--model", tiny_judge_path, "--out", str(tmp_path / "b")]) == 0
    assert pq.read_table(tmp_path / "b" / "data.parquet").column("judge_error").to_pylist()[0] == ""
    none = tmp_path / "none.parquet"
    dataset.select_columns(["image"]).to_parquet(str(none))
    assert main(["score", str(none), "--model", tiny_judge_path, "--out", str(tmp_path / "c")]) == 2
    assert "no caption column: looked for caption, text, txt, json.caption" in capsys.readouterr().err


def test_globs_and_folders_of_parquet_and_jsonl_shards(tiny_judge_path, tmp_path, capsys):
    sample = json.loads((ROOT / "examples" / "sample" / "pairs.json").read_text())[:6]
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "images").symlink_to(ROOT / "examples" / "sample" / "images")
    for part in range(3):
        (folder / f"part-{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sample[2 * part: 2 * part + 2]))
    for source in (str(folder / "part-*.jsonl"), str(folder / "part-{0..2}.jsonl"), str(folder)):
        out = tmp_path / f"out-{abs(hash(source))}"
        assert main(["score", source, "--model", tiny_judge_path, "--out", str(out)]) == 0
        rows = pq.read_table(out / "data.parquet").to_pylist()
        assert [r["caption"] for r in rows] == [r["caption"] for r in sample]
        assert all(r["judge_error"] == "" for r in rows)
    (folder / "extra.parquet").write_bytes(pq.read_table(out / "data.parquet").to_pandas().to_parquet())
    assert main(["score", str(folder), "--model", tiny_judge_path, "--out", str(tmp_path / "mixed")]) == 2
    assert "files of several formats" in capsys.readouterr().err
    assert main(["score", str(folder / "nothing-*.parquet"), "--model", tiny_judge_path, "--out", str(tmp_path / "x")]) == 2
    assert "no files match" in capsys.readouterr().err
