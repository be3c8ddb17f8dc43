"""Recipe: fine-tune a judge on a graded dataset and save it where the scorers load it.

    # a generative Qwen2-VL judge (answers `score: {N}`), LoRA rank 16, scored with VLMJudge afterwards
    python dataset_scripts/train_judge.py out/graded out/my-judge --kind generative \
        --base-model ./Qwen2-VL-2B-judge --lora-rank 16 --epochs 1 --lr 1e-4
    # a UniFilter-style score head (regression on levels 0-3), scored with unifilter_scores afterwards
    python dataset_scripts/train_judge.py out/graded out/my-head --kind score_head --base-model ./UniFilter-Qwen2.5-1.5B

The dataset is a folder written by ``save_to_disk`` (a ``Dataset``, or a ``DatasetDict`` with
``train`` and ``validation``/``test`` splits, as the graded dataset builder writes) or anything
``load_dataset`` accepts; rows need ``image``, ``text`` and ``level`` (and ``target`` for the
generative judge, else ``score: {N}`` is derived from the level). The evaluation split's accuracy,
Spearman and AUC (level 3 vs 0) are printed as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from hf_vlm_filter.training.trainer import KINDS, JudgeTrainingOptions, train_judge


def load_graded(source: str) -> Dataset | DatasetDict:
    """A ``save_to_disk`` folder, else ``load_dataset(source)``."""
    folder = Path(source)
    if (folder / "dataset_dict.json").is_file() or (folder / "dataset_info.json").is_file():
        return load_from_disk(str(folder))
    return load_dataset(source)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="graded dataset: a save_to_disk folder or a load_dataset source")
    parser.add_argument("out", help="folder for the trained judge")
    parser.add_argument("--base-model", required=True, help="local checkpoint folder to start from")
    parser.add_argument("--kind", choices=KINDS, default="score_head")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=-1, help="training steps (overrides --epochs)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-steps", type=int, default=None, help="evaluate every N steps (default: at the end)")
    parser.add_argument("--lora-rank", type=int, default=None, help="generative: LoRA rank (default: full fine-tune)")
    parser.add_argument("--freeze-vision", action="store_true", help="score head: keep the vision tower fixed")
    parser.add_argument("--min-pixels", type=int, default=JudgeTrainingOptions.min_pixels)
    parser.add_argument("--max-pixels", type=int, default=JudgeTrainingOptions.max_pixels)
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options = JudgeTrainingOptions(
        epochs=args.epochs, max_steps=args.steps, learning_rate=args.lr, batch_size=args.batch_size,
        eval_steps=args.eval_steps, lora_rank=args.lora_rank, freeze_vision=args.freeze_vision,
        min_pixels=args.min_pixels, max_pixels=args.max_pixels, image_column=args.image_column,
        text_column=args.text_column, seed=args.seed, show_progress=True,
    )
    result = train_judge(load_graded(args.data), args.out, base_model=args.base_model, kind=args.kind,
                         options=options)
    summary = {"path": str(result.path), "kind": result.kind, "train_loss": result.train_loss,
               "metrics": result.metrics}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
