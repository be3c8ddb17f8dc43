"""What the run report's gallery costs: rows/s of ``GallerySample.observe`` and the size of what it keeps.

Feeds synthetic scored batches (512x384 JPEG noise images, a 1-10 judge score, a CLIP-like cosine,
2% error rows) to the report's row observer as the engines do, then renders the page, and prints
one line: observe rows/s, thumbnails made, rows held, the saved sample's size, the page's size and
its render time. The sample is bounded, so rows held and sizes should stay flat as ``--rows`` grows.

    python benchmarks/report_gallery.py --rows 100000
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import pyarrow as pa
from PIL import Image

from hf_vlm_filter.engines.keep_rule import KeepRule
from hf_vlm_filter.engines.run_record import FilterRun
from hf_vlm_filter.engines.summary import RunSummary
from hf_vlm_filter.reports import GallerySample, render_report
from hf_vlm_filter.scorers.score_spec import ScoreSpec


def noise_jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (384, 512, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = [noise_jpeg(seed) for seed in range(64)]
    judge = ScoreSpec("judge_score", "judge_error", low=1.0, high=10.0, bins=tuple(float(e) for e in range(1, 11)))
    clip = ScoreSpec("clip_score", "clip_error", low=-1.0, high=1.0)
    rule = KeepRule.from_thresholds([judge, clip], {"judge_score": 7.0})
    sample = GallerySample([judge, clip], thresholds=rule.thresholds)
    summary = RunSummary.for_scorer([judge, clip], rule)
    observing = 0.0
    for start in range(0, args.rows, args.batch_size):
        ids = range(start, min(start + args.batch_size, args.rows))
        errors = ["" if i % 50 else "image file not found: x.jpg" for i in ids]
        judge_scores = [None if error else value for value, error in zip(rng.uniform(1, 10, len(ids)), errors)]
        table = pa.table({
            "caption": [f"caption number {i} of the benchmark" for i in ids],
            "image": [{"bytes": images[i % 64], "path": None} for i in ids],
            "judge_score": pa.array(judge_scores, pa.float32()), "judge_error": errors,
            "clip_score": pa.array(rng.normal(0.25, 0.05, len(ids)), pa.float32()), "clip_error": [""] * len(ids),
        })
        verdicts = rule.decide({"judge_score": table.column("judge_score").to_pylist()})
        summary.add({name: table.column(name).to_pylist() for name in table.column_names if name != "image"}, verdicts)
        began = time.perf_counter()
        sample.observe(table, verdicts)
        observing += time.perf_counter() - began
    dump = sample.dump()
    began = time.perf_counter()
    page = render_report(FilterRun("benchmark", rule=rule, summary=summary), sample)
    rendering = time.perf_counter() - began
    print(f"rows {args.rows}: observe {args.rows / observing:,.0f} rows/s ({observing:.2f} s), thumbnails made "
          f"{sample.thumbnails_made}, rows held {len(sample.rows)}, sample {len(dump) / 2**20:.2f} MiB, "
          f"report {len(page) / 2**20:.2f} MiB rendered in {rendering:.2f} s")


if __name__ == "__main__":
    main()
