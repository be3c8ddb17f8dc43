"""OA agent: Grounding DINO tag counts (pass 1), document frequencies, TF-IDF score (pass 2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from datasets import Dataset, Value

from hf_vlm_filter.scorers.base import map_with_scorer
from hf_vlm_filter.visa import DocumentFrequencies, ObjectAlignmentScore, ObjectTagCounter, default_tags, oa_document_frequencies
from hf_vlm_filter.visa.object_alignment import count_distinct_boxes, tag_prompts

from ._visa_helpers import llava_rows, stream, tiny_grounding_dino_path  # noqa: F401 - fixture

TAGS = ("cat", "dog", "traffic light", "tree", "bird", "car", "house", "person", "boat", "sky")


def counter(path: str, **options) -> ObjectTagCounter:
    return ObjectTagCounter(path, tags=TAGS, box_threshold=0.0, device="cpu", **options)


def test_tfidf_matches_hand_computation():
    counts = ['{"cat": 2, "dog": 1}', '{"cat": 1}', "{}", '{"bird": 3}', ""]
    errors = ["", "", "", "", "missing image"]
    df = DocumentFrequencies.from_counts(counts, errors)
    assert df == DocumentFrequencies(4, {"bird": 1, "cat": 2, "dog": 1})
    out = ObjectAlignmentScore(df)({"oa_tag_counts": counts, "oa_objects_error": errors})
    # N = 4 counted rows; idf(cat) = ln(4/2), idf(dog) = idf(bird) = ln(4/1)
    expected = [2 * math.log(2) + math.log(4), math.log(2), 0.0, 3 * math.log(4)]
    np.testing.assert_allclose(out["oa_score"][:4], expected, rtol=1e-6)
    assert math.isnan(out["oa_score"][4]) and out["oa_error"] == ["", "", "", "", "missing image"]
    # a tag the table never saw counts as df = 1
    assert ObjectAlignmentScore(df)({"oa_tag_counts": ['{"zebra": 1}']})["oa_score"][0] == pytest.approx(math.log(4))


def test_duplicate_boxes_merge_above_iou_threshold():
    boxes = torch_boxes([[0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.41, 0.4], [0.2, 0.2, 0.1, 0.1]])
    import torch

    assert count_distinct_boxes(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.9) == 2
    assert count_distinct_boxes(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.99) == 3


def torch_boxes(rows):
    import torch

    return torch.tensor(rows, dtype=torch.float32)


def test_tag_prompts_fit_the_text_window_and_span_each_tag(tiny_grounding_dino_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_grounding_dino_path)
    prompts = tag_prompts(tokenizer, TAGS, max_len=40)
    assert len(prompts) > 1 and all(p.input_ids.shape[1] <= 40 for p in prompts)
    spans = [(p, span) for p in prompts for span in p.spans]
    assert [tag for _p, (tag, _s, _e) in spans] == list(TAGS)
    for prompt, (tag, start, end) in spans:
        assert tokenizer.decode(prompt.input_ids[0, start:end]).replace(" ", "") == tag.replace(" ", "")
        assert tokenizer.convert_ids_to_tokens(int(prompt.input_ids[0, end])) == "."


def test_counts_then_score_on_dataset_and_stream(tiny_grounding_dino_path):
    ds = llava_rows(5)
    scorer = counter(tiny_grounding_dino_path)
    counted = map_with_scorer(ds, scorer, batch_size=2)
    assert counted["oa_objects_error"][-1] == "missing image" and counted["oa_tag_counts"][-1] == ""
    rows = [json.loads(c) for c in counted["oa_tag_counts"][:-1]]
    assert all(set(r) <= set(TAGS) for r in rows) and any(rows)
    assert counted["oa_objects"][:-1] == [float(sum(r.values())) for r in rows]
    # batch-size parity and the streaming path give the same counts
    assert map_with_scorer(ds, scorer, batch_size=5)["oa_tag_counts"] == counted["oa_tag_counts"]
    streamed = map_with_scorer(stream(ds), scorer, batch_size=2)
    assert streamed.features["oa_tag_counts"] == Value("string")
    assert [r["oa_tag_counts"] for r in streamed] == counted["oa_tag_counts"]

    df = oa_document_frequencies(counted)
    assert df.n_documents == 4
    scored = counted.map(ObjectAlignmentScore(df), batched=True)
    expected = [sum(n * math.log(4 / df.frequencies[t]) for t, n in r.items()) for r in rows]
    np.testing.assert_allclose(scored["oa_score"][:-1], expected, rtol=1e-5)
    assert math.isnan(scored["oa_score"][-1]) and scored["oa_error"][-1] == "missing image"

    # streaming: a sampled table (first rows) or a supplied one
    sampled = oa_document_frequencies(streamed, sample_size=3)
    assert sampled == DocumentFrequencies.from_counts(counted["oa_tag_counts"][:3])
    features = ObjectAlignmentScore(df).output_features(streamed.features)
    streamed_scores = streamed.map(ObjectAlignmentScore(df), batched=True, features=features)
    np.testing.assert_allclose([r["oa_score"] for r in streamed_scores], scored["oa_score"], rtol=1e-6)


def test_document_frequency_errors_and_round_trip(tmp_path, tiny_grounding_dino_path):
    with pytest.raises(KeyError, match="ObjectTagCounter"):
        oa_document_frequencies(Dataset.from_dict({"x": [1]}))
    stream_only = Dataset.from_dict({"oa_tag_counts": ["{}"], "oa_objects_error": [""]}).to_iterable_dataset()
    with pytest.raises(ValueError, match="sample_size"):
        oa_document_frequencies(stream_only)
    table = DocumentFrequencies(3, {"cat": 2})
    table.save(tmp_path / "df.json")
    assert DocumentFrequencies.load(tmp_path / "df.json") == table
    with pytest.raises(ValueError, match="separator"):
        ObjectTagCounter(tiny_grounding_dino_path, tags=("a.b",))


def test_default_vocabulary_is_packaged():
    tags = default_tags()
    assert len(tags) > 150 and len(set(tags)) == len(tags) and "dog" in tags
