"""The HTML report and the card grid (hf_vlm_filter.reports), read back with an HTML parser: counts
and histogram bars equal the summary, the threshold is drawn, gallery rows sit in their bins,
Spearman equals scipy's, a previewed cut decides every sampled row again, hostile text stays text."""

from __future__ import annotations

import html
import math
import re
from html.parser import HTMLParser

import pyarrow as pa
import pytest
from scipy.stats import spearmanr

from hf_vlm_filter.engines.keep_rule import KeepRule
from hf_vlm_filter.engines.run_record import FilterRun, ScorerInfo
from hf_vlm_filter.engines.summary import RunSummary
from hf_vlm_filter.reports import GallerySample, estimate_kept, preview_rule, render_report, write_card_grid
from hf_vlm_filter.reports.card_grid import md_text
from hf_vlm_filter.reports.page import SCRIPT

from .test_report_sample import SPECS, THRESHOLDS, synthetic

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned=2">',
    "'single' & \"double\" quotes </textarea></style></script>",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u202egnp.exe [link](javascript:alert(1))",
    "{{ card_data }} {% raw %} ![x](http://example.com/x.png) | *bold* | <b>b</b>",
]
CALIBRATION = {"model": "judge<script>", "revision": None, "against": "reference", "threshold": 9.0,
               "created": "2026-12-01", "rows": {"read": 500, "scored_by_both": 498},
               "correlation": {"spearman": 0.81, "kendall": 0.66},
               "keep_sets": {"fast_kept": 80, "reference_kept": 90, "precision": 0.9, "recall": 0.8, "jaccard": 0.74},
               "best_fast_threshold": {"threshold": 8.6, "jaccard": 0.8},
               "same_fraction_threshold": {"threshold": 8.7, "jaccard": 0.79},
               "pairs_per_second": {"fast": 95.0, "reference": 31.0},
               "disagreements": [{"caption": HOSTILE[0], "image": "a.jpg", "fast_score": 9.5, "reference_score": 2.0,
                                  "justification": HOSTILE[1]}]}


def hostile_table(rows: int = 120) -> tuple[pa.Table, list[str]]:
    """The synthetic rows with the hostile captions planted in the first rows and a hostile reason."""
    table, _ = synthetic(rows, seed=2)
    captions = table.column("caption").to_pylist()
    captions[: len(HOSTILE)] = HOSTILE
    errors = table.column("judge_error").to_pylist()
    errors[0] = "image file not found: <script>window.__pwned=3</script>.jpg"
    table = table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(captions))
    table = table.set_column(table.schema.get_field_index("judge_error"), "judge_error", pa.array(errors))
    rule = KeepRule.from_thresholds(list(SPECS), THRESHOLDS)
    return table, rule.decide({spec.column: table.column(spec.column).to_pylist() for spec in SPECS})


def make_run(table: pa.Table, verdicts: list[str], facts: dict | None = None, source: str = "pairs<b>.json",
             calibration: dict | None = None) -> FilterRun:
    rule = KeepRule.from_thresholds(list(SPECS), THRESHOLDS)
    summary = RunSummary.for_scorer(SPECS, rule)
    summary.add({name: table.column(name).to_pylist() for name in table.column_names}, verdicts)
    summary.elapsed_seconds = 2.0
    scorers = [ScorerInfo("VLMJudge", "./judge", None, "judge_score", "judge_error", "fast", facts=facts or {}),
               ScorerInfo("ClipScorer", "./clip", "abc", "clip_score", "clip_error"),
               ScorerInfo("CaptionPerplexity", "./lm", None, "caption_ppl", "caption_ppl_error", direction="lower")]
    return FilterRun(source, scorers=scorers, rule=rule, summary=summary, command="hf-vlm-filter filter <x>",
                     calibration=calibration)


@pytest.fixture(scope="module")
def report():
    table, verdicts = hostile_table()
    sample = GallerySample(SPECS, thresholds=THRESHOLDS, per_section=40, score_sample=1000, seed=1)  # every row
    sample.observe(table, verdicts)
    run = make_run(table, verdicts)
    return table, verdicts, sample, run, render_report(run, sample)


