"""Retrying Hub calls: transient failures (HTTP 5xx, 429, dropped connections) are retried with
exponential backoff; anything else, or the last failure, becomes one clear :class:`HubUploadError`.

``huggingface_hub`` retries some requests itself, but not the commit call: a commit answered with
HTTP 500 raises at once. Every upload this package makes goes through :func:`with_hub_retries`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: Seconds before the first retry; doubled after each failure (capped at 30 s).
DEFAULT_BASE_DELAY = 1.0
DEFAULT_ATTEMPTS = 4


class HubUploadError(RuntimeError):
    """An upload to the Hub failed for good (after retries, or at once for a non-transient error)."""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is worth retrying: HTTP 5xx / 429, or a connection-level failure."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        return status is None or status >= 500 or status == 429
    return isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError))


def with_hub_retries(
    call: Callable[[], T],
    what: str,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call()``; retry transient failures up to ``attempts`` times in all, with backoff.

    ``what`` names the operation in log lines and in the final error, e.g. ``"upload data/x.parquet
    to user/repo"``.

    Example:
        >>> with_hub_retries(lambda: 42, "answer")
        42
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    delay = base_delay
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - classified just below
            if not is_transient(exc):
                raise HubUploadError(f"{what} failed: {type(exc).__name__}: {_first_line(exc)}") from exc
            if attempt == attempts:
                raise HubUploadError(
                    f"{what} failed after {attempts} attempts; last error: {type(exc).__name__}: {_first_line(exc)}"
                ) from exc
            logger.warning("%s failed (attempt %d/%d: %s); retrying in %.1fs", what, attempt, attempts,
                           _first_line(exc), delay)
            sleep(delay)
            delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class HubRetry:
    """:func:`with_hub_retries` with its ``attempts`` and ``base_delay`` bound: ``retry(call, what)``.

    Example:
        >>> HubRetry(attempts=2)(lambda: 42, "answer")
        42
    """

    attempts: int = DEFAULT_ATTEMPTS
    base_delay: float = DEFAULT_BASE_DELAY

    def __call__(self, call: Callable[[], T], what: str) -> T:
        return with_hub_retries(call, what, attempts=self.attempts, base_delay=self.base_delay)


def _first_line(exc: BaseException, limit: int = 800) -> str:
    """The error message on one line (a server's list of reasons joined), at most ``limit`` characters."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."
