"""Open a command-line SOURCE as a ``datasets`` dataset with lazy (undecoded) image columns.

A SOURCE is a Hub dataset id, a local ``.parquet`` / ``.json`` / ``.jsonl`` / ``.csv`` file (the seed
layout, a JSON list of ``{"image_path", "caption"}``, included), WebDataset ``.tar`` shards
(:mod:`hf_vlm_filter.inputs.webdataset`), a glob or brace pattern of files of one of those formats
(``data/*.parquet``, ``shards/{00000..00099}.tar``, ``hf://datasets/user/pairs/train-*.tar``), a
folder of such files, or an image folder (``load_dataset("imagefolder")``, captions from its
``metadata.jsonl`` / ``.csv``).

Image columns are cast to ``Image(decode=False)``: ``datasets`` raises while decoding a broken image,
whereas the judge decodes each cell itself and turns a bad one into ``NaN`` plus a reason.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from datasets import Image, IterableDataset, load_dataset
from datasets.features.features import require_decoding

#: Local file suffixes and the ``datasets`` builder that reads them.
FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".tar": "webdataset"}
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
        if builder == "webdataset":
            from .webdataset import webdataset_source

            dataset = webdataset_source(kwargs["data_files"], streaming=streaming)
        else:
            dataset = load_dataset(builder, split=split, streaming=streaming, **kwargs)
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; report one line
        raise SourceError(f"could not load {source!r} (split {split!r}): {type(exc).__name__}: {_first_line(exc)}") from exc
    if streaming and dataset.features is None and hasattr(dataset, "_resolve_features"):
        # Streaming JSON/CSV has no schema until read; resolving it (first rows only) lets the
        # scorer declare its output features, so every written batch has the same schema.
        dataset = dataset._resolve_features()
    dataset = typed_nulls(dataset)
    dataset = lazy_images(dataset)
    if limit is not None:
        dataset = dataset.take(limit) if streaming else dataset.select(range(min(limit, len(dataset))))
    return dataset, image_root


def typed_nulls(dataset: Any) -> Any:
    """Columns whose type is known only as ``null`` (every row read to resolve the schema was
    ``None``) typed as strings, so that a later row holding a caption or a path fits the declared
    schema instead of ending the stream."""
    from datasets import Features, Value

    features = dataset.features
    if not features or not any(isinstance(f, Value) and f.dtype == "null" for f in features.values()):
        return dataset
    typed = Features({name: Value("string") if isinstance(f, Value) and f.dtype == "null" else f
                      for name, f in features.items()})
    return dataset.cast(typed)


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
                f"use one of {sorted(FILE_BUILDERS)}, a folder, a glob, or a Hub dataset id"
            )
        return builder, {"data_files": [str(path)] if builder == "webdataset" else str(path)}, str(path.parent)
    if is_pattern(source) or source.startswith("hf://"):
        files = resolve_files(source)
        root = _pattern_root(source)
        return _one_builder(files, source), {"data_files": files}, root if "://" in root else str(Path(root).expanduser())
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_BUILDERS
                       and not p.name.startswith(".") and p.name not in METADATA_FILES)
        if files:
            return _one_builder(files, source), {"data_files": files}, str(path)
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*") if p.is_file()):
            return "imagefolder", {"data_dir": str(path)}, str(path)
        raise SourceError(f"folder {source!r} holds no .parquet, .jsonl, .json, .csv or .tar files and no images")
    if _looks_like_path(source):
        raise SourceError(f"source {source!r} does not exist")
    return source, {}, None


#: Files of an image folder that describe it rather than being data of their own.
METADATA_FILES = {"metadata.jsonl", "metadata.json", "metadata.csv"}


def is_pattern(source: str) -> bool:
    """Whether ``source`` is a glob (``*``, ``?``, ``[...]``) or brace (``{a..b}``, ``{x,y}``) pattern."""
    return any(char in source for char in "*?[") or bool(re.search(r"\{[^{}]*(\.\.|,)[^{}]*\}", source))


def resolve_files(pattern: str) -> list[str]:
    """The files a pattern names, in order: braces expanded, then each part resolved with ``datasets``'
    own resolver (local globs and ``hf://`` paths alike). ``SourceError`` when nothing matches."""
    from datasets.data_files import resolve_pattern

    from .webdataset import expand_braces

    files: list[str] = []
    for part in expand_braces(pattern):
        try:
            found = resolve_pattern(part, base_path=".")
        except FileNotFoundError:
            found = []
        files += [name for name in found if name not in files]
    if not files:
        raise SourceError(f"no files match {pattern!r}")
    return files


def _one_builder(files: list[str], source: str) -> str:
    builders = {FILE_BUILDERS.get(Path(name.split("::")[0]).suffix.lower()) for name in files}
    builders.discard(None)
    if len(builders) != 1:
        kinds = sorted(Path(name).suffix or "(none)" for name in files)
        counts = {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)}
        raise SourceError(f"{source!r} holds files of several formats {counts}; point at one format "
                          "(e.g. a glob such as data/*.parquet)")
    return builders.pop()


def _pattern_root(pattern: str) -> str:
    """The folder a pattern starts from (relative image paths in its files resolve against it)."""
    parts = []
    for part in pattern.split("/"):
        if is_pattern(part):
            break
        parts.append(part)
    return "/".join(parts[:-1] if parts and parts == pattern.split("/") else parts) or "."


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
