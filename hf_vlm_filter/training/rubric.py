"""The one table of judge-training transformations: what each does, its rubric score and its level.

Every graded example is made by one *transformation* of a source caption (or is the caption itself).
The compact judge's rubric (its model card; "Trust the Model" supplementary) gives the score: the
final score is the LOWEST rule that applies — any hallucination <= 2, a generic caption <= 3,
omitting major elements <= 4 (4-6 when the rest is right), a minor detail missing 7-8, a detailed
and accurate caption 9-10. UniFilter's quality levels 0-3 (``mismatched``, ``loosely_related``,
``partially_accurate``, ``accurate``) stay beside the score for the score head, so the level -> score
mapping is per transformation, not per level: a colour swap is ``partially_accurate`` for UniFilter
and a hallucination (2) for the judge.

=======================  =====  =====  ==========================================================
transformation           level  score  what it does (rubric rule that gives the score)
=======================  =====  =====  ==========================================================
original                 3      10     the source caption, passed the source gate (detailed, accurate)
model_paraphrase         3      9      a model rewords the caption, same facts (accurate)
drop_modifier            2      8      one colour / attribute word dropped (minor detail missing)
drop_phrase              2      7      a short trailing detail phrase dropped (minor detail missing)
model_minor_omission     2      7      a model leaves out one minor detail (minor detail missing)
colour_swap              2      2      one colour replaced by another colour (hallucination)
number_swap              2      2      one count replaced by another count (hallucination)
attribute_swap           2      2      one attribute replaced by its opposite (hallucination)
model_hallucination      2      2      a model changes one detail (hallucination)
drop_major               1      4      cut to the main subject, half the content gone (omits major elements)
model_major_omission     1      4      a model keeps only the main subject (omits major elements)
generic_label            1      3      a generic short caption of the same source (generic)
model_generic            1      3      a model writes a generic label (generic)
object_swap              1      2      the main object swapped within its word class (hallucination)
model_object             1      2      a model replaces the main object (hallucination)
neighbour_caption        0      2      the caption of a similar, different image (hallucination)
other_caption            0      1      the caption of a random other image (describes another image)
model_mismatch           0      1      a model describes a different scene (describes another image)
shuffle_words            0      1      opt-in: the caption's words shuffled (not fluent text)
char_noise               0      1      opt-in: a third of the letters replaced (unreadable)
gate_url / gate_file_name / gate_spam / gate_boilerplate
                         0      1      a source caption the gate refused, kept as a negative (no description)
gate_too_short           1      3      a source caption under ``min_words`` words, kept as a negative (generic)
other_document           0      1      documents: another document's texts (describes another document)
disfluent_document       0      1      documents, opt-in: every text piece shuffled or garbled
scene_exact              3      10     scenes: count, colour, shape and position right
scene_one_wrong          2      2      scenes: one of count / colour / shape wrong (hallucination)
scene_two_wrong          1      1      scenes: two of count / colour / shape wrong (hallucination)
scene_other              0      1      scenes: another scene's caption, every fact wrong
=======================  =====  =====  ==========================================================

The judge keeps ``score >= 9``: exactly the level-3 transformations.

Example:
    >>> RUBRIC["colour_swap"].score, RUBRIC["colour_swap"].level, rubric_score("drop_phrase:on the left")
    (2, 2, 7)
    >>> sorted({t.score for t in RUBRIC.values() if t.level == 3})
    [9, 10]
"""

from __future__ import annotations

from dataclasses import dataclass

#: The judge's keep threshold: scores at or above it are positives.
KEEP_SCORE = 9


@dataclass(frozen=True)
class Transformation:
    """One row of the rubric table.

    Args:
        name: the ``transformation`` column value (and the head of the ``generator`` record).
        level: UniFilter level 0-3 (the score head's label).
        score: the compact judge's 1-10 rubric score (the generative judge's target).
        rule: the rubric rule that gives the score.
        does: what the transformation does to the text.
        justification: a one-sentence reason, put before ``score: {N}`` with ``justify=True``.
        opt_in: not made unless asked for (disfluent text: a text-only artefact).
    """

    name: str
    level: int
    score: int
    rule: str
    does: str
    justification: str
    opt_in: bool = False


def _row(name: str, level: int, score: int, rule: str, does: str, justification: str,
         opt_in: bool = False) -> tuple[str, Transformation]:
    return name, Transformation(name, level, score, rule, does, justification, opt_in)


ACCURATE = "detailed and accurate"
MINOR = "accurate, a minor detail missing"
HALLUCINATION = "hallucination"
MAJOR = "omits major elements"
GENERIC = "generic caption"
OTHER = "describes another image"
NOTHING = "describes nothing in the image"

