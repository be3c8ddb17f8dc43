"""End-to-end throughput of two scorers in one pass: ``ds.map(CompositeScorer([judge, clip]))``.

The composite decodes each image once for both scorers. This times that ``map`` with 0, 1 and 2
background workers (every sub-scorer gets the same ``prefetch_workers``; the composite decodes on
that pool), and checks that the scores do not depend on the worker count.

    python benchmarks/composite_throughput.py --smoke        # CPU: tiny judge + narrow CLIP
    python benchmarks/composite_throughput.py --device cuda  # Qwen2-VL-2B and CLIP B/32 shapes
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from clip_throughput import save_clip
from judge_throughput import jpeg_dataset, max_difference, save_judge, time_map

from hf_vlm_filter import ClipScorer, CompositeScorer, VLMJudge
from hf_vlm_filter.scorers.batching import available_cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny judge + narrow CLIP on CPU")
    parser.add_argument("--device", default=None)
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="ds.map batch size")
    parser.add_argument("--micro-batch-size", type=int, default=None)
    parser.add_argument("--side", type=int, default=448, help="judge pixel budget: side x side")
    parser.add_argument("--workers", default="0,1,2", help="prefetch worker counts to time")
    args = parser.parse_args()

    pairs = args.pairs or (64 if args.smoke else 2048)
    micro = args.micro_batch_size or (8 if args.smoke else 64)
    batch_size = args.batch_size or (64 if args.smoke else 1024)
    work = Path(tempfile.mkdtemp(prefix="composite-bench-"))
    ds = jpeg_dataset(work, pairs)
    judge_dir = save_judge(work / "judge", args.smoke)
    budget = {"min_pixels": min(args.side**2, 256 * 28 * 28), "max_pixels": args.side**2}
    judge = VLMJudge(str(judge_dir), device=args.device, micro_batch_size=micro, **budget)
    clip = ClipScorer(str(save_clip(work / "clip", args.smoke)), device=args.device, micro_batch_size=micro)
    print(f"{pairs} JPEGs of 480-800 x 360-600 px; {available_cores()} cores; judge at {args.side}x{args.side}")

    first = None
    for workers in (int(w) for w in args.workers.split(",")):
        both = CompositeScorer([judge.with_options(prefetch_workers=workers), clip.with_options(prefetch_workers=workers)])
        both.load()
        time_map(ds.select(range(min(micro, len(ds)))), both, batch_size, "judge_error")  # warm-up
        seconds, out = time_map(ds, both, batch_size, "judge_error")
        first = first or out
        diff = max(max_difference(out[c], first[c]) for c in ("judge_score", "clip_score"))
        print(f"  composite judge + CLIP, {workers} workers: {len(ds) / seconds:.1f} pairs/s "
              f"(map batch {batch_size}, micro {micro}); max |score diff| to the first run {diff:.2e}")


if __name__ == "__main__":
    main()
