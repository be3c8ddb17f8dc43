"""Word classes and word-level helpers of the offline generators (no model, no tagger).

A swap replaces a word by another of the *same class* so that the caption stays grammatical:
a colour by a colour, a count by a count (both plural, so the noun still agrees), an attribute by
its opposite, an object by an object of the same kind (a cup by a bowl, a dog by a cat — never a
cup by a building). Words are whitespace tokens; a replaced word keeps its punctuation and capital.

Example:
    >>> object_class("dogs"), object_noun("women"), respell("Red,", "blue"), inflect("bus", True)
    ('animal', ('woman', True), 'Blue,', 'buses')
    >>> content_words("Two red cars parked on the street.")
    ['two', 'red', 'cars', 'parked', 'street']
"""

from __future__ import annotations

import re

COLOURS = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "grey",
    "silver", "golden",
)
#: Counts that take a plural noun (``one`` is left alone: swapping it would break the agreement).
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve")
#: Attribute words and the opposite each is swapped with (size, age, state, posture, place, time...).
ATTRIBUTE_OPPOSITES = {
    "big": "small", "small": "big", "large": "tiny", "tiny": "large", "tall": "short", "short": "tall",
    "long": "short", "old": "new", "new": "old", "young": "old", "open": "closed", "closed": "open",
    "empty": "full", "full": "empty", "wet": "dry", "dry": "wet", "hot": "cold", "cold": "hot",
    "sitting": "standing", "standing": "sitting", "left": "right", "right": "left", "wooden": "metal",
    "metal": "wooden", "happy": "sad", "sad": "happy", "dark": "bright", "bright": "dark", "clean": "dirty",
    "dirty": "clean", "smiling": "frowning", "sunny": "cloudy", "cloudy": "sunny", "running": "walking",
    "walking": "running", "inside": "outside", "outside": "inside", "top": "bottom", "bottom": "top",
    "above": "below", "below": "above", "dusk": "dawn", "dawn": "dusk", "day": "night", "night": "day",
    "calm": "rough", "rough": "calm", "modern": "ancient", "ancient": "modern",
}
#: Object nouns (singular) by word class; an object is only ever swapped within its class.
OBJECT_CLASSES: dict[str, tuple[str, ...]] = {
    "person": ("man", "woman", "person", "child", "boy", "girl", "lady", "baby", "player", "surfer", "skier",
               "astronaut", "soldier", "chef", "student", "worker", "farmer", "tourist"),
    "animal": ("dog", "cat", "horse", "cow", "sheep", "bird", "elephant", "giraffe", "zebra", "bear", "duck",
               "goat", "pig", "rabbit", "lion", "tiger", "monkey", "deer", "fox", "squirrel", "puppy", "kitten"),
    "vehicle": ("car", "bus", "truck", "train", "bicycle", "bike", "motorcycle", "plane", "airplane", "boat",
                "ship", "van", "taxi", "tractor", "scooter", "rocket", "helicopter"),
    "furniture": ("table", "chair", "bed", "couch", "sofa", "bench", "desk", "shelf", "cabinet", "stool"),
    "food": ("pizza", "cake", "sandwich", "burger", "salad", "donut", "apple", "banana", "bread", "soup",
             "espresso", "coffee", "tea", "cookie", "pie"),
    "container": ("cup", "mug", "bowl", "plate", "bottle", "glass", "jar", "vase", "basket", "box", "bag",
                  "bucket", "saucer", "tray"),
    "device": ("phone", "laptop", "computer", "camera", "television", "keyboard", "clock", "lamp", "radio"),
    "place": ("street", "road", "beach", "mountain", "field", "river", "lake", "city", "kitchen", "room",
              "park", "forest", "garden", "bridge", "building", "house", "tower", "church", "market", "harbour"),
    "thing": ("book", "kite", "umbrella", "ball", "hat", "helmet", "flag", "toy", "coat", "shirt", "dress",
              "spoon", "fork", "knife", "door", "window", "fence", "sign"),
    "plant": ("tree", "flower", "plant", "bush", "rose", "tulip"),
    "shape": ("circle", "square", "triangle", "rectangle", "star", "diamond"),
}
OBJECTS: tuple[str, ...] = tuple(noun for nouns in OBJECT_CLASSES.values() for noun in nouns)
_CLASS_OF = {noun: name for name, nouns in OBJECT_CLASSES.items() for noun in nouns}
#: Words that start a detail phrase a drop can cut ("... on the street", "... with a red roof").
DETAIL_STARTERS = ("on", "in", "with", "near", "at", "under", "behind", "beside", "next", "while", "during", "by",
                   "against", "between", "over", "through", "from", "along", "around", "across", "among")
#: Words that carry no content (articles, prepositions, pronouns, auxiliaries).
STOPWORDS = frozenset(
    "a an the of and or but on in at to with by for from as is are was were be been being it its this that these "
    "those there here his her their our your my near under behind beside next while during against between over "
    "through along around across among into onto up down off out than then so very".split()
)
#: Words a generic label may consist of ("a photo", "image 3", "untitled picture").
GENERIC_WORDS = frozenset(
    "a an the of some this that photo photos photograph image images picture pictures pic pics img view views "
    "untitled thing things object objects something stuff stock shot snapshot scene item items file here it "
    "is my our new".split()
)

