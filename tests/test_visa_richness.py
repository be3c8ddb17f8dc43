"""DP agent: single-pass expected 1-5 richness rating from a VLM."""

from __future__ import annotations

import math

import numpy as np
import torch

from hf_vlm_filter.scorers.base import map_with_scorer
from hf_vlm_filter.visa import InformationRichness
from hf_vlm_filter.visa.richness import RICHNESS_PROMPT

from ._visa_helpers import llava_rows, stream


def direct_rating(scorer: InformationRichness, image) -> float:
    """Unbatched: the prompt ends in ``Rating: ``; renormalise p(1..5) at the next token; expectation."""
    pre = scorer.preprocessing
    item = pre.builder.build(image, "")
    text = pre.builder.tokenizer.decode(item.input_ids)
    assert text.endswith("<|im_start|>assistant\nRating: ") and RICHNESS_PROMPT in text
    model = scorer.model()
    ids = torch.tensor([item.input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids, mm_token_type_ids=(ids == pre.builder.image_token_id).int(),
                       pixel_values=item.pixel_values, image_grid_thw=item.image_grid_thw).logits[0, -1]
    probs = torch.softmax(logits.double(), -1)
    digits = [pre.builder.tokenizer.convert_tokens_to_ids(str(d)) for d in range(1, 6)]
    p = probs[digits] / probs[digits].sum()
    return float((p * torch.arange(1, 6, dtype=torch.float64)).sum())


def test_expected_rating_on_dataset_and_stream(tiny_judge_path):
    ds = llava_rows(4)
    scorer = InformationRichness(tiny_judge_path, device="cpu")
    out = map_with_scorer(ds, scorer, batch_size=3)
    expected = [direct_rating(scorer, ds[i]["image"]) for i in range(3)]
    np.testing.assert_allclose(out["dp_score"][:3], expected, rtol=1e-4)
    assert all(1.0 <= s <= 5.0 for s in out["dp_score"][:3])
    assert math.isnan(out["dp_score"][3]) and out["dp_error"] == ["", "", "", "missing image"]
    streamed = list(map_with_scorer(stream(ds), scorer, batch_size=2))
    np.testing.assert_allclose([r["dp_score"] for r in streamed][:3], expected, rtol=1e-4)
