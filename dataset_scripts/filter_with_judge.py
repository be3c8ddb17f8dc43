"""Recipe: score an image-caption dataset with the Compact VLM judge and keep the best pairs.

The Python twin of ``hf-vlm-filter filter``, meant to be copied and edited.

    python dataset_scripts/filter_with_judge.py examples/sample/pairs.json --model out/tiny-judge \
        --threshold 5 --out out/recipe.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datasets import Image, load_dataset

from hf_vlm_filter import VLMJudge, judge_filter, map_with_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a JSON/JSONL file (seed layout) or a Parquet file")
    parser.add_argument("--model", default="Dauka-transformers/Compact_VLM_filter")
    parser.add_argument("--threshold", type=float, default=9.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="filtered.parquet")
    args = parser.parse_args()

    data = Path(args.data)
    builder = "parquet" if data.suffix == ".parquet" else "json"
    ds = load_dataset(builder, data_files=str(data), split="train")
    for name, feature in ds.features.items():
        if isinstance(feature, Image):  # let the judge decode: a broken image becomes NaN + reason
            ds = ds.cast_column(name, Image(decode=False))

    judge = VLMJudge(args.model, image_root=str(data.parent))
    scored = map_with_scorer(ds, judge, batch_size=args.batch_size)
    kept = scored.filter(judge_filter, batched=True, fn_kwargs={"threshold": args.threshold})
    kept.to_parquet(args.out)
    errors = sum(1 for error in scored["judge_error"] if error)
    print(f"read {len(scored)}, could not score {errors}, kept {len(kept)} -> {args.out}")


if __name__ == "__main__":
    main()
