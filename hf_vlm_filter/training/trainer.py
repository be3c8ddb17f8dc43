"""``train_judge``: fine-tune a judge on graded image-text data with transformers' ``Trainer``.

Two kinds of judge, each saved so that the scorers load it directly:

``kind="score_head"``
    A UniFilter-style model (SigLIP -> projector -> Qwen decoder -> ``score`` head): regression on
    levels 0-3 (one label) or level classes. Saved in the published layout; score with
    ``unifilter_scores`` / ``UniFilterScorer``.
``kind="generative"``
    A Qwen2-VL-family judge taught to answer ``score: {N}`` to the compact judge's own prompt, the
    loss on the answer tokens only; full fine-tuning, or LoRA through peft (merged before saving).
    Saved with its tokenizer and image processor; score with ``judge_scores`` / ``VLMJudge``.

Every evaluation scores the evaluation split the way the scorer would and reports ``accuracy``,
``spearman`` and ``auc_3_vs_0`` against the levels and, when the split has rubric ``score``\ s,
``auc_keep`` and ``spearman_score`` against them (see :mod:`hf_vlm_filter.training.metrics`).

Example:
    >>> from hf_vlm_filter.training.scenes import scene_dataset
    >>> from hf_vlm_filter.training.score_head import new_score_head
    >>> from hf_vlm_filter.training.trainer import JudgeTrainingOptions, train_judge
    >>> base = new_score_head("/tmp/scratch-head")
    >>> result = train_judge(scene_dataset(64, seed=0), "/tmp/trained-head", base_model=base,
    ...                      eval_dataset=scene_dataset(16, seed=1),
    ...                      options=JudgeTrainingOptions(max_steps=20, learning_rate=1e-3))
    >>> sorted(result.metrics)                                                     # doctest: +SKIP
    ['accuracy', 'auc_3_vs_0', 'count', 'spearman']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from transformers import PrinterCallback, Trainer, TrainingArguments

from .metrics import level_metrics, rubric_metrics
from .options import JudgeTrainingOptions

KINDS = ("score_head", "generative")
EVAL_SPLITS = ("validation", "test")


@dataclass
class TrainedJudge:
    """Where the trained judge was saved, and how it scored the evaluation split.

    ``metrics``: the last evaluation (``accuracy``, ``spearman``, ``auc_3_vs_0``, ``count``, and
    ``auc_keep`` / ``spearman_score`` when the split has rubric scores; empty without an evaluation split); ``history``: every evaluation, with its ``step``; ``train_loss``:
    the mean training loss reported by the ``Trainer``.
    """

    path: Path
    kind: str
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    train_loss: float = math.nan


def train_judge(
    data: Dataset | DatasetDict,
    output_dir: str | Path,
    *,
    base_model: str | Path,
    kind: str = "score_head",
    eval_dataset: Dataset | None = None,
    options: JudgeTrainingOptions | None = None,
) -> TrainedJudge:
    """Fine-tune ``base_model`` on graded pairs and save the judge (with its processors) to ``output_dir``.

    Args:
        data: a graded dataset (features of :func:`~hf_vlm_filter.training.levels.graded_caption_features`:
            ``image``, ``text``, ``level``…), or a ``DatasetDict`` with a ``train`` split (its
            ``validation`` or ``test`` split is evaluated unless ``eval_dataset`` is given).
        output_dir: where the trained checkpoint is written (``Trainer`` scratch files go to
            ``output_dir/trainer``, and are removed).
        base_model: local checkpoint to start from: a UniFilter-layout folder (``score_head``; see
            :func:`~hf_vlm_filter.training.score_head.new_score_head` for a random one) or a
            Qwen2-VL judge folder (``generative``).
        kind: ``"score_head"`` or ``"generative"``.
        eval_dataset: graded rows to evaluate on (held-out images).
        options: :class:`JudgeTrainingOptions`.
    Returns:
        :class:`TrainedJudge` with the checkpoint path and the evaluation metrics.
    """
    options = options or JudgeTrainingOptions()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    train_dataset, eval_dataset = _splits(data, eval_dataset)
    for name, dataset in (("training", train_dataset), ("evaluation", eval_dataset)):
        if dataset is not None:
            _check_columns(dataset, options, name)
    if train_dataset.num_rows == 0:
        raise ValueError("the training split is empty")
    recipe = _recipe(kind, base_model, options)
    out = Path(output_dir)
    trainer = _LevelEvaluatingTrainer(
        recipe=recipe,
        eval_batch_size=options.eval_batch_size,
        model=recipe.model,
        args=_training_arguments(out / "trainer", options, has_eval=eval_dataset is not None),
        data_collator=recipe.collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
    )
    if not options.show_progress:
        trainer.remove_callback(PrinterCallback)   # quiet: the logs stay in trainer.state.log_history
    result = trainer.train()
    if eval_dataset is not None and (not trainer.history or trainer.history[-1]["step"] != trainer.state.global_step):
        trainer.evaluate()
    recipe.save(trainer.model, out)
    _remove_scratch(out / "trainer")
    history = trainer.history
    metrics = {k: v for k, v in history[-1].items() if k != "step"} if history else {}
    return TrainedJudge(out, kind, metrics, history, float(result.training_loss))


def _splits(data: Dataset | DatasetDict, eval_dataset: Dataset | None) -> tuple[Dataset, Dataset | None]:
    if isinstance(data, DatasetDict):
        if "train" not in data:
            raise ValueError(f"the DatasetDict has no 'train' split (splits: {sorted(data)})")
        if eval_dataset is None:
            eval_dataset = next((data[name] for name in EVAL_SPLITS if name in data), None)
        return data["train"], eval_dataset
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a datasets.Dataset or DatasetDict, got {type(data).__name__}")
    return data, eval_dataset


def _check_columns(dataset: Dataset, options: JudgeTrainingOptions, name: str) -> None:
    missing = [c for c in (options.image_column, options.text_column, "level") if c not in dataset.column_names]
    if missing:
        raise ValueError(f"the {name} split lacks column(s) {missing} (columns: {dataset.column_names}); "
                         "graded data needs image, text and level (see training.levels.graded_caption_features)")


def _recipe(kind: str, base_model: str | Path, options: JudgeTrainingOptions) -> Any:
    if not Path(base_model).expanduser().is_dir():
        raise FileNotFoundError(f"base_model {str(base_model)!r} is not a local checkpoint folder")
    if kind == "score_head":
        from .score_head import ScoreHeadRecipe

        return ScoreHeadRecipe(base_model, options)
    from .generative import GenerativeRecipe

    return GenerativeRecipe(base_model, options)


def _training_arguments(scratch: Path, options: JudgeTrainingOptions, has_eval: bool) -> Any:
    evaluate_often = has_eval and options.eval_steps is not None
    return TrainingArguments(
        output_dir=str(scratch),
        learning_rate=options.learning_rate,
        weight_decay=options.weight_decay,
        warmup_steps=options.warmup_steps,
        lr_scheduler_type=options.lr_scheduler,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.eval_batch_size,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        eval_strategy="steps" if evaluate_often else "no",
        eval_steps=options.eval_steps if evaluate_often else None,
        logging_steps=options.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=options.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not options.show_progress,
        use_cpu=not torch.cuda.is_available(),
    )


def _remove_scratch(scratch: Path) -> None:
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)


class _LevelEvaluatingTrainer(Trainer):
    """A ``Trainer`` whose evaluation scores the split as the scorer would and reports level metrics."""

    def __init__(self, *args: Any, recipe: Any, eval_batch_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.eval_rows_per_forward = eval_batch_size
        self.history: list[dict[str, float]] = []

    def evaluate(self, eval_dataset: Dataset | None = None, ignore_keys: Any = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        was_training = self.model.training
        self.model.eval()
        scores = self.recipe.score(self.model, dataset, self.eval_rows_per_forward)
        self.model.train(was_training)
        metrics = level_metrics(dataset["level"], scores, self.recipe.scale)
        if "score" in dataset.column_names:
            metrics.update(rubric_metrics(dataset["score"], scores))
        self.history.append({"step": self.state.global_step, **metrics})
        logged = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        self.log(logged)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, logged)
        return logged
