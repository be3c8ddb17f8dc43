"""Recipe: score a dataset with the Compact VLM judge, keep the best pairs, publish them on the Hub
with a dataset card (source, judge, prompt, threshold, counts, score histogram, the cut's thumbnails,
this recipe) and the run's report.html.

    python dataset_scripts/push_filtered.py examples/sample/pairs.json me/sample-hq \
        --model out/tiny-judge --threshold 5

Set HF_TOKEN (or ``hf auth login``) first. For a long job over a large or streamed source, use
``hf-vlm-filter filter SOURCE --streaming --push-to REPO --out DIR`` instead (resumable, shard by shard).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from hf_vlm_filter import KeepRule, VLMJudge
from hf_vlm_filter.engines import JobOptions, RunContext, run_in_memory
from hf_vlm_filter.hub import push_filtered
from hf_vlm_filter.inputs.sources import load_source
from hf_vlm_filter.reports import GALLERY, GallerySample


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
    rule = KeepRule.from_thresholds(judge, {judge.score_column: args.threshold})
    context = RunContext(args.source, recipe="python " + " ".join(shlex.quote(arg) for arg in sys.argv))
    image_column = "image" if "image" in dataset.column_names else "image_path"  # the seed JSON layout
    gallery = GallerySample.for_run(judge, rule, image_column=image_column, text_column="caption", image_root=image_root)
    result = run_in_memory(dataset, judge, rule, context, JobOptions(batch_size=args.batch_size), observers=[gallery])
    pushed = push_filtered(result.kept, args.repo_id, result.run, private=args.private or None,
                           gallery=result.observers[GALLERY])
    print(result.summary.render())
    print(f"pushed {len(result.kept)} rows to {pushed.repo_id} (commit {pushed.commit_oid})")


if __name__ == "__main__":
    main()
