"""Offline generators: turn a real caption into a caption of a lower quality level, with no model.

Each generator is a small function ``(caption, rng, pool) -> Perturbation | None``: ``rng`` is a
``random.Random`` owned by one example (so the output depends on nothing else), ``pool`` holds the
captions of other images read near this one. ``None`` means "not applicable to this caption" (no
colour word to swap, no other caption to borrow): the caller tries another generator of the same level.

=====  ==========================================================================================
level  generators (transformation record)
=====  ==========================================================================================
3      ``original`` — the caption itself
2      ``colour_swap:red->blue``, ``number_swap:two->three``, ``attribute_swap:big->small`` (exactly
       one word replaced), ``drop_details:<dropped words>`` (the output is a strict subsequence)
1      ``object_swap:dog->car`` (the main object replaced by one named in another caption),
       ``generic_label`` ("a photo", "an image of an object", ...)
0      ``other_caption`` (another image's caption, never equal to this one), ``shuffle_words``,
       ``char_noise:<n>`` (disfluent text)
=====  ==========================================================================================

Words are whitespace tokens; a replaced word keeps its surrounding punctuation and its capital.

Example:
    >>> import random
    >>> colour_swap("A red car on the street.", random.Random(0), ()).text != "A red car on the street."
    True
    >>> perturb("two dogs on a beach", 2, random.Random(1), ()).record.split(":")[0] in GENERATORS_BY_LEVEL[2]
    True
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

COLOURS = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "grey",
    "silver", "golden",
)
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve")
#: Attribute words and the opposite each is swapped with.
ATTRIBUTE_OPPOSITES = {
    "big": "small", "small": "big", "large": "tiny", "tiny": "large", "tall": "short", "short": "tall",
    "long": "short", "old": "new", "new": "old", "young": "old", "open": "closed", "closed": "open",
    "empty": "full", "full": "empty", "wet": "dry", "dry": "wet", "hot": "cold", "cold": "hot",
    "sitting": "standing", "standing": "sitting", "left": "right", "right": "left", "wooden": "metal",
    "metal": "wooden", "happy": "sad", "sad": "happy", "dark": "bright", "bright": "dark", "clean": "dirty",
    "dirty": "clean", "smiling": "frowning", "sunny": "cloudy", "cloudy": "sunny", "running": "walking",
    "walking": "running", "inside": "outside", "outside": "inside",
}
#: Nouns that can be a caption's main object (singular; a plural "s" is kept on swap).
OBJECTS = (
    "man", "woman", "person", "child", "boy", "girl", "people", "dog", "cat", "horse", "cow", "sheep", "bird",
    "elephant", "giraffe", "zebra", "bear", "car", "bus", "truck", "train", "bicycle", "bike", "motorcycle",
    "plane", "airplane", "boat", "table", "chair", "bed", "couch", "building", "house", "tree", "flower",
    "street", "road", "beach", "mountain", "pizza", "cake", "sandwich", "cup", "mug", "bowl", "plate",
    "phone", "laptop", "computer", "book", "clock", "kite", "umbrella", "rocket", "astronaut", "coffee",
    "camera", "ball", "bottle", "door", "window", "field", "river", "lake", "city", "kitchen", "room",
)
GENERIC_LABELS = (
    "a photo", "an image", "a picture", "an image of an object", "a photo of something", "stock photo",
    "image", "a picture of a thing",
)
#: Words that start a detail phrase ``drop_details`` can cut ("... on the street", "... with a red roof").
DETAIL_STARTERS = ("on", "in", "with", "near", "at", "under", "behind", "beside", "next", "while", "during", "by")

_TOKEN = re.compile(r"^(\W*)([\w'-]+?)(\W*)$")


@dataclass(frozen=True)
class Perturbation:
    """A generated text and the record of the transformation that made it (``"colour_swap:red->blue"``)."""

    text: str
    record: str


Generator = Callable[[str, random.Random, Sequence[str]], "Perturbation | None"]


def original(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 3: the caption unchanged."""
    return Perturbation(caption, "original") if caption.strip() else None