#: Pairs that name the same thing, and hypernyms of their class: never swapped for each other.
SAME_THING: tuple[frozenset[str], ...] = tuple(frozenset(group) for group in (
    ("bike", "bicycle"), ("plane", "airplane"), ("couch", "sofa"), ("cup", "mug"), ("dog", "puppy"),
    ("cat", "kitten"), ("boat", "ship"), ("road", "street"), ("coffee", "espresso"), ("car", "taxi"),
    ("bird", "duck"), ("rectangle", "square"), ("flower", "rose", "tulip"), ("child", "boy", "girl", "baby"),
    ("building", "house", "tower", "church"), ("plant", "tree", "flower", "bush", "rose", "tulip"),
))
#: Nouns that name their whole class (a "person" may be a man): they are never swapped.
HYPERNYMS = frozenset({"person", "plant", "thing"})

_TOKEN = re.compile(r"^(\W*)([\w'-]+?)(\W*)$")
_IRREGULAR_PLURALS = {"man": "men", "woman": "women", "person": "people", "child": "children", "sheep": "sheep",
                      "bus": "buses", "coffee": "coffee", "tea": "tea", "deer": "deer", "lady": "ladies",
                      "baby": "babies", "puppy": "puppies", "shelf": "shelves", "knife": "knives", "glass": "glasses",
                      "box": "boxes", "fox": "foxes", "bench": "benches", "church": "churches", "dress": "dresses",
                      "sandwich": "sandwiches", "bush": "bushes", "city": "cities", "couch": "couches",
                      "bread": "bread", "soup": "soup", "espresso": "espresso"}
_SINGULARS = {plural: singular for singular, plural in _IRREGULAR_PLURALS.items() if plural != singular}


def bare(word: str) -> str:
    """The lower-cased word without surrounding punctuation (``"Red,"`` -> ``"red"``)."""
    match = _TOKEN.match(word)
    return match.group(2).lower() if match else ""


def respell(token: str, new: str) -> str:
    """``new`` in place of the word inside ``token``, with its punctuation and leading capital."""
    match = _TOKEN.match(token)
    if not match:
        return new
    lead, word, trail = match.groups()
    if word[:1].isupper():
        new = new[:1].upper() + new[1:]
    return f"{lead}{new}{trail}"


def article_for(word: str) -> str:
    """``"an"`` before a vowel letter, else ``"a"``."""
    return "an" if word[:1] in "aeiou" else "a"


def inflect(noun: str, plural: bool) -> str:
    """``noun`` (singular) in the plural when ``plural``."""
    return _IRREGULAR_PLURALS.get(noun, noun + "s") if plural else noun


def object_noun(word: str) -> tuple[str | None, bool]:
    """The singular object noun ``word`` names and whether it is plural, or ``(None, False)``."""
    if word in _SINGULARS:
        return _SINGULARS[word], True
    if word == "people":
        return "person", True
    if word in _CLASS_OF:
        return word, False
    if word.endswith("s") and word[:-1] in _CLASS_OF:
        return word[:-1], True
    return None, False


def object_class(word: str) -> str | None:
    """The word class of an object noun (singular or plural), or ``None``."""
    noun, _ = object_noun(bare(word) or word)
    return _CLASS_OF.get(noun) if noun else None


def same_thing(a: str, b: str) -> bool:
    """Whether two object nouns may name the same thing (equal, synonyms, or one a hypernym)."""
    return a == b or a in HYPERNYMS or b in HYPERNYMS or any(a in group and b in group for group in SAME_THING)


def nouns_of(text: str) -> list[str]:
    """The object nouns (singular) a text names, in order."""
    return [noun for noun in (object_noun(bare(word))[0] for word in text.split()) if noun]


def content_words(text: str) -> list[str]:
    """The text's words (bare, lower case) that are not stop words."""
    return [word for word in (bare(token) for token in text.split()) if word and word not in STOPWORDS]


def normalise(text: str) -> str:
    """Lower case, single spaces (the comparison key of two captions)."""
    return " ".join(text.lower().split())


def is_generic(text: str) -> bool:
    """Whether every word of ``text`` is a generic word (``"a photo"``, ``"untitled image"``) or a digit."""
    words = [bare(token) for token in text.split()]
    return bool(words) and all(not word or word in GENERIC_WORDS or word.isdigit() for word in words)


__all__ = [
    "ATTRIBUTE_OPPOSITES", "COLOURS", "DETAIL_STARTERS", "GENERIC_WORDS", "NUMBERS", "OBJECTS", "OBJECT_CLASSES",
    "STOPWORDS", "article_for", "bare", "content_words", "inflect", "is_generic", "normalise", "nouns_of",
    "object_class", "object_noun", "respell", "same_thing",
]
