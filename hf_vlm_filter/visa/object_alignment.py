"""OA, object alignment (ViSA agent 2): TF-IDF of the objects an open-vocabulary detector finds.

Two passes, because the score needs dataset-wide document frequencies:

1. **counts** (``ds.map(ObjectTagCounter(...), batched=True)``): Grounding DINO
   (``AutoModelForZeroShotObjectDetection``) looks for every tag of a vocabulary (the default list
   ``tags.txt`` shipped with the package, or your own), a chunk of tags per text prompt
   (``"cat . dog . tree ."``). Each query box goes to its best tag (the highest token probability
   over that tag's tokens); boxes are kept when that probability >= ``box_threshold`` (0.4) and the box
   covers less than ``max_box_area`` (95%) of the image; boxes of one tag overlapping with IoU >
   ``duplicate_iou`` (0.9) count once (greedy, best first). Writes ``oa_tag_counts`` (JSON
   ``{"tag": count}``), ``oa_objects`` (total kept boxes) and ``oa_objects_error``. Images are batched
   only with images of the same processed size (no padding), so counts never depend on the batch.
   Rather than the processor's ``post_process_grounded_object_detection`` (which labels a box by
   decoding every token over a text threshold), each box gets exactly one tag of the vocabulary.
2. **document frequencies**: :func:`oa_document_frequencies` reads the counts column of a
   ``Dataset`` (every row) or of an ``IterableDataset`` (its first ``sample_size`` rows), or you load a
   saved table (:meth:`DocumentFrequencies.load`).
3. **score** (``ds.map(ObjectAlignmentScore(df), batched=True)``): ``oa_score = sum over tags of
   count(tag) * log(N / df(tag))``, ``N`` the number of counted rows of the table. A tag the table
   has never seen counts as ``df = 1``. Rows whose counts failed get NaN and their reason in ``oa_error``.

Example:
    >>> counted = ds.map(ObjectTagCounter("./grounding-dino"), batched=True)          # doctest: +SKIP
    >>> df = oa_document_frequencies(counted)                                         # doctest: +SKIP
    >>> scored = counted.map(ObjectAlignmentScore(df), batched=True)                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from datasets import Value

from ..inputs import RowError, load_image
from ..models.loading import load_or_explain
from ..scorers.base import Batch, Scorer
from ..scorers.config import ImageFields, PipelineFields, ScorerConfig

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
COUNTS_COLUMN = "oa_tag_counts"


def default_tags() -> tuple[str, ...]:
    """The tag vocabulary shipped with the package (``hf_vlm_filter/visa/tags.txt``)."""
    text = resources.files(__package__).joinpath("tags.txt").read_text(encoding="utf-8")
    return read_tags(text.splitlines())


def read_tags(lines: Iterable[str]) -> tuple[str, ...]:
    """Clean tag names: stripped, lower-case, no empties or duplicates, order kept."""
    tags = dict.fromkeys(line.strip().lower() for line in lines)
    tags.pop("", None)
    for tag in tags:
        if "." in tag:
            raise ValueError(f"tag {tag!r} contains '.', the separator of Grounding DINO prompts")
    return tuple(tags)


@dataclass(frozen=True)
class ObjectAlignmentConfig(PipelineFields, ImageFields, ScorerConfig):
    """Options of the OA counting pass; frozen, hashable and picklable.

    Shared fields are those of :mod:`hf_vlm_filter.scorers.config`.

    Args:
        tags: the tag vocabulary; ``None`` = the packaged default (:func:`default_tags`).
        box_threshold: minimum tag probability of a kept box (0.4).
        max_box_area: boxes covering this fraction of the image or more are dropped (0.95).
        duplicate_iou: boxes of one tag overlapping more than this count once (0.9).
    """

    model: str = DEFAULT_DETECTOR
    tags: tuple[str, ...] | None = None
    box_threshold: float = 0.4
    max_box_area: float = 0.95
    duplicate_iou: float = 0.9

    def validate(self) -> None:
        super().validate()
        if self.tags is not None:
            object.__setattr__(self, "tags", read_tags(self.tags))
            if not self.tags:
                raise ValueError("tags is empty")


@dataclass
class _Prompt:
    input_ids: torch.Tensor  # (1, length)
    spans: list[tuple[str, int, int]]  # tag, first token, end token


class _Preprocessing:
    def __init__(self, config: ObjectAlignmentConfig) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

        self.tokenizer = load_or_explain(AutoTokenizer.from_pretrained, config.model, "detector tokenizer",
                                         revision=config.revision)
        self.image_processor = load_or_explain(AutoImageProcessor.from_pretrained, config.model,
                                               "detector image processor", revision=config.revision, backend="pil")
        max_len = load_or_explain(AutoConfig.from_pretrained, config.model, "detector config",
                                  revision=config.revision).max_text_len
        self.prompts = tag_prompts(self.tokenizer, config.tags or default_tags(), max_len)


def tag_prompts(tokenizer: Any, tags: Sequence[str], max_len: int) -> list[_Prompt]:
    """Pack tags into ``[CLS] tag . tag . ... [SEP]`` prompts of at most ``max_len`` tokens."""
    separator = tokenizer.convert_tokens_to_ids(".")
    prompts: list[_Prompt] = []
    ids: list[int] = []
    spans: list[tuple[str, int, int]] = []

    def close() -> None:
        if spans:
            row = [tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id]
            prompts.append(_Prompt(torch.tensor([row]), [(t, s + 1, e + 1) for t, s, e in spans]))

    for tag in tags:
        tag_ids = tokenizer(tag, add_special_tokens=False)["input_ids"]
        if len(tag_ids) + 3 > max_len:
            raise ValueError(f"tag {tag!r} is longer than the detector's text window ({max_len} tokens)")
        if len(ids) + len(tag_ids) + 3 > max_len:
            close()
            ids, spans = [], []
        spans.append((tag, len(ids), len(ids) + len(tag_ids)))
        ids += tag_ids + [separator]
    close()
    return prompts


class ObjectTagCounter(Scorer):
    """OA pass 1: per-row tag counts from Grounding DINO (see the module docstring).

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> from hf_vlm_filter.visa import ObjectTagCounter
        >>> counter = ObjectTagCounter(save_tiny_model("/tmp/tiny-gdino", kind="grounding_dino"),
        ...                            tags=("cat", "dog"), box_threshold=0.0, device="cpu")
        >>> out = Dataset.from_dict({"image": [Image.new("RGB", (64, 48), "red")]}).map(counter, batched=True)
        >>> sorted(json.loads(out[0]["oa_tag_counts"])) <= ["cat", "dog"]
        True
    """

    prefix = "oa"
    score_name = "objects"
    name = "visa-oa-counts"
    summary = "ViSA object alignment, pass 1: Grounding DINO tag counts (arXiv 2502.19917)"
    config_class = ObjectAlignmentConfig
    model_types = ("grounding-dino",)
    score_range = (0.0, None)
    input_fields = ("image_column",)
    preprocessing_class = _Preprocessing
    preprocessing_fields = ("model", "revision", "tags")
    cli_fields = ("box_threshold",)

    def load_model(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        from transformers import AutoModelForZeroShotObjectDetection

        model = load_or_explain(AutoModelForZeroShotObjectDetection.from_pretrained, self.config.model,
                                "Grounding DINO detector", revision=self.config.revision, dtype=dtype)
        return model.to(device).eval()

    def extra_features(self) -> dict[str, Any]:
        return {COUNTS_COLUMN: Value("string")}

    def prepare(self, batch: Batch, index: int) -> torch.Tensor:
        image = load_image(self.cell(batch, "image_column", index), self.image_policy())
        return self.preprocessing.image_processor(images=[image], return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def score_prepared(self, items: list[torch.Tensor], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        counts: list[Counter] = [Counter() for _ in items]
        # Images are batched only with images of the same processed size: the Swin backbone is not
        # mask-aware, so padding would make a row's counts depend on its neighbours.
        groups: dict[tuple[int, ...], list[int]] = {}
        for row, item in enumerate(items):
            groups.setdefault(tuple(item.shape), []).append(row)
        for rows in groups.values():
            pixels = torch.cat([items[row] for row in rows]).to(model.device, model.dtype)
            for prompt in self.preprocessing.prompts:
                ids = prompt.input_ids.expand(len(rows), -1).to(model.device)
                out = model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids),
                            token_type_ids=torch.zeros_like(ids))
                probs = out.logits.float().sigmoid().cpu()
                boxes = out.pred_boxes.float().cpu()
                for i, row in enumerate(rows):
                    counts[row].update(self._count(probs[i], boxes[i], prompt.spans))
        return [{COUNTS_COLUMN: json.dumps(dict(sorted(c.items()))), self.score_column: float(sum(c.values()))}
                for c in counts]

    def _count(self, probs: torch.Tensor, boxes: torch.Tensor, spans: list[tuple[str, int, int]]) -> Counter:
        c = self.config
        per_tag = torch.stack([probs[:, start:end].max(-1).values for _tag, start, end in spans], dim=-1)
        best, tag_index = per_tag.max(-1)
        area = boxes[:, 2] * boxes[:, 3]
        keep = (best >= c.box_threshold) & (area < c.max_box_area)
        counts: Counter = Counter()
        for t, (tag, _s, _e) in enumerate(spans):
            chosen = (keep & (tag_index == t)).nonzero().flatten()
            if len(chosen):
                counts[tag] = count_distinct_boxes(boxes[chosen], best[chosen], c.duplicate_iou)
        return counts


def count_distinct_boxes(boxes: torch.Tensor, scores: torch.Tensor, duplicate_iou: float) -> int:
    """Boxes ``(n, 4)`` as (cx, cy, w, h) left after greedy merging of duplicates with IoU > ``duplicate_iou``."""
    corners = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], dim=-1)
    kept: list[int] = []
    for i in scores.argsort(descending=True, stable=True).tolist():
        if all(box_iou(corners[i], corners[j]) <= duplicate_iou for j in kept):
            kept.append(i)
    return len(kept)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    w = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp_min(0)
    h = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp_min(0)
    inter = float(w * h)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class DocumentFrequencies:
    """How many rows each tag was detected in, out of ``n_documents`` counted rows.

    Example:
        >>> df = DocumentFrequencies.from_counts(['{"cat": 2}', '{"cat": 1, "dog": 1}', '{}'])
        >>> df.n_documents, df.frequencies
        (3, {'cat': 2, 'dog': 1})
    """

    n_documents: int
    frequencies: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_counts(cls, cells: Iterable[str], errors: Iterable[str] | None = None) -> DocumentFrequencies:
        """From ``oa_tag_counts`` cells (rows with an error, or an empty cell, are not documents)."""
        cells = list(cells)
        errors = list(errors) if errors is not None else [""] * len(cells)
        frequencies: Counter = Counter()
        n = 0
        for cell, error in zip(cells, errors):
            if error or not cell:
                continue
            n += 1
            frequencies.update(tag for tag, count in json.loads(cell).items() if count > 0)
        return cls(n, dict(sorted(frequencies.items())))

    def idf(self, tag: str) -> float:
        """``log(N / df(tag))``, with ``df = 1`` for a tag never seen."""
        return math.log(self.n_documents / max(1, self.frequencies.get(tag, 0)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"n_documents": self.n_documents, "frequencies": self.frequencies}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> DocumentFrequencies:
        data = json.loads(Path(path).read_text())
        return cls(int(data["n_documents"]), {str(k): int(v) for k, v in data["frequencies"].items()})


#: The counts pass's error column (``oa_objects_error``), read by the scoring pass.
COUNTS_ERROR_COLUMN = f"{ObjectTagCounter.prefix}_{ObjectTagCounter.score_name}_error"


def oa_document_frequencies(dataset: Any, sample_size: int | None = None, batch_size: int = 1000) -> DocumentFrequencies:
    """Document frequencies from the counts pass of ``dataset``.

    A ``Dataset`` is read whole (or its first ``sample_size`` rows); an ``IterableDataset`` needs
    ``sample_size`` (its first rows are the sample; shuffle it first for a random one).
    """
    error_column = COUNTS_ERROR_COLUMN
    columns = getattr(dataset, "column_names", None)
    if columns is not None and COUNTS_COLUMN not in columns:
        raise KeyError(f"column {COUNTS_COLUMN!r} not found: run the ObjectTagCounter pass first (columns: {columns})")
    if hasattr(dataset, "__len__"):
        if sample_size is not None:
            dataset = dataset.select(range(min(sample_size, len(dataset))))
    elif sample_size is None:
        raise ValueError("an IterableDataset needs sample_size= (or load a saved DocumentFrequencies table)")
    else:
        dataset = dataset.take(sample_size)
    cells: list[str] = []
    errors: list[str] = []
    for batch in dataset.select_columns([COUNTS_COLUMN, error_column]).iter(batch_size=batch_size):
        cells += batch[COUNTS_COLUMN]
        errors += batch[error_column]
    if not cells:
        raise ValueError("no rows to compute document frequencies from")
    return DocumentFrequencies.from_counts(cells, errors)


@dataclass(frozen=True)
class ObjectAlignmentScoreConfig(PipelineFields):
    """Options of the OA scoring pass: the document-frequency table; frozen, hashable and picklable.

    Args:
        n_documents / frequencies: the table inline (``frequencies`` as sorted ``(tag, rows)`` pairs).
        frequencies_file: the table as a file saved with :meth:`DocumentFrequencies.save` instead of
            inline, read when the config is built (its contents, not its path, are the config's identity).
        counts_column: the counts pass's column (``oa_tag_counts``).
    """

    n_documents: int = 0
    frequencies: tuple[tuple[str, int], ...] = ()
    frequencies_file: str | None = None
    counts_column: str = COUNTS_COLUMN

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        super().validate()
        if self.frequencies_file is not None and not self.n_documents:
            table = DocumentFrequencies.load(self.frequencies_file)
            object.__setattr__(self, "n_documents", table.n_documents)
            object.__setattr__(self, "frequencies", tuple(sorted(table.frequencies.items())))
        if self.n_documents < 1:
            raise ValueError("the document-frequency table counts no documents "
                             "(pass a DocumentFrequencies, or frequencies_file=... / --frequencies-file)")

    @property
    def table(self) -> DocumentFrequencies:
        return DocumentFrequencies(self.n_documents, dict(self.frequencies))


class ObjectAlignmentScore(Scorer):
    """OA pass 2: a batched map function adding ``oa_score`` and ``oa_error`` from the counts columns.

    A row whose counts pass failed keeps that reason; an empty or malformed counts cell is a row
    error of its own.

    Example:
        >>> df = DocumentFrequencies(4, {"cat": 2, "dog": 1})
        >>> ObjectAlignmentScore(df)({"oa_tag_counts": ['{"cat": 2, "dog": 1}'], "oa_objects_error": [""]})["oa_score"]
        array([2.7725887], dtype=float32)
    """

    prefix = "oa"
    name = "visa-oa"
    summary = "ViSA object alignment, pass 2: TF-IDF of the counted tags (arXiv 2502.19917)"
    config_class = ObjectAlignmentScoreConfig
    score_range = (0.0, None)
    input_fields = ("counts_column",)
    cli_fields = ("frequencies_file",)

    def __init__(self, frequencies: DocumentFrequencies | None = None, **options: Any) -> None:
        if frequencies is not None:
            options.update(n_documents=frequencies.n_documents, frequencies=tuple(sorted(frequencies.frequencies.items())))
        self.config = ObjectAlignmentScoreConfig(**options)

    @property
    def frequencies(self) -> DocumentFrequencies:
        return self.config.table

    def prepare(self, batch: Batch, index: int) -> dict[str, int]:
        counts_error = batch.get(COUNTS_ERROR_COLUMN)
        if counts_error is not None and counts_error[index]:
            raise RowError(counts_error[index])
        cell = self.cell(batch, "counts_column", index)
        if not cell:
            raise RowError("no tag counts")
        try:
            counts = json.loads(cell)
        except (TypeError, ValueError) as exc:
            raise RowError(f"malformed tag counts: {type(exc).__name__}") from None
        if not isinstance(counts, dict) or not all(
            isinstance(tag, str) and isinstance(n, (int, float)) and math.isfinite(n) for tag, n in counts.items()
        ):
            raise RowError("malformed tag counts: not a {tag: count} object")
        return counts

    def score_prepared(self, items: list[dict[str, int]], rank: int | None = None) -> list[dict[str, Any]]:
        table = self.config.table
        return [{"oa_score": sum(n * table.idf(tag) for tag, n in counts.items())} for counts in items]


def oa_counts(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function of pass 1 (options: :class:`ObjectAlignmentConfig` fields)."""
    return ObjectTagCounter.shared_instance(**options)(batch, rank)
