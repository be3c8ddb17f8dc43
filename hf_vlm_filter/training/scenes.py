"""Procedurally drawn scenes with exact captions, and graded captions for judge training.

A :class:`Scene` is a group of identical coloured shapes (``count`` of them, one ``colour`` and
``shape``) drawn with PIL in one region (``position``) of a white canvas. Its caption says all four
facts exactly: ``"two red circles on the left"``. Because the truth is known, the quality level of a
caption is known too — it is the number of facts the caption gets wrong:

=====  =====  ===================  ==============================================================
level  score  transformation       caption
=====  =====  ===================  ==============================================================
3      10     ``scene_exact``      exact: count, colour, shape and position right
2      2      ``scene_one_wrong``  one of count / colour / shape wrong (a hallucination)
1      1      ``scene_two_wrong``  two of count / colour / shape wrong
0      1      ``scene_other``      another scene's caption: count, colour, shape and position all wrong
=====  =====  ===================  ==============================================================

The scores are the rubric's (:data:`~hf_vlm_filter.training.rubric.RUBRIC`): any wrong fact is a
hallucination (at most 2), so only level 3 is kept by the judge.

Example:
    >>> import random
    >>> scene = Scene(count=2, colour="red", shape="circle", position="left")
    >>> scene.caption()
    'two red circles on the left'
    >>> graded_caption(scene, 0, random.Random(0)) != scene.caption()
    True
    >>> ds = scene_dataset(8, seed=0, image_size=56)
    >>> ds.num_rows, ds.features["level"].names[ds[3]["level"]]
    (32, 'accurate')
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage
from PIL import ImageDraw

from .levels import graded_caption_features, judge_target
from .rubric import RUBRIC

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (235, 200, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNTS: tuple[int, ...] = (1, 2, 3)
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
#: The facts a graded caption may get wrong below level 3 (position is only wrong at level 0).
PERTURBABLE: tuple[str, ...] = ("count", "colour", "shape")
_COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
_POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
GENERATOR = "scenes"
#: The transformation (rubric row) of each scene level.
SCENE_TRANSFORMATIONS = {3: "scene_exact", 2: "scene_one_wrong", 1: "scene_two_wrong", 0: "scene_other"}


@dataclass(frozen=True)
class Scene:
    """A group of ``count`` ``colour`` ``shape``\\ s in one ``position`` of the canvas."""

    count: int
    colour: str
    shape: str
    position: str

    def __post_init__(self) -> None:
        for name, value, allowed in (("count", self.count, COUNTS), ("colour", self.colour, tuple(COLOURS)),
                                     ("shape", self.shape, SHAPES), ("position", self.position, POSITIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")

    @classmethod
    def random(cls, rng: random.Random) -> Scene:
        return cls(rng.choice(COUNTS), rng.choice(tuple(COLOURS)), rng.choice(SHAPES), rng.choice(POSITIONS))

    def caption(self) -> str:
        """The exact caption: ``"<count> <colour> <shape>[s] <position phrase>"``."""
        noun = self.shape if self.count == 1 else self.shape + "s"
        return f"{_COUNT_WORDS[self.count]} {self.colour} {noun} {_POSITION_PHRASES[self.position]}"

    def draw(self, size: int = 64, rng: random.Random | None = None) -> PILImage.Image:
        """The scene as an RGB ``size`` x ``size`` image; shape placement jitters with ``rng``."""
        rng = rng or random.Random(0)
        image = PILImage.new("RGB", (size, size), "white")
        pen = ImageDraw.Draw(image)
        half = size // 2
        # region (x0, y0, width, height) of the group, and the axis its shapes are laid along
        region = {"left": (0, 0, half, size), "right": (half, 0, half, size),
                  "top": (0, 0, size, half), "bottom": (0, half, size, half)}[self.position]
        along_y = self.position in ("left", "right")
        x0, y0, width, height = region
        slot = (height if along_y else width) // 3
        radius = max(3, int(slot * 0.38))
        for index in range(self.count):
            centre_along = slot * index + slot // 2 + rng.randint(-1, 1)
            centre_across = (width if along_y else height) // 2 + rng.randint(-2, 2)
            cx, cy = (x0 + centre_across, y0 + centre_along) if along_y else (x0 + centre_along, y0 + centre_across)
            self._draw_shape(pen, cx, cy, radius)
        return image

    def _draw_shape(self, pen: ImageDraw.ImageDraw, cx: int, cy: int, r: int) -> None:
        fill = COLOURS[self.colour]
        if self.shape == "circle":
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif self.shape == "square":
            pen.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)


def _other(values: tuple, current: object, rng: random.Random) -> object:
    return rng.choice([value for value in values if value != current])


def wrong_facts(scene: Scene, facts: tuple[str, ...], rng: random.Random) -> Scene:
    """``scene`` with each fact in ``facts`` replaced by a different value."""
    choices = {"count": COUNTS, "colour": tuple(COLOURS), "shape": SHAPES, "position": POSITIONS}
    return replace(scene, **{fact: _other(choices[fact], getattr(scene, fact), rng) for fact in facts})


def graded_caption(scene: Scene, level: int, rng: random.Random) -> str:
    """A caption of ``scene`` at quality ``level`` 0-3 (see the module table)."""
    if level == 3:
        return scene.caption()
    if level in (1, 2):
        return wrong_facts(scene, tuple(rng.sample(PERTURBABLE, 3 - level)), rng).caption()
    if level == 0:
        return wrong_facts(scene, PERTURBABLE + ("position",), rng).caption()
    raise ValueError(f"level must be one of 0, 1, 2, 3, got {level!r}")


def scene_pairs(num_scenes: int, *, seed: int = 0, image_size: int = 64) -> Dataset:
    """``num_scenes`` random scenes as plain ``image`` / ``caption`` pairs with exact captions.

    A source for :func:`~hf_vlm_filter.training.builder.build_judge_dataset`, whose generic offline
    perturbations then make the lower levels (instead of :func:`scene_dataset`'s scene-aware ones).
    """
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be positive, got {num_scenes}")
    rng = random.Random(seed)
    scenes = [Scene.random(rng) for _ in range(num_scenes)]
    return Dataset.from_dict({"image": [scene.draw(image_size, rng) for scene in scenes],
                              "caption": [scene.caption() for scene in scenes]},
                             features=Features({"image": Image(), "caption": Value("string")}))


def scene_dataset(num_scenes: int, *, seed: int = 0, image_size: int = 64,
                  levels: tuple[int, ...] = (0, 1, 2, 3)) -> Dataset:
    """``num_scenes`` random scenes, each paired with one caption per level in ``levels``.

    Rows follow :func:`~hf_vlm_filter.training.levels.graded_caption_features` (``generator`` is
    ``"scenes"``, ``transformation`` the level's ``scene_*`` row, ``source_id`` is ``"scene-<seed>-<i>"``), so the same trainer and metrics serve
    scene data and graded real data. Different seeds give different (held-out) scenes.
    """
    if num_scenes < 1:
        raise ValueError(f"num_scenes must be positive, got {num_scenes}")
    rng = random.Random(seed)
    rows: dict[str, list] = {name: [] for name in graded_caption_features()}
    for index in range(num_scenes):
        scene = Scene.random(rng)
        image = scene.draw(image_size, rng)
        for level in levels:
            rubric = RUBRIC[SCENE_TRANSFORMATIONS[level]]
            rows["image"].append(image)
            rows["text"].append(graded_caption(scene, level, rng))
            rows["level"].append(level)
            rows["score"].append(rubric.score)
            rows["target"].append(judge_target(rubric.score))
            rows["transformation"].append(rubric.name)
            rows["generator"].append(GENERATOR)
            rows["source_id"].append(f"scene-{seed}-{index}")
    return Dataset.from_dict(rows, features=graded_caption_features())
