"""Calibration of fast mode against reference / justify mode: rank correlations against scipy,
keep-set metrics and thresholds by hand, the report on a tiny judge that writes justifications
(trained once per session: those tests are slow), the file it writes and reads back, the CLI."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections import Counter

import numpy as np
import pytest
from datasets import Dataset, concatenate_datasets

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.cli import main
from hf_vlm_filter.engines.calibration import (
    CALIBRATION_FILE,
    Calibration,
    best_fast_threshold,
    calibrate,
    calibration_facts,
    keep_agreement,
    kendall_tau_b,
    load_calibration,
    same_fraction_threshold,
    spearman,
)
from hf_vlm_filter.models.seed_image_path import OTHER_PIXELS, SAME_PIXELS
from hf_vlm_filter.testing.justifying_judge import justifying_judge
from tests.conftest import random_image


# ---- the statistics ------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 5, 200])
def test_rank_correlations_equal_scipy_with_ties(n):
    from scipy import stats

    rng = np.random.default_rng(n)
    x = rng.integers(1, 11, size=n).astype(float)        # a rubric score: many ties
    y = np.round(x + rng.normal(0, 2, size=n), 1)        # an expected score, some ties
    if n == 2:
        x, y = np.array([1.0, 2.0]), np.array([3.0, 1.0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert kendall_tau_b(x, y, chunk=7) == pytest.approx(kendall_tau_b(x, y), abs=1e-15)


def test_rank_correlations_undefined_and_refused():
    assert spearman([3, 3, 3], [1, 2, 3]) is None and kendall_tau_b([3, 3, 3], [1, 2, 3]) is None
    assert spearman([1], [2]) is None
    with pytest.raises(ValueError, match="NaN"):
        spearman([1, math.nan], [1, 2])
    with pytest.raises(ValueError, match="one length"):
        kendall_tau_b([1, 2], [1, 2, 3])


def test_keep_sets_and_fast_thresholds_by_hand():
    fast = [9.5, 9.1, 8.7, 8.7, 6.0, 3.2]
    reference = np.array([10, 8, 9, 10, 9, 2]) >= 9        # rows 0, 2, 3, 4
    assert keep_agreement(np.array(fast) >= 9, reference) == {
        "fast_kept": 2, "reference_kept": 4, "both_kept": 1, "precision": 0.5, "recall": 0.25, "jaccard": 0.2}
    # keep >= t for t = 9.5, 9.1, 8.7 (a tie: both rows), 6.0, 3.2: Jaccard 1/4, 1/5, 3/5, 4/5, 4/6
    assert best_fast_threshold(fast, reference) == {
        "threshold": 6.0, "fast_kept": 5, "reference_kept": 4, "both_kept": 4, "precision": 0.8, "recall": 1.0,
        "jaccard": 0.8}
    # four rows as reference: the fourth highest fast score, 8.7 (its tie is kept too)
    assert same_fraction_threshold(fast, reference) == {
        "threshold": 8.7, "fast_kept": 4, "reference_kept": 4, "both_kept": 3, "precision": 0.75, "recall": 0.75,
        "jaccard": 0.6}


def test_threshold_ties_and_empty_keep_sets():
    # Jaccard 1/2 at t = 5 (one kept) and at t = 2 (four kept): the kept count closer to reference's 2 wins
    assert best_fast_threshold([5, 4, 3, 2], [True, False, False, True])["threshold"] == 5.0
    nothing = best_fast_threshold([5, 4], [False, False])
    assert nothing["threshold"] is None and nothing["jaccard"] == 1.0 and nothing["fast_kept"] == 0
    assert same_fraction_threshold([5, 4], [False, False])["threshold"] is None
    assert keep_agreement([False], [False]) == {"fast_kept": 0, "reference_kept": 0, "both_kept": 0,
                                                 "precision": None, "recall": None, "jaccard": 1.0}


# ---- the file -------------------------------------------------------------------------------------
def small_report(**changes) -> dict:
    report = {
        "format": "hf_vlm_filter.calibration", "version": 1, "created": "2026-12-01T00:00:00+00:00",
        "model": "me/judge", "revision": "abc", "against": "reference", "threshold": 9.0,
        "rows": {"read": 3, "scored_by_both": 3}, "correlation": {"spearman": 0.5, "kendall": 1 / 3},
        "keep_sets": {"fast_kept": 1, "reference_kept": 2, "both_kept": 1, "precision": 1.0, "recall": 0.5,
                      "jaccard": 0.5},
        "best_fast_threshold": {"threshold": 8.25, "jaccard": 1.0},
        "same_fraction_threshold": {"threshold": 8.25, "jaccard": 1.0},
        "pairs_per_second": {"fast": 120.0, "reference": 7.5}, "disagreements": [],
    }
    report.update(changes)
    return report


def small_calibration() -> Calibration:
    rows = Dataset.from_dict({"row": [0, 1, 2], "fast_score": [9.2, 8.25, 3.0], "fast_error": ["", "", ""],
                              "reference_score": [10.0, 9.0, 2.0], "reference_error": ["", "", ""],
                              "reference_output": ["a", "b", "c"]})
    return Calibration(small_report(), rows)


def test_save_writes_the_report_rows_and_scatter_and_reads_back(tmp_path):
    files = small_calibration().save(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["calibration.json", "calibration.png", "rows.parquet"]
    assert files["scatter"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = load_calibration(tmp_path / CALIBRATION_FILE)
    assert loaded == load_calibration(tmp_path)            # a folder names its calibration.json
    assert loaded["files"] == {"rows": "rows.parquet", "scatter": "calibration.png"}
    assert loaded["keep_sets"] == small_report()["keep_sets"]


def test_without_matplotlib_the_scatter_is_skipped_with_one_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with caplog.at_level(logging.WARNING, logger="hf_vlm_filter.engines.calibration"):
        files = small_calibration().save(tmp_path)
    assert "scatter" not in files and not (tmp_path / "calibration.png").exists()
    assert [record.getMessage() for record in caplog.records] == [
        "the calibration scatter needs matplotlib: pip install matplotlib; calibration.png not written"]
    assert load_calibration(tmp_path)["files"]["scatter"] is None


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("{not json", "is not JSON"),
    (json.dumps({"format": "something else"}), 'is not a calibration file (no "format": "hf_vlm_filter.calibration")'),
    (json.dumps(small_report(version=7)), "version 7 is newer than this library reads (1)"),
    (json.dumps({k: v for k, v in small_report().items() if k != "keep_sets"}), "lacks 'keep_sets'"),
    (json.dumps(small_report(threshold="nine")), "'threshold' should be an integer or a number, got str"),
    (json.dumps(small_report(against="vibes")), "'against' must be one of"),
    (json.dumps(small_report(keep_sets={"precision": 1, "recall": 1, "jaccard": "high"})),
     "keep_sets.jaccard should be a number or null, got 'high'"),
    (json.dumps(small_report(pairs_per_second={"fast": 1.0})), "lacks pairs_per_second.reference"),
])
def test_load_calibration_refuses_with_one_line(tmp_path, content, message):
    path = tmp_path / "calibration.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_calibration(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_card_facts_of_a_calibration():
    assert calibration_facts(small_report()) == {
        "calibrated against": "reference mode",
        "checkpoint": "me/judge@abc",
        "rows": "3 scored by both modes of 3",
        "spearman / kendall": "0.5 / 0.333",
        "keep-set precision / recall at 9": "1 / 0.5",
        "keep-set jaccard at 9": "0.5",
        "fast threshold reproducing the keep set best": "8.25 (jaccard 1)",
        "fast threshold keeping the same fraction": "8.25",
        "pairs/s (fast / reference)": "120 / 7.5",
        "calibrated on": "2026-12-01T00:00:00+00:00",
    }


def test_calibrate_refuses_bad_options(tiny_judge_path):
    ds = Dataset.from_dict({"image": [random_image(56, 56)], "caption": ["x"]})
    with pytest.raises(ValueError, match="against must be one of"):
        calibrate(ds, tiny_judge_path, against="vibes")
    with pytest.raises(ValueError, match="rows must be >= 1"):
        calibrate(ds, tiny_judge_path, rows=0)


# ---- on a judge that writes justifications ---------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    return justifying_judge()


@pytest.fixture(scope="module")
def pairs(trained) -> Dataset:
    """The judge's 32 scene rows (56x56: the seed's path keeps their pixels), a 400x300 and a 97x61
    photo (at the tiny 4..16-patch budget: other pixels on the same grid, and the same pixels), and a
    row without an image."""
    rows = trained.rows.select_columns(["image", "text"])
    extra = Dataset.from_dict({"image": [random_image(400, 300, seed=1), random_image(97, 61, seed=2), None],
                               "text": ["a round clock", "a small photo", "lost"]}).cast(rows.features)
    return concatenate_datasets([rows, extra])


@pytest.fixture(scope="module")
def calibrated(trained, pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration")
    judge = VLMJudge(trained.path, device="cpu", dtype="float32", text_column="text")
    return calibrate(pairs, judge, rows=100, threshold=9, source="scene pairs", out_dir=out), out


@pytest.mark.slow
def test_calibration_report_matches_the_modes_scored_independently(trained, pairs, calibrated):
    result, out = calibrated
    report, table = result.report, result.rows
    judge = VLMJudge(trained.path, device="cpu", dtype="float32", text_column="text")
    fast = np.asarray(pairs.map(judge, batched=True)["judge_score"], dtype=np.float64)
    reference_out = pairs.map(judge.with_options(mode="reference", return_text=True), batched=True)
    reference = np.asarray(reference_out["judge_score"], dtype=np.float64)
    np.testing.assert_array_equal(table["fast_score"], fast)
    np.testing.assert_array_equal(table["reference_score"], reference)
    assert list(table["reference_output"]) == list(reference_out["judge_output"])
    n = len(pairs)
    both = np.isfinite(fast) & np.isfinite(reference)
    reference_errors = Counter(error for error, f in zip(reference_out["judge_error"], fast) if error and np.isfinite(f))
    assert report["rows"] == {"requested": 100, "read": n, "scored_by_fast": n - 1, "scored_by_both": int(both.sum()),
                              "fast_errors": {"missing image": 1}, "reference_errors": dict(reference_errors)}
    from scipy import stats

    assert report["correlation"]["spearman"] == pytest.approx(stats.spearmanr(fast[both], reference[both]).statistic)
    assert report["correlation"]["kendall"] == pytest.approx(stats.kendalltau(fast[both], reference[both]).statistic)
    scored = np.isfinite(fast)
    fast_keep, reference_keep = fast[scored] >= 9, np.nan_to_num(reference[scored], nan=0) >= 9
    assert reference_keep.sum() >= 3, "the judge must keep some rows, or the keep-set figures prove little"
    assert report["keep_sets"]["fast_kept"] == int(fast_keep.sum())
    assert report["keep_sets"]["reference_kept"] == int(reference_keep.sum())
    assert report["keep_sets"]["both_kept"] == int((fast_keep & reference_keep).sum())
    best = report["best_fast_threshold"]
    assert best["jaccard"] >= report["keep_sets"]["jaccard"] and best["jaccard"] >= report["same_fraction_threshold"]["jaccard"]
    kept = fast[scored] >= best["threshold"]
    assert best["both_kept"] == int((kept & reference_keep).sum()) and best["fast_kept"] == int(kept.sum())
    assert report["same_fraction_threshold"]["fast_kept"] >= report["keep_sets"]["reference_kept"]
    # the most disagreeing rows, largest gap first, with the judge's own justification
    gaps = [abs(entry["difference"]) for entry in report["disagreements"]]
    assert len(gaps) == min(20, int(both.sum())) and gaps == sorted(gaps, reverse=True)
    assert gaps[0] == pytest.approx(np.max(np.abs(fast[both] - reference[both])))
    for entry in report["disagreements"]:
        assert entry["justification"] == reference_out[entry["row"]]["judge_output"]
        assert entry["caption"] == pairs[entry["row"]]["text"]
    assert all(rate > 0 for rate in report["pairs_per_second"].values())
    assert report["judges"]["fast"]["seed_image_path"] is False and report["judges"]["reference"]["seed_image_path"] is True
    # the seed's image path: at the 3136..12544-pixel budget the 400x300 photo gets other pixels on
    # the same 6x8 grid, the 97x61 one is resized once to 84x56 either way, the 56x56 scenes not at all
    seed = report["seed_image_path"]
    assert seed["rows_by_path"] == {SAME_PIXELS: n - 2, OTHER_PIXELS: 1, "not decoded": 1}
    assert list(table["seed_path"]).count(OTHER_PIXELS) == 1 and table["seed_path"][n - 3] == OTHER_PIXELS
    other = np.asarray(table["fast_other_score"], dtype=np.float64)
    same = [i for i in range(n) if table["seed_path"][i] == SAME_PIXELS]
    np.testing.assert_allclose(other[same], fast[same], atol=1e-5)
    assert seed["max_abs_difference"] == pytest.approx(float(np.nanmax(np.abs(other - fast))))
    # written and read back
    loaded = load_calibration(out / CALIBRATION_FILE)
    assert loaded == json.loads(json.dumps(report)) and (out / "calibration.png").is_file()
    assert Dataset.from_parquet(str(out / "rows.parquet"))["reference_output"] == list(table["reference_output"])
    assert any("spearman" in line for line in result.summary_lines())


@pytest.mark.slow
def test_calibrate_reads_a_stream_and_against_justify(trained, pairs, calibrated):
    judge = VLMJudge(trained.path, device="cpu", dtype="float32", text_column="text")
    streamed = calibrate(pairs.to_iterable_dataset(), judge, rows=6, against="justify", seed_effect=False)
    assert streamed.report["rows"]["read"] == 6 and "seed_image_path" not in streamed.report
    np.testing.assert_allclose(streamed.rows["fast_score"], calibrated[0].rows["fast_score"][:6], atol=1e-5)
    justify = pairs.select(range(6)).map(judge.with_options(mode="justify", return_text=True), batched=True)
    np.testing.assert_allclose(streamed.rows["reference_score"], justify["judge_score"], atol=1e-6)
    assert list(streamed.rows["reference_output"]) == list(justify["judge_output"])
    assert set(streamed.report["pairs_per_second"]) == {"fast", "justify"}


@pytest.mark.slow
def test_calibrate_command(trained, pairs, tmp_path, capsys):
    source = tmp_path / "pairs.parquet"
    pairs.to_parquet(str(source))
    out = tmp_path / "cal"
    code = main(["calibrate", str(source), "--model", trained.path, "--rows", "8", "--text-column", "text",
                 "--device", "cpu", "--against", "justify", "--no-seed-effect", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "8 of 8 rows scored in fast and justify mode" in printed
    loaded = load_calibration(out)
    assert loaded["against"] == "justify" and loaded["rows"]["read"] == 8 and loaded["source"] == str(source)
    assert loaded["judges"]["justify"]["mode"] == "justify"
    assert main(["calibrate", str(source), "--rows", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "hf-vlm-filter: error: --rows must be >= 1, got 0"
