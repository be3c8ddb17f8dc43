"""Loading checkpoints through the real ``from_pretrained`` paths, with plain errors when offline.

Every scorer loads weights, tokenizers and image processors through these helpers so that a
missing network or a wrong id always ends in the same actionable message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")
#: The process that imported this module; a different pid later means we are in a forked worker
#: (datasets forks through ``multiprocess``, which ``multiprocessing.current_process`` does not see).
_IMPORT_PID = os.getpid()

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class CheckpointUnavailableError(OSError):
    """A checkpoint could not be loaded from a local folder or from the Hugging Face Hub."""


def resolve_device(device: str | None, rank: int | None = None) -> torch.device:
    """``None`` picks CUDA when present, else CPU; with a ``rank``, CUDA devices are used round-robin."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and rank is not None and resolved.index is None and torch.cuda.device_count():
        resolved = torch.device("cuda", rank % torch.cuda.device_count())
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` means bfloat16 on CUDA and float32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None


def is_local(source: str | os.PathLike) -> bool:
    return Path(source).expanduser().is_dir()


def looks_like_path(source: str | os.PathLike) -> bool:
    """A source written as a filesystem path (``./x``, ``/x``, ``~/x``, ``x/y/z``), not a Hub id."""
    text = os.fspath(source)
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text


def load_or_explain(loader: Callable[..., T], source: str, what: str, **kwargs: Any) -> T:
    """Call ``loader(source, **kwargs)``; turn any failure into :class:`CheckpointUnavailableError`.

    The message says whether ``source`` was read as a local folder or as a Hub id, that the Hub may
    be unreachable, and how to point at a local copy instead.
    """
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise CheckpointUnavailableError(explain_unavailable(source, what, exc)) from exc


def explain_unavailable(source: str, what: str, exc: BaseException) -> str:
    if is_local(source):
        return f"Could not load the {what} from the local folder {source!r}: {exc}"
    if looks_like_path(source):
        return f"Could not load the {what}: the local folder {source!r} does not exist"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    reach = "HF_HUB_OFFLINE is set, so" if offline else "either the Hugging Face Hub could not be reached or"
    return (
        f"Could not load the {what} {source!r}: it is not a local folder, and {reach} it has no such "
        f"repository or file. On a machine with access run `hf download {source} --local-dir ./{Path(source).name}` "
        f"and pass that folder instead (model='./{Path(source).name}', or --model on the command line). "
        f"Underlying error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    )


def configure_worker_threads() -> None:
    """In a ``num_proc`` worker, use one intra-op thread.

    A worker forked after torch ran in the parent inherits a dead OpenMP pool and hangs on its
    first parallel op; one thread avoids it (and ``num_proc`` already provides the parallelism).
    Cheap enough to call before every batch.
    """
    if os.getpid() != _IMPORT_PID and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
