"""The report's gallery sample (hf_vlm_filter.reports.gallery): every section against a brute-force
oracle over all rows, the same sample whatever the batch size, the order or the split into ranks,
bounded memory, thumbnails made only for sampled rows."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from hf_vlm_filter.engines.keep_rule import KeepRule
from hf_vlm_filter.engines.summary import error_kind
from hf_vlm_filter.reports import GallerySample
from hf_vlm_filter.reports.gallery import MAX_CELLS, MAX_ERROR_KINDS, OTHER_ERRORS
from hf_vlm_filter.reports.sketches import FINE_CELLS, BottomK, row_key
from hf_vlm_filter.reports.thumbnails import make_thumbnail
from hf_vlm_filter.scorers.score_spec import ScoreSpec

from .conftest import jpeg_bytes, random_image

JUDGE = ScoreSpec("judge_score", "judge_error", low=1.0, high=10.0, bins=tuple(float(e) for e in range(1, 11)))
CLIP = ScoreSpec("clip_score", "clip_error", low=-1.0, high=1.0)
PPL = ScoreSpec("caption_ppl", "caption_ppl_error", direction="lower", low=1.0)
SPECS = (JUDGE, CLIP, PPL)
THRESHOLDS = {"judge_score": 7.0, "caption_ppl": 40.0}
IMAGES = [jpeg_bytes(random_image(40 + 8 * i, 30 + 5 * i, seed=i)) for i in range(6)]


def synthetic(rows: int, seed: int = 0) -> tuple[pa.Table, list[str]]:
    """Rows with three scores (a rubric, a bounded one, a half-open lower-is-better one), NaN and a
    reason on some, images as bytes or paths, and the keep rule's verdicts."""
    rng = np.random.default_rng(seed)
    judge = rng.uniform(1.0, 10.0, rows).round(3)
    clip = rng.normal(0.25, 0.04, rows).round(4)
    ppl = np.exp(rng.normal(3.5, 0.8, rows)).round(2)
    judge_error, clip_error, ppl_error = [""] * rows, [""] * rows, [""] * rows
    for index in range(0, rows, 13):
        judge[index], clip[index] = math.nan, math.nan
        judge_error[index] = clip_error[index] = f"image file not found: images/x{index}.jpg"
    for index in range(5, rows, 17):
        ppl[index] = math.nan
        ppl_error[index] = "empty caption"
    images = [{"bytes": IMAGES[i % len(IMAGES)], "path": f"img{i}.jpg"} if i % 3 else
              {"bytes": None, "path": f"images/x{i}.jpg"} for i in range(rows)]
    table = pa.table({
        "caption": [f"caption {i} <b>" for i in range(rows)],
        "image": pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "judge_score": pa.array([None if math.isnan(v) else v for v in judge], type=pa.float32()),
        "judge_error": judge_error,
        "clip_score": pa.array([None if math.isnan(v) else v for v in clip], type=pa.float32()),
        "clip_error": clip_error,
        "caption_ppl": pa.array([None if math.isnan(v) else v for v in ppl], type=pa.float32()),
        "caption_ppl_error": ppl_error,
    })
    rule = KeepRule.from_thresholds(list(SPECS), THRESHOLDS)
    return table, rule.decide({spec.column: table.column(spec.column).to_pylist() for spec in SPECS})


def new_sample(k: int = 4, **options) -> GallerySample:
    return GallerySample(SPECS, thresholds=THRESHOLDS, per_section=k, score_sample=options.pop("score_sample", 50),
                         seed=options.pop("seed", 3), **options)


def observed(table: pa.Table, verdicts: list[str], batch: int, **options) -> GallerySample:
    sample = new_sample(**options)
    for start in range(0, table.num_rows, batch):
        sample.observe(table.slice(start, batch), verdicts[start : start + batch])
    return sample


