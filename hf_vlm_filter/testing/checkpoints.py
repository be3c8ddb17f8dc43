"""Tiny checkpoints written once per test session, by kind, into one folder."""

from __future__ import annotations

import threading
from pathlib import Path

from ..models.tiny import save_tiny_model


class TinyCheckpoints:
    """``path(kind)``: the tiny checkpoint of ``kind`` under ``root``, written on first use.

    Example:
        >>> checkpoints = TinyCheckpoints("/tmp/tiny-checkpoints")
        >>> checkpoints.path("causal_lm") == checkpoints.path("causal_lm")
        True
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._paths: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def path(self, kind: str, seed: int = 0) -> str:
        with self._lock:
            key = (kind, seed)
            if key not in self._paths:
                self._paths[key] = str(save_tiny_model(self.root / f"{kind}-{seed}", kind=kind, seed=seed))
            return self._paths[key]
