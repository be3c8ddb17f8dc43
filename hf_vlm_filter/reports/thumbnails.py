"""Small JPEG thumbnails of image cells, for the report's gallery and the dataset card's grid.

Any cell :func:`~hf_vlm_filter.inputs.images.load_image` reads (bytes, ``{"bytes", "path"}``, a
path relative to ``image_root``, a URL) is decoded once (JPEGs at the smallest DCT scale that keeps
``side`` pixels), shrunk to fit a ``side`` x ``side`` box and encoded as a small JPEG. A cell that
cannot be read gives no thumbnail and the reason, never an exception.

Example:
    >>> from PIL import Image
    >>> data, note = make_thumbnail(Image.new("RGB", (640, 320), "red"), side=64)
    >>> data[:2], note, Image.open(__import__("io").BytesIO(data)).size
    (b'\\xff\\xd8', '', (64, 32))
    >>> make_thumbnail(None)
    (None, 'missing image')
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from ..inputs.images import ImagePolicy, RowError, load_image

#: Longest side of a thumbnail, in pixels.
THUMBNAIL_SIDE = 128
#: JPEG quality of thumbnails (small files; the gallery shows them at their own size).
THUMBNAIL_QUALITY = 75


def make_thumbnail(cell: Any, *, image_root: str | None = None, side: int = THUMBNAIL_SIDE,
                   quality: int = THUMBNAIL_QUALITY) -> tuple[bytes | None, str]:
    """``(jpeg_bytes, "")`` for a readable image ``cell``, else ``(None, reason)``."""
    policy = ImagePolicy(image_root=image_root, min_side=1, draft_size=(side, side))
    try:
        image = load_image(cell, policy)
    except RowError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a cell no decoder expected: no thumbnail, and why
        return None, f"{type(exc).__name__}: {exc}"[:200]
    image = image.copy()
    image.thumbnail((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), ""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of JPEG ``data`` (read from its header).

    Example:
        >>> jpeg_size(make_thumbnail(Image.new("RGB", (50, 100)), side=32)[0])
        (16, 32)
    """
    with Image.open(io.BytesIO(data)) as image:
        return image.size
