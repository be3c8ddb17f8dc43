"""UniFilter: published-layout loader, batched == per-row, bad rows, streaming, strict weight names."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from datasets import Dataset, IterableDataset

from hf_vlm_filter import UniFilterScorer, map_with_scorer, unifilter_scores
from hf_vlm_filter.models.unifilter import (
    IMAGE_TOKEN_INDEX,
    KNOWN_VISION_TOWERS,
    UniFilterSpec,
    UniFilterWeightsError,
    caption_input_ids,
    load_unifilter,
)
from tests.conftest import jpeg_bytes, random_image

SIZES = [(64, 48), (200, 120), (30, 90), (128, 128), (300, 60), (45, 45), (90, 200), (150, 100)]
CAPTIONS = [
    "a dog",
    "a red double-decker bus parked beside a stone bridge over a river at dusk",
    "two cats",
    "text " * 40,  # over the 75-id budget: cut, not an error
    "Ein Foto von 3 Äpfeln <image>",
    "x",
    "a man riding a bicycle down a hill, wearing a yellow helmet",
    "sunset",
]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-unifilter"), kind="unifilter"))


@pytest.fixture(scope="module")
def tiny_classifier_path(tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-unifilter-cls"), kind="unifilter_classifier"))


def _rows() -> dict:
    return {"image": [jpeg_bytes(random_image(w, h, seed=i)) for i, (w, h) in enumerate(SIZES)], "caption": CAPTIONS}


def test_published_layout_on_disk(tiny_path):
    from safetensors import safe_open

    config = json.loads(open(f"{tiny_path}/config.json").read())
    assert config["mm_projector_type"] == "aapool_mlp" and config["model_type"] == "llava_qwen"
    with safe_open(f"{tiny_path}/model.safetensors", "pt") as f:
        names = set(f.keys())
    assert "score.weight" in names and "model.embed_tokens.weight" in names
    assert "model.mm_projector.mlp_projector.0.weight" in names and "model.mm_projector.mlp_projector.2.bias" in names
    assert any(n.startswith("model.vision_tower.vision_tower.vision_model.encoder.layers.") for n in names)


def test_caption_ids_follow_reference(tiny_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    ids = caption_input_ids(tokenizer, "a <image> b")
    assert ids[0] == IMAGE_TOKEN_INDEX and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[1:-1]) == "\na image b"
    assert len(caption_input_ids(tokenizer, "word " * 100)) == 75


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_batched_equals_per_row_and_map(tiny_path, batch_size):
    scorer = UniFilterScorer.from_pretrained(tiny_path, device="cpu", dtype="float32")
    rows = _rows()
    single = np.array([scorer({k: [v[i]] for k, v in rows.items()})["unifilter_score"][0] for i in range(len(SIZES))])
    assert np.all(np.isfinite(single)) and np.ptp(single) > 0
    out = map_with_scorer(Dataset.from_dict(rows), scorer, batch_size=batch_size)
    np.testing.assert_allclose(np.array(out["unifilter_score"]), single, atol=1e-4)
    assert out["unifilter_error"] == [""] * len(SIZES)
    assert out.column_names == ["image", "caption", "unifilter_score", "unifilter_error"]


def test_iterable_dataset_and_function_form(tiny_path):
    rows = _rows()
    ds = Dataset.from_dict(rows)
    reference = ds.map(unifilter_scores, batched=True, batch_size=4,
                       fn_kwargs={"model": tiny_path, "device": "cpu", "dtype": "float32"})
    streamed = map_with_scorer(ds.to_iterable_dataset(), UniFilterScorer(tiny_path, device="cpu", dtype="float32"),
                               batch_size=3)
    assert isinstance(streamed, IterableDataset) and "unifilter_score" in streamed.features
    scores = [row["unifilter_score"] for row in streamed]
    np.testing.assert_allclose(scores, reference["unifilter_score"], atol=1e-4)


def test_bad_rows_get_nan_and_reason(tiny_path):
    scorer = UniFilterScorer(tiny_path, device="cpu", dtype="float32")
    batch = {"image": [None, b"not an image", jpeg_bytes(random_image(40, 40)), jpeg_bytes(random_image(40, 40))],
             "caption": ["lost", "broken", None, "fine"]}
    out = scorer(batch)
    assert [math.isnan(s) for s in out["unifilter_score"]] == [True, True, True, False]
    assert all(out["unifilter_error"][:3]) and out["unifilter_error"][3] == ""


def test_classifier_head_expected_level(tiny_classifier_path):
    scorer = UniFilterScorer.from_pretrained(tiny_classifier_path, device="cpu", dtype="float32")
    out = map_with_scorer(Dataset.from_dict(_rows()), scorer, batch_size=3)
    probs = np.array(out["unifilter_probs"])
    assert probs.shape == (len(SIZES), 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["unifilter_score"], probs @ np.arange(4), atol=1e-4)
    bad = scorer({"image": [None], "caption": ["x"]})
    assert np.isnan(bad["unifilter_probs"]).all() and bad["unifilter_error"][0]


def test_missing_weight_is_a_clear_error(tiny_path, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_path, broken)
    weights = load_file(str(broken / "model.safetensors"))
    del weights["model.mm_projector.mlp_projector.2.weight"]
    weights["model.extra.weight"] = weights["score.weight"].clone()
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(UniFilterWeightsError, match=r"missing.*mlp_projector\.2\.weight.*unexpected.*model\.extra"):
        load_unifilter(str(broken), "float32", "cpu")



def test_published_tower_names_resolve_offline(tmp_path):
    for name in KNOWN_VISION_TOWERS:
        spec = UniFilterSpec(tmp_path, {"mm_vision_tower": name, "mm_hidden_size": 1152})
        config = spec.vision_config()
        assert (config.image_size // config.patch_size) ** 2 == 729
    qwen3 = UniFilterSpec(tmp_path, {"model_type": "llava_qwen3", "hidden_size": 64, "num_attention_heads": 4})
    assert qwen3.is_qwen3 and qwen3.text_config().model_type == "qwen3"
