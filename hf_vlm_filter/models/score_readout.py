"""Reading a 1-10 judge score out of a model: from logits (fast mode) or generated text (reference).

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
"""

from __future__ import annotations

import re

import torch

SCORE_PATTERN = re.compile(r"score:\s*\{(\d+)\}")
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
