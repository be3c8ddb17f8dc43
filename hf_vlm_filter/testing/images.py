"""Deterministic test images and their encoded bytes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def random_image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A deterministic noisy image (never all-zero) of the given size.

    Example:
        >>> random_image(4, 3, seed=1).size
        (4, 3)
    """
    rng = np.random.default_rng(seed)
    array = rng.integers(1, 255, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(array, "RGB").convert(mode)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    """``image`` encoded as JPEG."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR claims ``width x height`` pixels (a decompression-bomb probe)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")
