"""The seed script's image path (qwen-vl-utils' fetch_image, then the processor): hand-computed
sizes and grids, PIL's default filter, and the judge reading through it in reference and justify modes."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.cli.scorer_flags import add_scorer_flags, scorer_options
from hf_vlm_filter.models.seed_image_path import (
    OTHER_GRID,
    OTHER_PIXELS,
    SAME_PIXELS,
    direct_grid,
    seed_fetch_image,
    seed_grid,
    seed_path_effect,
    seed_resize_size,
)
from tests.conftest import png_bytes, random_image

SEED_BUDGET = {"min_pixels": 256 * 28 * 28, "max_pixels": 1280 * 28 * 28}
BUDGET_448 = {"min_pixels": 448 * 448, "max_pixels": 448 * 448}


# (height, width) -> fetch_image's size, worked by hand with qwen-vl-utils' rule (factor 28, 4..16384
# merged patches, Python's round):
@pytest.mark.parametrize(("size", "expected"), [
    ((300, 400), (308, 392)),     # 300/28 = 10.71 -> 11, 400/28 = 14.29 -> 14; 308*392 is in budget
    ((400, 600), (392, 588)),     # 14.29 -> 14, 21.43 -> 21
    ((427, 640), (420, 644)),     # 15.25 -> 15, 22.86 -> 23
    ((61, 97), (56, 84)),         # 2.18 -> 2, 3.46 -> 3
    ((20, 30), (56, 84)),         # 28*28 < 4*784: beta = sqrt(3136/600) = 2.286; ceil(1.63), ceil(2.45)
    ((1500, 2000), (1512, 1988)), # 53.57 -> 54, 71.43 -> 71; 3.0 MP is under the 12.8 MP cap
    ((10000, 20000), (2520, 5068)),  # over the cap: beta = sqrt(2e8 / 12845056) = 3.9459; floor(90.5), floor(181.0)
])
def test_fetch_image_size_is_hand_computed(size, expected):
    assert seed_resize_size(*size) == expected


# (width, height): patch grid read directly by the processor vs through fetch_image first.
@pytest.mark.parametrize(("size", "budget", "direct", "seed", "effect"), [
    # skimage's clock: 308x392 = 120736 px < 200704 -> beta = 1.2933 on 300x400: (392, 532); through
    # fetch_image beta = 1.2893 on 308x392: ceil(14.18) = 15 rows of 28 -> (420, 532)
    ((400, 300), SEED_BUDGET, (28, 38), (30, 38), OTHER_GRID),
    ((451, 300), SEED_BUDGET, (28, 40), (28, 40), OTHER_PIXELS),   # skimage's chelsea: two resizes, one grid
    ((600, 400), SEED_BUDGET, (28, 42), (28, 42), SAME_PIXELS),    # skimage's coffee: (392, 588) either way
    ((640, 427), SEED_BUDGET, (30, 46), (30, 46), SAME_PIXELS),    # scikit-learn's china.jpg
    ((2000, 1500), SEED_BUDGET, (60, 82), (62, 82), OTHER_GRID),   # over the cap: floor(30.98) vs floor(31.2)
    ((97, 61), SEED_BUDGET, (26, 42), (28, 40), OTHER_GRID),
    ((400, 300), BUDGET_448, (28, 38), (30, 38), OTHER_GRID),
    ((640, 427), BUDGET_448, (26, 38), (24, 38), OTHER_GRID),      # 420x644 shrunk: floor(12.92) -> 12 rows
    ((600, 400), BUDGET_448, (26, 38), (26, 38), OTHER_PIXELS),
])
def test_grids_are_hand_computed_and_the_judge_reads_them(size, budget, direct, seed, effect, tiny_judge_path):
    width, height = size
    assert direct_grid(height, width, **budget) == direct
    assert seed_grid(height, width, **budget) == seed
    assert seed_path_effect(height, width, **budget) == effect
    image = random_image(width, height, seed=width)
    batch = {"image": [image], "caption": ["a photo"]}
    for options, grid in (({"mode": "fast"}, direct), ({"mode": "reference"}, seed), ({"mode": "justify"}, seed),
                          ({"mode": "fast", "seed_image_path": True}, seed),
                          ({"mode": "reference", "seed_image_path": False}, direct)):
        judge = VLMJudge(tiny_judge_path, device="cpu", **budget, **options)
        assert judge.prepare(batch, 0).image_grid_thw.tolist() == [[1, *grid]], options


def test_fetch_image_is_one_resize_with_pil_s_default_bicubic():
    image = random_image(400, 300, seed=1)
    resized = seed_fetch_image(image)
    assert resized.size == (392, 308)
    assert np.array_equal(np.asarray(resized), np.asarray(image.resize((392, 308), Image.Resampling.BICUBIC)))
    assert not np.array_equal(np.asarray(resized), np.asarray(image.resize((392, 308), Image.Resampling.BILINEAR)))
    conforming = random_image(392, 308, seed=2)  # already the rule's size: left as it is
    assert np.array_equal(np.asarray(seed_fetch_image(conforming)), np.asarray(conforming))


def test_judge_pixels_are_the_processor_s_of_the_seed_resized_image(tiny_judge_path):
    """Oracle: transformers' Qwen2-VL image processor on the image PIL-resized by the rule, by hand."""
    processor = Qwen2VLImageProcessorPil(**SEED_BUDGET)
    image = random_image(400, 300, seed=3)
    batch = {"image": [image], "caption": ["a clock"]}
    seed_item = VLMJudge(tiny_judge_path, device="cpu", mode="reference", **SEED_BUDGET).prepare(batch, 0)
    oracle = processor(images=[image.resize((392, 308), Image.Resampling.BICUBIC)], return_tensors="pt")
    assert torch.equal(seed_item.pixel_values, oracle["pixel_values"])
    assert torch.equal(seed_item.image_grid_thw, oracle["image_grid_thw"])
    direct_item = VLMJudge(tiny_judge_path, device="cpu", **SEED_BUDGET).prepare(batch, 0)
    assert torch.equal(direct_item.pixel_values, processor(images=[image], return_tensors="pt")["pixel_values"])
    # 30x38 patches = 285 image tokens through the seed's path, 28x38 = 266 directly
    pad = VLMJudge(tiny_judge_path).preprocessing.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert seed_item.input_ids.count(pad) == 285 and direct_item.input_ids.count(pad) == 266


