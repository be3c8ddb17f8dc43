"""Judge training: graded image-text data (levels 0-3 and the 1-10 rubric) and fine-tuning.

Modules (the names below are re-exported here, imported on first use so that ``import
hf_vlm_filter.training`` needs none of the ``[train]`` extras):

    rubric       the one table: every transformation's UniFilter level and rubric score (1-10)
    levels       UniFilter's levels 0-3, the ``score: {N}`` target, the graded-data features
    words        word classes of the offline generators (colours, counts, attributes, objects by kind)
    perturb      offline generators: a caption or document rewritten at a level, with its record
    neighbours   similar images for hard negatives: MiniLM text embeddings, CLIP image embeddings, TF-IDF
    gate         the source-quality gate: which originals may be positives
    rewrite      the model generator: an instruct LLM / VLM (seeing the image) rewrites captions per transformation
    builder      ``JudgeDatasetBuilder`` (a ``GeneratorBasedBuilder``) and ``build_judge_dataset``
    report       the builder's report: counts, gate refusals, the text-only control
    publish      ``push_judge_dataset``: the graded data and its report as a dataset card
    scenes       procedurally drawn scenes with exact captions (the learning proof's data)
    generative   fine-tuning a Qwen2-VL judge to answer ``score: {N}``
    score_head   fine-tuning a UniFilter-style score head
    options      ``JudgeTrainingOptions``: how a judge is trained
    trainer      ``train_judge``: either kind, with transformers' ``Trainer``
    metrics      accuracy, Spearman and AUC (level 3 vs 0); keep AUC and Spearman against rubric scores

Example:
    >>> from hf_vlm_filter.training import build_judge_dataset, scene_pairs
    >>> graded = build_judge_dataset(scene_pairs(20, seed=0), examples_per_image=2, seed=0, neighbours="words")
    >>> sorted(graded), graded["train"].features["level"].names
    (['train', 'validation'], ['mismatched', 'loosely_related', 'partially_accurate', 'accurate'])
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LEVEL_NAMES": "levels", "SCORE_FOR_LEVEL": "levels", "score_for_level": "levels",
    "level_for_score": "levels", "judge_target": "levels", "graded_caption_features": "levels",
    "RUBRIC": "rubric", "Transformation": "rubric", "rubric_score": "rubric", "rubric_markdown": "rubric",
    "perturb": "perturb", "CaptionPool": "perturb",
    "resolve_neighbours": "neighbours", "gate_reason": "gate",
    "RewriteGenerator": "rewrite",
    "JudgeDataReport": "report", "judge_data_report": "report", "text_only_auc": "report",
    "push_judge_dataset": "publish",
    "build_judge_dataset": "builder", "JudgeDatasetBuilder": "builder", "JudgeDatasetConfig": "builder",
    "graded_document_features": "builder", "level_counts": "builder",
    "Scene": "scenes", "scene_dataset": "scenes", "scene_pairs": "scenes",
    "new_score_head": "score_head", "ScoreHeadSize": "score_head",
    "train_judge": "trainer", "JudgeTrainingOptions": "options", "TrainedJudge": "trainer",
    "level_metrics": "metrics", "rubric_metrics": "metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
