"""Packed vision attention: the same logits as transformers' per-image sdpa, in fewer calls."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.models.vision_attention import PACKED_VISION_ATTENTION, packed_vision_sdpa, use_packed_vision_attention
from tests.conftest import random_image

SIZES = {
    "one length": [(200, 150)] * 4,
    "runs of lengths": [(200, 150), (200, 150), (90, 300), (224, 224), (60, 60), (60, 60)],
}


@pytest.fixture(scope="module")
def models(tiny_judge_path):
    per_image = AutoModelForImageTextToText.from_pretrained(tiny_judge_path).eval()
    packed = AutoModelForImageTextToText.from_pretrained(tiny_judge_path).eval()
    assert use_packed_vision_attention(packed)
    return per_image, packed


def micro_batch(tiny_judge_path, sizes):
    judge = VLMJudge(tiny_judge_path, device="cpu", dtype="float32", min_pixels=56 * 56, max_pixels=224 * 224)
    builder = judge.preprocessing.builder
    items = [builder.build(random_image(w, h, seed=i), f"caption {i}") for i, (w, h) in enumerate(sizes)]
    return builder.collate(items)


def count_sdpa_calls(monkeypatch) -> list[tuple[int, ...]]:
    """Shapes of the queries of every ``scaled_dot_product_attention`` call from now on."""
    shapes: list[tuple[int, ...]] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def counted(query, *args, **kwargs):
        shapes.append(tuple(query.shape))
        return original(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counted)
    return shapes


@pytest.mark.parametrize("case", sorted(SIZES))
def test_packed_vision_attention_gives_the_per_image_logits(models, tiny_judge_path, case):
    per_image, packed = models
    inputs = micro_batch(tiny_judge_path, SIZES[case])
    with torch.no_grad():
        expected, got = per_image(**inputs).logits, packed(**inputs).logits
    assert torch.equal(got, expected)  # float32 on CPU: bit for bit


@pytest.mark.parametrize("case, runs", [("one length", 1), ("runs of lengths", 4)])
def test_one_attention_call_per_run_of_equal_lengths_instead_of_per_image(models, tiny_judge_path, monkeypatch, case, runs):
    per_image, packed = models
    inputs = micro_batch(tiny_judge_path, SIZES[case])
    depth = packed.config.vision_config.depth
    shapes = count_sdpa_calls(monkeypatch)
    with torch.no_grad():
        per_image.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    assert len(shapes) == depth * len(SIZES[case])
    shapes.clear()
    with torch.no_grad():
        packed.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    assert len(shapes) == depth * runs
    if runs == 1:
        patches = int(inputs["image_grid_thw"][0].prod())
        assert shapes[0] == (4, packed.config.vision_config.num_heads, patches,
                             packed.config.vision_config.embed_dim // packed.config.vision_config.num_heads)


def test_the_judge_uses_it_unless_an_attention_kernel_is_named(tiny_judge_path):
    default = VLMJudge(tiny_judge_path, device="cpu").model()
    assert default.config.vision_config._attn_implementation == PACKED_VISION_ATTENTION
    assert default.config.text_config._attn_implementation == "sdpa"
    named = VLMJudge(tiny_judge_path, device="cpu", attn_implementation="eager").model()
    assert named.config.vision_config._attn_implementation == "eager"


def test_a_mask_is_refused():
    q = torch.zeros(1, 2, 8, 4)
    with pytest.raises(ValueError, match="no attention mask"):
        packed_vision_sdpa(torch.nn.Module(), q, q, q, torch.ones(1, 1, 8, 8, dtype=torch.bool))
