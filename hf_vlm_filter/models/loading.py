"""Loading checkpoints through the real ``from_pretrained`` paths, with plain errors when offline.

Every scorer loads weights, tokenizers and image processors through these helpers so that a
missing network or a wrong id always ends in the same actionable message.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

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
    """``None`` picks CUDA when present, else CPU; with a ``rank``, CUDA devices are used round-robin.

    A CUDA device asked for on a machine without one is a ``ValueError`` that says so.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this machine has no usable CUDA device "
                         "(torch.cuda.is_available() is False); use --device cpu / device='cpu'")
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
    """A source written as a filesystem path, not a Hub id: ``./x``, ``/x``, ``~/x``, ``x/y/z``, or
    ``out/judge`` when a local folder ``out`` exists (a Hub id has no such local first part)."""
    text = os.fspath(source)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
        return True
    first = text.split("/", 1)[0]
    return "/" in text and Path(first).is_dir()


def local_model_type(source: str) -> str | None:
    """The ``model_type`` in a local checkpoint folder's ``config.json`` (``None``: not a local
    folder, or no readable config)."""
    import json

    path = Path(source).expanduser() / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (the Hub is not asked; cached files are used)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def hub_reachable(endpoint: str | None = None) -> bool:
    """Whether a TCP connection to the Hub endpoint (``HF_ENDPOINT``) opens within 3 seconds, asked
    once per process and endpoint: an unreachable Hub is then reported at once instead of after the
    clients' retries."""
    from huggingface_hub import constants

    return _reachable(endpoint or constants.ENDPOINT)


@functools.lru_cache(maxsize=None)
def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_source(source: str, what: str, revision: str | None = None) -> str:
    """Where to load ``source`` from: a local folder as it is; a Hub id as it is when the Hub can be
    reached (or ``HF_HUB_OFFLINE`` asks for cached files), else its cached snapshot folder.

    Raises :class:`CheckpointUnavailableError` at once for a missing local folder and for a Hub id
    that is neither reachable nor cached.
    """
    if is_local(source):
        return source
    if looks_like_path(source):
        raise CheckpointUnavailableError(f"Could not load the {what}: the local folder {source!r} does not exist")
    if hub_offline() or hub_reachable():
        return source
    cached = cached_snapshot(source, revision)
    if cached is not None:
        return cached
    raise CheckpointUnavailableError(
        f"Could not load the {what} {source!r}: it is not a local folder, the Hugging Face Hub cannot be reached "
        f"from this machine and it is not in the local cache. On a machine with access run `hf download {source} "
        f"--local-dir ./{Path(source).name}` and pass that folder instead (model='./{Path(source).name}', or "
        "--model on the command line); with a cached copy, set HF_HUB_OFFLINE=1."
    )


def cached_snapshot(source: str, revision: str | None = None) -> str | None:
    """The folder of ``source``'s cached snapshot (model repos), or ``None`` when it is not cached."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(source, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or not a valid id): the caller explains
        return None


def load_or_explain(loader: Callable[..., T], source: str, what: str, **kwargs: Any) -> T:
    """Call ``loader(source, **kwargs)``; turn any failure into :class:`CheckpointUnavailableError`.

    The message says whether ``source`` was read as a local folder or as a Hub id, that the Hub may
    be unreachable, and how to point at a local copy instead; a missing folder or an unreachable
    Hub fail at once (:func:`resolve_source`).
    """
    where = resolve_source(source, what, kwargs.get("revision"))
    if where != source:
        kwargs.pop("revision", None)  # a cached snapshot folder is already that revision
    try:
        return loader(where, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise CheckpointUnavailableError(explain_unavailable(source, what, exc)) from exc


#: Checkpoint files whose name, size and modification time make up a local checkpoint's identity.
IDENTITY_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".txt", ".model", ".jinja")


def checkpoint_identity(source: str | None, revision: str | None = None) -> str | None:
    """A short digest that changes when the checkpoint ``source`` changes.

    A local folder: the names, sizes and modification times of its weight, config and tokenizer
    files (and those one folder down, e.g. a UniFilter tower), read with ``stat`` only. A Hub id: the
    commit its revision resolves to — asked of the Hub when it can be reached, else the cached
    snapshot's. ``None`` when neither is known (nothing to compare).

    Example:
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> path = str(save_tiny_model("/tmp/tiny-lm", kind="causal_lm"))
        >>> checkpoint_identity(path) == checkpoint_identity(path), len(checkpoint_identity(path))
        (True, 16)
    """
    if source is None:
        return None
    if is_local(source):
        return _folder_identity(str(Path(source).expanduser().resolve()))
    if looks_like_path(source):
        return None
    from huggingface_hub import constants

    return _hub_identity(source, revision, constants.ENDPOINT)


def _folder_identity(folder: str) -> str:
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted([*root.glob("*"), *root.glob("*/*")]):
        if path.is_file() and path.suffix in IDENTITY_SUFFIXES:
            stat = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _hub_identity(source: str, revision: str | None, endpoint: str) -> str | None:
    if not hub_offline() and hub_reachable():
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(source, revision=revision, timeout=10).sha
        except Exception:  # noqa: BLE001 - not found, private, a dataset...: fall back on the cache
            pass
    cached = cached_snapshot(source, revision)
    return Path(cached).name if cached else None


def explain_unavailable(source: str, what: str, exc: BaseException) -> str:
    if is_local(source):
        return f"Could not load the {what} from the local folder {source!r}: {_first_line(exc)}"
    if looks_like_path(source):
        return f"Could not load the {what}: the local folder {source!r} does not exist"
    offline = hub_offline()
    reach = "HF_HUB_OFFLINE is set, so" if offline else "either the Hugging Face Hub could not be reached or"
    return (
        f"Could not load the {what} {source!r}: it is not a local folder, and {reach} it has no such "
        f"repository or file. On a machine with access run `hf download {source} --local-dir ./{Path(source).name}` "
        f"and pass that folder instead (model='./{Path(source).name}', or --model on the command line). "
        f"Underlying error: {type(exc).__name__}: {_first_line(exc)}"
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def configure_worker_threads() -> None:
    """In a ``num_proc`` worker, use one intra-op thread.

    A worker forked after torch ran in the parent inherits a dead OpenMP pool and hangs on its
    first parallel op; one thread avoids it (and ``num_proc`` already provides the parallelism).
    Cheap enough to call before every batch.
    """
    if os.getpid() != _IMPORT_PID and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
