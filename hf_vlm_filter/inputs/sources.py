"""Open a command-line SOURCE as a ``datasets`` dataset with lazy (undecoded) image columns.

A SOURCE is a Hub dataset id, a local ``.parquet`` / ``.json`` / ``.jsonl`` / ``.csv`` file (the seed
layout, a JSON list of ``{"image_path", "caption"}``, included), a folder of Parquet files, or an
image folder (``load_dataset("imagefolder")``, captions from its ``metadata.jsonl`` / ``.csv``).

Image columns are cast to ``Image(decode=False)``: ``datasets`` raises while decoding a broken image,
whereas the judge decodes each cell itself and turns a bad one into ``NaN`` plus a reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import Image, IterableDataset, load_dataset
from datasets.features.features import require_decoding

#: Local file suffixes and the ``datasets`` builder that reads them.
FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class SourceError(ValueError):
    """A SOURCE that does not exist, has a format we do not read, or that ``datasets`` refused."""


def load_source(
    source: str, split: str = "train", streaming: bool = False, limit: int | None = None
) -> tuple[Any, str | None]:
    """Load ``source`` and return ``(dataset, image_root)``.

    ``image_root`` is the folder relative image paths are resolved against (the file's folder for a
    local file, the folder itself for a folder, ``None`` for a Hub id). ``limit`` keeps the first
    ``limit`` rows. The dataset is a ``Dataset``, or an ``IterableDataset`` when ``streaming``.

    Example:
        >>> ds, root = load_source("examples/sample/pairs.json", limit=3)   # doctest: +SKIP
        >>> len(ds), root                                                  # doctest: +SKIP
        (3, 'examples/sample')
    """
    if limit is not None and limit < 0:
        raise SourceError(f"--limit must be >= 0, got {limit}")
    builder, kwargs, image_root = _resolve(source)
    try:
        dataset = load_dataset(builder, split=split, streaming=streaming, **kwargs)
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; report one line
        raise SourceError(f"could not load {source!r} (split {split!r}): {type(exc).__name__}: {_first_line(exc)}") from exc
    if streaming and dataset.features is None and hasattr(dataset, "_resolve_features"):
        # Streaming JSON/CSV has no schema until read; resolving it (first rows only) lets the
        # scorer declare its output features, so every written batch has the same schema.
        dataset = dataset._resolve_features()
    dataset = lazy_images(dataset)
    if limit is not None:
        dataset = dataset.take(limit) if streaming else dataset.select(range(min(limit, len(dataset))))
    return dataset, image_root


def lazy_images(dataset: Any) -> Any:
    """Make every ``datasets.Image`` column lazy (``{"bytes", "path"}`` cells, decoded by the scorer).

    A ``Dataset`` has its decoding ``Image`` columns cast to ``Image(decode=False)``. A streamed Hub
    dataset decodes in a thread pool that ``datasets`` adds when loading (``IterableDataset.decode``);
    casting a column does not remove that step, so a stream is switched with ``decode(False)``,
    which turns off decoding for all its features (images inside lists included).
    """
    features = dataset.features or {}
    if isinstance(dataset, IterableDataset) and features and require_decoding(features):
        return dataset.decode(False)
    for name, feature in features.items():
        if isinstance(feature, Image) and feature.decode:
            dataset = dataset.cast_column(name, Image(decode=False))
    return dataset


def _resolve(source: str) -> tuple[str, dict[str, Any], str | None]:
    """The builder name, its keyword arguments and the image root for ``source``."""
    path = Path(source).expanduser()
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise SourceError(
                f"unsupported file type {path.suffix or '(none)'!r} for {source!r}; "
                f"use one of {sorted(FILE_BUILDERS)}, a folder, or a Hub dataset id"
            )
        return builder, {"data_files": str(path)}, str(path.parent)
    if path.is_dir():
        if any(path.rglob("*.parquet")):
            return "parquet", {"data_files": str(path / "**" / "*.parquet")}, str(path)
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*") if p.is_file()):
            return "imagefolder", {"data_dir": str(path)}, str(path)
        raise SourceError(f"folder {source!r} holds no .parquet files and no images")
    if _looks_like_path(source):
        raise SourceError(f"source {source!r} does not exist")
    return source, {}, None


def _looks_like_path(source: str) -> bool:
    """Whether a non-existent ``source`` was meant as a local path rather than a Hub id."""
    return (
        source.startswith((".", "/", "~", "\\"))
        or source.count("/") > 1
        or Path(source).suffix.lower() in FILE_BUILDERS
        or "\\" in source
    )


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
