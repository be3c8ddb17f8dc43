"""The command line's scorer flags, read from the registry: ``--scorer`` choices, the shared options,
and each registered scorer's own options (its ``cli_fields``), typed and documented from its config.

A flag given on the command line sets that option on every selected scorer whose config has it
(``--min-pixels`` reaches the judge and the ViSA VLM agents alike); a flag left out keeps each
scorer's own default.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_scorer_flags(parser)
    >>> args = parser.parse_args(["--scorer", "ppl", "--gguf-file", "m.gguf", "--micro-batch-size", "8"])
    >>> scorer_options(args, "ppl")
    {'micro_batch_size': 8, 'gguf_file': 'm.gguf'}
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from ..scorers.registry import SCORERS

#: Options every scorer that has the field takes from a flag of the same name.
SHARED_FIELDS = ("revision", "device", "dtype", "image_column", "text_column", "micro_batch_size", "prefetch_workers")
#: Choices of option values the flags check (the configs validate every value again).
CHOICES = {
    "dtype": ("bfloat16", "float16", "float32"),
    "mode": ("fast", "reference", "justify"),
    "padding_side": ("right", "left"),
    "attn_implementation": ("sdpa", "eager", "flash_attention_2"),
}
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def option_fields() -> dict[str, tuple[dataclasses.Field, type, str]]:
    """Every option a flag sets: name -> (a config field declaring it, its type, its help text)."""
    found: dict[str, tuple[dataclasses.Field, type, str]] = {}
    for cls in SCORERS.values():
        fields = {item.name: item for item in dataclasses.fields(cls.config_class)}
        for name in (*SHARED_FIELDS, *cls.cli_fields):
            if name in fields and name not in found:
                found[name] = (fields[name], _base_type(fields[name]), _field_help(cls.config_class, name))
    return found


def add_scorer_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--scorer``, ``--model``, ``--model-for`` and one flag per scorer option to ``parser``."""
    parser.add_argument("--scorer", action="append", default=None, metavar="NAME[:LABEL]",
                        help=f"scorer to run: one of {', '.join(SCORERS)} (repeatable; default compact); several run "
                             "in one pass; NAME:LABEL runs another of the same kind, its columns prefixed "
                             "PREFIX_LABEL (clip:siglip writes clip_siglip_score). `hf-vlm-filter scorers` lists them")
    parser.add_argument("--column-prefix", action="append", default=[], metavar="NAME[:LABEL]=PREFIX",
                        help="write scorer NAME[:LABEL]'s columns as PREFIX_score, PREFIX_error... (repeatable)")
    parser.add_argument("--model", default=None,
                        help="checkpoint of the (single) scorer, Hub id or local folder (default: the scorer's)")
    parser.add_argument("--model-for", action="append", default=[], metavar="NAME[:LABEL]=PATH",
                        help="checkpoint of scorer NAME[:LABEL] when several --scorer are given (repeatable)")
    for name, (item, kind, text) in option_fields().items():
        users = [scorer for scorer, cls in SCORERS.items() if name in cls.option_fields()]
        scope = "" if name in SHARED_FIELDS else f" [{', '.join(users)}]"
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{text}{scope}")
        else:
            parser.add_argument(flag, dest=name, type=kind, default=None, choices=CHOICES.get(name),
                                metavar=None if name in CHOICES else name.split("_")[-1].upper(),
                                help=f"{text}{scope}")


def scorer_options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The options of registered scorer ``name`` that the command line set."""
    fields = set(SCORERS[name].option_fields())
    return {option: getattr(args, option) for option in option_fields()
            if option in fields and getattr(args, option, None) is not None}


def _base_type(item: dataclasses.Field) -> type:
    """``int`` for ``int | None``, ``str`` for ``str``… (annotations are strings here)."""
    text = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", "str")
    first = text.split("|")[0].strip()
    return _TYPES.get(first, str)


def _field_help(config_class: type, name: str) -> str:
    """The ``Args:`` line documenting ``name`` in ``config_class``'s docstring or its field groups'."""
    for cls in config_class.__mro__:
        doc = cls.__doc__ or ""
        # the next argument starts at the same indent; its continuation lines are indented further
        match = re.search(rf"^([ \t]+)(?:[\w ]+/ )?{name}(?: / [\w ]+)?: (.+?)(?=^\1\w[\w /]*: |^\s*$|\Z)", doc,
                          re.M | re.S)
        if match:
            text = re.sub(r":\w+:`~?([^`]+)`", r"\1", " ".join(match.group(2).split()))  # Sphinx roles: the name
            return text.replace("``", "").replace("%", "%%")
    return name.replace("_", " ")
