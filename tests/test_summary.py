"""RunSummary: counts, error grouping, kept rule, histograms that fit each score, rendering."""

from __future__ import annotations

import math

import pytest

from hf_vlm_filter import CaptionPerplexity, ClipScorer, KeepRule, VLMJudge
from hf_vlm_filter.engines.keep_rule import ColumnRule
from hf_vlm_filter.engines.summary import RunSummary, ScoreHistogram, error_kind
from hf_vlm_filter.scorers.score_spec import ScoreSpec

NAN = math.nan
JUDGE = VLMJudge("./judge").score_spec
#: A column named only "score" on the judge's rubric (the summary of a single unnamed score).
SCORE = ScoreSpec("score", "error", "higher", 1.0, 10.0, JUDGE.bins)


def at_least(threshold: float, column: str = "score", keep_errors: bool = False, **more: float) -> KeepRule:
    rules = [ColumnRule(column, threshold=threshold), *(ColumnRule(c, threshold=v) for c, v in more.items())]
    return KeepRule(tuple(rules), keep_errors)


def summary_of(scores, errors, rule: KeepRule | None = None, verdicts=None, spec: ScoreSpec = SCORE) -> RunSummary:
    return RunSummary.from_columns({spec.column: scores, spec.error_column: errors}, [spec], rule, verdicts)


def test_counts_and_errors_grouped_by_reason():
    scores = [9.5, NAN, 3.0, NAN, 10.0, NAN]
    errors = ["", "image file not found: a.jpg", "", "empty caption", "", "image file not found: b.jpg"]
    s = summary_of(scores, errors, at_least(9))
    assert (s.rows, s.scored, s.kept) == (6, 3, 2)
    assert s.errors == {"image file not found": 2, "empty caption": 1}
    assert list(s.errors) == ["image file not found", "empty caption"]
    assert math.isclose(s.kept_fraction, 2 / 6)
    assert dict(s.dropped_by) == {"error": 3, "score < 9": 1}


def test_keep_errors_and_score_run():
    scores, errors = [1.0, NAN], ["", "missing image"]
    assert summary_of(scores, errors, at_least(0, keep_errors=True)).kept == 2
    assert summary_of(scores, errors, at_least(0)).kept == 1
    score_run = summary_of(scores, errors)
    assert score_run.kept == 2 and not score_run.rule.is_filter


def test_histogram_bins_and_batches_add_up():
    s = RunSummary.for_scorer([SCORE])
    s.add({"score": [1.0, 1.99, 2.0], "error": ["", "", ""]})
    s.add({"score": [9.0, 10.0, 5.5], "error": ["", "", ""]})
    assert s.histogram == [2, 1, 0, 0, 1, 0, 0, 0, 2]
    assert s.rows == 6 and s.scored == 6


def test_render():
    s = summary_of([9.5, NAN, 4.2], ["", "corrupt or truncated image: x", ""], at_least(9))
    text = s.render()
    assert "rows read   3" in text and "scored      2" in text
    assert "corrupt or truncated image  1" in text
    assert "kept        1 (33.3%; score >= 9, errors dropped)" in text
    lines = text.splitlines()
    assert lines[-1].startswith("   9-10 |#") and lines[-1].endswith(" 1")
    assert lines[-6].startswith("   4-5  |#")
    assert sum(1 for line in lines if "|" in line) == 9


def test_empty_and_error_kind():
    s = RunSummary.for_scorer([SCORE], at_least(9))
    assert s.kept_fraction == 0.0 and "rows read   0" in s.render()
    assert error_kind("model failed: RuntimeError: boom") == "model failed"
    assert summary_of([None], [""]).errors == {"no score": 1}


def test_every_column_threshold_is_rendered_and_verdicts_decide():
    rule = at_least(9.0, "judge_score", clip_score=0.28)
    s = summary_of([9.5, 9.5, NAN], ["", "", "missing image"], rule, verdicts=["", "clip_score < 0.28", "error"],
                   spec=JUDGE)
    assert (s.rows, s.kept) == (3, 1)
    assert "kept        1 (33.3%; judge_score >= 9, clip_score >= 0.28, errors dropped)" in s.render()
    with pytest.raises(ValueError, match="verdicts has 2 values for 1 rows"):
        s.add({"judge_score": [1.0], "judge_error": [""]}, verdicts=["", ""])


def test_round_trip_through_dict_and_merge():
    a = summary_of([9.5, NAN], ["", "empty caption"], at_least(9))
    b = summary_of([2.0, NAN, NAN], ["", "empty caption", "missing image"], at_least(9))
    assert RunSummary.from_dict(a.to_dict()) == a
    merged = a.merge(b)
    assert (merged.rows, merged.scored, merged.kept) == (5, 2, 1)
    assert merged.errors == {"empty caption": 2, "missing image": 1}
    assert merged.histogram == [0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert (a.rows, b.rows) == (2, 3)  # inputs untouched


def test_clip_histogram_spans_the_observed_cosines_not_minus_one_to_one():
    cosines = [0.212, 0.218, 0.25, 0.263, 0.30, 0.305, 0.331]
    clip = ClipScorer("./clip").score_spec
    s = summary_of(cosines, [""] * len(cosines), spec=clip)
    bins = s.histograms["clip_score"].bins()
    assert len(bins) == 10 and bins[0][0] == pytest.approx(0.212) and bins[-1][1] == pytest.approx(0.331)
    assert sum(count for _, _, count in bins) == len(cosines)
    # each value lands within one fine cell (2/4096) of its own bin
    width = (0.331 - 0.212) / 10
    for value in cosines:
        index = min(int((value - 0.212) / width), 9)
        assert any(bins[i][2] for i in range(max(0, index - 1), min(10, index + 2)))
    text = s.render()
    assert "clip_score histogram (-1 to 1, higher is better):" in text
    assert "0.212-" in text and "-0.331" in text and "-1-" not in text


def test_perplexity_histogram_spans_its_values_on_an_open_range():
    ppl = CaptionPerplexity("./lm").score_spec
    values = [12.0, 40.0, 55.0, 340.0, 2_000.0]
    h = ScoreHistogram(ppl)
    h.add(values[:2])
    other = ScoreHistogram(ppl)
    other.add(values[2:])
    merged = h.merge(other)
    bins = merged.bins()
    assert merged.count == 5 and bins[0][0] == 12.0 and bins[-1][1] == 2_000.0
    assert [count for _, _, count in bins] == [3, 1, 0, 0, 0, 0, 0, 0, 0, 1]  # 12, 40, 55 | 340 | ... | 2,000
    assert ScoreHistogram.from_dict(merged.to_dict()) == merged


def test_elapsed_time_and_rate_are_rendered():
    s = summary_of([9.5, 3.0], ["", ""], at_least(9))
    s.elapsed_seconds = 4.0
    assert "elapsed     4.0 s (0.5 rows/s)" in s.render()
