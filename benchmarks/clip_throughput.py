"""End-to-end CLIP-score throughput on the user's own path: ``ds.map(ClipScorer, batched=True)``.

A random-weight CLIP in the ViT-B/32 shape (224x224 images, 7x7 patches; text 12 layers x 512) is
built from its config (no download) with a 224x224 ``CLIPImageProcessorPil``; the data is a
Parquet file of N JPEGs around 640x480. It times:

* **preprocessing only**: JPEG decode + resize + crop + normalise + tokenise + collate, with the
  transformers processor and with the exact fast pixels, with 0 / 1 / 2 background workers;
* **end to end** ``ds.map``: unoptimised (whole map batch, no threads, processor) against optimised
  (micro-batches, background prefetch, fast pixels), with the largest score difference;
* on CUDA: peak memory and MFU against ``--peak-tflops``.

    python benchmarks/clip_throughput.py --smoke            # CPU: a narrow 224-px CLIP, decode-bound
    python benchmarks/clip_throughput.py --device cuda      # B/32 shape, bf16
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager
from pathlib import Path

from judge_throughput import H100_BF16_TFLOPS, jpeg_dataset, max_difference, peak_gib, reset_peak, time_map, time_preprocessing

from hf_vlm_filter import ClipScorer
from hf_vlm_filter.scorers.batching import available_cores


def save_clip(out: Path, smoke: bool) -> Path:
    """Random weights of CLIP ViT-B/32's shape (``smoke``: same 224-px input, narrow towers)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from hf_vlm_filter.models.tiny import tiny_clip_tokenizer

    if smoke:
        vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
        text = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
        projection = 64
    else:
        vision = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
        text = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8}
        projection = 512
    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        vision_config={**vision, "image_size": 224, "patch_size": 32},
        text_config={**text, "vocab_size": 49408, "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        projection_dim=projection,
    )
    CLIPModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessorPil().save_pretrained(out)
    return out


@contextmanager
def processor_path(scorer, use_processor: bool):
    """Temporarily use the transformers image processor instead of the exact fast pixels."""
    pre = scorer.preprocessing
    saved = pre.fast_pixels
    if use_processor:
        pre.fast_pixels = None
    try:
        yield
    finally:
        pre.fast_pixels = saved


def clip_flops_per_pair(scorer: ClipScorer, text_tokens: int) -> float:
    """2 x params x tokens for each tower (patches + class token; caption tokens), plus attention."""
    model = scorer.model()
    vc, tc = model.config.vision_config, model.config.text_config
    patches = (vc.image_size // vc.patch_size) ** 2 + 1
    vision = sum(p.numel() for p in model.vision_model.encoder.parameters())
    text = sum(p.numel() for p in model.text_model.encoder.parameters())
    attention = 4 * patches**2 * vc.hidden_size * vc.num_hidden_layers + 4 * text_tokens**2 * tc.hidden_size * tc.num_hidden_layers
    return 2 * vision * patches + 2 * text * text_tokens + attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="narrow 224-px CLIP on CPU")
    parser.add_argument("--prep-only", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="ds.map batch size")
    parser.add_argument("--micro-batch-size", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="prefetch workers (default: automatic)")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS)
    args = parser.parse_args()

    pairs = args.pairs or (256 if args.smoke else 8192)
    micro = args.micro_batch_size or (64 if args.smoke else 256)
    batch_size = args.batch_size or (256 if args.smoke else 4096)
    work = Path(tempfile.mkdtemp(prefix="clip-bench-"))
    ds = jpeg_dataset(work, pairs)
    scorer = ClipScorer(str(save_clip(work / "clip", args.smoke)), device=args.device, dtype=args.dtype)
    scorer.load()
    cores = available_cores()
    print(f"{pairs} JPEGs of 480-800 x 360-600 px; {cores} cores")

    for use_processor in (True, False):
        with processor_path(scorer, use_processor):
            for workers in (0, 1, 2):
                rate = len(ds) / time_preprocessing(ds, scorer, workers, micro)
                print(f"  prep 224x224 {'processor' if use_processor else 'fast pixels'}, {workers} workers: "
                      f"{rate:.1f} pairs/s ({rate / min(max(workers, 1), cores):.1f} per busy core)")
    drafted = scorer.with_options(jpeg_draft=True)
    for workers in (0, 2):
        rate = len(ds) / time_preprocessing(ds, drafted, workers, micro)
        print(f"  prep 224x224 fast pixels + jpeg_draft, {workers} workers: {rate:.1f} pairs/s "
              f"({rate / min(max(workers, 1), cores):.1f} per busy core)")
    if args.prep_only:
        return

    baseline = scorer.with_options(micro_batch_size=None, prefetch_workers=0)
    optimised = scorer.with_options(micro_batch_size=micro, prefetch_workers=args.workers)
    warm = ds.select(range(min(micro, len(ds))))
    with processor_path(scorer, True):
        time_map(warm, baseline, micro, "clip_error")
        base_seconds, base_out = time_map(ds, baseline, micro, "clip_error")
    time_map(warm, optimised, batch_size, "clip_error")
    reset_peak()
    seconds, out = time_map(ds, optimised, batch_size, "clip_error")
    peak = peak_gib()
    rate, base_rate = len(ds) / seconds, len(ds) / base_seconds
    line = (
        f"  e2e 224x224: optimised {rate:.1f} pairs/s (map batch {batch_size}, micro {micro}, "
        f"workers {optimised.pipeline_options().prefetch_workers}); unoptimised {base_rate:.1f} pairs/s "
        f"(x{rate / base_rate:.2f}); max |score diff| {max_difference(out['clip_score'], base_out['clip_score']):.2e}"
    )
    import torch

    if torch.cuda.is_available():
        tokens = len(scorer.prepare(ds[:1], 0).input_ids)
        mfu = rate * clip_flops_per_pair(scorer, tokens) / (args.peak_tflops * 1e12)
        line += f"; peak GPU memory {peak:.2f} GiB; MFU {100 * mfu:.2f}%"
    print(line)
    drafted = optimised.with_options(jpeg_draft=True)
    time_map(warm, drafted, batch_size, "clip_error")
    seconds, out = time_map(ds, drafted, batch_size, "clip_error")
    print(f"  e2e 224x224 + jpeg_draft: {len(ds) / seconds:.1f} pairs/s; "
          f"max |score diff| to the unoptimised path {max_difference(out['clip_score'], base_out['clip_score']):.2e}")


if __name__ == "__main__":
    main()