RUBRIC: dict[str, Transformation] = dict([
    _row("original", 3, 10, ACCURATE, "the source caption (passed the source gate)",
         "The caption describes the image accurately and in detail."),
    _row("model_paraphrase", 3, 9, ACCURATE, "a model rewords the caption, same facts",
         "The caption describes the image accurately."),
    _row("drop_modifier", 2, 8, MINOR, "one colour or attribute word dropped",
         "The caption is accurate but leaves out a detail."),
    _row("drop_phrase", 2, 7, MINOR, "a short trailing detail phrase dropped",
         "The caption is accurate but leaves out some details."),
    _row("model_minor_omission", 2, 7, MINOR, "a model leaves out one minor detail",
         "The caption is accurate but leaves out some details."),
    _row("colour_swap", 2, 2, HALLUCINATION, "one colour replaced by another colour",
         "The caption gets a colour wrong."),
    _row("number_swap", 2, 2, HALLUCINATION, "one count replaced by another count",
         "The caption gets a count wrong."),
    _row("attribute_swap", 2, 2, HALLUCINATION, "one attribute replaced by its opposite",
         "The caption gets an attribute wrong."),
    _row("model_hallucination", 2, 2, HALLUCINATION, "a model changes one detail",
         "The caption gets a detail wrong."),
    _row("drop_major", 1, 4, MAJOR, "cut to the main subject: at least half the content words gone",
         "The caption leaves out most of what the image shows."),
    _row("model_major_omission", 1, 4, MAJOR, "a model keeps only the main subject",
         "The caption leaves out most of what the image shows."),
    _row("generic_label", 1, 3, GENERIC, "a generic short caption of the same source",
         "The caption is a generic label."),
    _row("model_generic", 1, 3, GENERIC, "a model writes a generic label",
         "The caption is a generic label."),
    _row("object_swap", 1, 2, HALLUCINATION, "the main object swapped for another of its word class",
         "The caption names the wrong main object."),
    _row("model_object", 1, 2, HALLUCINATION, "a model replaces the main object",
         "The caption names the wrong main object."),
    _row("neighbour_caption", 0, 2, HALLUCINATION, "the caption of a similar, different image",
         "The caption describes a similar but different image."),
    _row("other_caption", 0, 1, OTHER, "the caption of a random other image",
         "The caption describes another image."),
    _row("model_mismatch", 0, 1, OTHER, "a model describes a different scene",
         "The caption describes another image."),
    _row("shuffle_words", 0, 1, "not fluent text", "the caption's words shuffled",
         "The caption is not fluent text.", opt_in=True),
    _row("char_noise", 0, 1, "unreadable text", "about a third of the letters replaced",
         "The caption is not readable text.", opt_in=True),
    _row("gate_url", 0, 1, NOTHING, "a source caption that is a URL", "The caption is a web address."),
    _row("gate_file_name", 0, 1, NOTHING, "a source caption that is a file name", "The caption is a file name."),
    _row("gate_spam", 0, 1, NOTHING, "a source caption that is advertising", "The caption is advertising."),
    _row("gate_boilerplate", 0, 1, NOTHING, "a source caption that is boilerplate",
         "The caption is boilerplate text."),
    _row("gate_too_short", 1, 3, GENERIC, "a source caption shorter than min_words",
         "The caption is too short to describe the image."),
    _row("other_document", 0, 1, OTHER, "documents: another document's texts",
         "The text belongs to another document."),
    _row("disfluent_document", 0, 1, "not fluent text", "documents: every text piece shuffled or garbled",
         "The text is not fluent.", opt_in=True),
    _row("scene_exact", 3, 10, ACCURATE, "scenes: count, colour, shape and position right",
         "The caption describes the image accurately and in detail."),
    _row("scene_one_wrong", 2, 2, HALLUCINATION, "scenes: one of count / colour / shape wrong",
         "The caption gets one fact wrong."),
    _row("scene_two_wrong", 1, 1, HALLUCINATION, "scenes: two of count / colour / shape wrong",
         "The caption gets two facts wrong."),
    _row("scene_other", 0, 1, OTHER, "scenes: another scene's caption, every fact wrong",
         "The caption describes another image."),
])


def transformation_name(record: str) -> str:
    """The transformation a generator record names: ``"colour_swap:red->blue@2"`` -> ``"colour_swap"``.

    A combined record (``"drop_major:...+object_swap:..."``, one transformation per text piece of a
    document) names the one with the lowest score: the rubric's final score is the lowest that applies.
    """
    names = [part.split(":", 1)[0].split("@", 1)[0] for part in record.split("+")]
    known = [name for name in names if name in RUBRIC]
    if len(names) > 1 and known:
        return min(known, key=lambda name: (RUBRIC[name].score, name))
    return names[0]


def transformation(record: str) -> Transformation:
    """The table row of a transformation name or generator record (``KeyError`` names the unknown one)."""
    name = transformation_name(record)
    if name not in RUBRIC:
        raise KeyError(f"unknown transformation {name!r}; known: {sorted(RUBRIC)}")
    return RUBRIC[name]


def rubric_score(record: str) -> int:
    """The rubric score of a transformation name or generator record."""
    return transformation(record).score


def rubric_level(record: str) -> int:
    """The UniFilter level (0-3) of a transformation name or generator record."""
    return transformation(record).level


def rubric_markdown(names: list[str] | None = None) -> str:
    """The table (all rows, or ``names``) as a Markdown table, for READMEs and dataset cards.

    Example:
        >>> print(rubric_markdown(["original", "colour_swap"]))
        | transformation | level | score | rubric rule | what it does |
        |---|---|---|---|---|
        | `original` | 3 | 10 | detailed and accurate | the source caption (passed the source gate) |
        | `colour_swap` | 2 | 2 | hallucination | one colour replaced by another colour |
    """
    rows = ["| transformation | level | score | rubric rule | what it does |", "|---|---|---|---|---|"]
    for name in names if names is not None else list(RUBRIC):
        t = RUBRIC[name]
        does = t.does + (" (opt-in)" if t.opt_in else "")
        rows.append(f"| `{t.name}` | {t.level} | {t.score} | {t.rule} | {does} |")
    return "\n".join(rows)


__all__ = ["KEEP_SCORE", "RUBRIC", "Transformation", "rubric_level", "rubric_markdown", "rubric_score",
           "transformation", "transformation_name"]