class Oracle:
    """Every section computed from all rows at once (sorting, no sketches)."""

    def __init__(self, table: pa.Table, seed: int = 3, k: int = 4, score_sample: int = 50) -> None:
        self.k = k
        rows = table.to_pylist()
        self.keys = []
        for row in rows:
            scores = [math.nan if row[s.column] is None else row[s.column] for s in SPECS]
            self.keys.append(row_key(seed, row["caption"], row["image"], [*scores, *[row[s.error_column] for s in SPECS]]))
        self.rows = rows
        self.score_keys = sorted(set(self.keys))[:score_sample]

    def scores(self, column: str) -> list[float]:
        return [math.nan if row[column] is None else row[column] for row in self.rows]

    def cells(self, spec: ScoreSpec) -> tuple[int, dict[int, list[int]]]:
        values = self.scores(spec.column)
        finite = [(v, key) for v, key in zip(values, self.keys) if not math.isnan(v)]
        if spec.bins is not None:
            level, cell = 0, lambda v: min(max(int(np.searchsorted(spec.bins, v, side="right")) - 1, 0), len(spec.bins) - 2)
        else:
            def fine(v: float) -> int:
                t = (v - spec.low) / (spec.high - spec.low) if spec.high is not None else (math.asinh(v) + 28) / 56
                return min(max(math.floor(t * FINE_CELLS), 0), FINE_CELLS - 1)
            low, high = min(fine(v) for v, _ in finite), max(fine(v) for v, _ in finite)
            level = next(L for L in range(32) if (high >> L) - (low >> L) + 1 <= MAX_CELLS)
            cell = lambda v: fine(v) >> level  # noqa: E731
        cells: dict[int, list[int]] = {}
        for v, key in finite:
            cells.setdefault(cell(v), []).append(key)
        return level, {c: sorted(keys)[: self.k] for c, keys in cells.items()}

    def nearest(self, spec: ScoreSpec, threshold: float, passing: bool) -> list[int]:
        found = []
        for v, key in zip(self.scores(spec.column), self.keys):
            if math.isnan(v):
                continue
            if (v >= threshold if spec.higher_is_better else v <= threshold) == passing:
                found.append((abs(v - threshold), key))
        return [key for _, key in sorted(found)[: self.k]]

    def extremes(self, spec: ScoreSpec, highest: bool) -> list[int]:
        found = [((-v if highest else v), key) for v, key in zip(self.scores(spec.column), self.keys) if not math.isnan(v)]
        return [key for _, key in sorted(found)[: self.k]]

    def errors(self) -> dict[str, list[int]]:
        kinds: dict[str, list[int]] = {}
        for row, key in zip(self.rows, self.keys):
            if any(row[s.column] is None for s in SPECS):
                reason = next(row[s.error_column] for s in SPECS if row[s.error_column])
                kinds.setdefault(error_kind(reason), []).append(key)
        return {kind: sorted(keys)[: self.k] for kind, keys in kinds.items()}


@pytest.fixture(scope="module")
def data():
    return synthetic(400)


def test_every_section_is_the_oracle_of_all_rows(data):
    table, verdicts = data
    sample = observed(table, verdicts, batch=64)
    oracle = Oracle(table)
    for spec in SPECS:
        level, cells = oracle.cells(spec)
        mine = sample.cells[spec.column]
        assert (mine.level, {c: s.items for c, s in mine.cells.items()}) == (level, cells), spec.column
        assert [key for _, key in sample.extremes[spec.column][True].items] == oracle.extremes(spec, True)
        assert [key for _, key in sample.extremes[spec.column][False].items] == oracle.extremes(spec, False)
    assert sample.cells["clip_score"].level > 0  # the bounded column really coarsened to its observed range
    assert len(sample.cells["clip_score"].cells) > len(JUDGE.bins) // 2
    for column, threshold in THRESHOLDS.items():
        spec = next(s for s in SPECS if s.column == column)
        for passing in (True, False):
            assert [row.key for row in sample.nearest_rows(column, passing)] == oracle.nearest(spec, threshold, passing)
            assert oracle.nearest(spec, threshold, passing)  # both sides populated: the check is not vacuous
    assert {kind: [row.key for row in rows] for kind, rows in sample.error_rows().items()} == oracle.errors()
    assert set(oracle.errors()) == {"image file not found", "empty caption"}
    assert sample.score_keys.items == oracle.score_keys
    # the verdict, scores and reasons each sampled row keeps are its own
    by_key = dict(zip(oracle.keys, zip(oracle.rows, verdicts)))
    for row in sample.all_rows():
        source, verdict = by_key[row.key]
        assert row.verdict == verdict and row.caption == source["caption"]
        assert row.scores == {s.column: source[s.column] for s in SPECS}
        assert row.reasons == {s.error_column: source[s.error_column] for s in SPECS if source[s.error_column]}


def test_the_sample_is_the_same_for_any_batch_size_order_and_split_into_ranks(data):
    table, verdicts = data
    whole = observed(table, verdicts, batch=table.num_rows).dump()
    assert observed(table, verdicts, batch=1).dump() == whole
    assert observed(table, verdicts, batch=37).dump() == whole
    order = np.random.default_rng(5).permutation(table.num_rows)
    shuffled = observed(table.take(order), [verdicts[i] for i in order], batch=50)
    assert shuffled.dump() == whole
    ranks = []
    for rank in range(3):  # every 3rd row, as split_dataset_by_node gives a rank of a one-file source
        rows = list(range(rank, table.num_rows, 3))
        ranks.append(observed(table.take(rows), [verdicts[i] for i in rows], batch=16).dump())
    merged = new_sample()
    merged.load(ranks[0])
    merged.merge(ranks[1:])
    assert merged.dump() == whole
    assert GallerySample.from_dump(whole).dump() == whole


