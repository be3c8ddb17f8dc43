"""The keep rule: directions declared by the scorers, fractions on any column, verdicts, records, and
the command line keeping what the rule says (perplexity at most the threshold, CLIP bins that span
the observed cosines)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hf_vlm_filter import CaptionPerplexity, ClipScorer, ColumnRule, CompositeScorer, KeepRule, VLMJudge
from hf_vlm_filter.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample" / "pairs.json"
SAMPLE_ROWS = json.loads(SAMPLE.read_text())
NAN = math.nan


def test_thresholds_take_each_scorer_s_direction():
    rule = KeepRule.from_thresholds([VLMJudge("./j"), CaptionPerplexity("./lm")], {"judge_score": 9, "caption_ppl": 340})
    assert [(r.column, r.direction) for r in rule.columns] == [("judge_score", "higher"), ("caption_ppl", "lower")]
    batch = {"judge_score": [9.0, 9.5, 8.9, 10.0, NAN], "caption_ppl": [340.0, 340.1, 12.0, NAN, 12.0]}
    assert rule.decide(batch) == ["", "caption_ppl > 340", "judge_score < 9", "error", "error"]
    assert KeepRule(rule.columns, keep_errors=True).mask(batch) == [True, False, False, True, True]
    with pytest.raises(ValueError, match=r"no selected scorer writes the score column 'clip_score'"):
        KeepRule.from_thresholds(VLMJudge("./j"), {"clip_score": 0.3})


def test_fractions_resolve_to_their_cut_off_on_any_column():
    values = {"caption_ppl": [50.0, 10.0, NAN, 30.0, 20.0, 40.0]}
    lowest = KeepRule((ColumnRule("caption_ppl", "lower", fraction=0.4),))
    resolved = lowest.resolve(values)
    assert resolved.columns[0].threshold == 20.0 and resolved.resolved_from == lowest
    assert resolved.mask(values) == [False, True, False, False, True, False]
    highest = KeepRule((ColumnRule("caption_ppl", "higher", fraction=0.4),)).resolve(values)
    assert highest.mask(values) == [True, False, False, False, False, True]
    assert lowest.describe() == "bottom 40.0% by caption_ppl, errors dropped"
    with pytest.raises(ValueError, match="needs the whole column"):
        lowest.decide(values)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        ColumnRule("x", fraction=1.5)
    with pytest.raises(ValueError, match="exactly one of threshold and fraction"):
        ColumnRule("x")


def test_rule_round_trips_through_its_record():
    rule = KeepRule((ColumnRule("caption_ppl", "lower", fraction=0.3),), keep_errors=True).resolve(
        {"caption_ppl": [1.0, 2.0, 3.0]})
    assert KeepRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    assert KeepRule.from_dict(rule.to_dict()).resolved_from.columns[0].fraction == 0.3


@pytest.fixture(scope="module")
def tiny_lm(tiny_checkpoints) -> str:
    return tiny_checkpoints.path("causal_lm")


@pytest.fixture(scope="module")
def tiny_clip(tiny_checkpoints) -> str:
    return tiny_checkpoints.path("clip")


def run_cli(*args: str) -> None:
    assert main(list(args)) == 0


def test_cli_perplexity_threshold_keeps_the_rows_at_most_that_perplexity(tiny_lm, tmp_path, capsys):
    scored = tmp_path / "scored"
    run_cli("score", str(SAMPLE), "--scorer", "ppl", "--model", tiny_lm, "--out", str(scored))
    rows = pq.read_table(scored / "data.parquet").to_pylist()
    values = sorted(r["caption_ppl"] for r in rows if not math.isnan(r["caption_ppl"]))
    threshold = values[len(values) // 3]
    kept = tmp_path / "kept"
    run_cli("filter", str(SAMPLE), "--scorer", "ppl", "--model", tiny_lm, "--threshold", repr(threshold),
            "--out", str(kept))
    got = pq.read_table(kept / "data.parquet").to_pylist()
    expected = [r["image_path"] for r in rows if not math.isnan(r["caption_ppl"]) and r["caption_ppl"] <= threshold]
    assert [r["image_path"] for r in got] == expected and 0 < len(expected) < len(rows)
    assert all(r["caption_ppl"] <= threshold for r in got)
    summary = (kept / "summary.txt").read_text()
    assert f"caption_ppl <= {threshold:g}, errors dropped" in summary
    assert f"dropped: caption_ppl > {threshold:g}" in summary

    fluent = tmp_path / "fluent"
    run_cli("filter", str(SAMPLE), "--scorer", "ppl", "--model", tiny_lm, "--bottom-fraction", "0.5", "--out", str(fluent))
    chosen = pq.read_table(fluent / "data.parquet").to_pylist()
    cut = max(r["caption_ppl"] for r in chosen)
    assert len(chosen) == math.ceil(len(values) / 2) and all(v > cut for v in values[len(chosen):])
    assert main(["filter", str(SAMPLE), "--scorer", "ppl", "--model", tiny_lm, "--threshold", "0.5",
                 "--out", str(tmp_path / "never")]) == 2
    assert "can never pass: caption_ppl is >= 1, lower is better" in capsys.readouterr().err


def test_cli_clip_summary_bins_span_the_observed_cosines(tiny_clip, tmp_path):
    out = tmp_path / "clip"
    run_cli("score", str(SAMPLE), "--scorer", "clip", "--model", tiny_clip, "--out", str(out))
    cosines = [r["clip_score"] for r in pq.read_table(out / "data.parquet").to_pylist() if not math.isnan(r["clip_score"])]
    lines = (out / "summary.txt").read_text().splitlines()
    start = lines.index("clip_score histogram (-1 to 1, higher is better):")
    bars = lines[start + 1:]
    assert len(bars) == 10 and sum(int(bar.split()[-1]) for bar in bars) == len(cosines)
    assert bars[0].strip().startswith(f"{min(cosines):.4g}-") and bars[-1].split("|")[0].strip().endswith(
        f"-{max(cosines):.4g}")


def test_cli_micro_batch_size_reaches_unifilter(tiny_checkpoints, tmp_path, monkeypatch):
    from hf_vlm_filter.scorers import unifilter_score

    calls: list[int] = []
    original = unifilter_score.UniFilterScorer.score_prepared
    monkeypatch.setattr(unifilter_score.UniFilterScorer, "score_prepared",
                        lambda self, items, rank=None: calls.append(len(items)) or original(self, items, rank))
    run_cli("score", str(SAMPLE), "--scorer", "unifilter", "--model", tiny_checkpoints.path("unifilter"),
            "--micro-batch-size", "3", "--out", str(tmp_path / "u"))
    assert calls and max(calls) == 3 and sum(calls) == 11  # the 11 good rows of the sample, 3 at a time


def test_composite_gives_each_scorer_its_own_decoding(tiny_judge_path, tiny_clip):
    from datasets import Dataset

    from tests.conftest import jpeg_bytes, random_image

    images = [{"bytes": jpeg_bytes(random_image(320 + 40 * i, 240, seed=i)), "path": None} for i in range(3)]
    images.append({"bytes": jpeg_bytes(random_image(300, 200, seed=9))[:400], "path": None})  # truncated
    batch = Dataset.from_dict({"image": images, "caption": ["a", "b", "c", "d"]})[:]
    judge = VLMJudge(tiny_judge_path, device="cpu", min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28)
    draft = ClipScorer(tiny_clip, device="cpu", jpeg_draft=True)
    full = ClipScorer(tiny_clip, device="cpu")
    alone = {**judge(batch), **draft(batch)}
    both = CompositeScorer([judge, draft])(batch)
    for column in ("judge_score", "clip_score"):
        np.testing.assert_array_equal(both[column], alone[column])
    assert list(both["clip_error"]) == list(alone["clip_error"]) and both["clip_error"][3].startswith("corrupt")
    # the draft-decoded cosines really differ from full-resolution ones: the composite did not hand CLIP the judge's pixels
    assert not np.allclose(draft(batch)["clip_score"][:3], full(batch)["clip_score"][:3], atol=1e-6)
