"""PT / IM agent: teacher-forced answer log-probs against a direct per-row computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_vlm_filter.scorers.base import map_with_scorer
from hf_vlm_filter.visa import InstructionQuality
from hf_vlm_filter.visa.conversations import parse_conversation

from ._visa_helpers import conversation, llava_rows, stream


def reference_scores(path: str, image, messages, pt_tokens: int = 10) -> tuple[float, float]:
    """PT and IM of one row, unbatched: find each answer after ``<|im_start|>assistant\\n`` in the
    rendered ids, sum log-probs there from a single unpadded forward per condition."""
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoImageProcessor.from_pretrained(path, backend="pil", min_pixels=4 * 28 * 28, max_pixels=448 * 448)
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    answers = [tokenizer(t.answer, add_special_tokens=False, split_special_tokens=True)["input_ids"] for t in parse_conversation(messages)]

    def per_answer_logprobs(with_image: bool) -> list[list[float]]:
        def plain(text):
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        def content(text):  # user text: special-looking strings stay characters
            return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

        ids = plain("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
        for number, turn in enumerate(parse_conversation(messages)):
            vision = "<|vision_start|><|image_pad|><|vision_end|>" if with_image and number == 0 else ""
            ids += plain(f"<|im_start|>user\n{vision}") + content(turn.question) + plain("<|im_end|>\n<|im_start|>assistant\n")
            ids += content(turn.answer) + plain("<|im_end|>\n")
        inputs = {}
        if with_image:
            vision = processor(images=[image], return_tensors="pt")
            pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
            at = ids.index(pad)
            ids = ids[:at] + [pad] * (int(vision["image_grid_thw"].prod()) // 4) + ids[at + 1 :]
            inputs = {"pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}
        input_ids = torch.tensor([ids])
        with torch.no_grad():
            logits = model(input_ids=input_ids, mm_token_type_ids=(input_ids == tokenizer.convert_tokens_to_ids("<|image_pad|>")).int(),
                           **inputs).logits[0]
        logprobs = torch.log_softmax(logits.float(), -1)
        out, start = [], 0
        for answer in answers:
            start = next(i for i in range(start, len(ids)) if ids[i : i + len(header)] == header) + len(header)
            assert ids[start : start + len(answer)] == answer
            out.append([float(logprobs[start + k - 1, answer[k]]) for k in range(len(answer))])
            start += len(answer)
        return out

    with_image, without = per_answer_logprobs(True), per_answer_logprobs(False)
    first = [lp for answer in with_image for lp in answer[:pt_tokens]]
    pt = -sum(first) / len(first)
    ce = lambda rows: -sum(sum(r) for r in rows) / sum(len(r) for r in rows)  # noqa: E731
    return pt, ce(without) - ce(with_image)


def test_pt_and_im_match_direct_per_row_logprobs(tiny_judge_path):
    ds = llava_rows(4)
    scorer = InstructionQuality(tiny_judge_path, device="cpu")
    assert scorer.preprocessing.chat.vision.fast_patches is not None  # the reference below uses the processor
    out = map_with_scorer(ds, scorer, batch_size=3)
    for row in range(3):
        pt, im = reference_scores(tiny_judge_path, ds[row]["image"], ds[row]["conversations"])
        assert out["pt_score"][row] == pytest.approx(pt, rel=1e-4, abs=1e-4)
        assert out["im_score"][row] == pytest.approx(im, rel=1e-3, abs=1e-4)
    assert math.isnan(out["pt_score"][3]) and math.isnan(out["im_score"][3]) and out["pt_error"][3] == "missing image"
    streamed = list(map_with_scorer(stream(ds), scorer, batch_size=2))
    np.testing.assert_allclose([r["pt_score"] for r in streamed][:3], out["pt_score"][:3], rtol=1e-4)
    np.testing.assert_allclose([r["im_score"] for r in streamed][:3], out["im_score"][:3], rtol=1e-3, atol=1e-4)


def test_only_answer_tokens_count_in_a_multi_turn_conversation(tiny_judge_path):
    from .conftest import random_image

    scorer = InstructionQuality(tiny_judge_path, device="cpu", pt_tokens=4)
    messages = conversation(("What is shown <|im_end|>?", "A dog<|im_end|> on grass."), ("And the sky?", "Blue."))
    tokens = scorer.preprocessing.chat.build(parse_conversation(messages), random_image(56, 56))
    tokenizer = scorer.preprocessing.chat.tokenizer
    assert tokenizer.decode([i for i, f in zip(tokens.input_ids, tokens.answer_mask) if f]) == "A dog<|im_end|> on grass.Blue."
    assert [tokenizer.decode(tokens.input_ids[s : s + 4]) for s in tokens.answer_starts] == ["A do", "Blue"]
    # questions change the context of the answers, never what is counted: PT follows the reference
    image = random_image(56, 56, seed=3)
    from datasets import Dataset

    out = Dataset.from_dict({"image": [image], "conversations": [messages]}).map(scorer, batched=True)
    pt, im = reference_scores(tiny_judge_path, image, messages, pt_tokens=4)
    assert out["pt_score"][0] == pytest.approx(pt, rel=1e-4) and out["im_score"][0] == pytest.approx(im, rel=1e-3, abs=1e-4)


def test_bad_conversations_get_reasons(tiny_judge_path):
    from .conftest import random_image

    scorer = InstructionQuality(tiny_judge_path, device="cpu")
    image = random_image(56, 56)
    rows = {"image": [image, image, image, image],
            "conversations": [[{"from": "human", "value": "hi"}],
                              [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}],
                              [{"from": "system", "value": "You are helpful."}],
                              conversation(("q", "a"))]}
    out = scorer(rows)
    assert out["pt_error"][:3] == ["conversations has 1 messages: expected question/answer pairs",
                                   "conversation roles must alternate human/gpt, got 'gpt', 'human'",
                                   "conversations has no question/answer pair (only system messages)"]
    assert np.isnan(out["pt_score"][:3]).all() and out["pt_error"][3] == "" and not np.isnan(out["pt_score"][3])
    with pytest.raises(KeyError, match="conversations"):
        scorer({"image": [image]})


def test_dp_and_pt_agents_on_one_checkpoint_share_one_loaded_model(tiny_judge_path):
    from hf_vlm_filter.visa import InformationRichness

    quality = InstructionQuality(tiny_judge_path, device="cpu")
    richness = InformationRichness(tiny_judge_path, device="cpu")
    assert quality.model() is richness.model()
