"""Offline generators: a real caption turned into a graded caption of a chosen level, with no model.

Each generator is a small function ``(caption, rng, pool) -> Perturbation | None``: ``rng`` is a
``random.Random`` owned by one example (so the output depends on nothing else) and ``pool`` is a
:class:`CaptionPool` of the captions read near this one — those of *similar* images (nearest first,
by a text or image embedding, see :mod:`~hf_vlm_filter.training.neighbours`), of random other images,
and the source's own generic short captions. ``None`` means "not applicable to this caption" (no
colour word to swap, no generic label in the source): the caller tries another generator of the level.

Every transformation's level and rubric score are in :data:`~hf_vlm_filter.training.rubric.RUBRIC`.
What keeps the output realistic (a text-only model should not tell a negative from a positive):

* swaps stay within a word class (:mod:`~hf_vlm_filter.training.words`) and keep the article and
  the agreement; the replacement word comes from the neighbours' captions when they have one, so
  negatives use the source's own vocabulary in the source's own proportions;
* drops cut at a phrase boundary and re-punctuate the end, so a shortened caption reads like a
  short caption;
* level 0 is another image's caption — the most similar one first; generic labels are the source's
  own generic short captions (never a fixed list); shuffled words and character noise are opt-in
  (``noise=True``): they teach a text artefact, not image-text judgment.

Example:
    >>> import random
    >>> colour_swap("A red car on the street.", random.Random(0), ()).text != "A red car on the street."
    True
    >>> perturb("two dogs on a beach", 2, random.Random(1), ()).name in GENERATORS_BY_LEVEL[2]
    True
    >>> object_swap("A cup of espresso on a table.", random.Random(0), CaptionPool(similar=("A bowl of soup.",))).text
    'A bowl of espresso on a table.'
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .rubric import RUBRIC
from .words import (
    ATTRIBUTE_OPPOSITES,
    COLOURS,
    DETAIL_STARTERS,
    NUMBERS,
    OBJECT_CLASSES,
    article_for,
    bare,
    content_words,
    inflect,
    nouns_of,
    normalise,
    object_class,
    object_noun,
    respell,
    same_thing,
    STOPWORDS,
)


@dataclass(frozen=True)
class Perturbation:
    """A generated text, the transformation that made it (a :data:`RUBRIC` key) and its full record
    (``"colour_swap:red->blue"``)."""

    text: str
    record: str

    @property
    def name(self) -> str:
        return self.record.split(":", 1)[0]

    @property
    def score(self) -> int:
        return RUBRIC[self.name].score


@dataclass(frozen=True)
class CaptionPool:
    """Captions a generator may borrow: ``similar`` (of similar, different images, nearest first),
    ``others`` (of random other images) and ``generic`` (generic short captions of the source)."""

    similar: tuple[str, ...] = ()
    others: tuple[str, ...] = ()
    generic: tuple[str, ...] = ()

    @classmethod
    def of(cls, pool: CaptionPool | Sequence[str]) -> CaptionPool:
        """``pool`` itself, or a plain sequence of captions taken as ``others``."""
        return pool if isinstance(pool, CaptionPool) else cls(others=tuple(pool))

    def texts(self) -> tuple[str, ...]:
        """The borrowed captions, similar ones first (where replacement words are looked up)."""
        return self.similar + self.others


PoolLike = CaptionPool | Sequence[str]
Generator = Callable[[str, random.Random, PoolLike], "Perturbation | None"]


def original(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """Level 3: the caption unchanged."""
    return Perturbation(caption, "original") if caption.strip() else None


# ---- swaps (hallucinations): one word replaced within its class --------------------------------------


def colour_swap(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """One colour word replaced by another colour (one the neighbours name, when they name one)."""
    borrowed = _borrowed(pool, lambda word: word in COLOURS)

    def candidates(word: str) -> list[str]:
        if word not in COLOURS:
            return []
        same = {"gray", "grey"} if word in ("gray", "grey") else {word}
        return [[c for c in borrowed if c not in same], [c for c in COLOURS if c not in same]]

    return _swap_one_word(caption, rng, "colour_swap", candidates)


def number_swap(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """One count (two..twelve, or digits of at least 2) replaced by another count; the noun stays plural."""
    borrowed = _borrowed(pool, lambda word: word in NUMBERS)

    def candidates(word: str) -> list[str]:
        if word in NUMBERS:
            return [[n for n in borrowed if n != word], [n for n in NUMBERS if n != word]]
        if word.isdigit() and len(word) <= 4 and int(word) >= 2:
            value = int(word)
            return [[str(value + step) for step in (-1, 1, 2) if value + step >= 2]]
        return []

    return _swap_one_word(caption, rng, "number_swap", candidates)


def attribute_swap(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """One attribute word (size, age, state, posture, place, time of day...) replaced by its opposite."""
    return _swap_one_word(caption, rng, "attribute_swap",
                          lambda word: [[ATTRIBUTE_OPPOSITES[word]]] if word in ATTRIBUTE_OPPOSITES else [])


def object_swap(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """The main object (the first known noun) replaced by another object of its word class.

    The replacement is one the similar images' captions name (nearest first), else one any borrowed
    caption names, else one of its class; never a synonym or a hypernym (a "bike" for a "bicycle").
    The article before it and its number (singular / plural) are kept right.
    """
    pool = CaptionPool.of(pool)
    words = caption.split()
    for index, word in enumerate(words):
        noun, plural = object_noun(bare(word))
        if noun is None:
            continue
        kind = object_class(noun)

        def fits(other: str) -> bool:
            return object_class(other) == kind and not same_thing(noun, other)

        groups = [[n for n in nouns_of(" ".join(pool.similar)) if fits(n)],
                  [n for n in nouns_of(" ".join(pool.others)) if fits(n)],
                  [n for n in OBJECT_CLASSES[kind] if fits(n)]]
        choices = next((group for group in groups if group), None)
        if choices is None:
            return None
        replacement = choices[0] if choices is groups[0] else rng.choice(sorted(set(choices)))
        words[index] = respell(word, inflect(replacement, plural))
        if index > 0 and bare(words[index - 1]) in ("a", "an"):
            words[index - 1] = respell(words[index - 1], article_for(replacement))
        return Perturbation(" ".join(words), f"object_swap:{noun}->{replacement}")
    return None


# ---- drops (omissions): a strict subsequence of the words, re-punctuated -------------------------------


def drop_modifier(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """One colour or attribute word before another content word dropped (a minor detail missing)."""
    words = caption.split()
    if len(content_words(caption)) < 3:
        return None
    options = []
    for index, word in enumerate(words[:-1]):
        modifier, following = bare(word), bare(words[index + 1])
        if modifier not in COLOURS and modifier not in ATTRIBUTE_OPPOSITES or not word[-1:].isalnum():
            continue  # not a modifier, or one in a list ("red, white")
        if not following.isalpha() or following in STOPWORDS or following in ("and", "or"):
            continue  # not before a word it modifies ("on the left.", "red and white")
        if index and (bare(words[index - 1]) in ("and", "or") or words[index - 1].endswith(",")):
            continue
        options.append(index)
    if not options:
        return None
    index = rng.choice(options)
    kept = words[:index] + words[index + 1:]
    if index > 0 and bare(kept[index - 1]) in ("a", "an"):
        kept[index - 1] = respell(kept[index - 1], article_for(bare(kept[index])))
    return Perturbation(_finish(kept, words), f"drop_modifier:{bare(words[index])}")


def drop_phrase(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """A trailing detail phrase ("... on the street") dropped: at most a third of the content words go."""
    words = caption.split()
    content = len(content_words(caption))
    cuts = []
    for cut in range(2, len(words)):
        if bare(words[cut]) not in DETAIL_STARTERS or _dangles(words[cut - 1]):
            continue
        dropped = len(content_words(" ".join(words[cut:])))
        if 1 <= dropped and 3 * dropped <= content and content_words(" ".join(words[:cut])):
            cuts.append(cut)
    if not cuts:
        return None
    cut = rng.choice(cuts)
    return Perturbation(_finish(words[:cut], words), "drop_phrase:" + " ".join(words[cut:]))


def drop_major(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """The caption cut to its main subject: at the first detail phrase after the main object (the
    first known noun), then without colour / attribute words if more than half the content is left.
    Applies when at least half of three or more content words go and the main object stays."""
    words = caption.split()
    content = len(content_words(caption))
    if content < 3:
        return None
    head = next((i for i, word in enumerate(words) if object_noun(bare(word))[0]), None)
    start = head + 1 if head is not None else 2
    cut = next((i for i in range(start, len(words)) if bare(words[i]) in DETAIL_STARTERS), len(words))
    kept = list(range(cut))
    if 2 * len(content_words(" ".join(words[i] for i in kept))) > content:
        kept = [i for i in kept if i == head or bare(words[i]) not in COLOURS and bare(words[i]) not in ATTRIBUTE_OPPOSITES]
        kept = [i for i in kept if bare(words[i]) not in ("and", "or")]
    text = [words[i] for i in kept]
    left = len(content_words(" ".join(text)))
    if not left or 2 * left > content or (head is not None and head not in kept):
        return None
    text = [word.rstrip(",") if i < len(text) - 1 else word for i, word in enumerate(text)]
    for i in range(len(text) - 1):  # an article next to a new word
        if bare(text[i]) in ("a", "an"):
            text[i] = respell(text[i], article_for(bare(text[i + 1])))
    dropped = " ".join(words[i] for i in range(len(words)) if i not in set(kept))
    return Perturbation(_finish(text, words), f"drop_major:{dropped}")


# ---- generic labels and other images' captions ----------------------------------------------------------


def generic_label(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """A generic short caption of the same source ("a photo", "image", "untitled"); ``None`` when the
    source has none (the builder collects them from the captions its gate refuses as too short)."""
    own = normalise(caption)
    labels = sorted({label for label in CaptionPool.of(pool).generic if normalise(label) != own})
    return Perturbation(rng.choice(labels), "generic_label") if labels else None


def neighbour_caption(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """The caption of the first of the similar images (a hard mismatch; the builder puts the one it
    chose for this image first)."""
    own = normalise(caption)
    similar = [text for text in CaptionPool.of(pool).similar if text.strip() and normalise(text) != own]
    return Perturbation(similar[0], "neighbour_caption") if similar else None


def other_caption(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """The caption of a random other image (never a text equal to this caption)."""
    own = normalise(caption)
    candidates = sorted({text for text in CaptionPool.of(pool).others if text.strip() and normalise(text) != own})
    return Perturbation(rng.choice(candidates), "other_caption") if candidates else None


def shuffle_words(caption: str, rng: random.Random, pool: PoolLike) -> Perturbation | None:
    """Opt-in: the caption's words in a random order (disfluent; needs three distinct words)."""
    words = caption.split()
    if len(set(words)) < 3:
        return None
    for _ in range(10):
        shuffled = words[:]
        rng.shuffle(shuffled)
        if shuffled != words:
            return Perturbation(" ".join(shuffled), "shuffle_words")
    return None


