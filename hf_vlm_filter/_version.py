"""The library version (one place: the card records it, ``--version`` prints it)."""

__version__ = "0.2.0"
