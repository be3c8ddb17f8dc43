"""Checkpoints as they are on the Hub, not as today's transformers writes them: a judge saved by
transformers 4.4x (flat config, ``rope_scaling``/``torch_dtype``, chat template in
``tokenizer_config.json``, ``min_pixels``/``max_pixels`` keys) and a UniFilter checkpoint without its
frozen tower (read from ``mm_vision_tower`` as the published scoring code does). Each must load
through the real paths and score exactly as the same weights in today's layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from hf_vlm_filter import UniFilterScorer, VLMJudge, map_with_scorer
from hf_vlm_filter.models.tiny import save_tiny_model
from hf_vlm_filter.models.unifilter import UniFilterWeightsError
from hf_vlm_filter.visa import InformationRichness, InstructionQuality

from .conftest import jpeg_bytes, random_image


@pytest.fixture(scope="module")
def judges(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return (str(save_tiny_model(root / "today", seed=3)),
            str(save_tiny_model(root / "transformers-4", seed=3, layout="transformers-4")))


def pairs(count: int = 5) -> dict:
    images = [{"bytes": jpeg_bytes(random_image(40 + 17 * i, 30 + 9 * i, seed=i)), "path": None} for i in range(count)]
    captions = ["a red square", "two dogs", "a city at night", "   ", "a cup of coffee"][:count]
    return {"image": images, "caption": captions}


def test_the_4x_files_are_the_published_ones(judges):
    _, old = judges
    names = {path.name for path in Path(old).iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"} <= names
    assert "chat_template.jinja" not in names
    config = json.loads((Path(old) / "config.json").read_text())
    assert "text_config" not in config and config["torch_dtype"] == "float32" and "dtype" not in config
    assert config["rope_scaling"] == {"type": "mrope", "mrope_section": [1, 1, 2]} and "in_chans" in config["vision_config"]
    processor = json.loads((Path(old) / "preprocessor_config.json").read_text())
    assert (processor["min_pixels"], processor["max_pixels"]) == (4 * 28 * 28, 64 * 28 * 28) and "size" not in processor
    assert "<|im_start|>" in json.loads((Path(old) / "tokenizer_config.json").read_text())["chat_template"]


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_the_judge_scores_a_4x_checkpoint_like_today_s(judges, mode):
    today, old = judges
    options = {"device": "cpu", "mode": mode, "max_new_tokens": 6,
               **({"return_probs": True} if mode == "fast" else {"return_text": True})}
    new_judge, old_judge = VLMJudge(today, **options), VLMJudge(old, **options)
    assert old_judge.preprocessing.pixel_budget == new_judge.preprocessing.pixel_budget == (4 * 28 * 28, 64 * 28 * 28)
    a, b = new_judge(pairs()), old_judge(pairs())
    assert list(a["judge_error"]) == list(b["judge_error"])
    np.testing.assert_array_equal(a["judge_score"], b["judge_score"])
    if mode == "fast":
        np.testing.assert_array_equal(np.asarray(a["judge_probs"]), np.asarray(b["judge_probs"]))
    else:
        assert list(a["judge_output"]) == list(b["judge_output"])


def test_the_visa_vlm_agents_load_a_4x_checkpoint(judges):
    today, old = judges
    rows = pairs(3)
    rows["conversations"] = [[{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": c or "x"}]
                             for c in rows["caption"]]
    for agent in (InformationRichness, InstructionQuality):
        a, b = agent(today, device="cpu")(rows), agent(old, device="cpu")(rows)
        for column in a:
            if column.endswith("_score"):
                np.testing.assert_array_equal(a[column], b[column])


@pytest.mark.slow
def test_train_judge_starts_from_a_4x_checkpoint(judges, tmp_path):
    from hf_vlm_filter.training.builder import build_judge_dataset
    from hf_vlm_filter.training.scenes import scene_pairs
    from hf_vlm_filter.training.trainer import JudgeTrainingOptions, train_judge

    graded = build_judge_dataset(scene_pairs(8, seed=0), examples_per_image=2, validation_fraction=0.25, seed=0)
    options = JudgeTrainingOptions(max_steps=3, batch_size=4, learning_rate=1e-3, min_pixels=4 * 28 * 28,
                                   max_pixels=16 * 28 * 28)
    trained = [train_judge(graded, tmp_path / name, base_model=base, kind="generative", options=options).path
               for name, base in zip(("from-today", "from-4x"), judges)]
    scores = [VLMJudge(str(path), device="cpu")(pairs(3))["judge_score"] for path in trained]
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-5)


@pytest.fixture(scope="module")
def unifilters(tmp_path_factory):
    root = tmp_path_factory.mktemp("unifilter-layouts")
    return (str(save_tiny_model(root / "inside", kind="unifilter", seed=2)),
            str(save_tiny_model(root / "outside", kind="unifilter", seed=2, layout="external-tower")))


def test_unifilter_reads_a_missing_tower_from_mm_vision_tower(unifilters, tmp_path):
    inside, outside = unifilters
    config = json.loads((Path(outside) / "config.json").read_text())
    assert config["mm_vision_tower"].endswith("outside-tower")  # a checkpoint of its own, as a Hub id would be
    rows = Dataset.from_dict(pairs())
    a = map_with_scorer(rows, UniFilterScorer(inside, device="cpu"), batch_size=5)
    b = map_with_scorer(rows, UniFilterScorer(outside, device="cpu"), batch_size=5)
    np.testing.assert_array_equal(np.asarray(a["unifilter_score"]), np.asarray(b["unifilter_score"]))
    assert list(a["unifilter_error"]) == list(b["unifilter_error"])
    # without the tower anywhere, the error names what is missing
    broken = tmp_path / "broken"
    shutil.copytree(outside, broken)
    (broken / "config.json").write_text(json.dumps({**config, "mm_vision_tower": str(tmp_path / "no-tower")}))
    with pytest.raises((UniFilterWeightsError, OSError), match="vision tower|no-tower"):
        UniFilterScorer(str(broken), device="cpu").load()
