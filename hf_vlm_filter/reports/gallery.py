"""The report's sample of a run, collected while it runs: a row observer with bounded memory.

:class:`GallerySample` is a :class:`~hf_vlm_filter.engines.observers.RowObserver`: the engines show
it every scored batch with the keep rule's verdicts, a streaming job checkpoints it with each rank
and merges the ranks' samples at the end. It keeps, with at most ``per_section`` rows each:

* per score column and per cell of its range (:class:`~hf_vlm_filter.reports.sketches.ScoreCells`:
  the rubric's bins, or nested cells spanning the observed range), a seeded uniform sample, and
  the lowest and highest scored rows — the report cuts them into the histogram's bins (exact for a
  rubric; a bin that shares a cell with its neighbour gets an approximately uniform sample);
* per threshold of the keep rule, the rows nearest it on the passing side and on the failing side
  (exact: the nearest of all rows, ties broken by key);
* per error reason (the reason's kind, at most ``MAX_ERROR_KINDS`` kinds), a sample of the rows
  that could not be scored;
* a uniform sample of ``score_sample`` rows' scores alone (no image): Spearman, the scatter and
  the preview of another threshold are computed on it (exact when the run has fewer rows).

Each kept row holds its caption (the first ``MAX_CAPTION_CHARS`` characters), every score and
reason, its verdict and a small JPEG thumbnail, made only when the row enters a sample (a row in
several samples is stored once): a 10^8-row stream costs O(sample) memory, and decodes
O(k log n) images per cell more, not the dataset again. The sample depends only on the rows and the
``seed``: the same in any batch size, on any number of ranks, in memory or streaming (a row's
key is a hash of its caption and image, so two rows with the same caption and image are sampled once).

Example:
    >>> import pyarrow as pa
    >>> from hf_vlm_filter.scorers.score_spec import ScoreSpec
    >>> spec = ScoreSpec("judge_score", "judge_error", low=1, high=10, bins=tuple(range(1, 11)))
    >>> sample = GallerySample([spec], thresholds={"judge_score": 9.0}, per_section=2)
    >>> table = pa.table({"caption": ["a", "b", "c"], "image": [None, None, None],
    ...                   "judge_score": [9.4, 8.9, None], "judge_error": ["", "", "missing image"]})
    >>> sample.observe(table, ["", "judge_score < 9", "error"])
    >>> [row.caption for row in sample.nearest_rows("judge_score", passing=True)], sample.error_kinds()
    (['a'], {'missing image': 1})
    >>> GallerySample.from_dump(sample.dump()).dump() == sample.dump()
    True
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engines.summary import DISPLAY_BINS, error_kind
from ..scorers.score_spec import ScoreSpec
from .sketches import BottomK, ScoreCells, absolute_path, row_key
from .thumbnails import THUMBNAIL_SIDE, make_thumbnail

#: The observer's name: its key in ``result.observers`` and in a job's rank states.
GALLERY = "gallery"
FORMAT = "hf_vlm_filter.gallery"
VERSION = 1
DEFAULT_PER_SECTION = 48
DEFAULT_SCORE_SAMPLE = 10_000
MAX_CAPTION_CHARS = 500
#: Error kinds sampled apart; rows of later kinds share one sample under :data:`OTHER_ERRORS`.
MAX_ERROR_KINDS = 16
OTHER_ERRORS = "(other reasons)"
#: Cells a non-rubric column is sampled on at most (two per displayed histogram bin).
MAX_CELLS = 2 * DISPLAY_BINS


@dataclass
class SampleRow:
    """One sampled row: what the gallery shows of it."""

    key: int
    caption: str | None
    scores: dict[str, float | None]
    reasons: dict[str, str] = field(default_factory=dict)
    verdict: str = ""
    image: str | None = None
    thumbnail: bytes | None = None
    note: str = ""

    @property
    def reason(self) -> str:
        """The first non-empty reason (error column order), ``""`` when every score is there."""
        return next((reason for reason in self.reasons.values() if reason), "")

    def score(self, column: str) -> float:
        value = self.scores.get(column)
        return math.nan if value is None else value

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "caption": self.caption, "scores": self.scores, "reasons": self.reasons,
                "verdict": self.verdict, "image": self.image, "note": self.note,
                "thumbnail": base64.b64encode(self.thumbnail).decode("ascii") if self.thumbnail else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleRow:
        thumbnail = data.get("thumbnail")
        return cls(int(data["key"]), data.get("caption"), dict(data["scores"]), dict(data.get("reasons") or {}),
                   data.get("verdict", ""), data.get("image"), base64.b64decode(thumbnail) if thumbnail else None,
                   data.get("note", ""))


class GallerySample:
    """The row observer of the module docstring.

    Args:
        specs: the score columns (a scorer's ``score_specs``).
        thresholds: column -> threshold of the keep rule (the rows nearest each are sampled).
        image_column: the column holding the image (bytes, ``{"bytes", "path"}`` or a path);
            ``None`` or absent: rows without thumbnails.
        text_column: the caption column (``None`` or absent: no captions).
        image_root: folder relative image paths are read from (not part of the saved sample).
        per_section: rows per sample (bin cell, side of a threshold, error kind).
        score_sample: rows whose scores alone are sampled.
        seed: the sampling seed.
        thumbnail_side: longest side of a thumbnail, in pixels.
    """

    name = GALLERY

    def __init__(self, specs: Sequence[ScoreSpec], *, thresholds: Mapping[str, float] | None = None,
                 image_column: str | None = "image", text_column: str | None = "caption",
                 image_root: str | None = None, per_section: int = DEFAULT_PER_SECTION,
                 score_sample: int = DEFAULT_SCORE_SAMPLE, seed: int = 0,
                 thumbnail_side: int = THUMBNAIL_SIDE) -> None:
        self.specs = tuple(ScoreSpec.from_dict(spec.to_dict()) for spec in specs)  # as saved: bins as floats
        if not self.specs:
            raise ValueError("a gallery sample needs at least one score column")
        columns = [spec.column for spec in self.specs]
        unknown = sorted(set(thresholds or {}) - set(columns))
        if unknown:
            raise ValueError(f"thresholds on {unknown}, which are not score columns {columns}")
        self.thresholds = {column: float(value) for column, value in (thresholds or {}).items()}
        self.image_column, self.text_column, self.image_root = image_column, text_column, image_root
        self.per_section, self.score_sample, self.seed = int(per_section), int(score_sample), int(seed)
        self.thumbnail_side = int(thumbnail_side)
        self._reset()

    @classmethod
    def for_run(cls, scorer: Any, rule: Any, **options: Any) -> GallerySample:
        """The sample of a run of ``scorer`` (its score specs) under the keep rule ``rule`` (its
        threshold rules: a fraction's cut-off is not known while rows stream)."""
        return cls(scorer.score_specs, thresholds=rule.thresholds, **options)

    def _reset(self) -> None:
        k = self.per_section
        self.rows: dict[int, SampleRow] = {}
        self.cells = {spec.column: ScoreCells(spec, k, MAX_CELLS) for spec in self.specs}
        self.nearest = {column: {True: BottomK(k), False: BottomK(k)} for column in self.thresholds}
        self.extremes = {spec.column: {True: BottomK(k), False: BottomK(k)} for spec in self.specs}
        self.errors: dict[str, BottomK] = {}
        self.score_keys = BottomK(self.score_sample)
        self.score_rows: dict[int, tuple[float | None, ...]] = {}
        #: Thumbnails decoded so far (bounded by the rows that entered a sample).
        self.thumbnails_made = 0

    # ---- the observer protocol ----------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What the sample was collected with (two samples merge only when it is equal)."""
        return {"specs": [spec.to_dict() for spec in self.specs], "thresholds": self.thresholds,
                "image_column": self.image_column, "text_column": self.text_column,
                "per_section": self.per_section, "score_sample": self.score_sample, "seed": self.seed,
                "thumbnail_side": self.thumbnail_side}

    def observe(self, table: Any, verdicts: Sequence[str]) -> None:
        """Sample one scored batch (an Arrow table with every column) and its verdicts."""
        size = table.num_rows
        if len(verdicts) != size:
            raise ValueError(f"{len(verdicts)} verdicts for {size} rows")
        if not size:
            return
        names = set(table.column_names)
        texts = table.column(self.text_column).to_pylist() if self.text_column in names else [None] * size
        images = table.column(self.image_column).to_pylist() if self.image_column in names else [None] * size
        scores = {spec.column: _floats(table.column(spec.column)) for spec in self.specs}
        error_columns = list(dict.fromkeys(spec.error_column for spec in self.specs))
        reasons = {column: table.column(column).to_pylist() if column in names else [""] * size
                   for column in error_columns}
        fine = {}
        for spec in self.specs:
            values = scores[spec.column]
            finite = np.isfinite(values)
            cells = self.cells[spec.column]
            fine[spec.column] = np.where(finite, cells.fine(np.where(finite, values, 0.0)), -1)
            cells.see(fine[spec.column][finite])
        for index in range(size):
            row_scores = [float(scores[spec.column][index]) for spec in self.specs]
            row_reasons = [reasons[column][index] or "" for column in error_columns]
            key = row_key(self.seed, texts[index], images[index], [*row_scores, *row_reasons], self.image_root)
            wanted = self._wanted(key, index, row_scores, row_reasons, fine)
            self._offer_scores(key, row_scores)
            if not wanted:
                continue
            if key not in self.rows:
                self.rows[key] = self._row(key, texts[index], images[index], row_scores,
                                           dict(zip(error_columns, row_reasons)), verdicts[index])
            for add in wanted:
                add()
        self._drop_unreferenced()

    def dump(self) -> bytes:
        """The sample as JSON bytes (thumbnails base64): a rank's checkpoint, the saved report sample."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    def load(self, data: bytes) -> None:
        """Replace the sample with a saved one (collected with the same configuration)."""
        state = json.loads(data)
        self._check(state)
        self._reset()
        self._add_state(state)

    def merge(self, others: Sequence[bytes]) -> None:
        """Add the samples other ranks saved."""
        for data in others:
            state = json.loads(data)
            self._check(state)
            self._add_state(state)
        self._drop_unreferenced()

    @classmethod
    def from_dump(cls, data: bytes | Mapping[str, Any], image_root: str | None = None) -> GallerySample:
        """The sample :meth:`dump` wrote (bytes, or its parsed JSON)."""
        state = json.loads(data) if isinstance(data, (bytes, str)) else dict(data)
        _check_format(state)
        config = state["config"]
        sample = cls([ScoreSpec.from_dict(spec) for spec in config["specs"]], thresholds=config["thresholds"],
                     image_column=config["image_column"], text_column=config["text_column"], image_root=image_root,
                     per_section=config["per_section"], score_sample=config["score_sample"], seed=config["seed"],
                     thumbnail_side=config["thumbnail_side"])
        sample._add_state(state)
        return sample

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "config": self.config(),
            "rows": [self.rows[key].to_dict() for key in sorted(self.rows)],
            "cells": {column: cells.to_dict() for column, cells in self.cells.items()},
            "nearest": {column: {"passing": [list(item) for item in sides[True].items],
                                 "failing": [list(item) for item in sides[False].items]}
                        for column, sides in self.nearest.items()},
            "extremes": {column: {"highest": [list(item) for item in sides[True].items],
                                  "lowest": [list(item) for item in sides[False].items]}
                         for column, sides in self.extremes.items()},
            "errors": {kind: sketch.items for kind, sketch in sorted(self.errors.items())},
            "scores": [[key, *self.score_rows[key]] for key in self.score_keys.items],
        }

    # ---- reading the sample -------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return [spec.column for spec in self.specs]

    def column_rows(self, column: str) -> list[SampleRow]:
        """Every row sampled on ``column``: its cells' uniform samples and its lowest and highest
        scored rows, by key."""
        keys = self.cells[column].keys()
        for sketch in self.extremes[column].values():
            keys.update(key for _, key in sketch.items)
        return [self.rows[key] for key in sorted(keys)]

    def nearest_rows(self, column: str, passing: bool) -> list[SampleRow]:
        """The rows nearest the run's threshold on ``column``, on the passing or the failing side,
        nearest first."""
        return [self.rows[key] for _, key in self.nearest[column][passing].items]

    def error_rows(self) -> dict[str, list[SampleRow]]:
        """Kind -> sampled rows that could not be scored, by key."""
        return {kind: [self.rows[key] for key in sketch.items] for kind, sketch in sorted(self.errors.items())}

    def error_kinds(self) -> dict[str, int]:
        """Kind -> rows sampled of it."""
        return {kind: len(sketch.items) for kind, sketch in sorted(self.errors.items())}

    def all_rows(self) -> list[SampleRow]:
        """Every row the sample holds, by key."""
        return [self.rows[key] for key in sorted(self.rows)]

    def score_table(self) -> dict[str, np.ndarray]:
        """Column -> scores of the uniform score sample (NaN: not scored), rows in key order."""
        keys = self.score_keys.items
        return {spec.column: np.asarray([math.nan if self.score_rows[key][i] is None else self.score_rows[key][i]
                                         for key in keys], dtype=np.float64)
                for i, spec in enumerate(self.specs)}

    # ---- internals ----------------------------------------------------------------------------
    def _wanted(self, key: int, index: int, scores: list[float], reasons: list[str],
                fine: Mapping[str, np.ndarray]) -> list[Any]:
        """The samples that take the row (as callables adding it), checked before its thumbnail is made."""
        wanted = []
        for spec, score in zip(self.specs, scores):
            if math.isnan(score):
                continue
            cells = self.cells[spec.column]
            cell = int(fine[spec.column][index]) >> cells.level
            if cells.accepts(cell, key):
                wanted.append(lambda cells=cells, cell=cell: cells.add(cell, key))
            for highest, item in ((True, (-score, key)), (False, (score, key))):
                sketch = self.extremes[spec.column][highest]
                if sketch.accepts(item):
                    wanted.append(lambda sketch=sketch, item=item: sketch.add(item))
            threshold = self.thresholds.get(spec.column)
            if threshold is not None:
                passing = score >= threshold if spec.higher_is_better else score <= threshold
                item = (abs(score - threshold), key)
                sketch = self.nearest[spec.column][passing]
                if sketch.accepts(item):
                    wanted.append(lambda sketch=sketch, item=item: sketch.add(item))
        if any(math.isnan(score) for score in scores):
            kind = error_kind(next((reason for reason in reasons if reason), "")) or "no score"
            if kind not in self.errors and len(self.errors) >= MAX_ERROR_KINDS:
                kind = OTHER_ERRORS
            sketch = self.errors.get(kind)
            if sketch is None or sketch.accepts(key):
                wanted.append(lambda kind=kind: self.errors.setdefault(kind, BottomK(self.per_section)).add(key))
        return wanted

    def _offer_scores(self, key: int, scores: list[float]) -> None:
        if key in self.score_rows or not self.score_keys.accepts(key):
            return
        pushed = self.score_keys.add(key)
        self.score_rows[key] = tuple(None if math.isnan(score) else score for score in scores)
        if pushed is not None:
            self.score_rows.pop(pushed, None)

    def _row(self, key: int, caption: Any, image: Any, scores: list[float], reasons: dict[str, str],
             verdict: str) -> SampleRow:
        name = _image_name(image, self.image_root)
        if name is not None and not (isinstance(image, dict) and image.get("bytes") is not None):
            image = name  # read (and named in a reason) as the output writes it: absolute
        thumbnail, note = (None, "no image column") if self.image_column is None else make_thumbnail(
            image, side=self.thumbnail_side)
        self.thumbnails_made += 1
        if caption is not None:
            caption = str(caption)
            if len(caption) > MAX_CAPTION_CHARS:
                caption = caption[: MAX_CAPTION_CHARS - 1] + "\u2026"
        return SampleRow(key, caption, {spec.column: None if math.isnan(score) else score
                                        for spec, score in zip(self.specs, scores)},
                         {column: reason for column, reason in reasons.items() if reason}, verdict,
                         name, thumbnail, note)

    def _drop_unreferenced(self) -> None:
        referenced = set()
        for cells in self.cells.values():
            referenced |= cells.keys()
        for sides in [*self.nearest.values(), *self.extremes.values()]:
            for sketch in sides.values():
                referenced.update(key for _, key in sketch.items)
        for sketch in self.errors.values():
            referenced.update(sketch.items)
        for key in [key for key in self.rows if key not in referenced]:
            del self.rows[key]

    def _check(self, state: Mapping[str, Any]) -> None:
        _check_format(state)
        if state["config"] != json.loads(json.dumps(self.config())):
            raise ValueError("the saved gallery sample was collected with another configuration "
                             f"({state['config']} != {self.config()})")

    def _add_state(self, state: Mapping[str, Any]) -> None:
        k = self.per_section
        for data in state["rows"]:
            row = SampleRow.from_dict(data)
            self.rows.setdefault(row.key, row)
        for column, data in state["cells"].items():
            self.cells[column].merge(ScoreCells.from_dict(self.cells[column].spec, k, MAX_CELLS, data))
        for column, sides in state["nearest"].items():
            for passing, name in ((True, "passing"), (False, "failing")):
                mine = self.nearest[column][passing]
                self.nearest[column][passing] = mine.merge(BottomK(k, [tuple(item) for item in sides[name]]))
        for column, sides in state["extremes"].items():
            for highest, name in ((True, "highest"), (False, "lowest")):
                mine = self.extremes[column][highest]
                self.extremes[column][highest] = mine.merge(BottomK(k, [tuple(item) for item in sides[name]]))
        for kind, keys in state["errors"].items():
            if kind not in self.errors and len(self.errors) >= MAX_ERROR_KINDS:
                kind = OTHER_ERRORS
            self.errors[kind] = self.errors[kind].merge(BottomK(k, keys)) if kind in self.errors else BottomK(k, keys)
        for key, *values in state["scores"]:
            self._offer_scores(int(key), [math.nan if value is None else float(value) for value in values])


def _check_format(state: Mapping[str, Any]) -> None:
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        raise ValueError(f"not a gallery sample (no \"format\": \"{FORMAT}\")")
    if int(state.get("version", 0)) > VERSION:
        raise ValueError(f"gallery sample version {state.get('version')} is newer than this library reads ({VERSION})")


def _floats(column: Any) -> np.ndarray:
    """An Arrow score column as float64, nulls as NaN."""
    return np.asarray([math.nan if value is None else value for value in column.to_pylist()], dtype=np.float64)


def _image_name(cell: Any, image_root: str | None) -> str | None:
    """The path of an image cell, absolute as the output writes it (``None`` for bytes without a path)."""
    if isinstance(cell, dict):
        cell = cell.get("path")
    return absolute_path(cell, image_root) or None if isinstance(cell, str) else None
