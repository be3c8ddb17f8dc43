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

from typing import Any

import numpy as np


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
