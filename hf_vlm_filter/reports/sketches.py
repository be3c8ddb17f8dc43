"""Bounded, mergeable samples the gallery is built from: bottom-k sketches and score cells.

Every row of a run gets a seeded 63-bit key (:func:`row_key`, a hash of its caption and its image:
the same row has the same key in any batch, on any rank, in memory or streaming). A
*bottom-k sketch* keeps the ``k`` smallest items offered: with keys as items it is a uniform
sample of ``k`` rows, and the bottom-k of two sketches is the bottom-k of all their rows, so
samples merge across ranks exactly, whatever the order the rows came in.

:class:`ScoreCells` keeps one sketch per *cell* of a score column: the rubric's bins (the
judge's 1-10), or for any other score a grid of nested cells that coarsens (each step merges
neighbour pairs) until the observed range spans at most ``max_cells`` cells. Its state depends
only on the set of rows seen, and its memory is at most ``max_cells * k`` keys.

Example:
    >>> sketch = BottomK(2)
    >>> [sketch.add(item) for item in (5, 3, 9, 1)]
    [None, None, 9, 5]
    >>> sketch.items
    [1, 3]
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..scorers.score_spec import ScoreSpec

#: Cells of a non-rubric column at the finest level (nested cells: level L merges 2**L of them).
FINE_CELLS = 1 << 16
#: Bytes of an image's head and of its tail that its key hashes (with its length).
_HASHED_BYTES = 8192
#: Half-width of the asinh scale an open or half-open score range is cut on (values up to ~1e12).
ASINH_SPAN = 28.0


class BottomK:
    """The ``k`` smallest distinct items offered (ints, or tuples such as ``(distance, key)``)."""

    __slots__ = ("k", "items")

    def __init__(self, k: int, items: Iterable[Any] = ()) -> None:
        if k < 1:
            raise ValueError(f"a sample needs k >= 1, got {k}")
        self.k = k
        self.items: list[Any] = sorted(set(items))[:k]

    def accepts(self, item: Any) -> bool:
        """Whether ``item`` would be kept (not full yet, or smaller than the largest kept)."""
        return len(self.items) < self.k or item < self.items[-1]

    def add(self, item: Any) -> Any:
        """Offer ``item``; returns the item pushed out (``item`` itself when it was not kept), else ``None``."""
        if not self.accepts(item):
            return item
        index = bisect.bisect_left(self.items, item)
        if index < len(self.items) and self.items[index] == item:
            return None
        self.items.insert(index, item)
        return self.items.pop() if len(self.items) > self.k else None

    def merge(self, other: BottomK) -> BottomK:
        """The bottom-k of both (``k`` of ``self``)."""
        return BottomK(self.k, [*self.items, *other.items])


def row_key(seed: int, caption: Any, image: Any, fallback: Sequence[Any] = (), image_root: str | None = None) -> int:
    """A row's 63-bit sampling key: a seeded hash of its caption and its image (its bytes — the
    first and last 8 KiB and the length —, or the path as :func:`image_identity` gives it under
    ``image_root``). A row with neither is told apart by ``fallback``
    (its scores and reasons). Two rows with the same caption and the same image are one pair: the
    gallery samples it once.

    Example:
        >>> row_key(0, "a cat", "/data/cat.jpg") == row_key(0, "a cat", "cat.jpg", [7.5])
        False
        >>> row_key(0, "a cat", "cat.jpg") == row_key(0, "a cat", "cat.jpg", [1.0])
        True
        >>> row_key(0, "a cat", None) == row_key(1, "a cat", None)
        False
    """
    digest = hashlib.blake2b(digest_size=8, key=int(seed).to_bytes(8, "big", signed=True), person=b"hfvlm-gallery")

    def put(tag: bytes, data: bytes) -> None:
        digest.update(tag + len(data).to_bytes(8, "big") + data)

    identity = image_identity(image, image_root)
    if isinstance(identity, bytes) and len(identity) > 2 * _HASHED_BYTES:  # head, tail and length: fast, and enough
        identity = identity[:_HASHED_BYTES] + identity[-_HASHED_BYTES:] + len(identity).to_bytes(8, "big")
    if caption is None and not identity:
        for value in fallback:
            put(b"f", repr(value).encode("utf-8", "surrogatepass"))
    put(b"-", b"") if caption is None else put(b"t", str(caption).encode("utf-8", "surrogatepass"))
    put(b"b", identity) if isinstance(identity, bytes) else put(b"p", identity.encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest(), "big") >> 1


def image_identity(cell: Any, image_root: str | None = None) -> bytes | str:
    """What identifies an image cell: its bytes when it carries them, else its path made absolute
    as the engines write it (under ``image_root``, symbolic links resolved), so that a relative
    path and the absolute one an output holds are the same image; URLs stay as they are.

    Example:
        >>> image_identity("images/a.jpg", "/data") == image_identity("/data/images/a.jpg")
        True
        >>> image_identity({"bytes": b"123", "path": "a.jpg"}), image_identity(None)
        (b'123', '')
    """
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return bytes(cell["bytes"])
        cell = cell.get("path")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell)
    if isinstance(cell, (str, os.PathLike)):
        return absolute_path(cell, image_root)
    return ""


def absolute_path(path: str | os.PathLike, image_root: str | None = None) -> str:
    """``path`` as :mod:`hf_vlm_filter.inputs.portable` writes it: absolute (under ``image_root``
    when relative, resolved); URLs and archive members unchanged; ``""`` for a blank one.

    Example:
        >>> absolute_path("images/a.jpg", "/data"), absolute_path("hf://datasets/u/p/a.jpg"), absolute_path(" ")
        ('/data/images/a.jpg', 'hf://datasets/u/p/a.jpg', '')
    """
    text = os.fspath(path)
    if not text.strip():
        return ""
    if "://" in text or "::" in text:
        return text
    resolved = Path(text).expanduser()
    if not resolved.is_absolute() and image_root:
        resolved = Path(image_root) / resolved
    return str(resolved.resolve())


class ScoreCells:
    """One bottom-k sketch of keys per cell of a score column (see the module docstring).

    Example:
        >>> from hf_vlm_filter.scorers.score_spec import ScoreSpec
        >>> cells = ScoreCells(ScoreSpec("judge_score", "judge_error", low=1, high=10, bins=tuple(range(1, 11))), k=2)
        >>> for key, score in enumerate([9.5, 9.2, 9.9, 2.0]):
        ...     cells.add(cells.cell_of(score), key)
        >>> {cell: sketch.items for cell, sketch in cells.cells.items()}
        {8: [0, 1], 1: [3]}
    """

    def __init__(self, spec: ScoreSpec, k: int, max_cells: int = 20) -> None:
        self.spec = spec
        self.k = k
        self.max_cells = max_cells
        self.level = 0
        self.low: int | None = None   # finest-level cells of the lowest and highest score seen
        self.high: int | None = None
        self.cells: dict[int, BottomK] = {}

    @property
    def rubric(self) -> bool:
        return self.spec.bins is not None

    def fine(self, values: np.ndarray) -> np.ndarray:
        """The finest-level cell of each finite value (rubric: its bin)."""
        spec = self.spec
        if spec.bins is not None:
            edges = np.asarray(spec.bins)
            return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2).astype(np.int64)
        if spec.low is not None and spec.high is not None:
            t = (values - spec.low) / (spec.high - spec.low)
        else:
            t = (np.arcsinh(values) + ASINH_SPAN) / (2 * ASINH_SPAN)
        return np.clip(np.floor(t * FINE_CELLS), 0, FINE_CELLS - 1).astype(np.int64)

    def see(self, fine: np.ndarray) -> None:
        """Widen the observed range to the finest-level cells ``fine`` (coarsening when needed)."""
        if not fine.size:
            return
        low, high = int(fine.min()), int(fine.max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        self._coarsen()

    def cell_of(self, value: float) -> int:
        """The current cell of ``value`` (its range is seen first)."""
        fine = self.fine(np.asarray([value], dtype=np.float64))
        self.see(fine)
        return int(fine[0]) >> self.level

    def accepts(self, cell: int, key: int) -> bool:
        sketch = self.cells.get(cell)
        return sketch is None or sketch.accepts(key)

    def add(self, cell: int, key: int) -> None:
        self.cells.setdefault(cell, BottomK(self.k)).add(key)

    def keys(self) -> set[int]:
        return {key for sketch in self.cells.values() for key in sketch.items}

    def merge(self, other: ScoreCells) -> None:
        """Add ``other``'s cells (same column and ``k``)."""
        if other.low is None:
            return
        level = max(self.level, other.level)
        self._regroup(level)
        for cell, sketch in other.cells.items():
            cell >>= level - other.level
            self.cells[cell] = self.cells[cell].merge(sketch) if cell in self.cells else BottomK(self.k, sketch.items)
        self.low = other.low if self.low is None else min(self.low, other.low)
        self.high = other.high if self.high is None else max(self.high, other.high)
        self._coarsen()

    def _coarsen(self) -> None:
        if self.rubric or self.low is None:
            return
        level = self.level
        while (self.high >> level) - (self.low >> level) + 1 > self.max_cells:
            level += 1
        self._regroup(level)

    def _regroup(self, level: int) -> None:
        if level <= self.level:
            return
        shift = level - self.level
        grouped: dict[int, BottomK] = {}
        for cell, sketch in self.cells.items():
            target = cell >> shift
            grouped[target] = grouped[target].merge(sketch) if target in grouped else sketch
        self.cells, self.level = grouped, level

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "low": self.low, "high": self.high,
                "cells": {str(cell): sketch.items for cell, sketch in sorted(self.cells.items())}}

    @classmethod
    def from_dict(cls, spec: ScoreSpec, k: int, max_cells: int, data: dict[str, Any]) -> ScoreCells:
        cells = cls(spec, k, max_cells)
        cells.level, cells.low, cells.high = int(data["level"]), data["low"], data["high"]
        cells.cells = {int(cell): BottomK(k, keys) for cell, keys in data["cells"].items()}
        return cells
