"""A tiny judge that really writes justifications, for the tests of the generating modes.

A random tiny judge never writes ``score: {N}``, so reference mode, justify mode and calibration
would only ever be tested on their failure branches. This is the tiny offline Qwen2-VL
(:func:`~hf_vlm_filter.models.tiny.save_tiny_model`) fine-tuned with the package's own
:func:`~hf_vlm_filter.training.trainer.train_judge` (``kind="generative"``) on a few dozen graded
scene pairs whose targets carry a justification
(:func:`~hf_vlm_filter.training.builder.build_judge_dataset` with ``justify=True``), until it
reproduces most of them word for word under greedy decoding. Each target is followed by a short
remark that holds a second ``score: {N}`` (:attr:`JustifyingRecipe.coda`): the judge goes on
writing after its score, so stopping at the score saves tokens, and the seed's first-match rule is
exercised.

The scene images are 56x56, a multiple of 28 inside the tiny budget: the seed's image path leaves
them unchanged, so the judge reads its training rows the same way in every mode.

:func:`justifying_judge` trains it once per process into a temporary folder that is removed at exit
(on one torch thread, so the weights do not depend on the machine's core count: about 25 s on an idle
core); every later call returns the same checkpoint.

Example:
    >>> rows = justifying_rows(JustifyingRecipe(scenes=2))
    >>> all(target.endswith(". score: {%d} Second opinion: score: {5}." % score)
    ...     for target, score in zip(rows["target"], rows["score"]))
    True
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset

from ..models.tiny import save_tiny_model


@dataclass(frozen=True)
class JustifyingRecipe:
    """How the justifying judge is made (its sizes and steps are tuned to train in seconds).

    Args:
        scenes: scene images drawn (:func:`~hf_vlm_filter.training.scenes.scene_pairs`).
        examples_per_image: graded captions per image (one per level: 4 gives every level).
        image_size: side of the square scene images (a multiple of 28).
        coda: text after the score in every target (a second, later ``score: {N}``).
        steps / learning_rate / batch_size / seed: the training run.
        min_pixels / max_pixels: the pixel budget it is trained at (and records).
    """

    scenes: int = 8
    examples_per_image: int = 4
    image_size: int = 56
    coda: str = " Second opinion: score: {5}."
    steps: int = 300
    learning_rate: float = 2e-2
    batch_size: int = 8
    seed: int = 0
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 16 * 28 * 28


#: The recipe the tests use.
RECIPE = JustifyingRecipe()


@dataclass(frozen=True)
class JustifyingJudge:
    """A trained justifying judge: its checkpoint folder and the rows it was trained on
    (``image``, ``text``, ``level``, ``score``, ``target``...)."""

    path: str
    rows: Dataset
    recipe: JustifyingRecipe


def justifying_rows(recipe: JustifyingRecipe = RECIPE) -> Dataset:
    """The training rows: graded scene pairs with justified targets, each followed by the coda."""
    from ..training.builder import build_judge_dataset
    from ..training.scenes import scene_pairs

    graded = build_judge_dataset(scene_pairs(recipe.scenes, seed=recipe.seed, image_size=recipe.image_size),
                                 examples_per_image=recipe.examples_per_image, validation_fraction=0.0,
                                 seed=recipe.seed, justify=True)
    return graded["train"].map(lambda row: {"target": row["target"] + recipe.coda})


def train_justifying_judge(out_dir: str | Path, recipe: JustifyingRecipe = RECIPE) -> JustifyingJudge:
    """Train the judge of ``recipe`` into ``out_dir`` (the tiny random judge is written beside it)."""
    from ..training.options import JudgeTrainingOptions
    from ..training.trainer import train_judge

    out = Path(out_dir)
    rows = justifying_rows(recipe)
    base = save_tiny_model(out / "base", seed=recipe.seed)
    options = JudgeTrainingOptions(max_steps=recipe.steps, batch_size=recipe.batch_size,
                                   learning_rate=recipe.learning_rate, warmup_steps=10, lr_scheduler="cosine",
                                   seed=recipe.seed, min_pixels=recipe.min_pixels, max_pixels=recipe.max_pixels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same weights on any machine, and no contention on a shared one
    try:
        result = train_judge(rows, out / "judge", base_model=base, kind="generative", options=options)
    finally:
        torch.set_num_threads(threads)
    return JustifyingJudge(str(result.path), rows, recipe)


_BUILT: dict[JustifyingRecipe, JustifyingJudge] = {}
_LOCK = threading.Lock()


def justifying_judge(recipe: JustifyingRecipe = RECIPE) -> JustifyingJudge:
    """The judge of ``recipe``, trained on first use in this process and reused afterwards."""
    with _LOCK:
        if recipe not in _BUILT:
            root = Path(tempfile.mkdtemp(prefix="justifying-judge-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            _BUILT[recipe] = train_justifying_judge(root, recipe)
        return _BUILT[recipe]
