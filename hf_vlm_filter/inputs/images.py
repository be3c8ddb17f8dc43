"""Turn any image cell a user may have into a model-ready RGB image, or a reason why not.

Every scorer goes through :func:`load_image`, so the normalisation below is the same everywhere:

* accepted cells: a decoded ``PIL.Image`` (the ``Image()`` feature), a ``{"bytes", "path"}`` dict
  (``Image(decode=False)``), a local path (``str`` or ``os.PathLike``; relative paths are resolved
  against ``image_root``), a remote or archived path as ``datasets`` streams them (``hf://...``,
  ``zip://member::archive.zip``, ``https://...``; read with ``datasets``' own opener), raw ``bytes``;
* EXIF orientation is applied; animated images (GIF, APNG, WebP) are judged on their first frame;
* modes: ``RGBA``/``LA``/``P``-with-transparency are composited on white, ``I;16``/``I``/``F`` are
  rescaled from their own min..max to 8 bits, ``1``/``L``/``CMYK``/``YCbCr`` are converted to RGB;
* images whose short side is under ``min_side`` pixels are upscaled (bicubic) so it is ``min_side``;
* refused with a reason: ``None``, missing files, bytes that are not an image, corrupt or truncated
  files, images over ``max_image_pixels`` (decompression bombs), aspect ratios over ``max_aspect_ratio``
  (the Qwen-VL processor refuses more than 200:1). ``max_image_pixels`` can be raised up to PIL's
  own hard limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``); raise that too to go further.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

#: PIL's own default bomb limit; anything larger is refused rather than decoded.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
DEFAULT_MIN_SIDE = 28
DEFAULT_MAX_ASPECT_RATIO = 200.0
#: Compressed bytes read for one image at most (files and URLs).
DEFAULT_MAX_FILE_BYTES = 64 * 2**20
#: Bytes per pixel of a decoded PIL image, by mode (the ones a cell can decode to).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
               "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
               "I": 4, "F": 4}


class RowError(Exception):
    """A row-level failure: the row gets NaN and ``str(error)`` as its reason; the batch goes on."""


@dataclass(frozen=True)
class ImagePolicy:
    """Limits applied by :func:`load_image`.

    ``draft_size=(width, height)``: JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8)
    that keeps both sides at least this large (PIL's ``Image.draft``): several times faster for a
    model that shrinks the image anyway, at the price of slightly different pixels. Off by default.

    ``max_decoded_bytes`` bounds the memory one decoded image may take (width x height x the bytes
    per pixel of its mode: a 16-bit or float image costs 2-4 bytes a pixel more than RGB, and its
    8-bit conversion one more copy), checked on the header before any pixel is decoded; ``None``:
    an RGB image of ``max_image_pixels`` pixels (268 MB at PIL's default limit).
    ``max_file_bytes`` and ``url_timeout`` / ``url_attempts`` bound what is read for one image.
    """

    min_side: int = DEFAULT_MIN_SIDE
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    image_root: str | None = None
    draft_size: tuple[int, int] | None = None
    max_decoded_bytes: int | None = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    url_timeout: float = 20.0
    url_attempts: int = 3


@dataclass(frozen=True)
class DecodedImage:
    """A cell already through :func:`load_image`: the image, or the reason it was refused.

    What :class:`~hf_vlm_filter.scorers.composite.CompositeScorer` hands each of its scorers, so
    that an image is decoded once, fully, and every scorer sees the same pixels or the same reason.

    Example:
        >>> load_image(DecodedImage.of(None, ImagePolicy()))
        Traceback (most recent call last):
        ...
        hf_vlm_filter.inputs.images.RowError: missing image
    """

    image: Image.Image | None
    reason: str = ""

    @classmethod
    def of(cls, cell: Any, policy: ImagePolicy) -> DecodedImage:
        """``cell`` decoded under ``policy`` (any failure is kept as the reason)."""
        try:
            return cls(load_image(cell, policy))
        except RowError as exc:
            return cls(None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a cell no decoder expected is still this row's reason
            return cls(None, f"{type(exc).__name__}: {_short(exc)}")


def load_image(cell: Any, policy: ImagePolicy = ImagePolicy()) -> Image.Image:
    """Return ``cell`` as an RGB ``PIL.Image`` or raise :class:`RowError` with a short reason.

    Example:
        >>> from PIL import Image
        >>> load_image(Image.new("RGBA", (40, 30))).mode
        'RGB'
        >>> load_image(None)
        Traceback (most recent call last):
        ...
        hf_vlm_filter.inputs.images.RowError: missing image
    """
    if isinstance(cell, DecodedImage):
        if cell.image is None:
            raise RowError(cell.reason)
        return cell.image
    image = _open(cell, policy)
    try:
        with warnings.catch_warnings():
            # the size limit is ``policy.max_image_pixels``, checked here, not PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            _check_size(image.size, policy, image.mode)
            if getattr(image, "is_animated", False):
                image.seek(0)
            if policy.draft_size and image.format == "JPEG":
                image.draft("RGB", policy.draft_size)
            image.load()
            image = _exif_transposed(image)
    except RowError:
        raise
    except Image.DecompressionBombError as exc:
        raise RowError(f"decompression bomb refused: {_short(exc)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RowError(f"corrupt or truncated image: {_short(exc)}") from None
    image = _to_rgb(image)
    return _fit_shape(image, policy)


def _exif_transposed(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says; a corrupt EXIF block (a rational with a zero
    denominator, undecodable XMP...) is a row error, not an exception from inside PIL."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - PIL raises ZeroDivisionError, UnicodeDecodeError, KeyError...
        raise RowError(f"corrupt EXIF metadata: {type(exc).__name__}: {_short(exc)}") from None


def image_size_hint(cell: Any, policy: ImagePolicy = ImagePolicy()) -> tuple[int, int] | None:
    """``(width, height)`` of an image cell from its header alone (no pixel decoding), or ``None``.

    Cheap enough to call on every row before decoding (scorers use it to group rows of similar
    cost). It never raises; the size is the stored one (EXIF rotation and upscaling not applied).
    Remote paths (``hf://``, ``https://``...) give ``None``: a hint must not download the file; a
    local file has only its header read.

    Example:
        >>> from PIL import Image
        >>> image_size_hint(Image.new("RGB", (40, 30))), image_size_hint(None)
        ((40, 30), None)
    """
    if isinstance(cell, DecodedImage):
        return tuple(cell.image.size) if cell.image is not None else None
    path = cell.get("path") if isinstance(cell, dict) and cell.get("bytes") is None else cell
    if isinstance(path, str) and _is_url(path):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(path, (str, os.PathLike)):
                resolved = _local_path(path, policy)
                _regular_file_size(resolved, path)  # never open a FIFO or a device
                with Image.open(resolved) as image:  # lazy: the header only
                    return tuple(image.size)
            return tuple(_open(cell, policy).size)
    except Exception:  # noqa: BLE001 - a hint: any failure means "unknown"
        return None


def _open(cell: Any, policy: ImagePolicy) -> Image.Image:
    if cell is None:
        raise RowError("missing image")
    if isinstance(cell, Image.Image):
        return cell
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return _open_bytes(cell["bytes"])
        if cell.get("path"):
            return _open_path(cell["path"], policy)
        raise RowError("missing image")
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(cell))
    if isinstance(cell, (str, os.PathLike)):
        if isinstance(cell, str) and not cell.strip():
            raise RowError("missing image")
        return _open_path(cell, policy)
    raise RowError(f"unsupported image cell of type {type(cell).__name__}")


def _open_bytes(data: bytes) -> Image.Image:
    if not data:
        raise RowError("empty image bytes")
    return _pil_open(io.BytesIO(data))


def _open_path(path: str | os.PathLike, policy: ImagePolicy) -> Image.Image:
    return _open_bytes(read_path_bytes(path, policy))


def read_path_bytes(path: str | os.PathLike, policy: ImagePolicy = ImagePolicy()) -> bytes:
    """The bytes of the file an image cell's ``path`` names, as :func:`load_image` reads it: a local
    path (``~`` expanded, a relative one under ``policy.image_root``), or a remote or archived one
    (``hf://...``, ``zip://member::archive``, ``https://...``). Raises :class:`RowError`.

    Example:
        >>> read_path_bytes("no/such/file.jpg")
        Traceback (most recent call last):
        ...
        hf_vlm_filter.inputs.images.RowError: image file not found: no/such/file.jpg
    """
    if isinstance(path, str) and _is_url(path):
        if path.startswith(("http://", "https://")):
            return _read_http(path, policy)
        return _read_url(path, policy)
    resolved = _local_path(path, policy)
    size = _regular_file_size(resolved, path)
    if size > policy.max_file_bytes:
        raise RowError(f"image file is {size / 2**20:.0f} MiB, over {policy.max_file_bytes / 2**20:.0f} MiB: "
                       f"{os.fspath(path)}")
    return resolved.read_bytes()


def _regular_file_size(resolved: Path, path: str | os.PathLike) -> int:
    """The size of a regular file; a ``RowError`` for a missing path, a folder, a FIFO or a device
    (opening one of those could block forever)."""
    try:
        info = resolved.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise RowError(f"image file not found: {os.fspath(path)}") from None
    except OSError as exc:
        raise RowError(f"image file could not be read: {os.fspath(path)}: {_short(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise RowError(f"image file not found: {os.fspath(path)}")
    if not stat.S_ISREG(info.st_mode):
        raise RowError(f"not a regular file: {os.fspath(path)}")
    return info.st_size


def _local_path(path: str | os.PathLike, policy: ImagePolicy) -> Path:
    """``path`` with ``~`` expanded, a relative one resolved against ``policy.image_root``."""
    resolved = Path(path).expanduser()
    if not resolved.is_absolute() and policy.image_root:
        resolved = Path(policy.image_root) / resolved
    return resolved


def _is_url(path: str) -> bool:
    """Whether ``path`` names a remote or archived file (``scheme://...`` or a chained ``a::b``)."""
    return "://" in path or "::" in path


def _read_http(url: str, policy: ImagePolicy) -> bytes:
    """An ``http(s)://`` image with the standard library: a timeout per attempt, retries with backoff on
    connection errors, timeouts and HTTP 5xx / 429, and at most ``policy.max_file_bytes`` read."""
    import time
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "hf_vlm_filter"})
    for attempt in range(1, policy.url_attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=policy.url_timeout) as response:
                data = response.read(policy.max_file_bytes + 1)
            if len(data) > policy.max_file_bytes:
                raise RowError(f"image at {url} is over {policy.max_file_bytes / 2**20:.0f} MiB")
            return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise RowError(f"image file not found: {url}") from None
            if (exc.code < 500 and exc.code != 429) or attempt == policy.url_attempts:
                raise RowError(f"image could not be read: {url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            if attempt == policy.url_attempts:
                reason = getattr(exc, "reason", exc)
                raise RowError(f"image could not be read: {url}: {type(exc).__name__}: {_short(reason)}") from None
        time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
    raise AssertionError("unreachable")


def _read_url(url: str, policy: ImagePolicy = ImagePolicy()) -> bytes:
    """A remote or archived file (``hf://...``, ``zip://member::archive``, ...), read with the opener
    ``datasets`` itself uses for such paths (Hub token and chained URLs handled)."""
    from datasets.utils.file_utils import xopen

    try:
        with xopen(url, "rb") as stream:
            data = stream.read(policy.max_file_bytes + 1)
        if len(data) > policy.max_file_bytes:
            raise RowError(f"image at {url} is over {policy.max_file_bytes / 2**20:.0f} MiB")
    except RowError:
        raise
    except FileNotFoundError:
        raise RowError(f"image file not found: {url}") from None
    except Exception as exc:  # noqa: BLE001 - network / filesystem errors of any fsspec backend
        raise RowError(f"image could not be read: {url}: {type(exc).__name__}: {_short(exc)}") from None
    return data


def _pil_open(stream: io.BytesIO) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream)
    except UnidentifiedImageError:
        raise RowError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise RowError(f"decompression bomb refused: {_short(exc)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RowError(f"corrupt or truncated image: {_short(exc)}") from None


def _check_size(size: tuple[int, int], policy: ImagePolicy, mode: str = "RGB") -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise RowError(f"image has no pixels ({width}x{height})")
    if width * height > policy.max_image_pixels:
        raise RowError(
            f"decompression bomb refused: {width}x{height} is over {policy.max_image_pixels} pixels"
        )
    # the decoded image, plus (for modes that are not RGB) its RGB conversion
    decoded = width * height * (_MODE_BYTES.get(mode, 4) + (3 if mode != "RGB" else 0))
    limit = policy.max_decoded_bytes if policy.max_decoded_bytes is not None else 3 * policy.max_image_pixels
    if decoded > limit:
        raise RowError(f"decompression bomb refused: a {width}x{height} {mode} image needs {decoded / 2**20:.0f} MiB "
                       f"to decode, over {limit / 2**20:.0f} MiB")


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.array(image, dtype=np.float32)  # a copy: scaled in place below
        finite = np.isfinite(values)
        if not finite.any():
            raise RowError(f"image has no finite pixel values (mode {mode})")
        low, high = float(values[finite].min()), float(values[finite].max())
        if not finite.all():  # NaN / inf pixels count as the darkest finite value, not as the whole image
            values = np.where(finite, values, low)
        values -= low
        if high > low:
            values *= 255.0 / (high - low)
        return Image.fromarray(np.rint(values).astype(np.uint8), mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _fit_shape(image: Image.Image, policy: ImagePolicy) -> Image.Image:
    width, height = image.size
    ratio = max(width, height) / min(width, height)
    if ratio > policy.max_aspect_ratio:
        raise RowError(f"aspect ratio {ratio:.0f}:1 is over {policy.max_aspect_ratio:.0f}:1")
    short = min(width, height)
    if short < policy.min_side:
        scale = policy.min_side / short
        size = (max(policy.min_side, round(width * scale)), max(policy.min_side, round(height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image


def _short(exc: BaseException, limit: int = 120) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Truncated files must raise, not be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
