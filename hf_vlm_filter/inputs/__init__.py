"""Input normalisation: image cells and captions to model-ready values or a row error."""

from .captions import clean_caption
from .images import ImagePolicy, RowError, image_size_hint, load_image, read_path_bytes
from .pixels import PixelLookup, ResizeCropPixels

__all__ = ["ImagePolicy", "PixelLookup", "ResizeCropPixels", "RowError", "clean_caption", "image_size_hint", "load_image",
           "read_path_bytes"]
