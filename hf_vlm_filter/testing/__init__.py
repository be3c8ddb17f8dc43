"""Test support: built-once tiny checkpoints, image-cell factories, and one case per registered scorer
for the contract suite. Production code never imports this package.

Example:
    >>> from hf_vlm_filter.testing import SCORER_CASES
    >>> from hf_vlm_filter.scorers.registry import SCORERS
    >>> sorted(SCORER_CASES) == sorted(SCORERS)
    True
"""

from ..models.tiny import save_tiny_model
from .cases import SCORER_CASES, ScorerCase
from .checkpoints import TinyCheckpoints
from .images import jpeg_bytes, png_bytes, png_header_claiming, random_image

__all__ = [
    "SCORER_CASES",
    "ScorerCase",
    "TinyCheckpoints",
    "jpeg_bytes",
    "png_bytes",
    "png_header_claiming",
    "random_image",
    "save_tiny_model",
]
