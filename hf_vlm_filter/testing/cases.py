"""One case per registered scorer: how to build it from tiny checkpoints, rows it scores, rows it must
refuse (NaN + a reason), and a column whose absence it must name.

The contract suite (``tests/test_scorer_contract.py``) runs every case; a new scorer is covered by
adding its case here, next to its registry entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .checkpoints import TinyCheckpoints
from .images import jpeg_bytes, png_bytes, random_image

Rows = dict[str, list[Any]]

CAPTIONS = ("a red square on a table", "two dogs in the snow", "a city street at night, wet asphalt",
            "close-up of a coffee cup", "an empty beach under a grey sky", "a cat asleep on a keyboard")
#: A JPEG cut off after 300 bytes: decoding it must fail.
_TRUNCATED = jpeg_bytes(random_image(60, 40, seed=99))[:300]


def image_cells(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` lazily stored images (``{"bytes", "path"}``) of varied sizes and formats."""
    cells = []
    for index in range(count):
        image = random_image(36 + 13 * (index % 5), 30 + 11 * (index % 4), seed=seed + index)
        data = png_bytes(image) if index % 3 == 2 else jpeg_bytes(image)
        cells.append({"bytes": data, "path": None})
    return cells


def captions(count: int) -> list[str]:
    return [CAPTIONS[index % len(CAPTIONS)] + ("" if index < len(CAPTIONS) else f" ({index})") for index in range(count)]


def conversations(count: int) -> list[list[dict[str, str]]]:
    return [[{"from": "human", "value": "<image>\nWhat is in the picture?"},
             {"from": "gpt", "value": caption}] for caption in captions(count)]


def caption_pairs(count: int) -> Rows:
    return {"image": image_cells(count), "caption": captions(count)}


def hostile_caption_pairs() -> Rows:
    return {"image": [None, {"bytes": _TRUNCATED, "path": None}, image_cells(1)[0], {"bytes": b"not an image", "path": None}],
            "caption": ["a lost image", "a truncated photo", "   ", "text, not pixels"]}


def documents(count: int) -> Rows:
    cells = image_cells(2 * count)
    return {"texts": [[caption, None, "It was taken outside."] if index % 2 else [None, caption]
                      for index, caption in enumerate(captions(count))],
            "images": [[None, cells[2 * index], None] if index % 2 else [cells[2 * index], None]
                       for index in range(count)]}


def hostile_documents() -> Rows:
    cell = image_cells(1)[0]
    return {"texts": ["not a list", ["text", None], ["only text", None], [None, "x"]],
            "images": [[cell], [None], [None, {"bytes": _TRUNCATED, "path": None}], [None, None]]}


def images_only(count: int) -> Rows:
    return {"image": image_cells(count)}


def hostile_images() -> Rows:
    return {"image": [None, {"bytes": _TRUNCATED, "path": None}, {"bytes": b"not an image", "path": None}, ""]}


def instruction_rows(count: int) -> Rows:
    return {"image": image_cells(count), "conversations": conversations(count)}


def hostile_instructions() -> Rows:
    good = conversations(1)[0]
    return {"image": [None, image_cells(1)[0], image_cells(1)[0], {"bytes": _TRUNCATED, "path": None}],
            "conversations": [good, [], [{"from": "human", "value": "a question and no answer"}], good]}


def tag_counts(count: int) -> Rows:
    cells = [json.dumps({"cat": index % 3, "dog": 1 + index % 2, "tree": index % 4}) for index in range(count)]
    return {"oa_tag_counts": cells, "oa_objects_error": [""] * count}


def hostile_tag_counts() -> Rows:
    return {"oa_tag_counts": ["", '{"cat": 2}', "{not json", '["cat"]'],
            "oa_objects_error": ["", "missing image", "", ""]}


@dataclass(frozen=True)
class ScorerCase:
    """How the contract suite exercises one registered scorer.

    Args:
        name: its registry name.
        build: ``build(checkpoints, **options) -> scorer`` on the CPU, from tiny checkpoints.
        rows: ``rows(count)``: columns of ``count`` rows it scores (finite score, empty reason).
        hostile: columns of rows it must refuse, each with NaN and a non-empty reason.
        required_field: a config field naming a column of ``rows``: without that column the scorer
            must raise ``KeyError`` naming the field.
        changed_option: an option whose change must change the scorer's fingerprint.
        bounded: whether every score lies in the declared range by construction (a regression
            head's raw output, UniFilter's, is on the 0-3 scale but not clamped to it).
    """

    name: str
    build: Callable[..., Any]
    rows: Callable[[int], Rows]
    hostile: Callable[[], Rows]
    required_field: str
    changed_option: dict[str, Any] = field(default_factory=dict)
    bounded: bool = True


def _from_checkpoint(cls_name: str, kind: str, **fixed: Any) -> Callable[..., Any]:
    def build(checkpoints: TinyCheckpoints, **options: Any) -> Any:
        from ..scorers.registry import SCORERS

        return SCORERS[cls_name](checkpoints.path(kind), device="cpu", **{**fixed, **options})

    return build


def _oa_score(checkpoints: TinyCheckpoints, **options: Any) -> Any:
    from ..visa.object_alignment import DocumentFrequencies, ObjectAlignmentScore

    return ObjectAlignmentScore(DocumentFrequencies(8, {"cat": 4, "dog": 6, "tree": 2}), **options)


SCORER_CASES: dict[str, ScorerCase] = {case.name: case for case in (
    ScorerCase("compact", _from_checkpoint("compact", "compact_vlm", micro_batch_size=2), caption_pairs,
               hostile_caption_pairs, "text_column", {"max_pixels": 512 * 28 * 28}),
    ScorerCase("unifilter", _from_checkpoint("unifilter", "unifilter"), caption_pairs, hostile_caption_pairs,
               "image_column", {"max_text_tokens": 40}, bounded=False),
    ScorerCase("unifilter-docs", _from_checkpoint("unifilter-docs", "unifilter"), documents, hostile_documents,
               "images_column", {"max_images": 3}, bounded=False),
    ScorerCase("clip", _from_checkpoint("clip", "clip"), caption_pairs, hostile_caption_pairs, "text_column",
               {"jpeg_draft": True}),
    ScorerCase("ppl", _from_checkpoint("ppl", "causal_lm"), lambda n: {"caption": captions(n)},
               lambda: {"caption": [None, "   ", 42, ""]}, "text_column", {"max_caption_tokens": 8}),
    ScorerCase("visa-sc", _from_checkpoint("visa-sc", "sam", points_per_side=4, pred_iou_threshold=0.0,
                                           stability_threshold=0.0),
               images_only, hostile_images, "image_column", {"points_per_side": 3}),
    ScorerCase("visa-oa-counts", _from_checkpoint("visa-oa-counts", "grounding_dino", tags=("cat", "dog"),
                                                  box_threshold=0.0),
               images_only, hostile_images, "image_column", {"box_threshold": 0.5}),
    ScorerCase("visa-oa", _oa_score, tag_counts, hostile_tag_counts, "counts_column", {"counts_column": "counts"}),
    ScorerCase("visa-dp", _from_checkpoint("visa-dp", "compact_vlm"), images_only, hostile_images, "image_column",
               {"max_pixels": 16 * 28 * 28}),
    ScorerCase("visa-pt-im", _from_checkpoint("visa-pt-im", "compact_vlm"), instruction_rows, hostile_instructions,
               "conversations_column", {"pt_tokens": 3}),
)}
