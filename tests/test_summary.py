"""RunSummary: counts, error grouping, kept rule, histogram and rendering."""

from __future__ import annotations

import math

from hf_vlm_filter.summary import RunSummary, error_kind

NAN = math.nan


def test_counts_and_errors_grouped_by_reason():
    scores = [9.5, NAN, 3.0, NAN, 10.0, NAN]
    errors = ["", "image file not found: a.jpg", "", "empty caption", "", "image file not found: b.jpg"]
    s = RunSummary.from_columns(scores, errors, threshold=9)
    assert (s.rows, s.scored, s.kept) == (6, 3, 2)
    assert s.errors == {"image file not found": 2, "empty caption": 1}
    assert list(s.errors) == ["image file not found", "empty caption"]
    assert math.isclose(s.kept_fraction, 2 / 6)


def test_keep_errors_and_score_run():
    scores, errors = [1.0, NAN], ["", "missing image"]
    assert RunSummary.from_columns(scores, errors, threshold=0, keep_errors=True).kept == 2
    assert RunSummary.from_columns(scores, errors, threshold=0).kept == 1
    score_run = RunSummary.from_columns(scores, errors)
    assert score_run.kept == 2 and score_run.threshold is None


def test_histogram_bins_and_batches_add_up():
    s = RunSummary()
    s.add([1.0, 1.99, 2.0], ["", "", ""])
    s.add([9.0, 10.0, 5.5], ["", "", ""])
    assert s.histogram == [2, 1, 0, 0, 1, 0, 0, 0, 2]
    assert s.rows == 6 and s.scored == 6


def test_render():
    s = RunSummary.from_columns([9.5, NAN, 4.2], ["", "corrupt or truncated image: x", ""], threshold=9)
    text = s.render()
    assert "rows read   3" in text and "scored      2" in text
    assert "corrupt or truncated image  1" in text
    assert "kept        1 (33.3%; score >= 9, errors dropped)" in text
    lines = text.splitlines()
    assert lines[-1].startswith("   9-10 |#") and lines[-1].endswith(" 1")
    assert lines[-6].startswith("   4-5  |#")
    assert sum(1 for line in lines if "|" in line) == 9


def test_empty_and_error_kind():
    s = RunSummary(threshold=9)
    assert s.kept_fraction == 0.0 and "rows read   0" in s.render()
    assert error_kind("model failed: RuntimeError: boom") == "model failed"
    assert RunSummary.from_columns([None], [""]).errors == {"no score": 1}


def test_every_column_threshold_is_rendered_and_kept_mask_decides():
    thresholds = {"judge_score": 9.0, "clip_score": 0.28}
    s = RunSummary.from_columns(
        [9.5, 9.5, NAN], ["", "", "missing image"], thresholds=thresholds, kept_mask=[True, False, False]
    )
    assert (s.rows, s.kept) == (3, 1)
    assert "kept        1 (33.3%; judge_score >= 9, clip_score >= 0.28, errors dropped)" in s.render()
    try:
        s.add([1.0], [""], kept_mask=[True, False])
    except ValueError as exc:
        assert "kept_mask has 2 values for 1 rows" in str(exc)
    else:
        raise AssertionError("a mask of the wrong length must be refused")


def test_round_trip_through_dict_and_merge():
    a = RunSummary.from_columns([9.5, NAN], ["", "empty caption"], threshold=9)
    b = RunSummary.from_columns([2.0, NAN, NAN], ["", "empty caption", "missing image"], threshold=9)
    assert RunSummary.from_dict(a.to_dict()) == a
    merged = a.merge(b)
    assert (merged.rows, merged.scored, merged.kept) == (5, 2, 1)
    assert merged.errors == {"empty caption": 2, "missing image": 1}
    assert merged.histogram == [0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert (a.rows, b.rows) == (2, 3)  # inputs untouched
