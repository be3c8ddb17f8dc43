"""The Compact judge seed script's image path: qwen-vl-utils' ``fetch_image`` resize, before the processor.

The seed script (``scripts/filter_data.py`` of daulettoibazar/Compact_VLM_Filter) does not hand its
PIL images straight to the processor: it first runs ``qwen_vl_utils.process_vision_info``, whose
``fetch_image`` converts the image to RGB and resizes it so that

* each side is the nearest multiple of 28 (the Qwen2-VL patch 14 times the 2x2 merge), at least 28;
* the area stays within 4..16384 merged patches (``4 * 28 * 28`` to ``16384 * 28 * 28`` pixels):
  over the cap, both sides are scaled by ``sqrt(area / max)`` and rounded down to multiples of 28;
  under the floor, scaled up by ``sqrt(min / area)`` and rounded up;
* with PIL's default filter (``Image.resize`` without ``resample``: bicubic for RGB).

Only then does the processor resize the result into its own budget (the seed: 256..1280 merged
patches), with its own rounding. Two roundings in a row can land on another grid than one rounding
of the original (a 400x300 photo: 28x38 patches read directly, 30x38 through the seed's path), and
even on the same grid they give other pixels whenever both resizes change the size.

This module re-implements that first step from qwen-vl-utils' public source (``smart_resize`` and
``fetch_image`` of ``qwen-vl-utils/src/qwen_vl_utils/vision_process.py``, QwenLM/Qwen2-VL and
Qwen2.5-VL) without importing the package, which needs torchvision. What the judge keeps of its own
decoding (:func:`~hf_vlm_filter.inputs.load_image`) differs from ``fetch_image`` only where the seed
is wrong or silent: EXIF rotation is applied, transparency is composited on white (qwen-vl-utils'
later versions do that too), images under 28 px on a side are first upscaled to 28.

Example:
    >>> seed_resize_size(300, 400)                       # height, width of skimage's clock
    (308, 392)
    >>> seed_grid(300, 400, min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28)
    (30, 38)
    >>> direct_grid(300, 400, min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28)
    (28, 38)
"""

from __future__ import annotations

import math

from PIL import Image

#: Side multiple of qwen-vl-utils for Qwen2-VL: patch 14 x merge 2.
IMAGE_FACTOR = 28
#: ``fetch_image``'s default budget: 4 to 16384 merged 28x28 patches.
SEED_MIN_PIXELS = 4 * 28 * 28
SEED_MAX_PIXELS = 16384 * 28 * 28
#: qwen-vl-utils refuses images whose long side is over 200 times the short one.
MAX_RATIO = 200
#: How an image's path through the seed compares with the judge's direct path (:func:`seed_path_effect`).
SAME_PIXELS, OTHER_PIXELS, OTHER_GRID = "same pixels", "same grid, other pixels", "other grid"


def seed_resize_size(height: int, width: int, *, factor: int = IMAGE_FACTOR, min_pixels: int = SEED_MIN_PIXELS,
                     max_pixels: int = SEED_MAX_PIXELS) -> tuple[int, int]:
    """``(height, width)`` qwen-vl-utils' ``smart_resize`` gives an image (its ``fetch_image`` defaults).

    Python's ``round`` (half to even), as in the original.

    Example:
        >>> seed_resize_size(61, 97), seed_resize_size(1500, 2000)
        ((56, 84), (1512, 1988))
    """
    if min(height, width) < 1:
        raise ValueError(f"image has no pixels ({width}x{height})")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"absolute aspect ratio must be smaller than {MAX_RATIO}, got "
                         f"{max(height, width) / min(height, width)}")
    rows = max(factor, round(height / factor) * factor)
    cols = max(factor, round(width / factor) * factor)
    if rows * cols > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        rows = max(factor, math.floor(height / beta / factor) * factor)
        cols = max(factor, math.floor(width / beta / factor) * factor)
    elif rows * cols < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        rows = math.ceil(height * beta / factor) * factor
        cols = math.ceil(width * beta / factor) * factor
    return rows, cols


def seed_fetch_image(image: Image.Image) -> Image.Image:
    """``image`` (RGB) resized as the seed's ``fetch_image`` resizes it, with PIL's default filter.

    An image whose size is already the rule's (sides multiples of 28 within the budget) comes back
    unchanged (PIL returns a copy), so the seed path then equals the direct one exactly.

    Example:
        >>> seed_fetch_image(Image.new("RGB", (400, 300))).size
        (392, 308)
    """
    rows, cols = seed_resize_size(image.height, image.width)
    return image.resize((cols, rows))  # no ``resample``: PIL's default, as fetch_image calls it


def direct_grid(height: int, width: int, *, min_pixels: int, max_pixels: int, patch: int = 14,
                merge: int = 2) -> tuple[int, int]:
    """Patch rows and columns of a ``height`` x ``width`` image read by the Qwen2-VL image processor
    (transformers' ``smart_resize`` into ``min_pixels``..``max_pixels``)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    rows, cols = smart_resize(height, width, factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)
    return rows // patch, cols // patch


def seed_grid(height: int, width: int, *, min_pixels: int, max_pixels: int, patch: int = 14,
              merge: int = 2) -> tuple[int, int]:
    """Patch rows and columns of the same image through the seed's path: :func:`seed_resize_size`,
    then the processor's budget resize (:func:`direct_grid` of the resized size)."""
    rows, cols = seed_resize_size(height, width, factor=patch * merge)
    return direct_grid(rows, cols, min_pixels=min_pixels, max_pixels=max_pixels, patch=patch, merge=merge)


def seed_path_effect(height: int, width: int, *, min_pixels: int, max_pixels: int, patch: int = 14,
                     merge: int = 2) -> str:
    """Whether the seed's path gives this image the judge's pixels (:data:`SAME_PIXELS`), the same
    patch grid with other pixels (:data:`OTHER_PIXELS`: both resizes change the size) or another
    grid (:data:`OTHER_GRID`).

    Example:
        >>> budget = {"min_pixels": 256 * 28 * 28, "max_pixels": 1280 * 28 * 28}
        >>> seed_path_effect(400, 600, **budget), seed_path_effect(300, 451, **budget), seed_path_effect(300, 400, **budget)
        ('same pixels', 'same grid, other pixels', 'other grid')
    """
    budget = {"min_pixels": min_pixels, "max_pixels": max_pixels, "patch": patch, "merge": merge}
    direct = direct_grid(height, width, **budget)
    if seed_grid(height, width, **budget) != direct:
        return OTHER_GRID
    first = seed_resize_size(height, width, factor=patch * merge)
    if first == (height, width):  # fetch_image leaves the image as it is
        return SAME_PIXELS
    final = (direct[0] * patch, direct[1] * patch)
    return SAME_PIXELS if final == first else OTHER_PIXELS  # one resize, to the same size, either way
