"""The model generator: an instruct LLM or VLM rewrites a caption at a requested quality level.

The prompts are the package's own, one per level, in ``hf_vlm_filter/training/prompts/level_{0..3}.txt``
(each has a ``{caption}`` placeholder). Any checkpoint ``AutoModelForCausalLM`` loads works, and VLM
chat checkpoints ``AutoModelForImageTextToText`` loads (the caption is rewritten from text alone). The
prompt goes through the tokenizer's chat template when it has one, else it is used as plain text.
Generation is greedy and batched (left padding); the answer's first non-empty line is the new caption.

The builder records rewritten examples with ``generator = "model:<name>"`` and falls back to the offline
generators of the same level when a rewrite is empty or, below level 3, equal to the source caption.

Example:
    >>> from hf_vlm_filter.training.rewrite import RewriteGenerator, level_prompt
    >>> "{caption}" in level_prompt(2, template=True)
    True
    >>> generator = RewriteGenerator("HuggingFaceTB/SmolLM2-135M-Instruct", levels=(0, 1, 2))  # doctest: +SKIP
    >>> generator.rewrite(["two red cars on a street"], [2])                                   # doctest: +SKIP
    ['two blue cars on a street']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import torch

from ..models.loading import load_or_explain, resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

LEVELS = (0, 1, 2, 3)


@lru_cache(maxsize=None)
def _prompt_template(level: int) -> str:
    return resources.files("hf_vlm_filter.training").joinpath(f"prompts/level_{level}.txt").read_text(encoding="utf-8")


def level_prompt(level: int, caption: str = "", *, template: bool = False) -> str:
    """The package's rewrite prompt for ``level`` with ``caption`` filled in (``template=True``: unfilled)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    text = _prompt_template(level).strip()
    return text if template else text.replace("{caption}", caption.strip())


@dataclass(frozen=True)
class RewriteConfig:
    """Everything that defines a rewrite run; frozen and picklable.

    Args:
        model: a Hub id or local folder of an instruct causal LM or VLM chat checkpoint.
        revision / device / dtype: as for the scorers (``None`` device = CUDA when present; ``None`` dtype =
            bf16 on CUDA, fp32 on CPU).
        levels: the levels this generator writes; the builder makes other levels offline (level 3 = the
            original caption by default).
        batch_size: prompts per ``generate`` call.
        max_new_tokens: the longest rewrite.
        name: what ``generator`` records after ``"model:"`` (the model id by default).
    """

    model: str
    revision: str | None = None
    device: str | None = None
    dtype: str | None = None
    levels: tuple[int, ...] = (0, 1, 2)
    batch_size: int = 8
    max_new_tokens: int = 64
    name: str | None = None


class RewriteGenerator:
    """Rewrites captions at requested levels with a transformers chat model (greedy, batched).

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

    @property
    def name(self) -> str:
        """The ``generator`` column value of this generator's examples: ``"model:<name>"``."""
        return f"model:{self.config.name or self.config.model}"

    def __getstate__(self) -> dict:
        return asdict(self.config)

    def __setstate__(self, state: dict) -> None:
        self.config = RewriteConfig(**state)
        self._tokenizer = self._model = None

    def __repr__(self) -> str:
        return f"RewriteGenerator({self.config!r})"

    def prompt(self, caption: str, level: int) -> str:
        """The full model input for rewriting ``caption`` at ``level`` (chat template applied when there is one)."""
        return self._format(self.tokenizer, level_prompt(level, caption))

    def rewrite(self, captions: Sequence[str], levels: Sequence[int]) -> list[str | None]:
        """One rewrite per ``(caption, level)``, in order; ``None`` where the model wrote nothing usable."""
        if len(captions) != len(levels):
            raise ValueError(f"{len(captions)} captions but {len(levels)} levels")
        if not captions:
            return []
        tokenizer, model = self.load()
        prompts = [self.prompt(caption, level) for caption, level in zip(captions, levels)]
        out: list[str | None] = []
        for start in range(0, len(prompts), self.config.batch_size):
            out.extend(self._generate(tokenizer, model, prompts[start:start + self.config.batch_size]))
        return out

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
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        generated = model.generate(
            **inputs, do_sample=False, max_new_tokens=self.config.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
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
