"""Shared fixtures: tiny checkpoints written once per test session, and image helpers."""

from __future__ import annotations

import os

import pytest

from hf_vlm_filter.testing import TinyCheckpoints, jpeg_bytes, png_bytes, png_header_claiming, random_image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

__all__ = ["jpeg_bytes", "png_bytes", "png_header_claiming", "random_image"]



@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> TinyCheckpoints:
    """Every tiny checkpoint kind, each written on first use and shared by the whole session."""
    return TinyCheckpoints(tmp_path_factory.mktemp("tiny-checkpoints"))


@pytest.fixture(scope="session")
def tiny_judge_path(tiny_checkpoints) -> str:
    return tiny_checkpoints.path("compact_vlm")