def char_noise(caption: str, rng: random.Random, pool: PoolLike, rate: float = 0.35) -> Perturbation | None:
    """Opt-in: about ``rate`` of the letters replaced by random letters (unreadable text)."""
    letters = [i for i, char in enumerate(caption) if char.isalpha()]
    if len(letters) < 3:
        return None
    chars = list(caption)
    chosen = rng.sample(letters, max(2, round(rate * len(letters))))
    for i in chosen:
        chars[i] = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != chars[i].lower()])
    return Perturbation("".join(chars), f"char_noise:{len(chosen)}")


GENERATORS: dict[str, Generator] = {
    "original": original, "colour_swap": colour_swap, "number_swap": number_swap, "attribute_swap": attribute_swap,
    "drop_modifier": drop_modifier, "drop_phrase": drop_phrase, "object_swap": object_swap, "drop_major": drop_major,
    "generic_label": generic_label, "neighbour_caption": neighbour_caption, "other_caption": other_caption,
    "shuffle_words": shuffle_words, "char_noise": char_noise,
}
#: The offline generators of each level (levels from the rubric table).
GENERATORS_BY_LEVEL: dict[int, dict[str, Generator]] = {
    level: {name: generate for name, generate in GENERATORS.items() if RUBRIC[name].level == level}
    for level in (3, 2, 1, 0)
}
#: How often each generator is tried first within its level (default 1). Hallucinations and other
#: images' captions read like real captions; omissions and generic labels can be told from the text
#: alone (shorter than the positives), so they get less weight.
GENERATOR_WEIGHTS = {
    "neighbour_caption": 3.0, "other_caption": 1.0, "shuffle_words": 1.0, "char_noise": 1.0,
    "object_swap": 3.0, "drop_major": 0.5, "generic_label": 0.5,
    "colour_swap": 1.5, "number_swap": 1.5, "attribute_swap": 1.5, "drop_modifier": 0.5, "drop_phrase": 0.5,
}