def test_same_pixels_when_one_resize_lands_on_the_same_size(tiny_judge_path):
    image = random_image(600, 400, seed=4)
    batch = {"image": [image], "caption": ["coffee"]}
    seed_item = VLMJudge(tiny_judge_path, device="cpu", mode="reference", **SEED_BUDGET).prepare(batch, 0)
    direct_item = VLMJudge(tiny_judge_path, device="cpu", mode="fast", **SEED_BUDGET).prepare(batch, 0)
    assert torch.equal(seed_item.pixel_values, direct_item.pixel_values)
    chelsea = {"image": [random_image(451, 300, seed=5)], "caption": ["a cat"]}  # same grid, two resizes
    seed_item = VLMJudge(tiny_judge_path, device="cpu", mode="reference", **SEED_BUDGET).prepare(chelsea, 0)
    direct_item = VLMJudge(tiny_judge_path, device="cpu", mode="fast", **SEED_BUDGET).prepare(chelsea, 0)
    assert torch.equal(seed_item.image_grid_thw, direct_item.image_grid_thw)
    assert not torch.equal(seed_item.pixel_values, direct_item.pixel_values)


def test_length_hint_follows_the_image_path(tiny_judge_path):
    batch = {"image": [{"bytes": png_bytes(random_image(400, 300)), "path": None}], "caption": ["a clock"]}
    seed = VLMJudge(tiny_judge_path, device="cpu", mode="reference", **SEED_BUDGET)
    direct = VLMJudge(tiny_judge_path, device="cpu", **SEED_BUDGET)
    assert seed.length_hint(batch, 0) == (285, 7) and direct.length_hint(batch, 0) == (266, 7)


def test_seed_path_scores_through_map_and_records_it(tiny_judge_path):
    ds = Dataset.from_dict({"image": [random_image(400, 300, seed=6), random_image(600, 400, seed=7)],
                            "caption": ["a clock", "coffee"]})
    direct = VLMJudge(tiny_judge_path, device="cpu", dtype="float32", **SEED_BUDGET)
    seed = direct.with_options(seed_image_path=True)
    a, b = ds.map(direct, batched=True)["judge_score"], ds.map(seed, batched=True)["judge_score"]
    assert a[1] == pytest.approx(b[1], abs=1e-6)       # same pixels: same score
    assert a[0] != pytest.approx(b[0], abs=1e-7)       # another grid: another score
    assert direct.card_facts()[0]["seed_image_path"] is False and seed.card_facts()[0]["seed_image_path"] is True
    assert VLMJudge(tiny_judge_path, mode="justify").card_facts()[0]["seed_image_path"] is True


def test_refusals():
    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        seed_resize_size(10, 2010)
    with pytest.raises(ValueError, match="no pixels"):
        seed_resize_size(0, 10)


def test_cli_flags_reach_the_judge():
    parser = argparse.ArgumentParser()
    add_scorer_flags(parser)
    args = parser.parse_args(["--mode", "justify", "--seed-image-path", "--no-stop-at-score"])
    assert scorer_options(args, "compact") == {"mode": "justify", "seed_image_path": True, "stop_at_score": False}
    args = parser.parse_args(["--no-seed-image-path"])
    assert scorer_options(args, "compact") == {"seed_image_path": False}
