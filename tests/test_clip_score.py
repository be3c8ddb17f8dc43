"""CLIP score: batched cosine equals per-row cosine, bad rows, streaming schema, pickling, SigLIP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_vlm_filter import SCORERS, ClipScorer, clip_scores
from tests.conftest import jpeg_bytes, random_image

SIZES = [(64, 48), (200, 120), (30, 90), (128, 128), (300, 60), (45, 45), (90, 200), (150, 100)]
CAPTIONS = [
    "a dog",
    "a red double-decker bus parked beside a stone bridge over a river at dusk",
    "two cats",
    "text " * 40,  # longer than the tiny text towers' position budget: truncated, not an error
    "Ein Foto von 3 Äpfeln",
    "x",
    "a man riding a bicycle down a hill, wearing a yellow helmet",
    "sunset",
]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def tiny_path(request, tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), kind=request.param))


@pytest.fixture(scope="module")
def scorer(tiny_path) -> ClipScorer:
    return ClipScorer.from_pretrained(tiny_path, device="cpu", dtype="float32")


def pairs(n: int = 8) -> Dataset:
    rows = {"id": list(range(n)), "image": [], "caption": []}
    for i in range(n):
        rows["image"].append(random_image(*SIZES[i % len(SIZES)], seed=i))
        rows["caption"].append(CAPTIONS[(i * 3) % len(CAPTIONS)])
    return Dataset.from_dict(rows)


def direct_cosine(path: str, image, caption: str) -> float:
    """One row, straight through transformers: the checkpoint's own tokenizer/processor and model."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    processor = AutoImageProcessor.from_pretrained(path, backend="pil")
    positions = model.config.text_config.max_position_embeddings
    siglip = "siglip" in model.config.model_type
    text = tokenizer(
        caption.strip(), truncation=True, max_length=positions, padding="max_length" if siglip else False,
        return_tensors="pt",
    )
    if siglip:
        text.pop("attention_mask", None)
    with torch.no_grad():
        img = model.get_image_features(**processor(images=image.convert("RGB"), return_tensors="pt")).pooler_output
        txt = model.get_text_features(**text).pooler_output
    return torch.nn.functional.cosine_similarity(img, txt).item()


@pytest.fixture(scope="module")
def expected(tiny_path) -> list[float]:
    return [direct_cosine(tiny_path, row["image"], row["caption"]) for row in pairs()]


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_batched_cosine_equals_per_row_cosine(scorer, expected, batch_size):
    out = pairs().map(scorer, batched=True, batch_size=batch_size)
    np.testing.assert_allclose(out["clip_score"], expected, atol=1e-5)
    assert list(out["clip_error"]) == [""] * 8 and list(out["id"]) == list(range(8))
    assert np.ptp(expected) > 1e-3, "the tiny model must tell rows apart, or parity proves nothing"


def test_one_forward_per_batch_for_each_tower(scorer, monkeypatch):
    model = scorer.model()
    calls = {"image": 0, "text": 0}
    for tower in calls:
        original = getattr(model, f"get_{tower}_features")

        def counted(*args, _original=original, _tower=tower, **kwargs):
            calls[_tower] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, f"get_{tower}_features", counted)
    pairs().map(scorer, batched=True, batch_size=8)
    assert calls == {"image": 1, "text": 1}


def test_bad_rows_get_nan_and_a_reason(scorer, expected):
    ds = pairs(4)
    images = [jpeg_bytes(ds[0]["image"]), None, b"definitely not an image", ds[3]["image"]]
    captions = [ds[0]["caption"], "ok", "ok", "   "]
    bad = Dataset.from_dict({"image": [{"bytes": b, "path": None} if isinstance(b, bytes) else b for b in images[:3]]
                             + [{"bytes": jpeg_bytes(images[3]), "path": None}], "caption": captions})
    out = bad.map(scorer, batched=True, batch_size=4)
    errors = list(out["clip_error"])
    assert errors[0] == "" and errors[1] == "missing image" and errors[2] and errors[3] == "empty caption"
    scores = out["clip_score"]
    assert all(math.isnan(s) for s in scores[1:])
    # a JPEG round trip changes pixels slightly, so compare with the direct path on the same bytes
    from PIL import Image
    import io

    assert scores[0] == pytest.approx(
        direct_cosine(scorer.config.model, Image.open(io.BytesIO(images[0])), captions[0]), abs=1e-5
    )


def test_streaming_keeps_the_declared_schema(scorer, expected):
    ds = pairs()
    features = scorer.output_features(ds.features)
    assert features["clip_score"].dtype == "float32" and features["clip_error"].dtype == "string"
    streamed = ds.to_iterable_dataset().map(scorer, batched=True, batch_size=3, features=features)
    assert streamed.features == features
    rows = list(streamed)
    assert [r["id"] for r in rows] == list(range(8))
    np.testing.assert_allclose([r["clip_score"] for r in rows], expected, atol=1e-5)



def test_function_form_and_registry(tiny_path, expected):
    ds = pairs().rename_column("caption", "text")
    out = ds.map(clip_scores, batched=True, batch_size=5,
                 fn_kwargs={"model": tiny_path, "device": "cpu", "dtype": "float32", "text_column": "text"})
    np.testing.assert_allclose(out["clip_score"], expected, atol=1e-5)
    assert SCORERS["clip"] is ClipScorer
