"""The model generator: an instruct LLM or VLM rewrites a caption into a chosen transformation.

Each model transformation of the rubric table (:data:`~hf_vlm_filter.training.rubric.RUBRIC`) has its
own prompt, in ``hf_vlm_filter/training/prompts/<transformation>.txt`` (ending with a ``{caption}``
placeholder), and so its own target score:

=====  ==========================================================================================
level  model transformations (rubric score)
=====  ==========================================================================================
3      ``model_paraphrase`` (9)
2      ``model_hallucination`` (2), ``model_minor_omission`` (7)
1      ``model_object`` (2), ``model_generic`` (3), ``model_major_omission`` (4)
0      ``model_mismatch`` (1)
=====  ==========================================================================================

The builder draws one transformation of the dealt level per example (:func:`model_transformation`).
Any checkpoint ``AutoModelForCausalLM`` loads works from the caption alone. A Qwen-VL chat checkpoint
with ``sees_image=True`` also *sees the image*: the prompt is a user turn ``[image, prompt + caption]``
built by the judge's own :class:`~hf_vlm_filter.models.qwen_vl_inputs.QwenVLPromptBuilder`, so a
hallucinated detail can be chosen against what the picture shows. Text-only prompts go through the
tokenizer's chat template when it has one, else are used as plain text. Generation is greedy and
batched (left padding); the answer's first non-empty line is the new caption.

The builder records rewritten examples with ``generator = "model:<name>"`` and the transformation,
and falls back to the offline generators of the same level when a rewrite is empty or, below level
3, equal to the source caption.

Example:
    >>> from hf_vlm_filter.training.rewrite import RewriteGenerator, level_prompt, transformation_prompt
    >>> "{caption}" in level_prompt(2, template=True), transformation_prompt("model_generic", "a dog") != ""
    (True, True)
    >>> generator = RewriteGenerator("HuggingFaceTB/SmolLM2-135M-Instruct", levels=(0, 1, 2))  # doctest: +SKIP
    >>> generator.rewrite(["two red cars on a street"], ["model_hallucination"])               # doctest: +SKIP
    ['two blue cars on a street']
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import torch

from ..inputs import ImagePolicy, load_image
from ..models.loading import load_or_explain, resolve_device, resolve_dtype
from .rubric import RUBRIC

logger = logging.getLogger(__name__)

LEVELS = (0, 1, 2, 3)
#: The model transformations of each level, the first being the level's default (and how often each
#: is drawn: hallucinations and mismatches read like real captions, omissions less so).
MODEL_TRANSFORMATIONS: dict[int, dict[str, float]] = {
    0: {"model_mismatch": 1.0},
    1: {"model_object": 2.0, "model_generic": 1.0, "model_major_omission": 1.0},
    2: {"model_hallucination": 2.0, "model_minor_omission": 1.0},
    3: {"model_paraphrase": 1.0},
}
SYSTEM_PROMPT = "You are a helpful assistant."
_CAPTION = "{caption}"


def model_transformation(level: int, rng: random.Random) -> str:
    """A model transformation of ``level``, drawn with ``rng`` by :data:`MODEL_TRANSFORMATIONS`' weights."""
    if level not in MODEL_TRANSFORMATIONS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    names = list(MODEL_TRANSFORMATIONS[level])
    return rng.choices(names, weights=list(MODEL_TRANSFORMATIONS[level].values()))[0]


def _transformation(target: int | str) -> str:
    """A model transformation name, from itself or from a level (the level's default)."""
    if isinstance(target, int) and not isinstance(target, bool):
        if target not in MODEL_TRANSFORMATIONS:
            raise ValueError(f"level must be one of {LEVELS}, got {target!r}")
        return next(iter(MODEL_TRANSFORMATIONS[target]))
    if target not in RUBRIC or not any(target in names for names in MODEL_TRANSFORMATIONS.values()):
        known = [name for names in MODEL_TRANSFORMATIONS.values() for name in names]
        raise ValueError(f"unknown model transformation {target!r}; known: {known}")
    return target


@lru_cache(maxsize=None)
def _prompt_template(name: str) -> str:
    text = resources.files("hf_vlm_filter.training").joinpath(f"prompts/{name}.txt").read_text(encoding="utf-8")
    return text.strip()


def transformation_prompt(target: int | str, caption: str = "", *, template: bool = False) -> str:
    """The rewrite prompt of a model transformation (or of a level's default one) with ``caption``
    filled in (``template=True``: unfilled)."""
    text = _prompt_template(_transformation(target))
    return text if template else text.replace(_CAPTION, caption.strip())


