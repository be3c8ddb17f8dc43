"""Recipe: publish a fine-tuned judge (weights, config, processor) with a model card.

    python dataset_scripts/push_checkpoint.py out/my-judge me/my-judge \
        --dataset me/judge-train --metric accuracy=0.81@me/judge-eval --threshold 9

The folder must hold what ``model.save_pretrained(dir)`` and ``processor.save_pretrained(dir)``
write. Set HF_TOKEN (or ``hf auth login``) first.
"""

from __future__ import annotations

import argparse

from hf_vlm_filter.hub import EvalMetric, push_checkpoint


def parse_metric(text: str) -> EvalMetric:
    """``NAME=VALUE@DATASET`` -> :class:`EvalMetric`."""
    name, _, rest = text.partition("=")
    value, _, dataset = rest.partition("@")
    if not (name and value and dataset):
        raise argparse.ArgumentTypeError(f"--metric expects NAME=VALUE@DATASET, got {text!r}")
    return EvalMetric(name=name, value=float(value), dataset=dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="folder with the fine-tuned judge and its processor")
    parser.add_argument("repo_id", help="the model repository to push to, e.g. me/my-judge")
    parser.add_argument("--base-model", default=None, help="default Qwen/Qwen2-VL-2B-Instruct")
    parser.add_argument("--dataset", action="append", default=[], help="training dataset (repeatable)")
    parser.add_argument("--metric", action="append", type=parse_metric, default=[], metavar="NAME=VALUE@DATASET")
    parser.add_argument("--threshold", type=float, default=9.0, help="suggested keep threshold for the card")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args()

    result = push_checkpoint(args.model_dir, args.repo_id, base_model=args.base_model, datasets=args.dataset,
                             metrics=args.metric, threshold=args.threshold, private=args.private or None)
    print(f"pushed {len(result.files)} files to {result.repo_id} (commit {result.commit_oid})")


if __name__ == "__main__":
    main()
