"""Input normalisation: image cells and captions to model-ready values or a row error."""

from .captions import clean_caption
from .images import ImagePolicy, RowError, load_image

__all__ = ["ImagePolicy", "RowError", "clean_caption", "load_image"]
