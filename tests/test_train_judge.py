"""Judge training: metrics, procedural scenes, both trainers and their checkpoints' round trips."""

from __future__ import annotations

import math
import random
import sys

import numpy as np
import pytest
import torch
from datasets import DatasetDict
from scipy import ndimage

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.scorers.unifilter_score import unifilter_scores
from hf_vlm_filter.testing import save_tiny_model
from hf_vlm_filter.training.generative import IGNORE_INDEX, GenerativeRecipe
from hf_vlm_filter.training.levels import graded_caption_features
from hf_vlm_filter.training.metrics import level_metrics, predicted_levels, rubric_metrics
from hf_vlm_filter.training.scenes import COLOURS, Scene, graded_caption
from hf_vlm_filter.training.score_head import ScoreHeadSize
from hf_vlm_filter.training.trainer import JudgeTrainingOptions, train_judge

from ._training_helpers import TINY_BUDGET, graded_scenes, parse_caption, tiny_head


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("judge"), kind="compact_vlm", seed=3)


def _load_script(folder: str, name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---- metrics ---------------------------------------------------------------------------------
def test_level_metrics_exact_values():
    levels = [0, 0, 1, 2, 3, 3]
    scores = [0.2, 1.4, 0.9, 2.2, 1.1, 2.9]   # 4 of 6 round to their level; one level-3 below a level-0
    metrics = level_metrics(levels, scores)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["auc_3_vs_0"] == pytest.approx(3 / 4)   # pairs (3, 0) ordered right: 3 of 4
    ranks_levels = np.array([1.5, 1.5, 3, 4, 5.5, 5.5])
    ranks_scores = np.array([1, 4, 2, 5, 3, 6])
    assert metrics["spearman"] == pytest.approx(np.corrcoef(ranks_levels, ranks_scores)[0, 1])
    assert metrics["count"] == 6


def test_level_metrics_rubric_scale_nan_rows_and_bad_input():
    assert predicted_levels([1, 2.9, 3, 5.9, 6, 8.99, 9, 10], "rubric").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    metrics = level_metrics([0, 3, 3], [2.0, math.nan, 9.5], scale="rubric")
    assert metrics["count"] == 2 and metrics["accuracy"] == 1.0 and metrics["auc_3_vs_0"] == 1.0
    assert math.isnan(level_metrics([3, 3], [1.0, 2.0])["auc_3_vs_0"])
    # rubric metrics: keep (>= 9) against the rest, Spearman against the targets
    rubric = rubric_metrics([10, 2, 7, 1, 9], [8.0, 8.5, 3.0, 1.0, math.nan])
    assert rubric["auc_keep"] == pytest.approx(2 / 3)      # 10 scored above 7 and 1, below 2: 2 of 3 pairs
    assert rubric["spearman_score"] == pytest.approx(0.4)  # ranks (4, 2, 3, 1) vs (3, 4, 2, 1)
    assert math.isnan(rubric_metrics([2, 3], [1.0, 2.0])["auc_keep"])
    with pytest.raises(ValueError, match="equal length"):
        rubric_metrics([1, 2], [1.0])
    with pytest.raises(ValueError, match="levels must be in 0-3"):
        level_metrics([4], [1.0])
    with pytest.raises(ValueError, match="equal length"):
        level_metrics([0, 1], [1.0])
    with pytest.raises(ValueError, match="scale"):
        level_metrics([0], [1.0], scale="percent")


# ---- scenes ----------------------------------------------------------------------------------
def test_scene_drawing_shows_count_colour_and_position():
    rng = random.Random(5)
    for _ in range(12):
        scene = Scene.random(rng)
        pixels = np.asarray(scene.draw(64, rng)).astype(int)
        painted = (np.abs(pixels - np.array(COLOURS[scene.colour])).sum(-1) < 10)
        assert (pixels != 255).any(-1).sum() == painted.sum()          # only the scene's colour is drawn
        _, components = ndimage.label(painted)
        assert components == scene.count
        rows, cols = np.nonzero(painted)
        half = {"left": cols < 32, "right": cols >= 32, "top": rows < 32, "bottom": rows >= 32}[scene.position]
        assert half.all()


def test_graded_captions_get_exactly_the_level_s_facts_wrong():
    rng = random.Random(0)
    for _ in range(40):
        scene = Scene.random(rng)
        for level in range(4):
            stated = parse_caption(graded_caption(scene, level, rng))
            wrong = [f for f in ("count", "colour", "shape", "position") if getattr(stated, f) != getattr(scene, f)]
            assert len(wrong) == {3: 0, 2: 1, 1: 2, 0: 4}[level]
            assert "position" not in wrong or level == 0
    with pytest.raises(ValueError, match="level"):
        graded_caption(scene, 4, rng)


def test_scene_dataset_rows_and_features():
    ds = graded_scenes(3, seed=2)
    assert ds.features == graded_caption_features()
    assert ds["level"] == [0, 1, 2, 3] * 3
    # rubric-true scores: a wrong fact is a hallucination (<= 2), only the exact caption is kept (>= 9)
    assert ds["score"] == [1, 1, 2, 10] * 3 and ds["target"][:3] == ["score: {1}", "score: {1}", "score: {2}"]
    assert ds["transformation"][:4] == ["scene_other", "scene_two_wrong", "scene_one_wrong", "scene_exact"]
    assert len(set(ds["source_id"])) == 3 and set(ds["generator"]) == {"scenes"}
    assert ds["text"] != graded_scenes(3, seed=3)["text"]


# ---- generative judge ------------------------------------------------------------------------
def test_generative_labels_cover_exactly_the_answer_and_prompt_matches_the_judge(tiny_judge):
    recipe = GenerativeRecipe(tiny_judge, JudgeTrainingOptions(**TINY_BUDGET))
    ds = graded_scenes(1, seed=0)
    rows = [ds[0], ds[3]]
    batch = recipe.collator(rows)
    judge = VLMJudge(str(tiny_judge), device="cpu", **TINY_BUDGET)
    tok = recipe.tokenizer
    for index, row in enumerate(rows):
        answer = tok(row["target"], add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
        fast_prompt = judge.preprocessing.builder.build(row["image"].convert("RGB"), row["text"]).input_ids
        prompt_length = len(fast_prompt) - len(tok("score: {")["input_ids"])
        length = prompt_length + len(answer)
        ids, labels = batch["input_ids"][index], batch["labels"][index]
        # the judge's fast prompt is the training prompt followed by the first answer tokens
        assert ids[: len(fast_prompt)].tolist() == fast_prompt
        assert labels[:prompt_length].eq(IGNORE_INDEX).all()
        assert labels[prompt_length:length].tolist() == answer
        assert labels[length:].eq(IGNORE_INDEX).all() and batch["attention_mask"][index].sum() == length
    assert tok.decode(batch["labels"][1][batch["labels"][1] != IGNORE_INDEX]) == "score: {10}<|im_end|>"


def test_generative_training_learns_the_answer(tiny_judge, tmp_path):
    """Trained on 'score: {10}' answers only, the judge's fast-mode scores move up towards 10."""
    ds = graded_scenes(4, seed=0)
    best = ds.filter(lambda row: row["level"] == 3)
    options = JudgeTrainingOptions(max_steps=12, batch_size=4, learning_rate=2e-2, **TINY_BUDGET)
    before = VLMJudge(str(tiny_judge), device="cpu", text_column="text", **TINY_BUDGET)
    result = train_judge(best, tmp_path / "judge", base_model=tiny_judge, kind="generative", eval_dataset=ds,
                         options=options)
    after = VLMJudge(str(result.path), device="cpu", text_column="text", **TINY_BUDGET)
    scores_before = ds.map(before, batched=True, batch_size=16)["judge_score"]
    scores_after = ds.map(after, batched=True, batch_size=16)["judge_score"]
    assert np.mean(scores_before) < 6 and np.mean(scores_after) > 9


@pytest.mark.slow
def test_generative_training_learns_both_ends_of_the_rubric(tiny_judge, tmp_path):
    """Trained on exact captions (score 10) and other scenes' captions (score 1) of the same images, the
    saved judge scores the first above the second: the loss reaches the answer's digits, not a constant."""
    ds = graded_scenes(4, seed=0).filter(lambda row: row["level"] in (0, 3))
    options = JudgeTrainingOptions(max_steps=48, batch_size=8, learning_rate=2e-2, **TINY_BUDGET)
    result = train_judge(ds, tmp_path / "judge", base_model=tiny_judge, kind="generative", options=options)
    judge = VLMJudge(str(result.path), device="cpu", text_column="text", **TINY_BUDGET)
    scores = np.array(ds.map(judge, batched=True, batch_size=8)["judge_score"])
    exact, other = scores[np.array(ds["level"]) == 3], scores[np.array(ds["level"]) == 0]
    assert rubric_metrics(ds["score"], scores)["auc_keep"] >= 0.9   # a constant scores 0.5
    assert exact.mean() - other.mean() > 4


def test_generative_lora_checkpoint_round_trips_into_the_judge(tiny_judge, tmp_path):
    data = DatasetDict(train=graded_scenes(4, seed=0), validation=graded_scenes(2, seed=1))
    options = JudgeTrainingOptions(max_steps=4, batch_size=4, learning_rate=1e-2, lora_rank=4, **TINY_BUDGET)
    result = train_judge(data, tmp_path / "judge", base_model=tiny_judge, kind="generative", options=options)
    from safetensors.torch import load_file

    weights = load_file(str(result.path / "model.safetensors"))
    base_weights = load_file(str(tiny_judge / "model.safetensors"))
    assert not [name for name in weights if "lora" in name] and weights.keys() == base_weights.keys()
    changed = [n for n in weights if not torch.equal(weights[n], base_weights[n])]
    # LoRA on the decoder's projections, merged: only those weights moved, never the vision tower
    assert changed and all(n.endswith("_proj.weight") and not n.startswith("visual") for n in changed)
    judge = VLMJudge.from_pretrained(str(result.path), device="cpu", text_column="text", **TINY_BUDGET)
    scored = data["validation"].map(judge, batched=True, batch_size=3)
    assert scored["judge_error"] == [""] * 8
    metrics = {**level_metrics(scored["level"], scored["judge_score"], scale="rubric"),
               **rubric_metrics(scored["score"], scored["judge_score"])}
    assert metrics == pytest.approx(result.metrics, abs=1e-5, nan_ok=True)   # in-memory evaluation == the saved judge
    assert [entry["step"] for entry in result.history] == [4]


# ---- score head ------------------------------------------------------------------------------
@pytest.mark.parametrize("num_labels", [1, 4])
def test_score_head_checkpoint_round_trips_into_unifilter(num_labels, tmp_path):
    from safetensors.torch import load_file

    base = tiny_head(tmp_path / "base", num_labels=num_labels)
    train, held_out = graded_scenes(6, seed=0), graded_scenes(3, seed=1)
    eval_steps = 2 if num_labels == 1 else None
    options = JudgeTrainingOptions(max_steps=4, batch_size=8, learning_rate=3e-3, eval_steps=eval_steps)
    result = train_judge(train, tmp_path / "head", base_model=base, eval_dataset=held_out, options=options)
    assert [entry["step"] for entry in result.history] == ([2, 4] if num_labels == 1 else [4])
    scored = held_out.map(unifilter_scores, batched=True, batch_size=5,
                          fn_kwargs={"model": str(result.path), "device": "cpu", "text_column": "text"})
    assert scored["unifilter_error"] == [""] * 12
    # the saved checkpoint, scored through ds.map, gives exactly the in-training evaluation
    metrics = {**level_metrics(scored["level"], scored["unifilter_score"]),
               **rubric_metrics(scored["score"], scored["unifilter_score"])}
    assert metrics == pytest.approx(result.metrics, abs=1e-5, nan_ok=True)
    assert ("unifilter_probs" in scored.column_names) == (num_labels == 4)
    trained, initial = load_file(str(result.path / "model.safetensors")), load_file(str(base / "model.safetensors"))
    assert trained.keys() == initial.keys()
    assert not torch.equal(trained["score.weight"], initial["score.weight"])


def test_train_judge_recipe_reads_a_saved_dataset_dict(tmp_path):
    recipe = _load_script("dataset_scripts", "train_judge")
    DatasetDict(train=graded_scenes(4, seed=0), validation=graded_scenes(2, seed=1)).save_to_disk(tmp_path / "data")
    base = tiny_head(tmp_path / "base")
    summary = recipe.main([str(tmp_path / "data"), str(tmp_path / "head"), "--base-model", str(base),
                           "--steps", "2", "--batch-size", "8", "--lr", "1e-3"])
    assert summary["kind"] == "score_head" and summary["metrics"]["count"] == 8
    assert (tmp_path / "head" / "model.safetensors").is_file() and not (tmp_path / "head" / "trainer").exists()


def test_train_judge_refuses_bad_input(tiny_judge, tmp_path):
    ds = graded_scenes(1, seed=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        train_judge(ds, tmp_path / "x", base_model=tiny_judge, kind="dpo")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['level'\]"):
        train_judge(ds.remove_columns("level"), tmp_path / "x", base_model=tiny_judge, kind="generative")
    with pytest.raises(ValueError, match="no 'train' split"):
        train_judge(DatasetDict(validation=ds), tmp_path / "x", base_model=tiny_judge)
    with pytest.raises(FileNotFoundError, match="not a local checkpoint folder"):
        train_judge(ds, tmp_path / "x", base_model=tmp_path / "missing")
    with pytest.raises(ValueError, match="give epochs > 0 or max_steps > 0"):
        JudgeTrainingOptions(epochs=0)


# ---- the learning proof, shortened -------------------------------------------------------------
CI_STEPS = 300


@pytest.mark.slow
def test_judge_quality_short_run_learns_well_above_chance(tmp_path):
    """benchmarks/judge_quality.py, shortened: random init -> train -> saved checkpoint scores held-out scenes."""
    bench = _load_script("benchmarks", "judge_quality")
    # the wider init (1/sqrt(width)) leaves the first plateau within ~200 steps; see QualityRun.size
    config = bench.QualityRun(train_scenes=1000, eval_scenes=60, steps=CI_STEPS, size=ScoreHeadSize(), threads=1)
    result = bench.run(config, tmp_path)
    metrics = result["metrics"]
    assert metrics["count"] == 240
    assert metrics["auc_3_vs_0"] >= 0.8          # chance is 0.5 (1.0 measured)
    assert metrics["spearman"] >= 0.4            # chance is 0 (0.70 measured)
    assert metrics == pytest.approx(result["in_training_metrics"], abs=1e-5)
