"""Fixtures and data for the ViSA tests: tiny SAM / Grounding DINO / Qwen2-VL and LLaVA-format rows."""

from __future__ import annotations

import pytest
from datasets import Dataset, Features, Image, List, Value

from .conftest import random_image

LLAVA_FEATURES = Features({
    "id": Value("string"),
    "image": Image(),
    "conversations": List({"from": Value("string"), "value": Value("string")}),
})


def conversation(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    """LLaVA messages from (question, answer) pairs; the first question carries ``<image>``."""
    messages = []
    for turn, (question, answer) in enumerate(pairs):
        messages.append({"from": "human", "value": ("<image>\n" if turn == 0 else "") + question})
        messages.append({"from": "gpt", "value": answer})
    return messages


def llava_rows(n: int = 4, with_bad_image: bool = True) -> Dataset:
    """``n`` LLaVA rows of different image sizes and turn counts; the last image is missing when asked."""
    images = [random_image(40 + 12 * i, 36 + 8 * (i % 3), seed=i) for i in range(n)]
    if with_bad_image:
        images[-1] = None
    convs = [
        conversation(*[(f"Question {t} about picture {i}?", f"Answer {t}: a longer reply for row {i}.")
                       for t in range(1 + i % 2)])
        for i in range(n)
    ]
    return Dataset.from_dict({"id": [str(i) for i in range(n)], "image": images, "conversations": convs},
                             features=LLAVA_FEATURES)


@pytest.fixture(scope="session")
def tiny_sam_path(tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-sam"), kind="sam"))


@pytest.fixture(scope="session")
def tiny_grounding_dino_path(tmp_path_factory) -> str:
    from hf_vlm_filter.testing import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-gdino"), kind="grounding_dino"))


def stream(dataset: Dataset):
    """The same rows as an ``IterableDataset`` (two shards)."""
    return dataset.to_iterable_dataset(num_shards=2)
