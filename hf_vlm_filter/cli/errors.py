"""How the command line fails: one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn


class UsageError(Exception):
    """A bad argument or input: one line on stderr, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (no usage block) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments of a repeatable ``flag`` as a dict (``UsageError`` on a malformed one).

    Example:
        >>> pairs(["clip_score=0.28"], "--threshold-for")
        {'clip_score': '0.28'}
    """
    found: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise UsageError(f"{flag} expects NAME=VALUE, got {value!r}")
        found[key.strip()] = rest.strip()
    return found
