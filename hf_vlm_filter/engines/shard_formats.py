"""How output rows are written: Parquet (the default) or WebDataset tar shards, each file atomically.

:class:`WebDatasetFormat` writes one sample per row: ``{key}.{ext}`` holding the image's original
bytes (never re-encoded; read from the row's path when the cell holds none), ``{key}.txt`` the
caption, and ``{key}.json`` the source sample's own JSON object (a WebDataset source's) with every
other column added (scores, reasons, metadata; NaN as ``null``). Every
sample has every member (an empty one for a missing image or caption), as readers that infer the
layout from the first samples expect; images keep their own format's extension. The key is the
row's ``__key__`` when it has one (a WebDataset source's id is kept), else one made from the shard
and the row's place in it. Both ``load_dataset("webdataset")`` and the ``webdataset`` package
read the shards back, and so does ``hf-vlm-filter`` as a SOURCE.

Example:
    >>> import pyarrow as pa
    >>> fmt = WebDatasetFormat(image_column="image", text_column="caption")
    >>> table = pa.table({"image": [{"bytes": b"\\xff\\xd8jpeg", "path": "a.jpg"}], "caption": ["a cat"],
    ...                   "clip_score": [0.31], "__key__": ["s001"]})
    >>> size = fmt.write(Path("/tmp/shard.tar"), table)
    >>> import tarfile; sorted(tarfile.open("/tmp/shard.tar").getnames())
    ['s001.jpg', 's001.json', 's001.txt']
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .streaming.state import atomic_write_table

KEY_COLUMN = "__key__"
#: A WebDataset source's ``.json`` member (and its fields as ``json.<field>`` columns).
JSON_COLUMN = "json"
#: Columns a WebDataset source adds that describe the sample's place, not its content.
SOURCE_COLUMNS = ("__key__", "__url__")
_FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif",
                      "PPM": "ppm", "MPO": "jpg"}


class ShardFormat(Protocol):
    """A file format for output shards."""

    name: str
    suffix: str

    def write(self, path: Path, table: Any) -> int:
        """Write ``table`` to ``path`` atomically (temporary name, fsync, rename); returns its size."""


@dataclass(frozen=True)
class ParquetFormat:
    """Parquet shards (the default)."""

    name: str = "parquet"
    suffix: str = ".parquet"

    def write(self, path: Path, table: Any) -> int:
        return atomic_write_table(path, table)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}


@dataclass(frozen=True)
class WebDatasetFormat:
    """WebDataset tar shards (see the module docstring)."""

    image_column: str | None = "image"
    text_column: str | None = "caption"
    name: str = "webdataset"
    suffix: str = ".tar"

    def write(self, path: Path, table: Any) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as archive:
                for index, row in enumerate(table.to_pylist()):
                    for name, data in self.members(row, f"{path.stem}-{index:06d}"):
                        info = tarfile.TarInfo(name)
                        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                        archive.addfile(info, io.BytesIO(data))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path.stat().st_size

    def members(self, row: dict[str, Any], fallback_key: str) -> list[tuple[str, bytes]]:
        """The ``(member name, bytes)`` of one row's sample."""
        key = str(row.get(KEY_COLUMN) or fallback_key).replace(".", "_")
        members: list[tuple[str, bytes]] = []
        if self.image_column:  # every sample carries every member (empty when missing): readers want one layout
            data, extension = _image_bytes(row.get(self.image_column)) or (b"", "jpg")
            members.append((f"{key}.{extension}", data))
        if self.text_column:
            caption = row.get(self.text_column)
            members.append((f"{key}.txt", caption.encode("utf-8", errors="replace") if isinstance(caption, str) else b""))
        skip = {self.image_column, self.text_column, *SOURCE_COLUMNS, JSON_COLUMN}
        metadata = _source_json(row.get(JSON_COLUMN))
        metadata.update({name: _json_value(value) for name, value in row.items()
                         if name not in skip and not name.startswith(f"{JSON_COLUMN}.")})
        members.append((f"{key}.json", json.dumps(metadata, ensure_ascii=False).encode("utf-8", errors="replace")))
        return members

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "image_column": self.image_column, "text_column": self.text_column}


def _image_bytes(cell: Any) -> tuple[bytes, str] | None:
    """The original bytes of an image cell and their file extension (``None``: no image)."""
    data, path = None, None
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
    elif isinstance(cell, (bytes, bytearray)):
        data = bytes(cell)
    elif isinstance(cell, str):
        path = cell
    if data is None and path and Path(path).is_file():
        data = Path(path).read_bytes()
    if not data:
        return None
    extension = Path(path).suffix.lower().lstrip(".") if path else ""
    if not extension:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:  # the header only: the format, not the pixels
                extension = _FORMAT_EXTENSIONS.get(image.format or "", "bin")
        except Exception:  # noqa: BLE001 - not an image PIL knows: kept as it is
            extension = "bin"
    return data, extension


def _source_json(text: Any) -> dict[str, Any]:
    """The source sample's own JSON object (kept in the output's json member), or ``{}``."""
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items() if not isinstance(item, (bytes, bytearray))}
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    return value


def shard_format(name: str, image_column: str | None = None, text_column: str | None = None) -> ShardFormat:
    """The format called ``name`` (``"parquet"`` or ``"webdataset"``)."""
    if name == "parquet":
        return ParquetFormat()
    if name == "webdataset":
        return WebDatasetFormat(image_column=image_column or "image", text_column=text_column or "caption")
    raise ValueError(f"unknown output format {name!r}; use parquet or webdataset")