def test_memory_is_bounded_and_thumbnails_are_made_only_for_sampled_rows(monkeypatch):
    table, verdicts = synthetic(2000, seed=1)
    calls = []
    import hf_vlm_filter.reports.gallery as gallery

    real = gallery.make_thumbnail
    monkeypatch.setattr(gallery, "make_thumbnail", lambda cell, **kw: calls.append(1) or real(cell, **kw))
    sample = observed(table, verdicts, batch=100)
    k = 4
    bound = k * (len(JUDGE.bins) - 1 + 2 * MAX_CELLS + 2 * len(SPECS) + 2 * len(THRESHOLDS) + len(sample.errors))
    assert len(sample.rows) <= bound < table.num_rows
    assert len(calls) == sample.thumbnails_made < table.num_rows / 3
    assert len(sample.score_keys.items) == len(sample.score_rows) == 50


def test_thumbnails_are_small_jpegs_of_the_row_image_and_a_reason_otherwise(data):
    table, verdicts = data
    sample = observed(table, verdicts, batch=100, thumbnail_side=32)
    pictured = [row for row in sample.all_rows() if row.thumbnail]
    missing = [row for row in sample.all_rows() if not row.thumbnail]
    assert pictured and missing
    images = {row["caption"]: row["image"] for row in table.to_pylist()}
    for row in pictured:
        image = Image.open(io.BytesIO(row.thumbnail))
        assert image.format == "JPEG" and max(image.size) == 32
        assert row.thumbnail == make_thumbnail(images[row.caption], side=32)[0]
    for row in missing:  # the path rows point at files that do not exist here
        absolute = str(Path(images[row.caption]["path"]).resolve())  # read, and named, as the output writes it
        assert row.image == absolute and row.note == f"image file not found: {absolute}"


def test_row_keys_identify_pairs_not_their_location_or_their_scores(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "images")
    absolute = str(tmp_path / "images" / "a.jpg")
    assert row_key(0, "c", "images/a.jpg", [7.0], tmp_path) == row_key(0, "c", absolute, [7.5])
    assert row_key(0, "c", "link/a.jpg", [], tmp_path) == row_key(0, "c", {"bytes": None, "path": absolute})
    assert row_key(0, "c", "images/b.jpg", [], tmp_path) != row_key(0, "c", absolute)
    assert row_key(0, "c", {"bytes": b"1", "path": "a.jpg"}) != row_key(0, "c", {"bytes": b"2", "path": "a.jpg"})
    assert row_key(0, "c", None) != row_key(0, "d", None) != row_key(1, "d", None)
    assert row_key(0, None, None, [1.0, ""]) != row_key(0, None, None, [2.0, ""])  # nothing else tells them apart
    assert row_key(0, "c", "https://x/a.jpg") != row_key(0, "c", "https://y/a.jpg")
    assert 0 <= row_key(9, None, None) < 2**63


def test_bottom_k_keeps_the_smallest_distinct_items():
    sketch = BottomK(3)
    for item in [5, 1, 5, 9, 2, 7, 1]:
        sketch.add(item)
    assert sketch.items == [1, 2, 5]
    assert sketch.merge(BottomK(3, [0, 6])).items == [0, 1, 2]
    with pytest.raises(ValueError, match="k >= 1"):
        BottomK(0)


def test_error_kinds_are_capped(data):
    rows = MAX_ERROR_KINDS + 4
    table = pa.table({"caption": [f"c{i}" for i in range(rows)], "judge_score": pa.array([None] * rows, pa.float32()),
                      "judge_error": [f"reason {i}: detail" for i in range(rows)]})
    sample = GallerySample([JUDGE], per_section=2)
    sample.observe(table, ["error"] * rows)
    kinds = sample.error_kinds()
    assert len(kinds) == MAX_ERROR_KINDS + 1 and kinds[OTHER_ERRORS] == 2
    assert all(row.note == "missing image" for row in sample.all_rows())  # no image column in the table


def test_samples_of_other_configurations_do_not_merge_and_bad_input_is_refused(data):
    table, verdicts = data
    other = GallerySample(SPECS, thresholds={"judge_score": 8.0}, per_section=4, score_sample=50, seed=3)
    with pytest.raises(ValueError, match="another configuration"):
        new_sample().merge([other.dump()])
    with pytest.raises(ValueError, match="not a gallery sample"):
        new_sample().load(json.dumps({"format": "something else"}).encode())
    with pytest.raises(ValueError, match="2 verdicts for 3 rows"):
        new_sample().observe(table.slice(0, 3), ["", ""])
    with pytest.raises(ValueError, match="not score columns"):
        GallerySample(SPECS, thresholds={"nope": 1.0})
    sample = new_sample()
    sample.observe(table.slice(0, 0), [])
    assert not sample.rows and sample.to_dict()["scores"] == []
