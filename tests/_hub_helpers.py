"""Fixtures pointing the real ``huggingface_hub`` and ``datasets`` clients at the loopback Hub server.

``huggingface_hub`` and ``datasets`` read ``HF_ENDPOINT`` / offline flags into module constants at
import time (the test session imports them early, offline). :func:`point_clients_at` sets both the
environment (inherited by subprocesses, which import afresh) and those constants for this process,
and restores them afterwards. Nothing of ``HfApi`` is patched: every call goes over HTTP.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .hub_server import RunningHub, serve_hub

TOKEN = "hf_test_token"


def hub_env(url: str, home: Path) -> dict[str, str]:
    """Environment variables for a process that talks to the loopback Hub at ``url``."""
    return {
        "HF_ENDPOINT": url,
        "HF_TOKEN": TOKEN,
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


@contextlib.contextmanager
def point_clients_at(url: str, home: Path) -> Iterator[None]:
    """Point this process's ``huggingface_hub`` and ``datasets`` (and child processes) at ``url``."""
    import datasets.config as dconfig
    from huggingface_hub import constants

    patches = [
        (constants, "ENDPOINT", url),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
        (constants, "HF_HUB_OFFLINE", False),
        (constants, "HF_HUB_DISABLE_XET", True),
        (constants, "HF_HUB_CACHE", str(home / "hub")),
        (dconfig, "HF_ENDPOINT", url),
        (dconfig, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}"),
        (dconfig, "HF_HUB_OFFLINE", False),
        (dconfig, "HF_DATASETS_OFFLINE", False),
        (dconfig, "HF_DATASETS_CACHE", home / "datasets"),
    ]
    saved_attrs = [(module, name, getattr(module, name)) for module, name, _ in patches]
    env = hub_env(url, home)
    saved_env = {key: os.environ.get(key) for key in env}
    try:
        for module, name, value in patches:
            setattr(module, name, value)
        os.environ.update(env)
        yield
    finally:
        for module, name, value in saved_attrs:
            setattr(module, name, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def hub(tmp_path) -> Iterator[RunningHub]:
    """A fresh loopback Hub, with this process's clients pointed at it for the test."""
    with serve_hub() as running, point_clients_at(running.url, tmp_path / "hf-home"):
        yield running


def write_pairs(path: Path, count: int, broken: dict[int, str] | None = None) -> Path:
    """A Parquet file of ``count`` image-caption rows (``image`` as encoded bytes, ``caption``, ``id``).

    ``broken`` maps row indices to ``"caption"`` (empty caption) or ``"image"`` (corrupt bytes).
    """
    from datasets import Dataset, Features, Image, Value

    from .conftest import jpeg_bytes, random_image

    broken = broken or {}
    rows = []
    for index in range(count):
        image = jpeg_bytes(random_image(32 + index % 5 * 8, 40, seed=index))
        caption = f"a photo of object number {index} on a table"
        if broken.get(index) == "image":
            image = b"\xff\xd8 not a jpeg"
        if broken.get(index) == "caption":
            caption = ""
        rows.append({"id": index, "image": {"bytes": image, "path": None}, "caption": caption})
    features = Features({"id": Value("int64"), "image": Image(), "caption": Value("string")})
    Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path
