"""The one registry of scorers: what the CLI's ``--scorer`` offers, the docs table lists and the
contract tests run.

A scorer is registered by adding its class to :data:`SCORERS` below; its key is the class's
``name``. Everything else — the CLI's choices and per-scorer flags, the README table, the contract
suite — is read from the class's declarations.

Example:
    >>> SCORERS["ppl"].direction, SCORERS["compact"].score_range
    ('lower', (1.0, 10.0))
    >>> print(docs_table().splitlines()[0])
    | `--scorer` | class | columns | score | method |
"""

from __future__ import annotations

from ..visa.instruction_quality import InstructionQuality
from ..visa.object_alignment import ObjectAlignmentScore, ObjectTagCounter
from ..visa.richness import InformationRichness
from ..visa.segmentation import SegmentationComplexity
from .base import Scorer
from .caption_perplexity import CaptionPerplexity
from .clip_score import ClipScorer
from .compact_judge import VLMJudge
from .unifilter_documents import UniFilterDocumentScorer
from .unifilter_score import UniFilterScorer


def _by_name(*classes: type[Scorer]) -> dict[str, type[Scorer]]:
    registry: dict[str, type[Scorer]] = {}
    for cls in classes:
        if not cls.name or cls.name in registry:
            raise ValueError(f"{cls.__name__} needs a unique name, got {cls.name!r}")
        registry[cls.name] = cls
    return registry


#: Registry name -> scorer class, in the order the docs list them.
SCORERS: dict[str, type[Scorer]] = _by_name(
    VLMJudge,
    UniFilterScorer,
    UniFilterDocumentScorer,
    ClipScorer,
    CaptionPerplexity,
    SegmentationComplexity,
    ObjectTagCounter,
    ObjectAlignmentScore,
    InformationRichness,
    InstructionQuality,
)


def scorer_class(name: str) -> type[Scorer]:
    """The registered class called ``name``; ``KeyError`` listing the names when there is none.

    Example:
        >>> scorer_class("clip").__name__
        'ClipScorer'
    """
    try:
        return SCORERS[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; registered: {', '.join(SCORERS)}") from None


def docs_table() -> str:
    """The README's scorer table (markdown), one row per registered scorer.

    Example:
        >>> docs_table().splitlines()[2].split(" | ")[:3]
        ['| `compact`', '`VLMJudge`', '`judge_score`, `judge_error`']
    """
    rows = ["| `--scorer` | class | columns | score | method |", "|---|---|---|---|---|"]
    for name, cls in SCORERS.items():
        specs = cls.__new__(cls).score_specs  # class-level declarations: no config needed
        columns = ", ".join(f"`{column}`" for column in (*(s.column for s in specs), specs[0].error_column))
        rows.append(f"| `{name}` | `{cls.__name__}` | {columns} | {specs[0].describe_range()} | {cls.summary} |")
    return "\n".join(rows)

