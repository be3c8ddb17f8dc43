"""Shared pieces of the judge-training tests: tiny starting checkpoints and small graded datasets."""

from __future__ import annotations

import re
from pathlib import Path

from datasets import Dataset

from hf_vlm_filter.training.scenes import COUNTS, Scene, scene_dataset
from hf_vlm_filter.training.score_head import ScoreHeadSize, new_score_head

#: Scene images at the tiny Qwen2-VL judge's minimum budget and the score head's input side.
IMAGE_SIZE = 56
TINY_HEAD = ScoreHeadSize(image_size=56, patch_size=7, vision_hidden=32, vision_layers=1, text_hidden=32,
                          text_layers=1, text_heads=2, vision_heads=2, image_tokens=4)
#: The tiny judge's pixel budget (the default budget of the seed would be 1280 merged patches).
TINY_BUDGET = {"min_pixels": 4 * 28 * 28, "max_pixels": 16 * 28 * 28}
_WORDS = {"one": 1, "two": 2, "three": 3}
_CAPTION = re.compile(r"^(one|two|three) (red|green|blue|yellow) (circle|square|triangle)s? "
                      r"(on the left|on the right|at the top|at the bottom)$")


def graded_scenes(num_scenes: int, seed: int) -> Dataset:
    """``num_scenes`` scenes x four levels, graded-caption features."""
    return scene_dataset(num_scenes, seed=seed, image_size=IMAGE_SIZE)


def tiny_head(out: Path, num_labels: int = 1, seed: int = 0) -> Path:
    from dataclasses import replace

    return new_score_head(out, replace(TINY_HEAD, num_labels=num_labels), seed=seed)


def parse_caption(caption: str) -> Scene:
    """The scene a caption states (the inverse of ``Scene.caption``)."""
    match = _CAPTION.match(caption)
    assert match, caption
    count, colour, shape, where = match.groups()
    assert _WORDS[count] in COUNTS
    return Scene(_WORDS[count], colour, shape, where.split()[-1])