def level_prompt(level: int, caption: str = "", *, template: bool = False) -> str:
    """The rewrite prompt of ``level``'s default model transformation (see :data:`MODEL_TRANSFORMATIONS`)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return transformation_prompt(level, caption, template=template)


@dataclass(frozen=True)
class RewriteConfig:
    """Everything that defines a rewrite run; frozen and picklable.

    Args:
        model: a Hub id or local folder of an instruct causal LM or VLM chat checkpoint.
        revision / device / dtype: as for the scorers (``None`` device = CUDA when present; ``None`` dtype =
            bf16 on CUDA, fp32 on CPU).
        levels: the levels this generator writes; the builder makes other levels offline (level 3 = the
            original caption by default).
        sees_image: give the model the image with the prompt (a Qwen-VL chat checkpoint); the builder
            then passes each row's image.
        min_pixels / max_pixels: the image pixel budget with ``sees_image`` (``None``: the checkpoint's).
        batch_size: prompts per ``generate`` call.
        max_new_tokens: the longest rewrite.
        name: what ``generator`` records after ``"model:"`` (the model id by default).
    """

    model: str
    revision: str | None = None
    device: str | None = None
    dtype: str | None = None
    levels: tuple[int, ...] = (0, 1, 2)
    sees_image: bool = False
    min_pixels: int | None = 4 * 28 * 28
    max_pixels: int | None = 256 * 28 * 28
    batch_size: int = 8
    max_new_tokens: int = 64
    name: str | None = None


class RewriteGenerator:
    """Rewrites captions into model transformations with a transformers chat model (greedy, batched).

    Pickles to its :class:`RewriteConfig` only; the model loads on first use.

    Example:
        >>> generator = RewriteGenerator("/tmp/tiny-lm", device="cpu", max_new_tokens=16)  # doctest: +SKIP
        >>> generator.name                                                                  # doctest: +SKIP
        'model:/tmp/tiny-lm'
    """

    def __init__(self, model: str, **options: Any) -> None:
        self.config = RewriteConfig(model=str(model), **options)
        bad = [level for level in self.config.levels if level not in LEVELS]
        if bad or not self.config.levels:
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {self.config.levels!r}")
        if self.config.batch_size < 1 or self.config.max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be positive")
        self._tokenizer: Any = None
        self._model: Any = None
        self._vision: Any = None

    @property
    def name(self) -> str:
        """The ``generator`` column value of this generator's examples: ``"model:<name>"``."""
        return f"model:{self.config.name or self.config.model}"

    def __getstate__(self) -> dict:
        return asdict(self.config)

    def __setstate__(self, state: dict) -> None:
        self.config = RewriteConfig(**state)
        self._tokenizer = self._model = self._vision = None

    def __repr__(self) -> str:
        return f"RewriteGenerator({self.config!r})"

    def prompt(self, caption: str, target: int | str) -> str:
        """The text model input for rewriting ``caption`` into ``target`` (a model transformation, or a
        level for its default one), through the chat template when there is one."""
        return self._format(self.tokenizer, transformation_prompt(target, caption))

    def rewrite(self, captions: Sequence[str], targets: Sequence[int | str],
                images: Sequence[Any] | None = None) -> list[str | None]:
        """One rewrite per ``(caption, target)``, in order; ``None`` where the model wrote nothing usable.

        ``targets`` are model transformations (or levels: their default one). With ``images`` (one
        image cell per caption: ``{"bytes", "path"}``, a path or a PIL image) the model sees each image
        (a Qwen-VL chat checkpoint).
        """
        if len(captions) != len(targets):
            raise ValueError(f"{len(captions)} captions but {len(targets)} targets")
        if images is not None and len(images) != len(captions):
            raise ValueError(f"{len(captions)} captions but {len(images)} images")
        if not captions:
            return []
        names = [_transformation(target) for target in targets]
        out: list[str | None] = []
        step = self.config.batch_size
        if images is not None:
            tokenizer, model = self.load()
            for start in range(0, len(captions), step):
                inputs = self.vision_inputs(captions[start:start + step], names[start:start + step],
                                            images[start:start + step])
                out.extend(self._generate_ids(tokenizer, model, inputs))
            return out
        tokenizer, model = self.load()
        prompts = [self.prompt(caption, name) for caption, name in zip(captions, names)]
        for start in range(0, len(prompts), step):
            out.extend(self._generate(tokenizer, model, prompts[start:start + step]))
        return out

    def vision_inputs(self, captions: Sequence[str], targets: Sequence[int | str],
                      images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Left-padded model inputs of ``[image, prompt + caption]`` user turns (Qwen-VL checkpoints)."""
        builders, vision_tokenizer = self._vision_builders()
        items = []
        for caption, target, cell in zip(captions, targets, images):
            builder = builders(_transformation(target))
            items.append(builder.build(load_image(cell, ImagePolicy()), caption.strip()))
        return builder.collate(items)

    def _vision_builders(self) -> tuple[Any, Any]:
        """A per-transformation :class:`QwenVLPromptBuilder` factory (cached) and the tokenizer."""
        if self._vision is None:
            from ..models.qwen_vl import load_qwen_vl_processors
            from ..models.qwen_vl_inputs import QwenVLPromptBuilder

            c = self.config
            tokenizer, image_processor = load_qwen_vl_processors(
                c.model, c.revision, min_pixels=c.min_pixels, max_pixels=c.max_pixels, what="rewrite VLM")
            made: dict[str, Any] = {}

            def builder(name: str) -> Any:
                if name not in made:
                    head, _, tail = transformation_prompt(name, template=True).partition(_CAPTION)
                    if tail.strip():
                        raise ValueError(f"the {name} prompt must end with {_CAPTION}")
                    made[name] = QwenVLPromptBuilder(tokenizer, image_processor, system_prompt=SYSTEM_PROMPT,
                                                     user_prefix=head, max_caption_tokens=256)
                return made[name]

            self._vision = (builder, tokenizer)
        return self._vision

    @property
    def tokenizer(self) -> Any:
        """The checkpoint's tokenizer (left padding; EOS pads when it has no pad token), loaded once."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            c = self.config
            tokenizer = load_or_explain(AutoTokenizer.from_pretrained, c.model, "tokenizer", revision=c.revision)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._tokenizer = tokenizer
        return self._tokenizer

    def load(self) -> tuple[Any, Any]:
        """``(tokenizer, model)``, loaded once: a causal LM, else an image-text-to-text (VLM) model."""
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

            c = self.config
            device = resolve_device(c.device)
            kwargs = {"revision": c.revision, "dtype": resolve_dtype(c.dtype, device)}
            try:
                model = AutoModelForCausalLM.from_pretrained(c.model, **kwargs)
            except ValueError:  # a VLM: no causal-LM class for its config
                model = load_or_explain(AutoModelForImageTextToText.from_pretrained, c.model, "chat model", **kwargs)
            except OSError:  # missing or unreachable: the shared, explained error
                model = load_or_explain(AutoModelForCausalLM.from_pretrained, c.model, "chat model", **kwargs)
            self._model = model.to(device).eval()
        return self.tokenizer, self._model

    @staticmethod
    def _format(tokenizer: Any, text: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return f"{text}\nNew caption:"

    @torch.inference_mode()
    def _generate(self, tokenizer: Any, model: Any, prompts: list[str]) -> list[str | None]:
        """Greedy answers to ``prompts``; ``None`` for a prompt too long for the model's positions."""
        limit = _max_positions(model) - self.config.max_new_tokens
        fits = [len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= limit for prompt in prompts]
        if not any(fits):
            return [None] * len(prompts)
        if not all(fits):
            logger.warning("%d prompts are longer than %s can read; their rows fall back to offline generators",
                           fits.count(False), self.config.model)
            answers = iter(self._generate(tokenizer, model, [p for p, ok in zip(prompts, fits) if ok]))
            return [next(answers) if ok else None for ok in fits]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return self._generate_ids(tokenizer, model, dict(inputs))

    @torch.inference_mode()
    def _generate_ids(self, tokenizer: Any, model: Any, inputs: dict[str, torch.Tensor]) -> list[str | None]:
        """Greedy answers to left-padded ``inputs``, cleaned (:func:`clean_rewrite`)."""
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        generated = model.generate(**inputs, do_sample=False, max_new_tokens=self.config.max_new_tokens,
                                   pad_token_id=pad)
        answers = tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return [clean_rewrite(answer) for answer in answers]


def _max_positions(model: Any) -> int:
    config = getattr(model.config, "text_config", None) or model.config
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def clean_rewrite(answer: str) -> str | None:
    """The caption in a model answer: its first non-empty line without a ``Caption:`` prefix or quotes.

    Example:
        >>> clean_rewrite('Caption: "Two blue cars."\\nDone.'), clean_rewrite("   ")
        ('Two blue cars.', None)
    """
    for line in answer.splitlines():
        line = line.strip()
        for prefix in ("new caption:", "caption:"):
            if line.lower().startswith(prefix):
                line = line[len(prefix):].strip()
        line = line.strip("\"'` ")
        if line:
            return line
    return None
