"""Micro-batching, grouping and background prefetch give the serial path's scores, in input order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image

from hf_vlm_filter import JudgeConfig, VLMJudge
from hf_vlm_filter.inputs import ImagePolicy, PixelLookup, image_size_hint
from hf_vlm_filter.inputs.pixels import ResizeCropPixels
from hf_vlm_filter.models.qwen_vl_inputs import QwenVLImagePatches
from hf_vlm_filter.scorers.batching import PipelineOptions, PreparedBatch, plan_micro_batches, run_pipeline
from tests.conftest import jpeg_bytes, random_image

SIZES = [(64, 48), (200, 120), (30, 90), (128, 128), (300, 60), (45, 45), (90, 200), (150, 100), (28, 28), (500, 40)]
CAPTIONS = ["a dog", "a red bus by a bridge at dusk", "two cats", "x", "a man on a bicycle wearing a yellow helmet"]
BAD = {3: None, 8: b"not an image", 12: "__empty_caption__"}


def hostile_pairs(n: int = 17) -> Dataset:
    """JPEG-bytes rows of varied sizes, with a missing image, a non-image and an empty caption."""
    rows = {"id": [], "image": [], "caption": []}
    for i in range(n):
        image = {"bytes": jpeg_bytes(random_image(*SIZES[i % len(SIZES)], seed=i)), "path": None}
        caption = CAPTIONS[i % len(CAPTIONS)]
        if BAD.get(i) is None and i in BAD:
            image = None
        elif isinstance(BAD.get(i), bytes):
            image = {"bytes": BAD[i], "path": None}
        elif i in BAD:
            caption = "   "
        rows["id"].append(i)
        rows["image"].append(image)
        rows["caption"].append(caption)
    return Dataset.from_dict(rows)


def score(path: str, batch_size: int, **options):
    judge = VLMJudge(path, device="cpu", dtype="float32", return_probs=True, **options)
    return hostile_pairs().map(judge, batched=True, batch_size=batch_size, load_from_cache_file=False)


@pytest.fixture(scope="module")
def serial(tiny_judge_path):
    """The unoptimised path: whole map batch in one call, in order, no threads."""
    return score(tiny_judge_path, 17, micro_batch_size=None, prefetch_workers=0, group_by_length=False)


def assert_bad_rows(out) -> None:
    errors = list(out["judge_error"])
    assert errors[3] == "missing image"
    assert errors[8].startswith("not an image")
    assert errors[12] == "empty caption"
    assert [i for i, e in enumerate(errors) if e] == [3, 8, 12]
    assert all(math.isnan(out["judge_score"][i]) for i in (3, 8, 12))


@pytest.mark.parametrize("batch_size", [1, 5, 17])
def test_prefetch_threads_give_bit_identical_scores(tiny_judge_path, batch_size):
    options = {"micro_batch_size": 2, "group_by_length": True}
    alone = score(tiny_judge_path, batch_size, prefetch_workers=0, **options)
    threaded = score(tiny_judge_path, batch_size, prefetch_workers=2, **options)
    assert list(threaded["id"]) == list(range(17))
    np.testing.assert_array_equal(np.asarray(threaded["judge_score"]), np.asarray(alone["judge_score"]))
    np.testing.assert_array_equal(np.asarray(threaded["judge_probs"]), np.asarray(alone["judge_probs"]))
    assert list(threaded["judge_error"]) == list(alone["judge_error"])
    assert_bad_rows(threaded)


@pytest.mark.parametrize(("micro", "workers"), [(1, 2), (3, 1), (4, 3)])
def test_micro_batches_and_grouping_keep_rows_and_scores(tiny_judge_path, serial, micro, workers):
    out = score(tiny_judge_path, 17, micro_batch_size=micro, prefetch_workers=workers, group_by_length=True)
    assert list(out["id"]) == list(range(17))
    assert_bad_rows(out)
    # other neighbours mean other padding widths: equal up to float32 summation order
    np.testing.assert_allclose(out["judge_score"], serial["judge_score"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["judge_probs"]), np.asarray(serial["judge_probs"]), atol=1e-6)


def test_grouping_orders_by_visual_tokens_and_restores_order(tiny_judge_path):
    judge = VLMJudge(tiny_judge_path, device="cpu", micro_batch_size=4, prefetch_workers=0)
    batch = hostile_pairs()[:]
    groups = plan_micro_batches(judge, batch, 17, judge.pipeline_options())
    assert sorted(i for g in groups for i in g) == list(range(17)) and [len(g) for g in groups] == [4, 4, 4, 4, 1]
    hints = [judge.length_hint(batch, i) for g in groups for i in g]
    assert hints == sorted(hints)
    assert judge.length_hint(batch, 3) == (0, len(batch["caption"][3]))  # unreadable: sorts first, fails later
    ungrouped = plan_micro_batches(judge.with_options(group_by_length=False), batch, 17, PipelineOptions(0, 4, False))
    assert ungrouped == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], [16]]


def test_length_hint_is_the_prompt_s_image_token_count(tiny_judge_path):
    judge = VLMJudge(tiny_judge_path, device="cpu")
    batch = hostile_pairs()[:]
    builder = judge.preprocessing.builder
    for index in (0, 1, 2, 4, 9):
        tokens, chars = judge.length_hint(batch, index)
        assert judge.prepare(batch, index).input_ids.count(builder.image_token_id) == tokens
        assert chars == len(batch["caption"][index])


def test_background_collation_is_what_score_prepared_would_build(tiny_judge_path):
    judge = VLMJudge(tiny_judge_path, device="cpu", dtype="float32", micro_batch_size=3, prefetch_workers=2)
    batch = hostile_pairs(7)[:]
    errors = [""] * 7
    staged = list(run_pipeline(judge, batch, 7, None, errors))
    assert errors[3] == "missing image" and sorted(i for ready, _ in staged for i in ready) == [0, 1, 2, 4, 5, 6]
    for ready, items in staged:
        assert isinstance(items, PreparedBatch) and items.collated is not None
        fresh = judge.collate(list(items))
        assert fresh.keys() == items.collated.keys()
        assert all(torch.equal(fresh[key], items.collated[key]) for key in fresh)
        assert judge.score_prepared(items) == judge.score_prepared(list(items))


def test_a_failing_model_call_is_isolated_with_prefetch(tiny_judge_path, serial, monkeypatch):
    judge = VLMJudge(tiny_judge_path, device="cpu", dtype="float32", return_probs=True,
                     micro_batch_size=4, prefetch_workers=2)
    original = VLMJudge.score_prepared
    poisoned = judge.prepare(hostile_pairs()[:], 5).pixel_values

    def flaky(self, items, rank=None):
        if any(torch.equal(item.pixel_values, poisoned) for item in items):
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, items, rank)

    monkeypatch.setattr(VLMJudge, "score_prepared", flaky)
    out = hostile_pairs().map(judge, batched=True, batch_size=17, load_from_cache_file=False)
    errors = list(out["judge_error"])
    assert errors[5].startswith("model failed: RuntimeError: CUDA out of memory")
    assert [i for i, e in enumerate(errors) if e] == [3, 5, 8, 12]
    keep = [i for i in range(17) if i not in (3, 5, 8, 12)]
    np.testing.assert_allclose(np.asarray(out["judge_score"])[keep], np.asarray(serial["judge_score"])[keep], atol=1e-5)


def test_bad_pipeline_options_fail_fast():
    with pytest.raises(ValueError, match="micro_batch_size"):
        JudgeConfig(micro_batch_size=0)
    with pytest.raises(ValueError, match="prefetch_workers"):
        JudgeConfig(prefetch_workers=-1)
    assert PipelineOptions.from_config(JudgeConfig(), "cpu").prefetch_workers == 0
    assert PipelineOptions.from_config(JudgeConfig(), "cuda").prefetch_workers >= 1
    assert PipelineOptions.from_config(object()) == PipelineOptions()  # scorers without the fields: serial


def test_automatic_workers_on_a_gpu_machine_cap_the_judge_not_clip(tiny_judge_path, monkeypatch):
    """On a 16-core GPU box the model-bound judge takes 8 workers, the decode-bound CLIP scorer 15."""
    from hf_vlm_filter import ClipScorer
    from hf_vlm_filter.scorers import base, batching

    monkeypatch.setattr(batching, "available_cores", lambda: 16)
    monkeypatch.setattr(base.Scorer, "resolved_device_type", lambda self: "cuda")
    assert VLMJudge(tiny_judge_path).pipeline_options().prefetch_workers == 8
    assert ClipScorer("./clip").pipeline_options().prefetch_workers == 15
    assert ClipScorer("./clip", prefetch_workers=3).pipeline_options().prefetch_workers == 3  # as asked
    monkeypatch.setattr(base.Scorer, "resolved_device_type", lambda self: "cpu")
    assert ClipScorer("./clip").pipeline_options().prefetch_workers == 0


def test_after_an_out_of_memory_error_later_micro_batches_are_cut_up_front(tiny_judge_path, serial, monkeypatch, caplog):
    judge = VLMJudge(tiny_judge_path, device="cpu", dtype="float32", return_probs=True, micro_batch_size=8,
                     prefetch_workers=1, group_by_length=False)
    original = VLMJudge.score_prepared
    calls: list[tuple[int, bool]] = []

    def small_memory(self, items, rank=None):
        calls.append((len(items), len(items) > 3))
        if len(items) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return original(self, items, rank)

    monkeypatch.setattr(VLMJudge, "score_prepared", small_memory)
    with caplog.at_level("WARNING", logger="hf_vlm_filter.scorers.base"):
        out = hostile_pairs().map(judge, batched=True, batch_size=17, load_from_cache_file=False)
    # micro-batch 1 (rows 0-7; row 3 refused): 7 rows fail -> limit 3; halves 3 and 4; 4 fails -> limit 2.
    # Micro-batch 2 (rows 8-15; 8 and 12 refused) is cut to 2 rows up front: no more failed attempts.
    assert calls == [(7, True), (3, False), (4, True), (2, False), (2, False),
                     (2, False), (2, False), (2, False), (1, False)]
    assert judge._rows_that_fit == 2 and "scoring at most 2 rows per model call" in caplog.text
    errors = list(out["judge_error"])
    assert errors == list(serial["judge_error"])  # only the rows prepare refuses: nothing lost to memory
    np.testing.assert_allclose(out["judge_score"], serial["judge_score"], atol=1e-5)
    assert VLMJudge(tiny_judge_path)._rows_that_fit is None  # learned per scorer object, never pickled
    assert "_rows_that_fit" not in judge.__getstate__()


@pytest.mark.parametrize("budget", [(56 * 56, 224 * 224), (256 * 28 * 28, 448 * 448), (4 * 28 * 28, 64 * 28 * 28)])
def test_fast_qwen_patches_equal_the_image_processor(budget):
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    processor = Qwen2VLImageProcessorPil(min_pixels=budget[0], max_pixels=budget[1])
    fast = QwenVLImagePatches.for_processor(processor)
    assert fast is not None
    for seed, (width, height) in enumerate([(640, 480), (28, 28), (29, 1000), (333, 201), (1024, 96), (57, 57)]):
        image = random_image(width, height, seed=seed)
        expected = processor(images=[image], return_tensors="pt")
        pixel_values, grid = fast(image)
        assert torch.equal(grid, expected["image_grid_thw"])
        assert pixel_values.dtype == expected["pixel_values"].dtype
        assert torch.equal(pixel_values, expected["pixel_values"])


def test_fast_patches_refuse_a_processor_they_would_not_match():
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    odd = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224)
    resize = odd.resize
    odd.resize = lambda image, **kwargs: np.ascontiguousarray(resize(image, **kwargs)[:, :, ::-1])  # mirrored
    assert QwenVLImagePatches.for_processor(odd) is None
    plain = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224)
    assert QwenVLImagePatches.for_processor(plain) is not None


def test_a_processor_that_fails_on_a_probe_keeps_the_processor_path(caplog):
    """The fast paths' self-checks run inside the fallback: a processor that raises on one of the
    probe images gives ``None`` (keep the processor), not an error when the scorer is built."""
    from transformers import CLIPImageProcessorPil
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    def refuse_thin_images(processor):
        call = processor.__call__

        class Refusing(type(processor)):
            def __call__(self, images, **kwargs):
                if any(min(image.size) < 20 or image.width < 40 for image in images):
                    raise ValueError("image too small for this processor")
                return call(images, **kwargs)

        processor.__class__ = Refusing
        return processor

    qwen = refuse_thin_images(Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224))
    clip = refuse_thin_images(CLIPImageProcessorPil())
    with caplog.at_level("INFO", logger="hf_vlm_filter.inputs.pixels"):
        assert QwenVLImagePatches.for_processor(qwen) is None
        assert ResizeCropPixels.for_processor(clip) is None
    assert caplog.text.count("self-check failed: ValueError: image too small") == 2
    # the same processors, unpatched, do get their fast paths
    assert QwenVLImagePatches.for_processor(Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224))
    assert ResizeCropPixels.for_processor(CLIPImageProcessorPil()) is not None


def test_pixel_lookup_equals_rescale_and_normalize():
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil(image_mean=[0.1, 0.5, 0.9], image_std=[0.3, 0.2, 0.7])
    lookup = PixelLookup.from_processor(processor)
    pixels = np.random.default_rng(1).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    expected = processor.normalize(processor.rescale(chw, processor.rescale_factor), processor.image_mean, processor.image_std)
    np.testing.assert_array_equal(lookup(chw, channel_axis=0), expected)
    np.testing.assert_array_equal(lookup(pixels, channel_axis=2), expected.transpose(1, 2, 0))
    with pytest.raises(TypeError, match="uint8"):
        lookup(chw.astype(np.float32), channel_axis=0)
    with pytest.raises(ValueError, match="channels"):
        lookup(chw[:2], channel_axis=0)


def test_image_size_hint_reads_headers_only(tmp_path):
    image = random_image(70, 30)
    image.save(tmp_path / "a.png")
    assert image_size_hint(image) == (70, 30)
    assert image_size_hint({"bytes": jpeg_bytes(image), "path": None}) == (70, 30)
    assert image_size_hint(str(tmp_path / "a.png")) == (70, 30)
    assert image_size_hint(None) is None
    assert image_size_hint(b"garbage") is None
    assert image_size_hint(str(tmp_path / "missing.png")) is None
    assert image_size_hint(Image.new("L", (5, 9))) == (5, 9)
    assert image_size_hint({"bytes": None, "path": "a.png"}, ImagePolicy(image_root=str(tmp_path))) == (70, 30)


def test_image_size_hint_does_not_read_whole_files(tmp_path, monkeypatch):
    from pathlib import Path

    random_image(70, 30).save(tmp_path / "a.png")

    def no_whole_reads(self):
        raise AssertionError(f"{self} read in full")

    monkeypatch.setattr(Path, "read_bytes", no_whole_reads)
    assert image_size_hint(str(tmp_path / "a.png")) == (70, 30)


def test_a_scorer_without_a_model_loads_nothing_and_scores_serially():
    from dataclasses import dataclass

    from hf_vlm_filter.scorers.base import Scorer
    from hf_vlm_filter.scorers.config import CaptionFields

    @dataclass(frozen=True)
    class LengthConfig(CaptionFields):
        pass

    class CaptionLength(Scorer):
        prefix = "length"
        config_class = LengthConfig
        input_fields = ("text_column",)

        def prepare(self, batch, index):
            caption = self.cell(batch, "text_column", index)
            if not caption:
                from hf_vlm_filter.inputs import RowError

                raise RowError("empty caption")
            return len(caption)

        def score_prepared(self, items, rank=None):
            return [{"length_score": float(n)} for n in items]

    scorer = CaptionLength.from_pretrained(text_column="caption")
    assert scorer.load() is None and scorer.pipeline_options() == PipelineOptions()
    out = scorer({"caption": ["ab", "", "abcd"]})
    assert list(out["length_score"][[0, 2]]) == [2.0, 4.0] and math.isnan(out["length_score"][1])
    assert out["length_error"] == ["", "empty caption", ""]
    with pytest.raises(NotImplementedError, match="has no model"):
        scorer.model()


def test_streaming_map_with_prefetch_keeps_order_and_schema(tiny_judge_path, serial):
    judge = VLMJudge(tiny_judge_path, device="cpu", dtype="float32", return_probs=True,
                     micro_batch_size=3, prefetch_workers=2)
    ds = hostile_pairs()
    features = judge.output_features(ds.features)
    streamed = ds.to_iterable_dataset().map(judge, batched=True, batch_size=8, features=features)
    rows = list(streamed)
    assert streamed.features == features
    assert [row["id"] for row in rows] == list(range(17))
    assert [row["judge_error"] for row in rows] == list(serial["judge_error"])
    np.testing.assert_allclose([row["judge_score"] for row in rows], serial["judge_score"], atol=1e-5)
