"""The fast paths (exact pixels, micro-batches, prefetch threads) score like the unoptimised path."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_vlm_filter import ClipScorer, VLMJudge
from hf_vlm_filter.inputs import ResizeCropPixels
from tests.conftest import jpeg_bytes, random_image

SIZES = [(640, 480), (64, 48), (300, 60), (45, 45), (90, 200), (13, 300), (224, 224), (500, 375)]
CAPTIONS = ["a dog", "a red bus by a bridge at dusk, seen from the river bank", "x", "two cats on a sofa"]


def jpeg_pairs(n: int = 13) -> Dataset:
    rows = {"id": list(range(n)), "image": [], "caption": []}
    for i in range(n):
        rows["image"].append({"bytes": jpeg_bytes(random_image(*SIZES[i % len(SIZES)], seed=i)), "path": None})
        rows["caption"].append(CAPTIONS[i % len(CAPTIONS)])
    rows["image"][4] = {"bytes": b"\xff\xd8 truncated", "path": None}
    rows["caption"][9] = ""
    return Dataset.from_dict(rows)


@contextmanager
def without_fast_pixels(holder, attribute: str):
    saved = getattr(holder, attribute)
    setattr(holder, attribute, None)
    try:
        yield
    finally:
        setattr(holder, attribute, saved)


def mapped(scorer, batch_size: int = 13):
    return jpeg_pairs().map(scorer, batched=True, batch_size=batch_size, load_from_cache_file=False)


def assert_same_rows(fast, slow, atol: float) -> None:
    assert list(fast["id"]) == list(range(13))
    assert list(fast[fast.column_names[-1]]) == list(slow[slow.column_names[-1]])  # error column
    errors = list(fast[fast.column_names[-1]])
    assert errors[4].startswith(("corrupt", "not an image")) and errors[9] == "empty caption"
    score = fast.column_names[-2]
    if atol == 0:
        np.testing.assert_array_equal(np.asarray(fast[score]), np.asarray(slow[score]))
    else:
        np.testing.assert_allclose(fast[score], slow[score], rtol=0, atol=atol)


# ---- CLIP / SigLIP --------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["clip", "siglip"])
def clip_path(request, tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), kind=request.param))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_resize_crop_pixels_equal_the_processor_at_real_sizes(kind):
    from transformers import CLIPImageProcessorPil, SiglipImageProcessorPil

    processor = CLIPImageProcessorPil() if kind == "clip" else SiglipImageProcessorPil(size={"height": 384, "width": 384})
    fast = ResizeCropPixels.for_processor(processor)
    assert fast is not None
    for seed, size in enumerate([(640, 480), (224, 224), (223, 1000), (1000, 20), (50, 50), (3, 3)]):
        image = random_image(*size, seed=seed)
        expected = processor(images=[image], return_tensors="pt")["pixel_values"]
        assert torch.equal(fast(image), expected)


def test_clip_fast_pixels_and_prefetch_give_the_unoptimised_scores(clip_path):
    base = ClipScorer(clip_path, device="cpu", dtype="float32")
    pre = base.preprocessing
    assert pre.fast_pixels is not None
    with without_fast_pixels(pre, "fast_pixels"):
        slow = mapped(base.with_options(micro_batch_size=None, prefetch_workers=0))
    same_batches = mapped(base.with_options(micro_batch_size=None, prefetch_workers=0))
    assert_same_rows(same_batches, slow, atol=0)  # exact pixels: bit-identical scores
    threaded = mapped(base.with_options(micro_batch_size=3, prefetch_workers=2), batch_size=7)
    serial = mapped(base.with_options(micro_batch_size=3, prefetch_workers=0), batch_size=7)
    assert_same_rows(threaded, serial, atol=0)
    assert_same_rows(threaded, slow, atol=1e-6)  # other micro-batches: other text padding widths


# ---- judge ----------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [448, 224])
def test_judge_optimised_path_scores_like_the_unoptimised_path(tiny_judge_path, side):
    budget = {"min_pixels": min(side * side, 256 * 28 * 28), "max_pixels": side * side}
    judge = VLMJudge(tiny_judge_path, device="cpu", dtype="float32", **budget)
    builder = judge.preprocessing.builder
    assert builder.vision.fast_patches is not None
    unoptimised = judge.with_options(micro_batch_size=None, prefetch_workers=0, group_by_length=False)
    with without_fast_pixels(builder.vision, "fast_patches"):
        slow = mapped(unoptimised)
    assert_same_rows(mapped(unoptimised), slow, atol=0)  # exact patches: bit-identical scores
    optimised = mapped(judge.with_options(micro_batch_size=4, prefetch_workers=2, group_by_length=True), batch_size=13)
    assert_same_rows(optimised, slow, atol=1e-5)


def test_jpeg_draft_decodes_smaller_and_scores_close(clip_path):
    from hf_vlm_filter.inputs import ImagePolicy, load_image

    photo = {"bytes": jpeg_bytes(random_image(640, 480, seed=3)), "path": None}
    assert load_image(photo, ImagePolicy(draft_size=(224, 224))).size == (320, 240)
    assert load_image(photo, ImagePolicy(draft_size=(300, 300))).size == (640, 480)  # 1/2 would be too small
    assert load_image(photo).size == (640, 480)
    scorer = ClipScorer(clip_path, device="cpu", dtype="float32")
    assert scorer.preprocessing.draft_size == (32, 32)  # the tiny towers' 32-px input
    exact, drafted = mapped(scorer), mapped(scorer.with_options(jpeg_draft=True))
    assert list(drafted["clip_error"]) == list(exact["clip_error"])
    np.testing.assert_allclose(drafted["clip_score"], exact["clip_score"], atol=0.05)
    assert not np.array_equal(np.asarray(drafted["clip_score"]), np.asarray(exact["clip_score"]))


def test_position_ids_from_the_collate_thread_are_those_the_forward_computes(tiny_judge_path):
    """Fast mode collates the M-RoPE position ids (off the forward); the logits are bit for bit those
    of the forward computing them itself, on a left-padded batch of unequal images and captions."""
    judge = VLMJudge(tiny_judge_path, device="cpu", dtype="float32")
    batch = jpeg_pairs()[:]
    items = [judge.prepare(batch, i) for i in (0, 1, 2, 3, 5, 6, 7, 10)]
    inputs = judge.collate(items)
    assert inputs["position_ids"].shape == (3, *inputs["input_ids"].shape)
    model = judge.model()
    without = {key: value for key, value in inputs.items() if key != "position_ids"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model(**without).logits)
    reference = judge.with_options(mode="reference")
    assert "position_ids" not in reference.collate([reference.prepare(batch, 0)])  # generate computes its own
