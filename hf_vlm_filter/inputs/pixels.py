"""Rescale + normalise of 8-bit pixels as one table lookup, equal to the image processor's own maths.

transformers' PIL image processors turn a resized ``uint8`` image into model input with two
full-size float passes: ``rescale`` (``x * 1/255`` in float64, cast to float32) and ``normalize``
(``(x - mean) / std`` per channel in float32), plus the casts between them; at 448x448 that is
most of the CPU time after decoding and resizing. Both are element-wise, so every output value
depends only on the channel and the 8-bit input: :class:`PixelLookup` evaluates the processor's own
``rescale`` and ``normalize`` once on the 256 possible values of each channel and afterwards maps
an image with one gather. The result is bit-for-bit what the processor computes.

Example:
    >>> import numpy as np
    >>> from transformers import CLIPImageProcessorPil
    >>> processor = CLIPImageProcessorPil()
    >>> lookup = PixelLookup.from_processor(processor)
    >>> pixels = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    >>> slow = processor.normalize(processor.rescale(pixels, processor.rescale_factor),
    ...                            processor.image_mean, processor.image_std)
    >>> bool(np.array_equal(lookup(pixels, channel_axis=0), slow))
    True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from PIL import Image


class PixelLookup:
    """Per-channel table of the processor's ``normalize(rescale(x))`` for ``x`` in 0..255.

    Args:
        table: float32 array of shape ``(channels, 256)``.
    """

    def __init__(self, table: np.ndarray) -> None:
        if table.ndim != 2 or table.shape[1] != 256:
            raise ValueError(f"table must have shape (channels, 256), got {table.shape}")
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.channels = table.shape[0]

    @classmethod
    def from_processor(cls, processor: Any, channels: int = 3) -> PixelLookup | None:
        """The table of a PIL-backend image processor, or ``None`` when it does not rescale and
        normalise the usual way (then keep using the processor)."""
        rescale, normalize = getattr(processor, "rescale", None), getattr(processor, "normalize", None)
        if rescale is None or normalize is None:
            return None
        values = np.broadcast_to(np.arange(256, dtype=np.uint8), (channels, 1, 256)).copy()
        try:
            if getattr(processor, "do_rescale", False):
                values = rescale(values, processor.rescale_factor)
            if getattr(processor, "do_normalize", False):
                values = normalize(values, processor.image_mean, processor.image_std)
        except Exception:  # noqa: BLE001 - an unusual processor: not our fast path
            return None
        if values.dtype != np.float32 or values.shape != (channels, 1, 256):
            return None
        return cls(values[:, 0, :])

    def __call__(self, pixels: np.ndarray, channel_axis: int) -> np.ndarray:
        """Map ``uint8`` pixels (any layout; channels on ``channel_axis``) to float32 model values."""
        if pixels.dtype != np.uint8:
            raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
        if pixels.shape[channel_axis] != self.channels:
            raise ValueError(f"expected {self.channels} channels on axis {channel_axis}, got shape {pixels.shape}")
        out = np.empty(pixels.shape, dtype=np.float32)
        for channel in range(self.channels):
            index = (slice(None),) * (channel_axis % pixels.ndim) + (channel,)
            np.take(self.table[channel], pixels[index], out=out[index])
        return out


class ResizeCropPixels:
    """``processor(images=[image])["pixel_values"]`` of CLIP/SigLIP-style PIL processors, faster.

    Those processors resize (shortest edge, or a fixed height x width), optionally centre-crop,
    then rescale and normalise. This class does the same PIL resize and the same crop on the 8-bit
    pixels, then the :class:`PixelLookup`; :meth:`for_processor` checks it against the processor
    on probe images and returns ``None`` when it would not be exact (keep the processor then).

    Example:
        >>> from PIL import Image
        >>> from transformers import CLIPImageProcessorPil
        >>> pixels = ResizeCropPixels.for_processor(CLIPImageProcessorPil())
        >>> tuple(pixels(Image.new("RGB", (640, 480), "teal")).shape)
        (1, 3, 224, 224)
    """

    def __init__(self, processor: Any, lookup: PixelLookup) -> None:
        size = processor.size
        if getattr(processor, "do_pad", None) or (size.shortest_edge and size.longest_edge):
            raise ValueError("padding or shortest+longest edge resizing is not reproduced")
        if not (size.shortest_edge or (size.height and size.width)):
            raise ValueError(f"unsupported size {size}")
        self.size = size
        self.resample = processor.resample
        self.do_resize = bool(processor.do_resize)
        crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
        self.crop = (int(crop.height), int(crop.width)) if crop is not None else None
        self.lookup = lookup

    @classmethod
    def for_processor(cls, processor: Any) -> ResizeCropPixels | None:
        """The fast path for ``processor``, or ``None`` when it would not be exact."""
        try:
            lookup = PixelLookup.from_processor(processor)
            if lookup is None:
                return None
            fast = cls(processor, lookup)
        except (AttributeError, TypeError, ValueError):
            return None
        return verified_fast_path(fast, processor)

    def _matches(self, processor: Any) -> bool:
        import torch

        for image in probe_images(((97, 61), (640, 480), (13, 300))):
            expected = processor(images=[image], return_tensors="pt")["pixel_values"]
            if not torch.equal(self(image), expected):
                return False
        return True

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` after the processor's resize."""
        if self.size.height and self.size.width:
            return int(self.size.height), int(self.size.width)
        from transformers.image_transforms import get_resize_output_image_size
        from transformers.image_utils import ChannelDimension

        probe = np.broadcast_to(np.uint8(0), (3, height, width))  # only its shape is read
        return tuple(
            get_resize_output_image_size(
                probe, size=self.size.shortest_edge, default_to_square=False, input_data_format=ChannelDimension.FIRST
            )
        )

    def __call__(self, image: Any) -> Any:
        """A ``(1, 3, H, W)`` float32 tensor, as the processor returns for ``images=[image]``."""
        import torch

        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode}")
        if self.do_resize:
            height, width = self.output_size(image.height, image.width)
            image = image.resize((width, height), resample=self.resample)
        pixels = np.asarray(image)
        if self.crop is not None:
            from transformers.image_transforms import center_crop
            from transformers.image_utils import ChannelDimension

            last = ChannelDimension.LAST
            pixels = center_crop(pixels, self.crop, data_format=last, input_data_format=last)
        values = self.lookup(np.ascontiguousarray(pixels), channel_axis=2)
        return torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))[None]


F = TypeVar("F")
logger = logging.getLogger(__name__)


def verified_fast_path(fast: F, processor: Any) -> F | None:
    """``fast`` when its ``_matches(processor)`` self-check passes on the probe images, else ``None``.

    A probe that the processor (or the fast path) fails on counts as a mismatch, not as an error:
    the scorer keeps the processor, which is exact by definition, and only loses speed.
    """
    try:
        if fast._matches(processor):  # type: ignore[attr-defined]
            return fast
        reason = "differs from the processor on the probe images"
    except Exception as exc:  # noqa: BLE001 - any failure of the self-check means: keep the processor
        reason = f"self-check failed: {type(exc).__name__}: {exc}"
    logger.info("%s not used for %s (%s); using the processor", type(fast).__name__, type(processor).__name__, reason)
    return None


def probe_images(sizes: Sequence[tuple[int, int]]) -> Iterator[Image.Image]:
    """Seeded random RGB images of ``(width, height)`` ``sizes``: what a fast path checks itself
    against its processor on (the same images every time)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for width, height in sizes:
        yield Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")
