"""End-to-end throughput of the judge on the user's own path: ``ds.map(judge, batched=True)``.

Builds a Parquet dataset of N random-content JPEGs of varied sizes around 640x480, then, at the
448x448 and 224x224 pixel budgets, times:

* **preprocessing only** (``--prep-only``, or always as a first table): decode + resize + patchify +
  tokenise + collate through the scorer's own pipeline, with the transformers image processor and
  with the exact fast patches, with 0 / 1 / 2 background workers — pairs/s and pairs/s per core;
* **the M-RoPE position ids** of one micro-batch: CPU time that fast mode moves out of the forward
  into the collate thread;
* **the vision tower alone** on one micro-batch of equal-length images: transformers' per-image
  sdpa against the judge's packed vision attention (one call per layer);
* **end to end** ``ds.map`` in fast mode: the unoptimised path (whole map batch, no threads, no
  grouping, transformers processor, per-image vision attention) and the optimised one
  (micro-batches grouped by visual tokens, background prefetch, fast patches, packed vision
  attention); scores of the two are compared;
* **reference mode** (generation capped at ``--ref-new-tokens``) on a subset, for the ratio;
* on CUDA: peak memory (``torch.cuda.max_memory_allocated``) and MFU against ``--peak-tflops``.

    python benchmarks/judge_throughput.py --smoke                 # CPU, tiny random judge, ~1 minute
    python benchmarks/judge_throughput.py --smoke --prep-only     # CPU preprocessing figures only
    python benchmarks/judge_throughput.py --device cuda           # random weights of the Qwen2-VL-2B shape
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Image as ImageFeature
from datasets import load_dataset
from PIL import Image

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.scorers.batching import available_cores, run_pipeline

#: Dense bf16 matmul peak measured on the lent H100 (REFERENCE.md section 7).
H100_BF16_TFLOPS = 775.0


def write_jpegs(path: Path, count: int, seed: int = 0) -> Path:
    """A Parquet file of ``count`` JPEGs of varied sizes around 640x480 with captions."""
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for i in range(count):
        width, height = int(rng.integers(480, 800)), int(rng.integers(360, 600))
        small = rng.integers(1, 255, size=(height // 8, width // 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        images.append({"bytes": buffer.getvalue(), "path": None})
        captions.append(f"a photo number {i} of a colourful abstract pattern with soft gradients")
    table = pa.table({"image": images, "caption": captions})
    pq.write_table(table, path)
    return path


def jpeg_dataset(work: Path, pairs: int):
    data = write_jpegs(work / "pairs.parquet", pairs)
    return load_dataset("parquet", data_files=str(data), split="train").cast_column("image", ImageFeature(decode=False))


def save_real_shape_judge(out: Path) -> Path:
    """Random weights in the real Qwen2-VL-2B shape (no download), with the tiny tokenizer."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    from hf_vlm_filter.models.tiny import QWEN_SPECIAL_TOKENS, tiny_qwen_tokenizer

    tokenizer = tiny_qwen_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
            "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1_000_000.0},
            "tie_word_embeddings": True, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    model = Qwen2VLForConditionalGeneration(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil().save_pretrained(out)
    return out


def save_judge(out: Path, smoke: bool) -> Path:
    """The tiny random judge (``smoke``, CPU) or random weights of the real Qwen2-VL-2B shape."""
    if smoke:
        from hf_vlm_filter.models.tiny import save_tiny_model

        return save_tiny_model(out)
    return save_real_shape_judge(out)


# ---- measuring ------------------------------------------------------------------------------
@contextmanager
def processor_path(scorer, use_processor: bool):
    """Temporarily score with the transformers image processor instead of the fast exact patches."""
    vision = scorer.preprocessing.builder.vision
    saved = vision.fast_patches
    if use_processor:
        vision.fast_patches = None
    try:
        yield
    finally:
        vision.fast_patches = saved


def time_preprocessing(ds, scorer, workers: int, micro: int) -> float:
    """Seconds to decode, preprocess and collate every row through the scorer's pipeline (no model)."""
    scorer = scorer.with_options(prefetch_workers=workers, micro_batch_size=micro)
    batch = ds[:]
    errors = [""] * len(ds)
    start = time.perf_counter()
    for _ in run_pipeline(scorer, batch, len(ds), None, errors):
        pass
    return time.perf_counter() - start


def time_map(ds, scorer, batch_size: int, column: str):
    """Seconds for ``ds.map(scorer)`` and the mapped dataset."""
    sync()
    start = time.perf_counter()
    out = ds.map(scorer, batched=True, batch_size=batch_size, load_from_cache_file=False)
    sync()
    return time.perf_counter() - start, out


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else math.nan


def max_difference(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = ~(np.isnan(a) | np.isnan(b))
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return math.inf
    return float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0


def judge_flops_per_pair(judge: VLMJudge, prompt_tokens: int, patches: int) -> float:
    """Forward FLOPs of one pair: 2 x params x tokens for the vision tower (per patch) and the
    language model (per prompt token, embeddings excluded), plus the attention score/value matmuls."""
    model = judge.model()
    visual, language = model.model.visual, model.model.language_model
    vision_params = sum(p.numel() for p in visual.parameters())
    lm_params = sum(p.numel() for p in language.parameters()) - language.embed_tokens.weight.numel()
    vc, tc = model.config.vision_config, model.config.text_config
    vision_attention = 4 * patches**2 * vc.embed_dim * vc.depth
    lm_attention = 2 * prompt_tokens**2 * tc.hidden_size * tc.num_hidden_layers  # causal: half
    return 2 * vision_params * patches + 2 * lm_params * prompt_tokens + vision_attention + lm_attention


# ---- the run --------------------------------------------------------------------------------
def preprocessing_table(ds, judge: VLMJudge, side: int, micro: int) -> None:
    cores = available_cores()
    for use_processor in (True, False):
        with processor_path(judge, use_processor):
            for workers in (0, 1, 2):
                seconds = time_preprocessing(ds, judge, workers, micro)
                rate = len(ds) / seconds
                threads = max(workers, 1)
                print(
                    f"  prep {side}x{side} {'processor' if use_processor else 'fast patches'}, "
                    f"{workers} workers: {rate:.1f} pairs/s ({rate / min(threads, cores):.1f} per busy core)"
                )


def vision_tower_table(ds, judge: VLMJudge, side: int, micro: int, repeats: int = 10) -> None:
    """The vision tower alone on one micro-batch of equal-length images: transformers' per-image
    sdpa against the packed attention the judge uses by default (models/vision_attention.py)."""
    import torch

    rows = ds[: 4 * micro]
    items = [judge.prepare(rows, index) for index in range(len(rows["image"]))]
    counts: dict[int, list] = {}
    for item in items:
        counts.setdefault(item.pixel_values.shape[0], []).append(item)
    group = max(counts.values(), key=len)[:micro]
    inputs = judge.preprocessing.builder.collate(group)
    timings = {}
    for name, scorer in (("per-image sdpa", judge.with_options(attn_implementation="sdpa")), ("packed", judge)):
        model = scorer.model()
        pixels = inputs["pixel_values"].to(model.device, model.dtype)
        grid = inputs["image_grid_thw"].to(model.device)
        with torch.inference_mode():
            model.model.visual(pixels, grid_thw=grid)  # warm-up
            sync()
            start = time.perf_counter()
            for _ in range(repeats):
                model.model.visual(pixels, grid_thw=grid)
            sync()
        timings[name] = (time.perf_counter() - start) / repeats
    print(f"  vision tower {side}x{side}, {len(group)} images of {group[0].pixel_values.shape[0]} patches: "
          + ", ".join(f"{name} {1000 * seconds:.1f} ms" for name, seconds in timings.items())
          + f" (x{timings['per-image sdpa'] / timings['packed']:.2f})")


def position_ids_line(ds, judge: VLMJudge, side: int, micro: int, repeats: int = 5) -> None:
    """CPU time of the M-RoPE position ids of one micro-batch: transformers computes them inside the
    forward (with device synchronisations per row on a GPU); the judge's collate thread does it."""
    from hf_vlm_filter.models.qwen_vl_inputs import multimodal_position_ids

    rows = ds[:micro]
    items = [judge.prepare(rows, index) for index in range(len(rows["image"]))]
    inputs = judge.preprocessing.builder.collate(items, [judge.preprocessing.digits[1]])
    model = judge.model()
    start = time.perf_counter()
    for _ in range(repeats):
        multimodal_position_ids(model, inputs)
    seconds = (time.perf_counter() - start) / repeats
    print(f"  M-RoPE position ids {side}x{side}, {len(items)} rows of {inputs['input_ids'].shape[1]} tokens, "
          f"on the CPU (moved from the forward to the collate thread): {1000 * seconds:.1f} ms")


def end_to_end(ds, judge: VLMJudge, side: int, batch_size: int, micro: int, workers: int | None, args) -> None:
    baseline = judge.with_options(micro_batch_size=None, prefetch_workers=0, group_by_length=False,
                                  attn_implementation=args.attn or "sdpa")
    optimised = judge.with_options(micro_batch_size=micro, prefetch_workers=workers, group_by_length=True)
    with processor_path(judge, True):
        time_map(ds.select(range(min(micro, len(ds)))), baseline, batch_size, "judge_error")  # warm-up
        base_seconds, base_out = time_map(ds, baseline, min(batch_size, micro), "judge_error")
    time_map(ds.select(range(min(micro, len(ds)))), optimised, batch_size, "judge_error")  # warm-up
    reset_peak()
    seconds, out = time_map(ds, optimised, batch_size, "judge_error")
    peak = peak_gib()
    scored = sum(1 for error in out["judge_error"] if not error)
    rate, base_rate = len(ds) / seconds, len(ds) / base_seconds
    diff = max_difference(out["judge_score"], base_out["judge_score"])
    reference = judge.with_options(mode="reference", max_new_tokens=args.ref_new_tokens, micro_batch_size=micro)
    ref_subset = ds.select(range(min(len(ds), 2 * micro)))
    ref_seconds, _ = time_map(ref_subset, reference, batch_size, "judge_error")
    ref_rate = len(ref_subset) / ref_seconds
    line = (
        f"  e2e {side}x{side}: optimised {rate:.1f} pairs/s ({scored}/{len(ds)} scored; map batch {batch_size}, "
        f"micro {micro}, workers {optimised.pipeline_options().prefetch_workers}); unoptimised {base_rate:.1f} pairs/s "
        f"(x{rate / base_rate:.2f}); max |score diff| {diff:.2e}; reference (<= {args.ref_new_tokens} new tokens) "
        f"{ref_rate:.1f} pairs/s, fast/reference {rate / ref_rate:.1f}x"
    )
    import torch

    if torch.cuda.is_available():
        batch = ds[:1]
        item = judge.prepare(batch, 0)
        flops = judge_flops_per_pair(judge, len(item.input_ids), item.pixel_values.shape[0])
        mfu = rate * flops / (args.peak_tflops * 1e12)
        line += f"; peak GPU memory {peak:.2f} GiB; {flops / 1e12:.2f} TFLOP/pair, MFU {100 * mfu:.1f}%"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny random judge on CPU")
    parser.add_argument("--prep-only", action="store_true", help="only the preprocessing table")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--attn", default=None, help="attn_implementation (sdpa, flash_attention_2, eager)")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="ds.map batch size")
    parser.add_argument("--micro-batch-size", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="prefetch workers (default: automatic)")
    parser.add_argument("--sides", default="448,224")
    parser.add_argument("--ref-new-tokens", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS)
    args = parser.parse_args()

    pairs = args.pairs or (64 if args.smoke else 1024)
    micro = args.micro_batch_size or (8 if args.smoke else 64)
    batch_size = args.batch_size or (64 if args.smoke else 1024)
    work = Path(tempfile.mkdtemp(prefix="judge-bench-"))
    ds = jpeg_dataset(work, pairs)
    model_dir = save_judge(work / "judge", args.smoke)

    print(f"{pairs} JPEGs of 480-800 x 360-600 px; {available_cores()} cores")
    for side in (int(s) for s in args.sides.split(",")):
        budget = {"min_pixels": min(side * side, 256 * 28 * 28), "max_pixels": side * side}
        judge = VLMJudge(str(model_dir), device=args.device, dtype=args.dtype, attn_implementation=args.attn, **budget)
        judge.load()
        preprocessing_table(ds, judge, side, micro)
        if args.attn is None:
            vision_tower_table(ds, judge, side, micro)
        position_ids_line(ds, judge, side, micro)
        if not args.prep_only:
            end_to_end(ds, judge, side, batch_size, micro, args.workers, args)


if __name__ == "__main__":
    main()
