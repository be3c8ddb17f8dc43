"""UniFilter interleaved documents (OBELICS layout): batched == per-row, streaming, caption relation, hostile rows."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from datasets import Dataset, IterableDataset

from hf_vlm_filter import UniFilterDocumentScorer, UniFilterScorer, map_with_scorer, unifilter_document_scores
from hf_vlm_filter.models.unifilter import IMAGE_TOKEN_INDEX, caption_input_ids, document_input_ids
from tests.conftest import jpeg_bytes, random_image


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-unifilter-docs"), kind="unifilter"))


def _img(w: int, h: int, seed: int) -> bytes:
    return jpeg_bytes(random_image(w, h, seed=seed))


def _documents() -> dict:
    docs = [
        ([None, "a dog on a beach"], [_img(64, 48, 0), None]),
        (["Intro paragraph about buses.", None, "More text here.", None, "End."],
         [None, _img(200, 120, 1), None, _img(30, 90, 2), None]),
        ([None, None, "three pictures " * 5, None], [_img(128, 128, 3), _img(45, 45, 4), None, _img(90, 200, 5)]),
        (["Only one image, text first.", None], [None, _img(150, 100, 6)]),
        (["x", None, "y"], [None, _img(300, 60, 7), None]),
    ]
    return {"texts": [t for t, _ in docs], "images": [i for _, i in docs]}


@pytest.fixture(scope="module")
def scorer(tiny_path) -> UniFilterDocumentScorer:
    return UniFilterDocumentScorer.from_pretrained(tiny_path, device="cpu", dtype="float32")


def test_document_ids_follow_reference(scorer):
    tokenizer = scorer.preprocessing.tokenizer
    ids = document_input_ids(tokenizer, ["a <image> b", None, "c"])
    text_a = tokenizer("a image b\n\n", add_special_tokens=False).input_ids
    text_c = tokenizer("\n\nc", add_special_tokens=False).input_ids
    head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    assert ids == head + text_a + [IMAGE_TOKEN_INDEX] + text_c + [tokenizer.eos_token_id]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batched_equals_per_row(scorer, batch_size):
    rows = _documents()
    out = map_with_scorer(Dataset.from_dict(rows), scorer, batch_size=batch_size)
    assert out.column_names == ["texts", "images", "unifilter_score", "unifilter_error"]
    assert all(e == "" for e in out["unifilter_error"]), out["unifilter_error"]
    scores = np.asarray(out["unifilter_score"], dtype=np.float64)
    single = [scorer({"texts": [t], "images": [i]})["unifilter_score"][0] for t, i in zip(rows["texts"], rows["images"])]
    np.testing.assert_allclose(scores, single, atol=1e-4)
    assert np.isfinite(scores).all() and len(set(np.round(scores, 6))) > 1


def test_iterable_dataset_and_function_form(tiny_path, scorer):
    rows = _documents()
    expected = scorer(rows)["unifilter_score"]
    streamed = map_with_scorer(Dataset.from_dict(rows).to_iterable_dataset(),
                               UniFilterDocumentScorer(tiny_path, device="cpu", dtype="float32"), batch_size=2)
    assert isinstance(streamed, IterableDataset) and "unifilter_score" in streamed.features
    np.testing.assert_allclose([r["unifilter_score"] for r in streamed], expected, atol=1e-4)
    out = Dataset.from_dict(rows).map(unifilter_document_scores, batched=True, batch_size=2,
                                      fn_kwargs={"model": tiny_path, "device": "cpu", "dtype": "float32"})
    np.testing.assert_allclose(out["unifilter_score"], expected, atol=1e-4)
    assert pickle.loads(pickle.dumps(scorer)).config == scorer.config


def test_one_image_one_text_relation_to_caption_mode(tiny_path, scorer):
    """Conventions differ by the separator: documents join with "\\n\\n", captions use "<image>\\n"."""
    text, image = "a red bus beside a bridge", _img(80, 60, 9)
    tokenizer = scorer.preprocessing.tokenizer
    doc_ids = document_input_ids(tokenizer, [None, text])
    # the document equals the caption-mode *model input* built with "\n\n" (the model itself is shared)
    caption_like = caption_input_ids(tokenizer, "\n" + text, max_tokens=10_000)
    assert doc_ids == caption_like
    assert doc_ids != caption_input_ids(tokenizer, text)  # stripped caption: "<image>\n" + text
    doc = scorer({"texts": [[None, text]], "images": [[image, None]]})["unifilter_score"][0]
    captions = UniFilterScorer.from_pretrained(tiny_path, device="cpu", dtype="float32")
    pixels = captions.preprocessing.image_processor(images=[random_image(80, 60, seed=9)], return_tensors="pt")
    item = captions.prepare({"image": [image], "caption": [text]}, 0)
    with torch.inference_mode():
        direct = captions.model()([doc_ids], item.pixel_values).float()[0, 0].item()
    assert doc == pytest.approx(direct, abs=1e-4)
    assert pixels["pixel_values"].shape == item.pixel_values.shape


def test_hostile_documents_get_nan_and_reason(tiny_path):
    scorer = UniFilterDocumentScorer(tiny_path, device="cpu", dtype="float32", max_document_tokens=200)
    good = _img(40, 40, 0)
    one_pixel = jpeg_bytes(random_image(1, 40, seed=1))
    rows = [
        ([None] * 11 + ["eleven images"], [_img(32, 32, k) for k in range(11)] + [None], "11 images (over 10)"),
        ([None, "word " * 400], [good, None], "tokens (over 200)"),
        ([None, "text"], [good], "differ in length"),
        ([None, "text"], [b"not an image at all", None], "image at position 0"),
        ([None, None], [good, good], "no text"),
        ([None, "text"], [one_pixel, None], "no usable image"),
        (["both", "text"], [good, None], "exactly one"),
        ("not a list", [good], "must be lists"),
        ([None, "kept", None], [good, None, one_pixel], ""),  # 1-pixel image dropped, the rest scored
    ]
    out = map_with_scorer(Dataset.from_dict({"texts": [[t] if isinstance(t, str) else t for t, _, _ in rows[:7]]
                                             + [["x"]] + [rows[8][0]],
                                             "images": [i for _, i, _ in rows]}), scorer, batch_size=4)
    direct = scorer({"texts": [r[0] for r in rows], "images": [r[1] for r in rows]})
    for index, (_, _, reason) in enumerate(rows):
        error, score = direct["unifilter_error"][index], direct["unifilter_score"][index]
        if reason:
            assert reason in error and math.isnan(score), (index, error)
        else:
            assert error == "" and math.isfinite(score)
    assert len(out) == len(rows)
    dropped = scorer({"texts": [[None, "kept"]], "images": [[good, None]]})["unifilter_score"][0]
    assert direct["unifilter_score"][8] == pytest.approx(dropped, abs=1e-4)


def test_cli_scores_documents(tiny_path, scorer, tmp_path):
    """``--scorer unifilter-docs`` on an OBELICS-layout Parquet file writes the same scores as ``ds.map``."""
    import pyarrow.parquet as pq

    from hf_vlm_filter.cli import main

    rows = _documents()
    source = tmp_path / "docs.parquet"
    Dataset.from_dict(rows).to_parquet(str(source))
    code = main(["score", str(source), "--scorer", "unifilter-docs", "--model", tiny_path,
                 "--device", "cpu", "--dtype", "float32", "--out", str(tmp_path / "out")])
    assert code == 0
    written = pq.read_table(tmp_path / "out" / "data.parquet").to_pydict()
    expected = map_with_scorer(Dataset.from_dict(rows), scorer, batch_size=2)
    assert written["texts"] == rows["texts"]
    assert written["unifilter_error"] == expected["unifilter_error"]
    np.testing.assert_allclose(written["unifilter_score"], expected["unifilter_score"], atol=1e-5)
