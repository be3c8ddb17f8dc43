"""Recipe: score a dataset with the Compact VLM judge, keep the best pairs, publish them on the Hub
with a dataset card (source, judge, prompt, threshold, counts, score histogram, this recipe).

    python dataset_scripts/push_filtered.py examples/sample/pairs.json me/sample-hq \
        --model out/tiny-judge --threshold 5

Set HF_TOKEN (or ``hf auth login``) first. For a long job over a large or streamed source, use
``hf-vlm-filter filter SOURCE --streaming --push-to REPO --out DIR`` instead (resumable, shard by shard).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from hf_vlm_filter import VLMJudge, map_with_scorer, threshold_filter
from hf_vlm_filter.hub import FilterRun, push_filtered
from hf_vlm_filter.sources import load_source
from hf_vlm_filter.summary import RunSummary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="Hub dataset id, or a local Parquet / JSON / image folder")
    parser.add_argument("repo_id", help="the dataset repository to push to, e.g. me/pairs-hq")
    parser.add_argument("--model", default="Dauka-transformers/Compact_VLM_filter")
    parser.add_argument("--threshold", type=float, default=9.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args()

    dataset, image_root = load_source(args.source)  # image columns stay undecoded: the judge decodes
    judge = VLMJudge(args.model, image_root=image_root)
    scored = map_with_scorer(dataset, judge, batch_size=args.batch_size)
    thresholds = {judge.score_column: args.threshold}
    scores = list(scored[judge.score_column])
    keep = threshold_filter({judge.score_column: scores}, thresholds)
    kept = scored.select([index for index, kept_row in enumerate(keep) if kept_row])

    summary = RunSummary.from_columns(scores, scored[judge.error_column], thresholds=thresholds, kept_mask=keep)
    run = FilterRun.from_scorer(
        judge, args.source, thresholds=thresholds, summary=summary,
        recipe="python " + " ".join(shlex.quote(arg) for arg in sys.argv),
    )
    result = push_filtered(kept, args.repo_id, run, private=args.private or None,
                           histogram_scores={judge.score_column: scores})
    print(summary.render())
    print(f"pushed {len(kept)} rows to {result.repo_id} (commit {result.commit_oid})")


if __name__ == "__main__":
    main()
