"""Image cells that still point at their images once written somewhere else.

A SOURCE in the seed layout (a JSON file with ``image_path`` strings relative to it) or an image
folder refers to files by paths that only mean something next to the source. :func:`portable_images`
maps a dataset's image columns so that the scored output can be read again from anywhere on the
machine — by ``hf-vlm-filter score`` and by ``load_dataset``; the engines apply it to the rows they
write (after scoring, so a row's reason still names the path as the source wrote it):

* by default, every local path becomes absolute (resolved against ``image_root``); URLs and
  ``hf://`` / ``zip://`` paths stay as they are; embedded bytes stay;
* with ``embed=True``, every image is read once and embedded: the output has an ``image`` column
  of the ``datasets.Image()`` feature holding the original bytes (never re-encoded), so the file
  carries its pixels. A path that cannot be read gives no image there (the path column keeps the
  absolute path, and the scorer reported the reason on that row).

Example:
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"image_path": ["images/a.jpg"], "caption": ["a"]})
    >>> PortableImages(("image_path",), "/data/pairs")(ds)[0]["image_path"]
    '/data/pairs/images/a.jpg'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .images import ImagePolicy, RowError, read_path_bytes

#: The column embedded images go to (the scorers' default image column).
EMBEDDED_COLUMN = "image"


@dataclass(frozen=True)
class PortableImages:
    """The output transform of the module docstring for image ``columns`` (resolved against
    ``image_root``; ``embed``: bytes into an ``image`` column). Call it on a dataset."""

    columns: tuple[str, ...]
    image_root: str | None = None
    embed: bool = False

    def __call__(self, dataset: Any) -> Any:
        return portable_images(dataset, self.columns, self.image_root, self.embed)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "columns": list(self.columns)}


def portable_images(dataset: Any, columns: Sequence[str], image_root: str | None, embed: bool = False) -> Any:
    """``dataset`` with its image ``columns`` made portable (see the module docstring); works on
    ``Dataset`` and ``IterableDataset`` alike."""
    from datasets import Features, Image, Value

    features = dataset.features
    columns = [column for column in columns if features is None or column in features]
    if not columns:
        return dataset
    policy = ImagePolicy(image_root=image_root)
    new = dict(features) if features is not None else None
    target = EMBEDDED_COLUMN if embed else None
    if new is not None:
        for column in columns:
            if not isinstance(new[column], (Value, Image)):
                raise ValueError(f"column {column!r} does not hold images or paths ({new[column]})")
        if embed:
            new[target] = Image(decode=False)

    def convert(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = {column: [_absolute(cell, policy) for cell in batch[column]] for column in columns}
        if embed:
            out[target] = [_embedded(cell, policy) for cell in batch[columns[0]]]
        return out

    kwargs = {"features": Features(new)} if new is not None else {}
    return dataset.map(convert, batched=True, **kwargs)


def _absolute(cell: Any, policy: ImagePolicy) -> Any:
    if isinstance(cell, dict):
        if cell.get("bytes") is None and cell.get("path"):
            return {**cell, "path": _absolute_path(cell["path"], policy)}
        return cell
    if isinstance(cell, (str, os.PathLike)) and str(cell).strip():
        return _absolute_path(cell, policy)
    return cell


def _absolute_path(path: str | os.PathLike, policy: ImagePolicy) -> str:
    text = os.fspath(path)
    if "://" in text or "::" in text:
        return text
    resolved = Path(text).expanduser()
    if not resolved.is_absolute() and policy.image_root:
        resolved = Path(policy.image_root) / resolved
    return str(resolved.resolve())


def _embedded(cell: Any, policy: ImagePolicy) -> dict[str, Any] | None:
    """``{"bytes", "path"}`` with the image's own bytes, or ``None`` for a missing image."""
    if cell is None:
        return None
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return {"bytes": cell["bytes"], "path": cell.get("path")}
        cell = cell.get("path")
    if isinstance(cell, (bytes, bytearray)):
        return {"bytes": bytes(cell), "path": None}
    if not isinstance(cell, (str, os.PathLike)) or not str(cell).strip():
        return None
    path = _absolute_path(cell, policy)
    try:
        return {"bytes": read_path_bytes(path, policy), "path": Path(path).name}
    except RowError:
        return None
