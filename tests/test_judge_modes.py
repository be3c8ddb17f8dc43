"""Reference mode stopping at the score and justify mode, on a tiny judge that really writes
justifications (hf_vlm_filter.testing.justifying_judge: trained once per session, ~20 s, hence slow)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_vlm_filter import VLMJudge
from hf_vlm_filter.models.qwen_vl_inputs import PreparedPair
from hf_vlm_filter.models.score_readout import (
    SCORE_OPENING,
    SCORE_PATTERN,
    ScoreStop,
    answer_ids,
    parse_generated_score,
    readout_ids,
)
from hf_vlm_filter.scorers.compact_judge import FORCED_AT_END, FORCED_AT_LIMIT
from hf_vlm_filter.testing.justifying_judge import justifying_judge

trained_judge = pytest.mark.slow


@pytest.fixture(scope="module")
def trained():
    return justifying_judge()


@pytest.fixture(scope="module")
def rows(trained) -> Dataset:
    return trained.rows.select_columns(["image", "text", "score", "target"])


def judge(trained, **options) -> VLMJudge:
    return VLMJudge(trained.path, device="cpu", dtype="float32", text_column="text", **options)


@pytest.fixture(scope="module")
def reference_out(trained, rows):
    return rows.map(judge(trained, mode="reference", return_text=True), batched=True, batch_size=32)


@pytest.fixture(scope="module")
def full_out(trained, rows):
    return rows.map(judge(trained, mode="reference", return_text=True, stop_at_score=False), batched=True,
                    batch_size=32)


@pytest.fixture(scope="module")
def justify_out(trained, rows):
    return rows.map(judge(trained, mode="justify", return_text=True, return_probs=True), batched=True, batch_size=32)


def teacher_forced(scorer: VLMJudge, rows: Dataset, index: int, answer: str) -> np.ndarray:
    """Oracle: P(1..10) after prompt + ``answer`` (ending with ``score: {``), one row, unpadded,
    from two separate forwards (next-token softmax; then with ``1`` appended)."""
    pre, model = scorer.preprocessing, scorer.model()
    prompt = scorer.prepare(rows[index : index + 1], 0)
    ids = prompt.input_ids + pre.tokenizer(answer, add_special_tokens=False)["input_ids"]

    def step(extra: list[int]) -> torch.Tensor:
        inputs = pre.builder.collate([PreparedPair(ids + extra, prompt.pixel_values, prompt.image_grid_thw)])
        with torch.no_grad():
            return torch.softmax(model(**inputs).logits[0, -1].double(), -1)

    first, after_one = step([]), step([pre.digits[1]])
    mass = np.array([float(first[pre.digits[1]] * (1 - after_one[pre.digits[0]]))]
                    + [float(first[pre.digits[d]]) for d in range(2, 10)]
                    + [float(first[pre.digits[1]] * after_one[pre.digits[0]])])
    return mass / mass.sum()


# ---- the trained judge is a real test subject ---------------------------------------------------
@trained_judge
def test_the_judge_writes_its_training_answers(rows, full_out):
    outputs = list(full_out["judge_output"])
    assert all(parse_generated_score(text) is not None for text in outputs)
    assert sum(out == target for out, target in zip(outputs, rows["target"])) >= len(rows) // 2
    assert len(set(full_out["judge_score"])) >= 3, "scores must vary, or the comparisons below prove little"


# ---- reference mode stops at the score ------------------------------------------------------------
@trained_judge
def test_reference_stops_at_the_first_score_with_the_full_generation_s_score(reference_out, full_out):
    stopped, full = list(reference_out["judge_output"]), list(full_out["judge_output"])
    for short, long in zip(stopped, full):
        first = SCORE_PATTERN.search(long)
        assert short == long[: first.end()]            # the text ends at the first score
        assert parse_generated_score(short) == parse_generated_score(long)
    assert list(reference_out["judge_score"]) == list(full_out["judge_score"])
    # the judge goes on after its score, with a second, different score: first match it is
    later = [found for found in (SCORE_PATTERN.findall(long) for long in full) if len(found) == 2 and found[1] == "5"]
    assert len(later) >= 0.8 * len(full) and any(found[0] != "5" for found in later)


@trained_judge
def test_stopping_cuts_the_decode_steps(trained, rows):
    scorer = judge(trained, mode="reference")
    items = [scorer.prepare(rows[:8], index) for index in range(8)]
    inputs = scorer.collate(items)
    model = scorer.model()
    stopped, _, steps = scorer.generate_answers(model, inputs, SCORE_PATTERN)
    full, ended, full_steps = scorer.generate_answers(model, inputs, None)
    assert sum(ended) >= 6 and all(long[: len(short)] == short for short, long in zip(stopped, full))
    assert sum(map(len, stopped)) < sum(map(len, full)) and steps < full_steps
    assert steps == max(map(len, stopped))   # the batch runs until its last row has stopped


@trained_judge
def test_reference_batches_like_single_rows(trained, rows, reference_out):
    single = rows.select(range(6)).map(judge(trained, mode="reference", return_text=True), batched=True, batch_size=1)
    assert list(single["judge_output"]) == list(reference_out["judge_output"][:6])


# ---- justify mode ------------------------------------------------------------------------------
@trained_judge
def test_justify_argmax_is_the_reference_score_when_the_continuation_is_one_digit(reference_out, justify_out):
    single = 0
    for text, score, justified, probs, note in zip(reference_out["judge_output"], reference_out["judge_score"],
                                                    justify_out["judge_output"], justify_out["judge_probs"],
                                                    justify_out["judge_note"]):
        opening = SCORE_OPENING.search(text)
        if opening is None:  # reference found no score (none in this trained judge's answers so far)
            continue
        assert justified == text[: opening.start()].rstrip() and note == ""   # the same greedy justification
        if re.fullmatch(r"[2-9]\}", text[opening.end() :]):
            single += 1
            assert int(np.argmax(probs)) + 1 == score
    assert single >= 3, "too few single-digit scores to test the argmax"
    scores = np.asarray(justify_out["judge_score"])
    assert np.all((scores >= 1) & (scores <= 10))


@trained_judge
def test_justify_reads_the_fast_readout_after_the_judge_s_own_text(trained, rows, reference_out, justify_out):
    scorer = judge(trained, mode="justify")
    for index in (0, 5, 11):
        text = reference_out[index]["judge_output"]
        answer = text[: SCORE_OPENING.search(text).end()]
        expected = teacher_forced(scorer, rows, index, answer)
        np.testing.assert_allclose(justify_out[index]["judge_probs"], expected, atol=1e-4)
        assert justify_out[index]["judge_score"] == pytest.approx(float(expected @ np.arange(1, 11)), abs=1e-3)


@trained_judge
def test_justify_forces_the_readout_after_the_text_at_the_cap(trained, rows, reference_out):
    scorer = judge(trained, mode="justify", max_new_tokens=12, return_text=True, return_probs=True)
    out = rows.select(range(4)).map(scorer, batched=True, batch_size=4)
    assert list(out["judge_note"]) == [FORCED_AT_LIMIT.format(limit=12)] * 4
    assert FORCED_AT_LIMIT.format(limit=12) == "no `score: {` in 12 new tokens: score read after the text"
    for index in range(4):
        written = reference_out[index]["judge_output"][:12]   # byte-level tokenizer: 12 tokens, 12 characters
        assert out[index]["judge_output"] == written.rstrip()
        expected = teacher_forced(scorer, rows, index, written + (" score: {" if not written.endswith(" ") else "score: {"))
        np.testing.assert_allclose(out[index]["judge_probs"], expected, atol=1e-4)


@trained_judge
def test_justify_forces_the_readout_when_the_answer_ends_without_opening(trained, rows):
    scorer = judge(trained, mode="justify", return_text=True, return_probs=True)
    tokenizer = scorer.preprocessing.tokenizer
    ended = tokenizer("The caption is fine.", add_special_tokens=False)["input_ids"]

    def ends_early(model, inputs, stop):  # the judge ended its turn before any `score: {`
        return [list(ended) for _ in range(inputs["input_ids"].shape[0])], [True] * inputs["input_ids"].shape[0], 0

    scorer.generate_answers = ends_early
    out = rows.select(range(2)).map(scorer, batched=True, batch_size=2, load_from_cache_file=False)
    assert list(out["judge_note"]) == [FORCED_AT_END] * 2 and list(out["judge_output"]) == ["The caption is fine."] * 2
    np.testing.assert_allclose(out[1]["judge_probs"], teacher_forced(scorer, rows, 1, "The caption is fine. score: {"),
                               atol=1e-4)


@trained_judge
def test_justify_batches_like_single_rows_and_streams_its_schema(trained, rows, justify_out):
    scorer = judge(trained, mode="justify", return_text=True, return_probs=True)
    single = rows.select(range(5)).map(scorer, batched=True, batch_size=1)
    assert list(single["judge_output"]) == list(justify_out["judge_output"][:5])
    np.testing.assert_allclose(single["judge_score"], justify_out["judge_score"][:5], atol=1e-5)
    features = scorer.output_features(rows.features)
    assert {"judge_note", "judge_output", "judge_probs"} <= set(features)
    streamed = list(rows.select(range(3)).to_iterable_dataset().map(scorer, batched=True, batch_size=2,
                                                                   features=features))
    assert [row["judge_note"] for row in streamed] == list(justify_out["judge_note"][:3])
    np.testing.assert_allclose([row["judge_score"] for row in streamed], justify_out["judge_score"][:3], atol=1e-5)


@trained_judge
def test_justify_refuses_bad_rows_like_the_other_modes(trained):
    scorer = judge(trained, mode="justify")
    out = Dataset.from_dict({"image": [None], "text": ["x"]}).map(scorer, batched=True)
    assert math.isnan(out[0]["judge_score"]) and out[0]["judge_error"] == "missing image"
    assert out[0]["judge_note"] == ""


# ---- the pieces, on a tokenizer with multi-character tokens --------------------------------------
class WordPieces:
    """A tokenizer of fixed pieces (longest match first), to reach the re-tokenising branches."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.decoded: list[list[int]] = []

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        ids, at = [], 0
        while at < len(text):
            piece = max((p for p in self.pieces if text.startswith(p, at)), key=len)
            ids.append(self.pieces.index(piece))
            at += len(piece)
        return {"input_ids": ids}

    def decode(self, ids: list[int], **_: object) -> str:
        self.decoded.append(list(ids))
        return "".join(self.pieces[i] for i in ids)


PIECES = [*"abcdefghijklmnopqrstuvwxyz .:{}0123456789", "score", ": {", " {(", "}."]


def test_readout_ids_re_tokenises_a_token_that_runs_past_the_brace():
    tokenizer = WordPieces(PIECES)
    answer = tokenizer("ok score {(")["input_ids"]  # no colon: not an opening yet
    ids, text, forced = readout_ids(tokenizer, answer)
    assert forced and tokenizer.decode(ids) == "ok score {( score: {" and text == "ok score {("
    answer = tokenizer("ok score:")["input_ids"] + [PIECES.index(" {(")]
    ids, text, forced = readout_ids(tokenizer, answer)
    assert not forced and tokenizer.decode(ids) == "ok score: {" and text == "ok"
    assert ids[: len(answer) - 1] == answer[:-1]   # the judge's own tokens, up to the one cut at its brace


def test_readout_ids_completes_a_half_written_opening():
    tokenizer = WordPieces(PIECES)
    for written, expected in (("good. score:", "good. score: {"), ("good. score: ", "good. score: {"),
                              ("good.", "good. score: {"), ("good. ", "good. score: {"), ("", "score: {")):
        ids, _text, forced = readout_ids(tokenizer, tokenizer(written)["input_ids"])
        assert forced and tokenizer.decode(ids) == expected, written


def test_score_stop_decodes_only_rows_whose_new_token_can_close_a_score():
    tokenizer = WordPieces(PIECES)
    prompt = [0, 1]
    rows = [tokenizer("ab score: {7}.")["input_ids"], tokenizer("ab score: {7")["input_ids"]]
    width = max(map(len, rows))
    batch = torch.tensor([prompt + row + [0] * (width - len(row)) for row in rows])
    stop = ScoreStop(tokenizer, prompt_width=2)
    for length in range(1, width + 1):
        done = stop(batch[:, : 2 + length])
        assert done.tolist() == [length == len(rows[0]), False]
    assert stop.stopped == {0: len(rows[0])}
    # single pieces are decoded for the trigger table; a whole answer only once, when its "}" arrived
    assert [ids for ids in tokenizer.decoded if len(ids) > 1] == [rows[0]]
    assert PIECES[rows[0][-1]] == "}."  # closed by "}" inside a longer token


def test_answer_ids_cut_at_the_stop_or_the_end_of_turn():
    assert answer_ids([4, 5, 9, 0, 0], {9}) == ([4, 5], True)
    assert answer_ids([4, 5, 6], {9}) == ([4, 5, 6], False)
    assert answer_ids([4, 5, 6, 9], {9}, stop_length=2) == ([4, 5], False)
