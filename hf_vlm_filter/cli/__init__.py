"""The ``hf-vlm-filter`` command line: score or filter a dataset with registered scorers, write Parquet.

Examples::

    hf-vlm-filter tiny-model out/tiny-judge
    hf-vlm-filter score examples/sample/pairs.json --model out/tiny-judge --out out/scored
    hf-vlm-filter filter some/hub-dataset --streaming --threshold 9 --out out/kept
    hf-vlm-filter filter some/hub-dataset --scorer compact --scorer clip --threshold 9 \\
        --threshold-for clip_score=0.28 --out out/kept
    hf-vlm-filter filter pairs.parquet --scorer ppl --model ./lm --threshold 340 --out out/fluent
    hf-vlm-filter scorers

Subcommands: ``score`` / ``filter`` (:mod:`.score_filter`), ``visa-select`` (:mod:`.visa_select`),
``report`` (:mod:`.report`: the HTML report of an output folder again, or another cut previewed),
``tiny-model`` (a tiny random judge for offline smoke runs), ``scorers`` (the registry as a table).
The ``--scorer`` choices and the per-scorer flags come from the registry
(:mod:`hf_vlm_filter.scorers.registry`). Exit codes: 0 success, 1 checkpoint unavailable, 2 bad
arguments or source, 3 Hub upload failed or job state refused, 4 the output could not be written
(disk full, read-only folder), 130 interrupted (Ctrl-C; a streaming job prints its ``--resume`` command).
"""

from __future__ import annotations

import argparse
import errno
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from . import calibrate, report, score_filter, visa_select
from .errors import OneLineParser, UsageError

PROG = "hf-vlm-filter"
#: Modules that add subcommands: each has ``register(commands)``, which adds its parsers and sets
#: ``handler=callable(args) -> exit code`` as their default.
COMMAND_MODULES = (score_filter, visa_select, calibrate, report)

#: ``OSError`` numbers that mean the output cannot be written (exit code 4).
WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EFBIG}

__all__ = ["PROG", "UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from .._version import __version__

    parser = OneLineParser(prog=PROG, description="Judge image-text data with compact VLMs; keep the best of it.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in COMMAND_MODULES:
        module.register(commands)
    tiny = commands.add_parser("tiny-model", help="write a tiny random judge checkpoint (offline smoke runs)")
    tiny.add_argument("out_dir", type=Path)
    tiny.set_defaults(handler=_tiny_model)
    listing = commands.add_parser("scorers", help="list the registered scorers (names, columns, directions)")
    listing.set_defaults(handler=_list_scorers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 checkpoint unavailable, 2 bad input, 3 Hub/job)."""
    from ..engines.streaming import JobStateError
    from ..hub.retry import HubUploadError
    from ..inputs.sources import SourceError
    from ..models.loading import CheckpointUnavailableError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        args = build_parser().parse_args(argv)
        args.command_line = " ".join([PROG, *(shlex.quote(arg) for arg in argv)])
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        if getattr(args, "streaming", False):
            again = args.command_line if "--resume" in argv else f"{args.command_line} --resume"
            print(f"{PROG}: the job is checkpointed in {args.out}; continue it with:\n  {again}", file=sys.stderr)
        return 130
    except CheckpointUnavailableError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (HubUploadError, JobStateError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 3
    except (UsageError, SourceError, FileNotFoundError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        hint = "; free space or fix the folder, then run the same command with --resume" if getattr(
            args, "streaming", False) else "; free space or fix the folder and run again"
        print(f"{PROG}: error: could not write the output{where}: {exc.strerror}{hint}", file=sys.stderr)
        return 4


def _tiny_model(args: argparse.Namespace) -> int:
    from ..models.tiny import save_tiny_model

    print(save_tiny_model(args.out_dir))
    return 0


def _list_scorers(args: argparse.Namespace) -> int:
    from ..scorers.registry import docs_table

    print(docs_table())
    return 0