def colour_swap(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 2: one colour word replaced by another colour."""

    def candidates(word: str) -> list[str]:
        same = {"gray", "grey"} if word in ("gray", "grey") else {word}
        return [colour for colour in COLOURS if colour not in same] if word in COLOURS else []

    return _swap_one_word(caption, rng, "colour_swap", candidates)


def number_swap(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 2: one number (a word up to twelve, or digits) replaced by another."""

    def candidates(word: str) -> list[str]:
        if word in NUMBERS:
            return [number for number in NUMBERS if number not in (word, "one")]
        if word.isdigit() and len(word) <= 4:
            value = int(word)
            return [str(value + step) for step in ((-1, 1, 2) if value > 1 else (1, 2, 3))]
        return []

    return _swap_one_word(caption, rng, "number_swap", candidates)


def attribute_swap(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 2: one attribute word (size, age, state, posture, material...) replaced by its opposite."""
    return _swap_one_word(caption, rng, "attribute_swap", lambda word: [ATTRIBUTE_OPPOSITES.get(word, word)])


def drop_details(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 2: details dropped — a trailing detail phrase, else the colour/attribute words, are removed.

    The output is a strict subsequence of the caption's words; it keeps at least two words and a third
    of the caption.
    """
    words = caption.split()
    shortest = max(2, len(words) // 3)
    cuts = [i for i, word in enumerate(words) if i >= shortest and _bare(word) in DETAIL_STARTERS]
    if cuts:
        cut = rng.choice(cuts)
        kept, dropped = words[:cut], words[cut:]
    else:
        droppable = {i for i, word in enumerate(words) if _bare(word) in COLOURS or _bare(word) in ATTRIBUTE_OPPOSITES}
        kept = [word for i, word in enumerate(words) if i not in droppable]
        dropped = [word for i, word in enumerate(words) if i in droppable]
    if not dropped or len(kept) < shortest:
        return None
    return Perturbation(" ".join(kept), "drop_details:" + " ".join(dropped))


def object_swap(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 1: the main object (the first known noun) replaced by an object named in another caption.

    Objects are taken from ``pool``; when no other caption names a different object, from :data:`OBJECTS`.
    """
    words = caption.split()
    for index, word in enumerate(words):
        noun, plural = object_noun(_bare(word))
        if noun is None:
            continue
        borrowed = sorted({n for text in pool for n in _nouns(text)} - {noun})
        replacement = rng.choice(borrowed) if borrowed else _other(OBJECTS, noun, rng)
        words[index] = _respell(word, _plural(replacement) if plural else replacement)
        if index > 0 and _bare(words[index - 1]) in ("a", "an"):
            words[index - 1] = _respell(words[index - 1], _article_for(replacement))
        return Perturbation(" ".join(words), f"object_swap:{noun}->{replacement}")
    return None


def generic_label(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 1: a generic label that fits any image ("a photo", "an image of an object", ...)."""
    labels = [label for label in GENERIC_LABELS if label != caption.strip().lower()]
    return Perturbation(rng.choice(labels), "generic_label")


def other_caption(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 0: the caption of another image from ``pool`` (never a text equal to this caption)."""
    own = _normalise(caption)
    candidates = sorted({text for text in pool if text.strip() and _normalise(text) != own})
    return Perturbation(rng.choice(candidates), "other_caption") if candidates else None


def shuffle_words(caption: str, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """Level 0: the caption's words in a random order (disfluent; needs three distinct words)."""
    words = caption.split()
    if len(set(words)) < 3:
        return None
    for _ in range(10):
        shuffled = words[:]
        rng.shuffle(shuffled)
        if shuffled != words:
            return Perturbation(" ".join(shuffled), "shuffle_words")
    return None


def char_noise(caption: str, rng: random.Random, pool: Sequence[str], rate: float = 0.35) -> Perturbation | None:
    """Level 0: about ``rate`` of the letters replaced by random letters (unreadable text)."""
    letters = [i for i, char in enumerate(caption) if char.isalpha()]
    if len(letters) < 3:
        return None
    chars = list(caption)
    chosen = rng.sample(letters, max(2, round(rate * len(letters))))
    for i in chosen:
        chars[i] = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != chars[i].lower()])
    return Perturbation("".join(chars), f"char_noise:{len(chosen)}")


GENERATORS_BY_LEVEL: dict[int, dict[str, Generator]] = {
    3: {"original": original},
    2: {"colour_swap": colour_swap, "number_swap": number_swap, "attribute_swap": attribute_swap,
        "drop_details": drop_details},
    1: {"object_swap": object_swap, "generic_label": generic_label},
    0: {"other_caption": other_caption, "shuffle_words": shuffle_words, "char_noise": char_noise},
}

#: How often each generator is tried first within its level (default 1): another image's caption is the
#: most useful level-0 negative, and a wrong main object says more than a generic label.
GENERATOR_WEIGHTS = {"other_caption": 2.0, "shuffle_words": 1.0, "char_noise": 1.0, "object_swap": 1.5,
                     "generic_label": 1.0}

#: A short justification per transformation, for judge targets with ``justify=True``.
JUSTIFICATIONS = {
    "original": "The caption describes the image accurately.",
    "colour_swap": "The caption gets a colour wrong.",
    "number_swap": "The caption gets a count wrong.",
    "attribute_swap": "The caption gets an attribute wrong.",
    "drop_details": "The caption is accurate but leaves out details.",
    "object_swap": "The caption names the wrong main object.",
    "generic_label": "The caption is a generic label.",
    "other_caption": "The caption describes another image.",
    "shuffle_words": "The caption is not fluent text.",
    "char_noise": "The caption is not readable text.",
    "other_document": "The text belongs to another document.",
    "disfluent_document": "The text is not fluent.",
}


def justification(record: str) -> str:
    """The short justification for a transformation record (``"colour_swap:red->blue"`` -> a sentence)."""
    kind = record.split(":", 1)[0].split("@", 1)[0].split("+", 1)[0]
    return JUSTIFICATIONS.get(kind, "")


def perturb(caption: str, level: int, rng: random.Random, pool: Sequence[str]) -> Perturbation | None:
    """A caption at ``level`` (0-3) made by one applicable generator of that level, picked with ``rng``.

    Generators are tried in a random order (weighted by :data:`GENERATOR_WEIGHTS`) until one applies;
    ``None`` when none does.
    """
    if level not in GENERATORS_BY_LEVEL:
        raise ValueError(f"level must be one of 0, 1, 2, 3, got {level!r}")
    remaining = dict(GENERATORS_BY_LEVEL[level])
    while remaining:
        names = list(remaining)
        name = rng.choices(names, weights=[GENERATOR_WEIGHTS.get(n, 1.0) for n in names])[0]
        generate = remaining.pop(name)
        result = generate(caption, rng, pool)
        if result is not None and (level == 3 or _normalise(result.text) != _normalise(caption)):
            return result
    return None


def _swap_one_word(
    caption: str, rng: random.Random, name: str, candidates: Callable[[str], list[str]]
) -> Perturbation | None:
    """Replace one word by one of its ``candidates`` (those an "a"/"an" before it still fits)."""
    words = caption.split()
    options = []
    for index, word in enumerate(words):
        bare = _bare(word)
        article = _bare(words[index - 1]) if index else ""
        fitting = [
            new for new in (candidates(bare) if bare else [])
            if new != bare and (article not in ("a", "an") or _article_for(new) == article)
        ]
        if fitting:
            options.append((index, bare, fitting))
    if not options:
        return None
    index, old, fitting = rng.choice(options)
    new = rng.choice(fitting)
    words[index] = _respell(words[index], new)
    return Perturbation(" ".join(words), f"{name}:{old}->{new}")


def _article_for(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _other(vocabulary: Sequence[str], word: str, rng: random.Random) -> str:
    return rng.choice([w for w in vocabulary if w != word])


def _bare(word: str) -> str:
    """The lower-cased word without surrounding punctuation ("Red," -> "red")."""
    match = _TOKEN.match(word)
    return match.group(2).lower() if match else ""


def _respell(token: str, new: str) -> str:
    """``new`` in place of the word inside ``token``, with its punctuation and leading capital."""
    match = _TOKEN.match(token)
    if not match:
        return new
    lead, word, trail = match.groups()
    if word[:1].isupper():
        new = new[:1].upper() + new[1:]
    return f"{lead}{new}{trail}"


_IRREGULAR_PLURALS = {"man": "men", "woman": "women", "person": "people", "child": "children", "sheep": "sheep",
                      "people": "people", "bus": "buses", "coffee": "coffee"}
_SINGULARS = {plural: singular for singular, plural in _IRREGULAR_PLURALS.items() if plural != singular}


def _plural(noun: str) -> str:
    return _IRREGULAR_PLURALS.get(noun, noun + "s")


def object_noun(word: str) -> tuple[str | None, bool]:
    """The singular object noun ``word`` names and whether it is plural, or ``(None, False)``."""
    if word in _SINGULARS:
        return _SINGULARS[word], True
    if word in OBJECTS:
        return word, False
    if word.endswith("s") and word[:-1] in OBJECTS:
        return word[:-1], True
    return None, False


def _nouns(text: str) -> list[str]:
    return [noun for noun in (object_noun(_bare(word))[0] for word in text.split()) if noun]


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def perturb_document(
    texts: Sequence[str | None], level: int, rng: random.Random, pool: Sequence[Sequence[str | None]]
) -> tuple[list[str | None], str] | None:
    """An interleaved document's ``texts`` (OBELICS layout, ``None`` at image slots) at ``level``.

    The image slots never move. Level 3 keeps the texts; level 2 applies one level-2 generator to one
    text piece; level 1 applies a level-1 generator to every piece (other documents' pieces as the
    pool); level 0 puts another document's pieces (from ``pool``) in the text slots, or makes every
    piece disfluent. Returns ``(texts, record)`` or ``None`` when no generator applies.

    Example:
        >>> import random
        >>> perturb_document(["Two red cars.", None], 2, random.Random(0), [])[0][1] is None
        True
    """
    slots = [i for i, text in enumerate(texts) if text is not None and text.strip()]
    if not slots:
        return None
    out = list(texts)
    if level == 3:
        return out, "original"
    pool_pieces = [piece for document in pool for piece in document if piece]
    if level == 2:
        for index in rng.sample(slots, len(slots)):
            result = perturb(texts[index], 2, rng, pool_pieces)
            if result is not None:
                out[index] = result.text
                return out, f"{result.record}@{index}"
        return None
    if level == 1:
        records = []
        for index in slots:
            result = perturb(texts[index], 1, rng, pool_pieces)
            if result is None:
                return None
            out[index] = result.text
            records.append(result.record)
        return out, "+".join(sorted(set(records)))
    if level != 0:
        raise ValueError(f"level must be one of 0, 1, 2, 3, got {level!r}")
    own = [_normalise(texts[i]) for i in slots]
    others = [[p for p in document if p and p.strip()] for document in pool]
    others = [pieces for pieces in others if pieces and [_normalise(p) for p in pieces] != own]
    if others and rng.random() < 0.5:
        pieces = rng.choice(others)
        for position, index in enumerate(slots):
            out[index] = pieces[position % len(pieces)]
        if len(pieces) > len(slots):
            out[slots[-1]] = "\n\n".join([out[slots[-1]], *pieces[len(slots):]])
        if [_normalise(out[i]) for i in slots] != own:
            return out, "other_document"
    for index in slots:
        result = next(
            (r for r in (g(texts[index], rng, ()) for g in (shuffle_words, char_noise)) if r is not None), None
        )
        if result is None:
            return None
        out[index] = result.text
    return out, "disfluent_document"
