"""Reading a 1-10 judge score out of a model: from logits (fast, justify) or generated text (reference).

Fast mode forces the assistant turn to start with ``score: {`` and appends the digit ``1`` as a
teacher-forced token, so one forward pass yields two next-token distributions:

* ``p`` after ``score: {`` — the first digit of the score;
* ``q`` after ``score: {1`` — whether the ``1`` goes on to ``10``.

Qwen tokenizers split numbers into single digits, so the probability mass of each score is

* ``m(N) = p[N]`` for N = 2..9 (a second digit would make a number over 10, which the rubric never
  produces, so the whole branch is counted to N);
* ``m(10) = p[1] * q[0]``, the product of the teacher-forced step probabilities of ``1``, ``0``;
* ``m(1) = p[1] * (1 - q[0])``, a ``1`` not followed by ``0``.

The masses partition the first-digit mass; they are renormalised to a distribution over 1..10 and
the expected score is reported. ``m.sum()`` (the probability that the judge writes a score digit at
all right after ``score: {``) is kept as ``score_mass`` for diagnostics.

Generation (reference and justify modes) stops per row with :class:`ScoreStop`: reference mode as
soon as the seed's ``score:\\s*\\{(\\d+)\\}`` has matched (the seed parses the first match, so the
score is the one a full-length generation would give), justify mode as soon as the judge has
written ``score: {`` (:data:`SCORE_OPENING`), where :func:`readout_ids` sets up the two-token readout
above on the judge's own text.
"""

from __future__ import annotations

import re
from typing import Any

import torch

SCORE_PATTERN = re.compile(r"score:\s*\{(\d+)\}")
#: Where a score is about to be written: justify mode stops there and reads the digits' probabilities.
SCORE_OPENING = re.compile(r"score:\s*\{")
#: What justify mode appends to a justification that never opened a score.
FORCED_OPENING = "score: {"
SCORES = torch.arange(1, 11, dtype=torch.float32)


def digit_token_ids(tokenizer) -> list[int]:
    """Token ids of the single digits ``0``..``9``; raises when a digit is not one token."""
    ids = []
    for digit in "0123456789":
        encoded = tokenizer(digit, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"digit {digit!r} is not a single token in this tokenizer: {encoded}")
        ids.append(encoded[0])
    return ids


