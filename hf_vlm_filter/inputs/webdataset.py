"""WebDataset tar shards as a ``datasets`` dataset, read so that no bad member can end the stream.

Web-scale image-text sets (``cc12m-wds``, DataComp, img2dataset's output) are tar shards where the
files of one sample share a key (``000123.jpg``, ``000123.txt``, ``000123.json``). ``datasets`` reads
them natively, but one bad member there ends its iterator: a tar cut off mid-file raises inside
``datasets``' generator, and a sample is decoded before the caller sees it. This reader is a
``datasets`` generator (``IterableDataset.from_generator`` / ``Dataset.from_generator``, one shard per
``gen_kwargs`` entry, so ``split_dataset_by_node`` gives whole shards to ranks and ``state_dict``
resumes inside a shard) that yields one row per sample:

* ``__key__`` (the sample's key: the row id) and ``__url__`` (its shard);
* ``image``: the first image member (``jpg``, ``jpeg``, ``png``, ``webp``, ...) as an undecoded
  ``{"bytes", "path"}`` cell — a truncated image, a corrupt EXIF block or a zero-byte member is the
  scorer's row error, never the stream's;
* ``txt``: the ``.txt`` member as text (``None`` when the sample has none: the scorer says
  ``missing caption``); ``json``: the ``.json`` member's text, and each top-level field of the JSON
  objects in the first samples of the first shard as a column ``json.<field>`` (strings; other values
  JSON-encoded), so ``--text-column json.caption`` reads a caption from the JSON.

A shard cut off mid-file keeps the samples before the cut and logs one warning naming the shard;
the next shard is read as usual.

Example:
    >>> ds = webdataset_source(["shards/00000.tar"], streaming=True)          # doctest: +SKIP
    >>> next(iter(ds))["__key__"]                                             # doctest: +SKIP
    '000000000'
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from collections.abc import Iterator, Sequence
from typing import Any

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm")
TEXT_EXTENSIONS = ("txt",)
#: Samples of the first shard read to find the JSON fields that become columns.
JSON_PROBE_SAMPLES = 64
_BRACES = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """``shards/{00000..00002}.tar`` -> three names (zero padding kept); ``{a,b}`` lists too.

    Example:
        >>> expand_braces("s/{008..010}.tar")
        ['s/008.tar', 's/009.tar', 's/010.tar']
        >>> expand_braces("{train,val}-{0..1}.tar")
        ['train-0.tar', 'train-1.tar', 'val-0.tar', 'val-1.tar']
    """
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        width = len(first) if first.startswith("0") or len(first) == len(last) else 0
        options = [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    else:
        options = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [name for option in options for name in expand_braces(head + option + tail)]


def webdataset_source(shards: Sequence[str], streaming: bool = False) -> Any:
    """The samples of ``shards`` (local paths or ``hf://`` / remote URLs) as a dataset (see the module docstring)."""
    from datasets import Dataset, Features, Image, IterableDataset, Value

    if not shards:
        raise ValueError("no WebDataset shards to read")
    fields = json_fields(shards[0])
    features = Features({"__key__": Value("string"), "__url__": Value("string"), "image": Image(decode=False),
                         "txt": Value("string"), "json": Value("string"),
                         **{f"json.{field}": Value("string") for field in fields}})
    kwargs = {"shards": list(shards), "fields": tuple(fields)}  # one list only: the shards
    if streaming:
        return IterableDataset.from_generator(samples, gen_kwargs=kwargs, features=features)
    return Dataset.from_generator(samples, gen_kwargs=kwargs, features=features)


def json_fields(shard: str) -> list[str]:
    """Top-level fields of the JSON members among the first samples of ``shard``, in first-seen order."""
    fields: dict[str, None] = {}
    for count, row in enumerate(_read_shard(shard, [])):
        if count >= JSON_PROBE_SAMPLES:
            break
        try:
            value = json.loads(row["json"]) if row["json"] else None
        except ValueError:
            continue
        if isinstance(value, dict):
            fields.update(dict.fromkeys(str(key) for key in value))
    return list(fields)


def samples(shards: list[str], fields: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The rows of ``shards``, shard after shard (the generator behind :func:`webdataset_source`)."""
    for shard in shards:
        yield from _read_shard(shard, fields)


def _read_shard(shard: str, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
    from datasets.utils.file_utils import xopen

    key, members, count = None, {}, 0
    try:
        with xopen(shard, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                stem, dot, extension = name.partition(".")
                if not dot:
                    continue
                folder = member.name[: -len(name)]
                sample_key = folder + stem
                if key is not None and sample_key != key:
                    yield _row(key, members, shard, fields)
                    count += 1
                    members = {}
                key = sample_key
                handle = archive.extractfile(member)
                members[extension.lower()] = handle.read() if handle is not None else b""
            if key is not None:
                yield _row(key, members, shard, fields)
                count += 1
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        logger.warning("WebDataset shard %s is cut off or unreadable after %d samples (%s: %s); the samples "
                       "before the cut are kept", shard, count, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def _row(key: str, members: dict[str, bytes], shard: str, fields: Sequence[str]) -> dict[str, Any]:
    image_extension = next((ext for ext in members if ext in IMAGE_EXTENSIONS or ext.split(".")[-1] in IMAGE_EXTENSIONS),
                           None)
    image = ({"bytes": members[image_extension], "path": f"{key}.{image_extension}"}
             if image_extension is not None else None)
    text = next((members[ext] for ext in TEXT_EXTENSIONS if ext in members), None)
    raw = members.get("json")
    row: dict[str, Any] = {
        "__key__": key, "__url__": shard, "image": image,
        "txt": text.decode("utf-8", errors="replace") if text is not None else None,
        "json": raw.decode("utf-8", errors="replace") if raw is not None else None,
    }
    parsed: Any = None
    if row["json"]:
        try:
            parsed = json.loads(row["json"])
        except ValueError:
            parsed = None
    for field in fields:
        value = parsed.get(field) if isinstance(parsed, dict) else None
        row[f"json.{field}"] = value if value is None or isinstance(value, str) else json.dumps(value)
    return row
