"""End-to-end throughput of the judge on the user's own path: ``ds.map(judge, batched=True)``.

Builds a Parquet dataset of N random-content JPEGs of varied sizes around 640x480, then times
decode + preprocessing + model + column writing, in fast mode and in reference mode (generation
capped at ``--ref-new-tokens``), and also times preprocessing alone (decode, normalise, tokenise,
patchify) to show how much of the time the CPU side takes.

    python benchmarks/judge_throughput.py --smoke            # CPU, tiny random judge, < 1 minute
    python benchmarks/judge_throughput.py --device cuda      # random weights of the Qwen2-VL-2B shape
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Image as ImageFeature
from datasets import load_dataset
from PIL import Image

from hf_vlm_filter import VLMJudge


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


def save_real_shape_judge(out: Path) -> Path:
    """Random weights in the real Qwen2-VL-2B shape (no download), with the tiny tokenizer."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    from hf_vlm_filter.testing import QWEN_SPECIAL_TOKENS, tiny_qwen_tokenizer

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


def time_map(ds, judge: VLMJudge, batch_size: int) -> tuple[float, int]:
    start = time.perf_counter()
    out = ds.map(judge, batched=True, batch_size=batch_size, load_from_cache_file=False)
    scored = sum(1 for error in out["judge_error"] if not error)
    return time.perf_counter() - start, scored


def time_preprocessing(ds, judge: VLMJudge) -> float:
    batch = ds[:]
    start = time.perf_counter()
    for index in range(len(ds)):
        judge.prepare(batch, index)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny random judge on CPU")
    parser.add_argument("--device", default=None)
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--ref-new-tokens", type=int, default=32)
    args = parser.parse_args()

    pairs = args.pairs or (64 if args.smoke else 512)
    batch_size = args.batch_size or (16 if args.smoke else 64)
    work = Path(tempfile.mkdtemp(prefix="judge-bench-"))
    data = write_jpegs(work / "pairs.parquet", pairs)
    ds = load_dataset("parquet", data_files=str(data), split="train").cast_column("image", ImageFeature(decode=False))
    if args.smoke:
        from hf_vlm_filter.testing import save_tiny_model

        model_dir = save_tiny_model(work / "judge")
    else:
        model_dir = save_real_shape_judge(work / "judge")

    import torch

    for side in (448, 224):
        budget = {"min_pixels": min(side * side, 256 * 28 * 28), "max_pixels": side * side}
        judge = VLMJudge(str(model_dir), device=args.device, **budget)
        judge.load()
        prep = time_preprocessing(ds, judge)
        time_map(ds.select(range(min(batch_size, pairs))), judge, batch_size)  # warm-up
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        seconds, scored = time_map(ds, judge, batch_size)
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
        reference = judge.with_options(mode="reference", max_new_tokens=args.ref_new_tokens)
        ref_subset = ds.select(range(min(pairs, 4 * batch_size)))
        ref_seconds, _ = time_map(ref_subset, reference, batch_size)
        fast_rate = pairs / seconds
        ref_rate = len(ref_subset) / ref_seconds
        print(
            f"{side}x{side}: fast {fast_rate:.1f} pairs/s ({scored}/{pairs} scored, batch {batch_size}), "
            f"preprocessing alone {pairs / prep:.1f} pairs/s on 1 core, "
            f"reference (<= {args.ref_new_tokens} new tokens) {ref_rate:.1f} pairs/s, "
            f"fast/reference {fast_rate / ref_rate:.1f}x, peak GPU memory {peak:.2f} GiB"
        )


if __name__ == "__main__":
    main()
