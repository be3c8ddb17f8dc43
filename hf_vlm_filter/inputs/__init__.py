"""Inputs: a SOURCE opened as a ``datasets`` dataset, and each image cell and caption turned into a
model-ready value or a row error."""

from .captions import clean_caption
from .images import DecodedImage, ImagePolicy, RowError, image_size_hint, load_image, read_path_bytes
from .pixels import PixelLookup, ResizeCropPixels

__all__ = ["DecodedImage", "ImagePolicy", "PixelLookup", "ResizeCropPixels", "RowError", "clean_caption",
           "image_size_hint", "load_image", "read_path_bytes"]