def score_distribution(first: torch.Tensor, after_one: torch.Tensor, digits: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Distribution over scores 1..10 and the raw score mass, from two rows of logits per item.

    Args:
        first: ``(batch, vocab)`` logits predicting the token after ``score: {``.
        after_one: ``(batch, vocab)`` logits predicting the token after ``score: {1``.
        digits: token ids of ``0``..``9``.
    Returns:
        ``(probs, mass)``: ``probs`` is ``(batch, 10)`` for scores 1..10, ``mass`` is ``(batch,)``.
    """
    p = torch.softmax(first.float(), dim=-1)[:, digits]
    q_zero = torch.softmax(after_one.float(), dim=-1)[:, digits[0]]
    mass = torch.empty((p.shape[0], 10), dtype=torch.float32, device=p.device)
    mass[:, 0] = p[:, 1] * (1.0 - q_zero)
    mass[:, 1:9] = p[:, 2:10]
    mass[:, 9] = p[:, 1] * q_zero
    total = mass.sum(dim=-1)
    return mass / total.clamp_min(torch.finfo(torch.float32).tiny).unsqueeze(-1), total


def expected_score(probs: torch.Tensor) -> torch.Tensor:
    return probs @ SCORES.to(probs.device)


def parse_generated_score(text: str) -> int | None:
    """The seed's rule: the first ``score: {N}`` in the text, or ``None`` when there is none.

    Example:
        >>> parse_generated_score("The caption is accurate and detailed. score: {9}")
        9
        >>> parse_generated_score("no verdict") is None
        True
    """
    match = SCORE_PATTERN.search(text)
    return int(match.group(1)) if match else None


class ScoreStop:
    """A per-row stopping criterion for ``model.generate``: a row is done as soon as ``pattern``
    matches its decoded answer (the tokens after ``prompt_width``).

    Pass it inside a ``transformers.StoppingCriteriaList``. Only rows whose newest token contains
    ``trigger`` (the last character every match ends with: ``}`` for :data:`SCORE_PATTERN`, ``{`` for
    :data:`SCORE_OPENING`) are decoded, so a step costs one small device-to-host copy, and a match is
    found at the step that completes it: the text up to there holds the first match of the whole
    answer (nothing after it can move a match earlier). ``stopped`` maps each matched row to its
    answer length at the match; generate pads the finished rows until the whole batch is done.

    Example:
        >>> import torch
        >>> from hf_vlm_filter.models.tiny import tiny_qwen_tokenizer
        >>> tokenizer = tiny_qwen_tokenizer()
        >>> stop = ScoreStop(tokenizer, prompt_width=1, pattern=SCORE_PATTERN, trigger="}")
        >>> ids = torch.tensor([[0] + tokenizer("ok score: {7}")["input_ids"], [0] + tokenizer("no score yet!")["input_ids"]])
        >>> stop(ids, None).tolist(), stop.stopped
        ([True, False], {0: 13})
    """

    def __init__(self, tokenizer: Any, prompt_width: int, pattern: re.Pattern = SCORE_PATTERN,
                 trigger: str = "}") -> None:
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.pattern = pattern
        self.trigger = trigger
        #: Row -> answer length (tokens) when the pattern matched.
        self.stopped: dict[int, int] = {}
        self._triggers: dict[int, bool] = {}

    def _has_trigger(self, token: int) -> bool:
        if token not in self._triggers:
            self._triggers[token] = self.trigger in self.tokenizer.decode([token])
        return self._triggers[token]

    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if input_ids.shape[1] <= self.prompt_width:
            return done
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if row in self.stopped or not self._has_trigger(token):
                continue
            answer = input_ids[row, self.prompt_width :].tolist()
            if self.pattern.search(decode_answer(self.tokenizer, answer)):
                self.stopped[row] = len(answer)
                done[row] = True
        return done


def decode_answer(tokenizer: Any, ids: list[int]) -> str:
    """Generated ids as text, the seed's way (special tokens skipped, spaces left as they are)."""
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def answer_ids(generated: list[int], eos_ids: set[int], stop_length: int | None = None) -> tuple[list[int], bool]:
    """A row's answer out of ``generate``'s new tokens: cut at its :class:`ScoreStop` match
    (``stop_length``), else before its first end-of-turn token; and whether it ended with one.

    Example:
        >>> answer_ids([5, 6, 2, 0, 0], eos_ids={2}), answer_ids([5, 6, 7, 8], {2}, stop_length=2)
        (([5, 6], True), ([5, 6], False))
    """
    if stop_length is not None:
        return generated[:stop_length], False
    for index, token in enumerate(generated):
        if token in eos_ids:
            return generated[:index], True
    return generated, False


def readout_ids(tokenizer: Any, answer: list[int]) -> tuple[list[int], str, bool]:
    """Justify mode: the answer ids after which the score digits are read, the justification, and
    whether the opening was forced.

    An answer holding ``score: {`` (:data:`SCORE_OPENING`) is read right after it, on the judge's
    own tokens (when the token that completed the opening carries more text, that token is
    re-tokenised up to the ``{``); the justification is the text before it. An answer without one
    (the generation cap, or the judge ended its turn) gets ``score: {`` appended after its text (only
    the ``{`` when it already ends with ``score:``): the readout is forced.

    Example:
        >>> from hf_vlm_filter.models.tiny import tiny_qwen_tokenizer
        >>> tokenizer = tiny_qwen_tokenizer()
        >>> ids, text, forced = readout_ids(tokenizer, tokenizer("Accurate. score: {")["input_ids"])
        >>> tokenizer.decode(ids), text, forced
        ('Accurate. score: {', 'Accurate.', False)
        >>> ids, text, forced = readout_ids(tokenizer, tokenizer("Accurate but")["input_ids"])
        >>> tokenizer.decode(ids), text, forced
        ('Accurate but score: {', 'Accurate but', True)
    """
    text = decode_answer(tokenizer, answer)
    match = SCORE_OPENING.search(text)
    if match is not None:
        justification = text[: match.start()].rstrip()
        if match.end() == len(text):
            return list(answer), justification, False
        head = decode_answer(tokenizer, answer[:-1])
        if text.startswith(head) and len(head) <= match.end():
            return list(answer[:-1]) + _encode(tokenizer, text[len(head) : match.end()]), justification, False
        return _encode(tokenizer, text[: match.end()]), justification, False
    if re.search(r"score:\s*$", text):
        tail = "{" if text[-1].isspace() else " {"
    else:
        tail = FORCED_OPENING if not text or text[-1].isspace() else " " + FORCED_OPENING
    return list(answer) + _encode(tokenizer, tail), text.rstrip(), True


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]
