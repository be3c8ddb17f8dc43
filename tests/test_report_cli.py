"""report.html at the end of every score and filter run (in memory, streaming, two ranks), rebuilt by
``hf-vlm-filter report DIR`` (another threshold previewed: what a real re-filter keeps), and the
report and the thumbnail grid published with the dataset card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, HfApi

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.cli import main
from hf_vlm_filter.engines import KeepRule, RunContext, run_in_memory
from hf_vlm_filter.engines.options import JobOptions
from hf_vlm_filter.engines.torchrun import run_distributed_job
from hf_vlm_filter.hub import DatasetCardWriter, push_filtered
from hf_vlm_filter.inputs.sources import load_source
from hf_vlm_filter.reports import GALLERY, REPORT_FILE, SAMPLE_FILE, GallerySample, ReportWriter, read_report_sample

from ._hub_helpers import TOKEN, hub  # noqa: F401 - hub is a fixture

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample" / "pairs.json"
HOSTILE_CAPTIONS = {
    0: "<script>window.__pwned = 1</script> an astronaut",
    2: '"><img src=x onerror="window.__pwned=2"> a cup of coffee',
    4: "'quotes' & \"more\" </style></script><svg onload=window.__pwned=3>",
    6: "\u0645\u062c\u0631\u0629 \u0641\u064a \u0627\u0644\u0641\u0636\u0627\u0621 \u202etxt.exe galaxies",
}
PIXELS = {"max_pixels": 64 * 28 * 28}


@pytest.fixture(scope="module")
def hostile_source(tmp_path_factory) -> Path:
    """The sample (11 good rows, an empty caption, a missing and a corrupt image) with hostile captions."""
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copytree(SAMPLE.parent / "images", folder / "images")
    rows = json.loads(SAMPLE.read_text())
    for index, caption in HOSTILE_CAPTIONS.items():
        rows[index]["caption"] = caption
    path = folder / "pairs.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scored_run(hostile_source, tiny_judge_path, tmp_path_factory) -> Path:
    """``hf-vlm-filter score`` of the hostile source: every row kept, the report written."""
    out = tmp_path_factory.mktemp("scored") / "out"
    assert main(["score", str(hostile_source), "--model", tiny_judge_path, "--out", str(out)]) == 0
    return out


def saved_gallery(out: Path) -> dict:
    return json.loads((out / SAMPLE_FILE).read_text())["gallery"]


def section_keys(gallery: dict) -> dict:
    """Every section's keys and every sampled row but its scores (which differ in the last float
    bits between batch sizes)."""
    def keys(sides: dict) -> dict:
        return {column: {side: [key for _, key in items] for side, items in parts.items()} for column, parts in sides.items()}

    return {"cells": {c: d["cells"] for c, d in gallery["cells"].items()}, "nearest": keys(gallery["nearest"]),
            "extremes": keys(gallery["extremes"]), "errors": gallery["errors"], "scores": [s[0] for s in gallery["scores"]],
            "rows": [{k: v for k, v in row.items() if k != "scores"} for row in gallery["rows"]]}


def test_score_writes_the_report_and_report_rebuilds_it(scored_run, capsys):
    text = (scored_run / REPORT_FILE).read_text(encoding="utf-8")
    run, sample, calibration = read_report_sample(scored_run)
    assert run.summary.rows == 14 and run.summary.kept == 14 and calibration is None
    assert '<td data-count="rows">14</td>' in text and '<td data-count="kept">14</td>' in text
    assert sorted(sample.error_kinds()) == ["corrupt or truncated image", "empty caption", "image file not found"]
    assert len(sample.all_rows()) == 14 and sum(1 for row in sample.all_rows() if row.thumbnail) == 12
    for caption in HOSTILE_CAPTIONS.values():
        assert ("<" not in caption or caption not in text) and next(r for r in sample.all_rows() if r.caption == caption)
    before = text.encode("utf-8")
    (scored_run / REPORT_FILE).unlink()
    assert main(["report", str(scored_run)]) == 0
    assert (scored_run / REPORT_FILE).read_bytes() == before  # the saved sample is all the report needs
    assert f"wrote {scored_run / REPORT_FILE}" in capsys.readouterr().out


def test_a_previewed_threshold_keeps_what_a_real_filter_keeps(scored_run, tiny_judge_path, tmp_path):
    run, _, _ = read_report_sample(scored_run)
    scores = sorted(v for v in pq.read_table(scored_run / "data.parquet").column("judge_score").to_pylist()
                    if v == v)
    cut = scores[len(scores) // 2]
    assert main(["report", str(scored_run), "--threshold", str(cut)]) == 0
    preview = (scored_run / "report-preview.html").read_text(encoding="utf-8")
    kept = tmp_path / "kept"  # the source scored already: filter it again without the model
    assert main(["filter", str(scored_run / "data.parquet"), "--model", tiny_judge_path, "--threshold", str(cut),
                 "--out", str(kept)]) == 0
    really = pq.read_table(kept / "data.parquet").num_rows
    assert 0 < really < 14
    assert f'<td data-count="preview-kept">{really}</td>' in preview and "exact: the sample holds every row" in preview
    assert f'data-threshold="{cut!r}"' in preview
    out = tmp_path / "elsewhere" / "cut.html"
    assert main(["report", str(scored_run), "--threshold-for", f"judge_score={cut}", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == preview


def test_report_refuses_what_it_cannot_read(scored_run, tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no report_sample.json" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(scored_run), "--threshold-for", "clip_score=0.3"]) == 2
    assert "the run scored ['judge_score'], not 'clip_score'" in capsys.readouterr().err
    assert main(["report", str(scored_run), "--threshold-for", "judge_score=high"]) == 2
    assert main(["report", str(scored_run), "--calibration", str(tmp_path / "nope.json")]) == 2
    assert "calibration file" in capsys.readouterr().err
    (tmp_path / SAMPLE_FILE).write_text("{}")
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a report sample" in capsys.readouterr().err


def test_report_shows_a_calibration_file(scored_run, tmp_path):
    from .test_report_html import CALIBRATION

    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"format": "hf_vlm_filter.calibration", "version": 1, **CALIBRATION}))
    out = tmp_path / "with-calibration.html"
    assert main(["report", str(scored_run), "--calibration", str(path), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert 'id="calibration"' in text and "keep-set jaccard at 9" in text and "<script>window" not in text


def test_streaming_filter_writes_report_card_grid_and_matches_in_memory(hostile_source, scored_run, tiny_judge_path,
                                                                         tmp_path):
    scores = sorted(v for v in pq.read_table(scored_run / "data.parquet").column("judge_score").to_pylist() if v == v)
    cut = scores[len(scores) // 2]
    memory, stream = tmp_path / "memory", tmp_path / "stream"
    assert main(["filter", str(hostile_source), "--model", tiny_judge_path, "--threshold", str(cut),
                 "--out", str(memory)]) == 0
    assert main(["filter", str(hostile_source), "--model", tiny_judge_path, "--threshold", str(cut), "--streaming",
                 "--shard-rows", "4", "--batch-size", "3", "--out", str(stream)]) == 0
    assert section_keys(saved_gallery(memory)) == section_keys(saved_gallery(stream))
    for folder in (memory, stream):
        text = (folder / REPORT_FILE).read_text(encoding="utf-8")
        kept = read_report_sample(folder)[0].summary.kept
        assert f'<td data-count="kept">{kept}</td>' in text and 'class="threshold"' in text
    card = (stream / "README.md").read_text(encoding="utf-8")
    assets = sorted(path.name for path in (stream / "assets").iterdir())
    assert assets and all(f"(assets/{name})" in card for name in assets)
    assert "## The cut" in card and "[`report.html`](report.html)" in card
    assert any(name.startswith("kept-") for name in assets) and any(name.startswith("dropped-") for name in assets)
    for caption in HOSTILE_CAPTIONS.values():
        assert "<" not in caption or caption[:12] not in card
    assert "\u202e" not in card and "txt.exe galaxies" in card and "&#60;img src&#61;x onerror" in card
    assert "judge&#95;score" in card


def test_two_ranks_sample_what_one_rank_samples(hostile_source, tiny_judge_path, tmp_path):
    """The gallery of a 2-rank job, merged at finalize, is the gallery of the 1-rank job, byte for byte."""
    saved = {}
    for world_size in (1, 2):
        out = tmp_path / f"job-{world_size}"
        for rank in [*range(1, world_size), 0]:
            stream, root = load_source(str(hostile_source), streaming=True)
            judge = VLMJudge(tiny_judge_path, image_root=root, **PIXELS)
            rule = KeepRule.from_thresholds(judge, {"judge_score": 3.0})
            gallery = GallerySample.for_run(judge, rule, image_column="image_path", image_root=root)
            result = run_distributed_job(stream, judge, out, RunContext(str(hostile_source)), rule,
                                         JobOptions(batch_size=3, shard_rows=4, progress=False), rank=rank,
                                         world_size=world_size, poll_seconds=0.01, wait_timeout=5,
                                         finishers=[ReportWriter(), DatasetCardWriter()], observers=[gallery])
            assert (result is None) == (rank != 0)
        assert result.observers[GALLERY] is gallery and (out / REPORT_FILE).is_file()
        saved[world_size] = saved_gallery(out)
    assert saved[1] == saved[2]
    assert len(saved[1]["rows"]) == 14


def test_push_filtered_and_push_to_publish_the_report_and_the_grid(hub, hostile_source, tiny_judge_path, tmp_path):
    dataset, root = load_source(str(hostile_source))
    judge = VLMJudge(tiny_judge_path, image_root=root, **PIXELS)
    rule = KeepRule.from_thresholds(judge, {"judge_score": 3.0})
    gallery = GallerySample.for_run(judge, rule, image_column="image_path", image_root=root)
    result = run_in_memory(dataset, judge, rule, RunContext("user/pairs"), observers=[gallery])
    pushed = push_filtered(result.kept, "user/pairs-cut", result.run, token=TOKEN, gallery=result.observers[GALLERY])
    assert {"README.md", REPORT_FILE, "assets/kept-00.jpg", "assets/dropped-00.jpg"} <= set(pushed.files)
    files = hub.state.files("dataset", "user/pairs-cut")
    assert files["assets/kept-00.jpg"] == gallery.nearest_rows("judge_score", True)[0].thumbnail
    assert b'<td data-count="kept">' + str(result.summary.kept).encode() + b"</td>" in files[REPORT_FILE]
    card = DatasetCard.load("user/pairs-cut", repo_type="dataset").text
    assert "![kept&#58; judge&#95;score " in card and "(assets/kept-00.jpg)" in card

    out = tmp_path / "stream"
    assert main(["filter", str(hostile_source), "--model", tiny_judge_path, "--threshold", "3", "--streaming",
                 "--out", str(out), "--push-to", "user/pairs-stream"]) == 0
    listed = set(HfApi().list_repo_files("user/pairs-stream", repo_type="dataset"))
    assert {REPORT_FILE, "README.md", "assets/kept-00.jpg"} <= listed
    assert hub.state.files("dataset", "user/pairs-stream")[REPORT_FILE] == (out / REPORT_FILE).read_bytes()


def test_a_crashed_and_resumed_job_samples_what_an_uninterrupted_one_samples(hostile_source, tiny_judge_path,
                                                                             tmp_path, monkeypatch):
    """The sample is checkpointed with the rank and restored on resume; rows the resumed job sees again
    (the batch after the last checkpoint) are sampled once."""
    from hf_vlm_filter.engines.streaming import streaming_filter_job

    def job(out: Path) -> Any:
        stream, root = load_source(str(hostile_source), streaming=True)
        judge = VLMJudge(tiny_judge_path, image_root=root, **PIXELS)
        rule = KeepRule.from_thresholds(judge, {"judge_score": 3.0})
        gallery = GallerySample.for_run(judge, rule, image_column="image_path", image_root=root)
        streaming_filter_job(stream, judge, out, RunContext(str(hostile_source)), rule,
                             JobOptions(batch_size=2, shard_rows=2, progress=False), finishers=[ReportWriter()],
                             observers=[gallery], resume=out.exists())
        return gallery

    whole = job(tmp_path / "whole")
    observed = []
    real = GallerySample.observe

    def crash_on_the_fifth_batch(self, table, verdicts):
        observed.append(table.num_rows)
        if len(observed) == 5:
            raise RuntimeError("killed")
        real(self, table, verdicts)

    monkeypatch.setattr(GallerySample, "observe", crash_on_the_fifth_batch)
    with pytest.raises(RuntimeError, match="killed"):
        job(tmp_path / "resumed")
    monkeypatch.setattr(GallerySample, "observe", real)
    assert not (tmp_path / "resumed" / REPORT_FILE).exists()
    from hf_vlm_filter.engines.streaming import RankState

    state = RankState.load(tmp_path / "resumed", 0)
    assert not state.done and 0 < state.summary["rows"] < 14 and GALLERY in state.observer_files
    resumed = job(tmp_path / "resumed")
    assert resumed.dump() == whole.dump()
    assert saved_gallery(tmp_path / "resumed") == saved_gallery(tmp_path / "whole")


def test_a_filter_run_given_its_calibration_shows_it_in_report_and_card(hostile_source, tiny_judge_path, tmp_path,
                                                                         capsys):
    from .test_report_html import CALIBRATION

    calibration = tmp_path / "cal"
    calibration.mkdir()
    (calibration / "calibration.json").write_text(
        json.dumps({"format": "hf_vlm_filter.calibration", "version": 1, **CALIBRATION}))
    out = tmp_path / "job"
    assert main(["filter", str(hostile_source), "--model", tiny_judge_path, "--threshold", "5", "--streaming",
                 "--calibration", str(calibration), "--out", str(out)]) == 0
    assert "the calibration was made with 'judge<script>'" in capsys.readouterr().err  # not this run's judge
    report = (out / REPORT_FILE).read_text(encoding="utf-8")
    assert 'id="calibration"' in report and "keep-set jaccard at 9" in report and "judge&lt;script&gt;" in report
    card = DatasetCard.load(out / "README.md")
    assert "| keep-set jaccard at 9 | 0.74 |" in card.text and "judge&#60;script&#62;" in card.text
    recorded = card.data.to_dict()["hf_vlm_filter"]["calibration"]
    assert recorded["keep_sets"]["jaccard"] == 0.74 and "disagreements" not in recorded  # figures, not captions
    assert read_report_sample(out)[0].calibration["disagreements"] == CALIBRATION["disagreements"]

    (calibration / "calibration.json").write_text(json.dumps({"format": "something else"}))
    assert main(["filter", str(hostile_source), "--model", tiny_judge_path, "--calibration", str(calibration),
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-vlm-filter: error: --calibration:") and "is not a calibration file" in err and "\n" not in err