def justification(record: str) -> str:
    """The short justification for a transformation record (``"colour_swap:red->blue"`` -> a sentence)."""
    from .rubric import transformation_name

    row = RUBRIC.get(transformation_name(record))
    return row.justification if row else ""


def perturb(caption: str, level: int, rng: random.Random, pool: PoolLike, *, noise: bool = False,
            exclude: frozenset[str] | set[str] = frozenset()) -> Perturbation | None:
    """A caption at ``level`` (0-3) made by one applicable generator of that level, picked with ``rng``
    by :data:`GENERATOR_WEIGHTS`; opt-in generators (disfluent text) only with ``noise=True``.

    Returns ``None`` when no generator of the level applies (and never the caption itself below level 3,
    nor a text whose :func:`~hf_vlm_filter.training.words.normalise` form is in ``exclude``: the texts
    already made for this image).
    """
    if level not in GENERATORS_BY_LEVEL:
        raise ValueError(f"level must be one of 0, 1, 2, 3, got {level!r}")
    pool = CaptionPool.of(pool)
    remaining = {name: generate for name, generate in GENERATORS_BY_LEVEL[level].items()
                 if noise or not RUBRIC[name].opt_in}
    while remaining:
        names = list(remaining)
        name = rng.choices(names, weights=[GENERATOR_WEIGHTS.get(n, 1.0) for n in names])[0]
        generate = remaining.pop(name)
        result = generate(caption, rng, pool)
        if result is None or normalise(result.text) in exclude:
            continue
        if level == 3 or normalise(result.text) != normalise(caption):
            return result
    return None