class Page(HTMLParser):
    """Elements (tag, attributes, text inside) of a page, in order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self.open: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in ("img", "meta", "br", "input", "line", "rect", "circle", "link"):
            self.open.append(element)

    def handle_endtag(self, tag):
        while self.open:
            if self.open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self.open:
            element["text"] += data

    def find(self, tag: str, **attrs) -> list[dict]:
        return [e for e in self.elements if e["tag"] == tag and all(
            (e["attrs"].get(k.replace("_", "-")) or "").split() and v in (e["attrs"].get(k.replace("_", "-")) or "").split()
            if k == "class" else e["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items())]


def test_hostile_text_is_escaped_everywhere(report):
    table, verdicts, sample, run, text = report
    page = Page(text)
    assert [e["tag"] for e in page.elements].count("script") == 1
    assert page.find("script")[0]["text"] == SCRIPT
    assert not [e for e in page.elements for name in e["attrs"] if name.startswith("on")]
    assert not [e for e in page.elements if e["tag"] == "img" and not e["attrs"]["src"].startswith("data:image/jpeg;base64,")]
    captions = [e["text"] for e in page.find("p", **{"class": "caption"})]
    for caption in HOSTILE:
        assert caption in captions  # the exact text, as text
        assert html.escape(caption) in text
        if "<" in caption:
            assert caption not in text  # never the raw markup
    assert "window.__pwned=3" in " ".join(e["text"] for e in page.elements if e["tag"] == "p")
    assert page.find("h1")[0]["text"] == "hf_vlm_filter report: pairs<b>.json"
    assert all(e["attrs"].get("dir") == "auto" for e in page.find("p", **{"class": "caption"}))
    policy = page.find("meta", http_equiv="Content-Security-Policy")[0]["attrs"]["content"]
    assert "default-src 'none'" in policy and "img-src data:" in policy and "unsafe-inline" not in policy


def test_counts_histograms_and_thresholds_match_the_summary(report):
    table, verdicts, sample, run, text = report
    page = Page(text)
    summary = run.summary
    counts = {e["attrs"]["data-count"]: e["text"] for e in page.elements if "data-count" in e["attrs"] and e["tag"] == "td"}
    assert counts["rows"] == str(summary.rows) == "120"
    assert counts["scored"] == str(summary.scored) and counts["errors"] == str(summary.rows - summary.scored)
    assert counts["kept"] == str(summary.kept) == str(verdicts.count(""))
    assert {e["attrs"]["data-error"]: int(e["text"]) for e in page.find("td") if "data-error" in e["attrs"]} == summary.errors
    assert {e["attrs"]["data-dropped"]: int(e["text"]) for e in page.find("td") if "data-dropped" in e["attrs"]} == \
        dict(summary.dropped_by)
    for spec in SPECS:
        svg = page.find("svg", data_column=spec.column)[0]
        start = page.elements.index(svg)
        bars = [e for e in page.elements[start:] if e["tag"] == "rect"][: len(summary.histograms[spec.column].bins())]
        assert [int(bar["attrs"]["data-count"]) for bar in bars] == [c for _, _, c in summary.histograms[spec.column].bins()]
        assert sum(int(bar["attrs"]["data-count"]) for bar in bars) == summary.histograms[spec.column].count
        svg_text = text[text.index(f'data-column="{spec.column}" width'):].split("</svg>")[0]
        thresholds = re.findall(r'class="threshold" data-threshold="([^"]+)"', svg_text)
        assert thresholds == ([repr(THRESHOLDS[spec.column])] if spec.column in THRESHOLDS else [])
        for bar in bars:  # bar colours follow the threshold's direction
            low, high = float(bar["attrs"]["data-low"]), float(bar["attrs"]["data-high"])
            side = bar["attrs"]["class"].split()[1]
            if spec.column == "judge_score":
                assert side == ("pass" if low >= 7 else "fail" if high <= 7 else "mixed")
            if spec.column == "caption_ppl":
                assert side == ("pass" if high <= 40 else "fail" if low > 40 else "mixed")


def test_gallery_rows_sit_in_their_bins_with_their_verdicts(report):
    table, verdicts, sample, run, text = report
    sections = re.findall(r'<section class="bin" id="g(\d)-b(\d+)" data-column="([^"]+)" data-bin="\d+">(.*?)</section>',
                          text)
    assert sections
    by_key = {row.key: row for row in sample.all_rows()}
    for column_index, bin_index, column, body in sections:
        low, high, count = run.summary.histograms[column].bins()[int(bin_index)]
        keys = [int(key) for key in re.findall(r'data-key="(\d+)"', body)]
        assert len(keys) <= min(count, sample.per_section)
        if column == "judge_score" and count:  # a rubric's bins are the sample's cells: never an empty one
            assert len(keys) == min(count, sample.per_section)
        for key in keys:
            assert low <= by_key[key].score(column) <= high
        for key, verdict in re.findall(r'data-key="(\d+)" data-verdict="([^"]*)"', body):
            assert html.unescape(verdict) == by_key[int(key)].verdict
    nearest = re.findall(r'<section class="nearest" data-column="([^"]+)" data-side="(\w+)">(.*?)</section>', text)
    assert sorted((c, s) for c, s, _ in nearest) == sorted((c, s) for c in THRESHOLDS for s in ("passing", "failing"))
    for column, side, body in nearest:
        keys = [int(key) for key in re.findall(r'data-key="(\d+)"', body)]
        assert keys == [row.key for row in sample.nearest_rows(column, side == "passing")]
    kinds = re.findall(r'<section class="error-kind" data-kind="([^"]+)">', text)
    assert sorted(kinds) == sorted(sample.error_kinds())


def test_spearman_and_the_scatter_come_from_the_score_sample(report):
    table, verdicts, sample, run, text = report
    scores = sample.score_table()
    assert len(scores["judge_score"]) == table.num_rows  # the sample holds every row here
    found = dict(re.findall(r'data-spearman="([^"]+)" data-n="\d+">([^<]+)<', text))
    for a in ("judge_score", "clip_score", "caption_ppl"):
        for b in ("judge_score", "clip_score", "caption_ppl"):
            both = [i for i in range(table.num_rows) if math.isfinite(scores[a][i]) and math.isfinite(scores[b][i])]
            expected = spearmanr(scores[a][both], scores[b][both]).statistic
            assert float(found[f"{a}|{b}"]) == pytest.approx(expected, abs=5e-4)
    assert float(found["judge_score|judge_score"]) == 1.0
    points = int(re.search(r'class="scatter"[^>]*data-points="(\d+)"', text).group(1))
    finite = sum(1 for a, b in zip(scores["judge_score"], scores["clip_score"]) if math.isfinite(a) and math.isfinite(b))
    assert points == finite == text.count('class="point ')


def test_a_previewed_cut_decides_every_sampled_row_again(report):
    table, verdicts, sample, run, _ = report
    rule = preview_rule(run, threshold=4.0, threshold_for={"caption_ppl": 80.0})
    assert rule.describe() == "judge_score >= 4, caption_ppl <= 80, errors dropped"
    text = render_report(run, sample, rule=rule)
    assert 'data-preview="1"' in text and "Previewing <strong>judge_score &gt;= 4, caption_ppl &lt;= 80" in text
    rows = {row.key: row for row in sample.all_rows()}
    cards = re.findall(r'data-key="(\d+)" data-verdict="([^"]*)"', text)
    assert cards
    for key, verdict in cards:
        row = rows[int(key)]
        assert html.unescape(verdict) == rule.decide({c: [row.score(c)] for c in sample.columns})[0]
    assert any(html.unescape(v) != rows[int(k)].verdict for k, v in cards)  # the preview changed some verdicts
    full = rule.decide({spec.column: table.column(spec.column).to_pylist() for spec in SPECS})
    kept = re.search(r'data-count="preview-kept">(\d+)<', text).group(1)
    assert int(kept) == full.count("") == estimate_kept(sample, rule, table.num_rows).kept
    assert estimate_kept(sample, rule, table.num_rows).exact
    small = GallerySample(SPECS, thresholds=THRESHOLDS, per_section=2, score_sample=40, seed=1)
    small.observe(table, verdicts)
    estimate = estimate_kept(small, rule, table.num_rows)
    assert not estimate.exact and estimate.sampled == 40 and estimate.describe().startswith("~")
    with pytest.raises(ValueError, match="not 'nope'"):
        preview_rule(run, threshold_for={"nope": 1.0})
    assert 'data-preview' not in render_report(run, sample, rule=run.rule)


def test_calibration_is_shown_when_the_run_has_one(report):
    table, verdicts, sample, _, text = report
    assert 'id="calibration"' not in text
    run = make_run(table, verdicts, calibration=CALIBRATION)
    shown = render_report(run, sample)
    section = shown[shown.index('id="calibration"'):].split("</section>")[0]
    assert "keep-set jaccard at 9" in section and "0.74" in section and "95 / 31" in section
    assert "judge&lt;script&gt;" in section and html.escape(HOSTILE[0]) in section and "<script>" not in section
    explicit = render_report(make_run(table, verdicts), sample, calibration={"note": "<i>partial</i>", "rows": 3})
    assert "&lt;i&gt;partial&lt;/i&gt;" in explicit  # a dict of another shape: its plain facts


def test_a_report_without_a_gallery_or_a_summary(report):
    table, verdicts, _, run, _ = report
    text = render_report(run)
    assert 'id="gallery"' not in text and 'class="bar ' in text and 'href="#g' not in text
    with pytest.raises(ValueError, match="needs the run's summary"):
        render_report(FilterRun("x"))


def test_card_grid_shows_kept_and_dropped_rows_nearest_the_threshold(report, tmp_path):
    table, verdicts, sample, run, _ = report
    grid = write_card_grid(run, sample, tmp_path)
    names = sorted(grid.files)
    assert names and all(re.fullmatch(r"assets/(kept|dropped)-\d\d\.jpg", name) for name in names)
    assert all((tmp_path / name).read_bytes()[:2] == b"\xff\xd8" for name in names)
    kept_rows = [row for row in sample.nearest_rows("judge_score", True) if row.thumbnail and not row.verdict]
    assert grid.files["assets/kept-00.jpg"].read_bytes() == kept_rows[0].thumbnail
    for name in names:
        assert f"]({name})" in grid.markdown
    assert "Kept nearest the threshold" in grid.markdown and "Dropped nearest the threshold" in grid.markdown
    for caption in HOSTILE:  # no caption text can open markup in the card
        for line in grid.markdown.splitlines():
            assert caption[:20] not in line
    assert not re.search(r"<(?!br>)", grid.markdown)
    assert md_text("a\nb|c") == "a b&#124;c" and md_text("\u202eexe.txt \u2067x") == "exe.txt x"
    score_run = FilterRun("x", rule=KeepRule(), summary=run.summary)
    grid = write_card_grid(score_run, sample, tmp_path / "score")
    assert "Best judge&#95;score in the sample" in grid.markdown
