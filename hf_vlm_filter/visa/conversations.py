"""LLaVA-format instruction rows: ``image`` plus ``conversations: [{from, value}, ...]``.

:func:`parse_conversation` turns the ``conversations`` cell into (question, answer) turns or a
:class:`~hf_vlm_filter.inputs.RowError`. The ``<image>`` placeholder LLaVA puts in a human turn is
removed from the text: the agents place the image themselves (at the start of the first question).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..inputs import RowError

IMAGE_PLACEHOLDER = "<image>"
HUMAN_ROLES = ("human", "user")
ANSWER_ROLES = ("gpt", "assistant")


@dataclass(frozen=True)
class Turn:
    """One question and its answer."""

    question: str
    answer: str


def parse_conversation(cell: Any) -> list[Turn]:
    """The (question, answer) turns of a LLaVA ``conversations`` cell; raises :class:`RowError`.

    A leading ``system`` message is ignored; roles must then alternate human / gpt.

    Example:
        >>> parse_conversation([{"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A cat."}])
        [Turn(question='What is it?', answer='A cat.')]
    """
    if not isinstance(cell, Sequence) or isinstance(cell, (str, bytes)) or not cell:
        raise RowError("conversations is missing or not a list of messages")
    messages = [m for m in cell if not (isinstance(m, Mapping) and m.get("from") == "system")]
    if not messages:
        raise RowError("conversations has no question/answer pair (only system messages)")
    if len(messages) % 2:
        raise RowError(f"conversations has {len(messages)} messages: expected question/answer pairs")
    turns = []
    for question, answer in zip(messages[0::2], messages[1::2]):
        if not isinstance(question, Mapping) or not isinstance(answer, Mapping):
            raise RowError("a conversation message is not a {from, value} mapping")
        if question.get("from") not in HUMAN_ROLES or answer.get("from") not in ANSWER_ROLES:
            raise RowError(f"conversation roles must alternate human/gpt, got {question.get('from')!r}, {answer.get('from')!r}")
        q, a = question.get("value"), answer.get("value")
        if not isinstance(q, str) or not isinstance(a, str):
            raise RowError("a conversation value is not a string")
        if not a.strip():
            raise RowError("empty answer in conversations")
        turns.append(Turn(q.replace(IMAGE_PLACEHOLDER, "").strip(), a))
    return turns