def _borrowed(pool: PoolLike, wanted: Callable[[str], bool]) -> list[str]:
    """Words of the borrowed captions that ``wanted`` accepts, in order, with repeats (so a choice
    follows the source's own frequencies)."""
    return [word for text in CaptionPool.of(pool).texts() for word in map(bare, text.split()) if wanted(word)]


def _swap_one_word(caption: str, rng: random.Random, name: str,
                   candidates: Callable[[str], list[list[str]]]) -> Perturbation | None:
    """Replace one word by a candidate (those an "a"/"an" before it still fits). ``candidates(word)``
    gives groups in order of preference; the first group with a fitting word is drawn from."""
    words = caption.split()
    options = []
    for index, word in enumerate(words):
        word_bare = bare(word)
        article = bare(words[index - 1]) if index else ""
        for group in (candidates(word_bare) if word_bare else []):
            fitting = [new for new in group
                       if new != word_bare and (article not in ("a", "an") or article_for(new) == article)]
            if fitting:
                options.append((index, word_bare, fitting))
                break
    if not options:
        return None
    index, old, fitting = rng.choice(options)
    new = rng.choice(fitting)
    words[index] = respell(words[index], new)
    return Perturbation(" ".join(words), f"{name}:{old}->{new}")


_DANGLING = frozenset({"seen", "lit", "taken", "shown", "held", "made", "covered", "filled", "surrounded"})


def _dangles(word: str) -> bool:
    """Whether a caption ending on ``word`` would end on a verb that needs its phrase ("seen", "looking")."""
    word = bare(word)
    verb_like = len(word) > 4 and word.endswith(("ing", "ed")) and object_noun(word)[0] is None
    return not word or word in STOPWORDS or word in _DANGLING or verb_like


def _finish(kept: list[str], words: list[str]) -> str:
    """``kept`` words as a caption punctuated like ``words``: no dangling comma, the same end mark,
    a capital first letter where the caption had one."""
    kept = list(kept)
    kept[-1] = kept[-1].rstrip(",;:-")
    end = words[-1][-1:] if words[-1][-1:] in ".!?" else ""
    if end and not kept[-1].endswith(end):
        kept[-1] += end
    if words[0][:1].isupper() and kept[0][:1].islower():
        kept[0] = kept[0][:1].upper() + kept[0][1:]
    return " ".join(kept)


def perturb_document(
    texts: Sequence[str | None], level: int, rng: random.Random, pool: Sequence[Sequence[str | None]],
    *, noise: bool = False,
) -> tuple[list[str | None], str] | None:
    """An interleaved document's ``texts`` (OBELICS layout, ``None`` at image slots) at ``level``.

    The image slots never move. Level 3 keeps the texts; level 2 applies one level-2 generator to one
    text piece; level 1 applies a level-1 generator to every piece (other documents' pieces as the
    pool); level 0 puts another document's pieces (from ``pool``) in the text slots, or, with
    ``noise=True`` and no other document, makes every piece disfluent. Returns ``(texts, record)`` or
    ``None`` when no generator applies.

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
    pool_pieces = CaptionPool(others=tuple(piece for document in pool for piece in document if piece))
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
    own = [normalise(texts[i]) for i in slots]
    others = [[p for p in document if p and p.strip()] for document in pool]
    others = [pieces for pieces in others if pieces and [normalise(p) for p in pieces] != own]
    if others:
        pieces = rng.choice(others)
        for position, index in enumerate(slots):
            out[index] = pieces[position % len(pieces)]
        if len(pieces) > len(slots):
            out[slots[-1]] = "\n\n".join([out[slots[-1]], *pieces[len(slots):]])
        if [normalise(out[i]) for i in slots] != own:
            return out, "other_document"
    if not noise:
        return None
    for index in slots:
        result = next((r for r in (g(texts[index], rng, ()) for g in (shuffle_words, char_noise)) if r is not None),
                      None)
        if result is None:
            return None
        out[index] = result.text
    return out, "disfluent_document"
