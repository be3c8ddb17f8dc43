"""The frozen configuration every scorer is built from, and the field groups scorers share.

A scorer's identity is its config: a frozen, hashable dataclass that pickles to a few hundred bytes
(``datasets`` fingerprints it, ``num_proc`` workers and Ray actors receive it). Each scorer's config
class combines :class:`ScorerConfig` (``model``, ``revision``, ``device``, ``dtype``) with the field
groups it reads — :class:`ImageFields`, :class:`CaptionFields`, :class:`PipelineFields` — and adds
only its own options. Validation runs once, in ``__post_init__``, through every group's
:meth:`~ScorerConfig.validate`.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class MyConfig(PipelineFields, CaptionFields, ImageFields, ScorerConfig):
    ...     model: str = "me/my-model"
    ...     temperature: float = 1.0
    >>> MyConfig(micro_batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: micro_batch_size must be >= 1 or None, got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Config fields that change no score and no keep decision (a resumed job may change them).
NOT_IDENTITY = {"identity": False}
DTYPES = ("float32", "fp32", "float16", "fp16", "bfloat16", "bf16")


class _Fields:
    """Root of the field groups: ``validate`` chains through every group of a config."""

    def validate(self) -> None:
        """Check the fields of this group (each group calls ``super().validate()``)."""


@dataclass(frozen=True)
class ScorerConfig(_Fields):
    """Fields every scorer has.

    Args:
        model: Hub id or local folder of the checkpoint.
        revision: Hub revision (branch, tag or commit) of ``model``.
        device: ``"cuda"``, ``"cuda:1"``, ``"cpu"``…; ``None`` picks CUDA when available.
        dtype: ``"bfloat16"``, ``"float16"`` or ``"float32"``; ``None`` = bf16 on CUDA, fp32 on CPU.
    """

    model: str = ""
    revision: str | None = None
    device: str | None = field(default=None, metadata=NOT_IDENTITY)
    dtype: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a Hub id or a local folder, got {self.model!r}")
        if self.dtype is not None and str(self.dtype).lower() not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; use bfloat16, float16 or float32")
        if self.device is not None:
            _check_device(self.device)


@dataclass(frozen=True)
class ImageFields(_Fields):
    """Where the image of a row is.

    Args:
        image_column: column holding the image (PIL image, ``{"bytes", "path"}`` dict, bytes or path);
            when it is ``"image"`` and absent, ``image_path`` is used (the seed layout).
        image_root: folder against which relative image paths are resolved.
    """

    image_column: str = "image"
    image_root: str | None = None


@dataclass(frozen=True)
class CaptionFields(_Fields):
    """Where the caption of a row is.

    Args:
        text_column: column holding the caption.
    """

    text_column: str = "caption"


@dataclass(frozen=True)
class PipelineFields(_Fields):
    """How a ``map`` batch is cut into model calls (see :mod:`hf_vlm_filter.scorers.batching`).

    Args:
        micro_batch_size: rows per model call (``None``: the whole ``map`` batch at once).
        prefetch_workers: background threads preparing the next micro-batches while the model runs
            (``0``: none; ``None``: all cores but one when the model is on a GPU, none on CPU).
        group_by_length: put rows of similar cost (the scorer's ``length_hint``) in one micro-batch.
    """

    micro_batch_size: int | None = None
    prefetch_workers: int | None = field(default=None, metadata=NOT_IDENTITY)
    group_by_length: bool = False

    def validate(self) -> None:
        super().validate()
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1 or None, got {self.micro_batch_size}")
        if self.prefetch_workers is not None and self.prefetch_workers < 0:
            raise ValueError(f"prefetch_workers must be >= 0, got {self.prefetch_workers}")


def identity(config: Any) -> dict[str, Any]:
    """The fields of ``config`` that can change a score (``device`` and ``prefetch_workers`` cannot),
    JSON-ready: what a resumable job compares before it continues.

    Example:
        >>> from hf_vlm_filter import ClipConfig
        >>> config = identity(ClipConfig(device="cpu", prefetch_workers=4))
        >>> "device" in config, "prefetch_workers" in config, config["micro_batch_size"]
        (False, False, 256)
    """
    values = {}
    for item in dataclasses.fields(config):
        if item.metadata.get("identity", True):
            value = getattr(config, item.name)
            values[item.name] = list(value) if isinstance(value, tuple) else value
    return values


def _check_device(device: str) -> None:
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cuda, cuda:N or cpu") from None
