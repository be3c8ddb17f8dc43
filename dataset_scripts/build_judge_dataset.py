"""Recipe: turn real image-caption pairs into a graded judge-training dataset (levels 0-3, rubric 1-10).

    python dataset_scripts/build_judge_dataset.py examples/sample/pairs.json --out out/judge-data \
        --examples-per-image 4 --levels 0.25,0.25,0.25,0.25 --seed 0

``--out DIR`` writes ``save_to_disk`` (reload with ``datasets.load_from_disk``); ``--format parquet``
writes ``DIR/train.parquet`` and ``DIR/validation.parquet`` instead; ``--push-to USER/NAME`` also
pushes the splits with the rubric and the build report as the dataset card. ``--levels`` takes four
fractions (``0.4,0.2,0.2,0.2``) or four integer counts (``100,100,100,100``). ``--neighbours`` picks
how similar images are found (``auto``, ``text``, ``clip:<checkpoint>``, ``words``, ``random``);
``--gate skip|demote|off`` and ``--min-words N`` set the source gate; ``--noise`` adds disfluent
negatives. ``--model M`` rewrites levels 0-2 with an instruct LLM / VLM (``--sees-image``: a Qwen-VL
model that sees each image). Level counts per split and the build report (counts per transformation
and score, gate refusals, the text-only control) are printed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_vlm_filter.training.builder import build_judge_dataset, level_counts
from hf_vlm_filter.training.gate import DEFAULT_MIN_WORDS, GATE_MODES
from hf_vlm_filter.training.levels import LEVEL_NAMES
from hf_vlm_filter.training.report import judge_data_report


def parse_levels(text: str) -> tuple[float, ...] | tuple[int, ...]:
    """``"0.4,0.2,0.2,0.2"`` -> fractions; ``"10,10,5,5"`` -> integer counts."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != len(LEVEL_NAMES):
        raise argparse.ArgumentTypeError(f"--levels needs {len(LEVEL_NAMES)} comma-separated values, got {text!r}")
    try:
        if all(part.isdigit() for part in parts):
            return tuple(int(part) for part in parts)
        return tuple(float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels values must be numbers, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="Hub dataset id, or a local Parquet / JSON / CSV file or folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=("disk", "parquet"), default="disk")
    parser.add_argument("--levels", type=parse_levels, default=(0.25, 0.25, 0.25, 0.25))
    parser.add_argument("--examples-per-image", type=int, default=1)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="read only the first LIMIT source rows")
    parser.add_argument("--streaming", action="store_true", help="stream the source instead of loading it")
    parser.add_argument("--layout", choices=("pairs", "documents"), default="pairs")
    parser.add_argument("--image-column")
    parser.add_argument("--text-column")
    parser.add_argument("--justify", action="store_true", help="a short justification before 'score: {N}'")
    parser.add_argument("--neighbours", default="auto",
                        help="similar images for hard negatives: auto, text, text:DIR, clip:CHECKPOINT, words, random")
    parser.add_argument("--gate", choices=GATE_MODES, default="skip",
                        help="refused originals (URL, file name, spam, boilerplate, short): skip, demote, off")
    parser.add_argument("--min-words", type=int, default=DEFAULT_MIN_WORDS, help="the gate refuses shorter originals")
    parser.add_argument("--noise", action="store_true", help="also make disfluent negatives (shuffles, char noise)")
    parser.add_argument("--model", help="rewrite levels 0-2 with this instruct LLM / VLM (Hub id or folder)")
    parser.add_argument("--sees-image", action="store_true", help="--model is a Qwen-VL model that sees each image")
    parser.add_argument("--device")
    parser.add_argument("--push-to", help="also push to this Hub dataset repo, with the report as its card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    generator = "offline"
    if args.model:
        from hf_vlm_filter.training.rewrite import RewriteGenerator

        generator = RewriteGenerator(args.model, device=args.device, sees_image=args.sees_image)
    graded = build_judge_dataset(
        args.source, levels=args.levels, examples_per_image=args.examples_per_image,
        validation_fraction=args.validation_fraction, seed=args.seed, generator=generator, layout=args.layout,
        streaming=args.streaming, limit=args.limit, image_column=args.image_column, text_column=args.text_column,
        justify=args.justify, neighbours=args.neighbours, gate=args.gate, min_words=args.min_words, noise=args.noise,
    )
    out = Path(args.out)
    if args.format == "parquet":
        out.mkdir(parents=True, exist_ok=True)
        for split, dataset in graded.items():
            dataset.to_parquet(str(out / f"{split}.parquet"))
    else:
        graded.save_to_disk(str(out))
    for split, dataset in graded.items():
        counts = level_counts(dataset).items()
        per_level = "  ".join(f"{level} {name}: {count}" for level, (name, count) in enumerate(counts))
        print(f"{split}: {len(dataset)} examples  |  {per_level}")
    report = judge_data_report(graded)
    if report is not None:
        print(report.markdown())
    print(f"written to {out} ({args.format})")
    if args.push_to:
        from hf_vlm_filter.training.publish import push_judge_dataset

        push_judge_dataset(graded, args.push_to, report=report)
        print(f"pushed to {args.push_to}")


if __name__ == "__main__":
    main()
