"""Caption perplexity under a causal language model, as a ``datasets`` map scorer.

A text-only fluency signal: garbled, keyword-stuffed or machine-broken captions get a high
perplexity. Any checkpoint ``AutoModelForCausalLM`` loads works (default ``gpt2``), including GGUF
files (``gguf_file=...``; needs the ``gguf`` and ``accelerate`` packages).

Each caption is tokenised without special tokens, truncated to ``max_caption_tokens`` and, when the
tokenizer has a BOS token, prefixed with it so that the first word is scored too (without one, the
first token is context only). Perplexity is ``exp`` of the mean negative log-likelihood over the
caption tokens. Rows are batched with padding on ``padding_side`` (right by default); pad positions
are masked out of attention and of the loss, and with left padding position ids are taken from the
mask, so a padded batch gives the same values as scoring each caption alone.

Columns written: ``caption_ppl`` (float32 >= 1, NaN when not scored) and ``caption_ppl_error``
(``""`` or a reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..inputs import RowError, clean_caption
from ..models.loading import load_or_explain
from ..models.plain_text import plain_text_ids
from .base import Batch, Scorer
from .config import CaptionFields, PipelineFields, ScorerConfig

DEFAULT_LM = "gpt2"
PADDING_SIDES = ("right", "left")


@dataclass(frozen=True)
class PerplexityConfig(PipelineFields, CaptionFields, ScorerConfig):
    """Everything that defines a caption-perplexity run; frozen, hashable and picklable.

    Shared fields are those of :mod:`hf_vlm_filter.scorers.config`.

    Args:
        gguf_file: name of a GGUF file inside ``model`` to load instead of safetensors weights.
        max_caption_tokens: captions are truncated to this many tokens (BOS not counted).
        add_bos: prepend the tokenizer's BOS token; ``None`` = when the tokenizer has one.
        padding_side: ``"right"`` or ``"left"``; results are the same, only the layout differs.
    """

    model: str = DEFAULT_LM
    gguf_file: str | None = None
    max_caption_tokens: int = 128
    add_bos: bool | None = None
    padding_side: str = "right"

    def validate(self) -> None:
        super().validate()
        if self.max_caption_tokens < 1:
            raise ValueError("max_caption_tokens must be positive")
        if self.padding_side not in PADDING_SIDES:
            raise ValueError(f"padding_side must be one of {PADDING_SIDES}, not {self.padding_side!r}")


class _Tokenization:
    """The tokenizer of one checkpoint and the caption-to-ids rule (CPU only)."""

    def __init__(self, config: PerplexityConfig) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = load_or_explain(
            AutoTokenizer.from_pretrained,
            config.model,
            "language-model tokenizer",
            revision=config.revision,
            **({"gguf_file": config.gguf_file} if config.gguf_file else {}),
        )
        bos = self.tokenizer.bos_token_id
        if config.add_bos and bos is None:
            raise ValueError(f"add_bos=True but the tokenizer of {config.model!r} has no BOS token")
        self.prefix = [bos] if bos is not None and config.add_bos is not False else []
        self.max_tokens = config.max_caption_tokens
        token = self.tokenizer.pad_token_id
        self.pad_id = token if token is not None else (self.tokenizer.eos_token_id or 0)

    def ids(self, caption: str) -> list[int]:
        caption_ids = plain_text_ids(self.tokenizer, caption)[: self.max_tokens]
        ids = self.prefix + caption_ids
        if len(ids) < 2:
            raise RowError("caption is a single token and the tokenizer has no BOS: nothing to score")
        return ids


def pad_batch(ids: list[list[int]], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Token id lists to ``input_ids``, ``attention_mask`` and ``position_ids`` (counted from each row's first token)."""
    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, tokens in enumerate(ids):
        span = slice(0, len(tokens)) if side == "right" else slice(width - len(tokens), width)
        input_ids[row, span] = torch.tensor(tokens, dtype=torch.long)
        mask[row, span] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sum of next-token negative log-likelihoods over real target tokens, and their count.

    A target counts when it and the token predicting it are both real (not padding).
    """
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = input_ids[:, 1:]
    nll = -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    keep = (mask[:, 1:] * mask[:, :-1]).bool()
    return torch.where(keep, nll, 0.0).sum(-1), keep.sum(-1).to(nll.dtype)


class CaptionPerplexity(Scorer):
    """Caption perplexity under a causal LM as a batched ``datasets`` map function.

    Pickles to its :class:`PerplexityConfig` only; the checkpoint is loaded on first use and shared
    by every scorer of the same configuration in the process.

    Example:
        >>> from datasets import Dataset
        >>> from hf_vlm_filter import CaptionPerplexity
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> path = save_tiny_model("/tmp/tiny-lm", kind="causal_lm")
        >>> ppl = CaptionPerplexity.from_pretrained(path, device="cpu")
        >>> out = Dataset.from_dict({"caption": ["a red bus", "  "]}).map(ppl, batched=True)
        >>> out[0]["caption_ppl"] >= 1.0, out[1]["caption_ppl_error"]
        (True, 'empty caption')

    Args:
        model: Hub id or local folder (default ``gpt2``).
        **options: any other :class:`PerplexityConfig` field.
    """

    prefix = "caption"
    score_name = "ppl"
    name = "ppl"
    summary = "caption fluency under a causal LM (perplexity)"
    config_class = PerplexityConfig
    direction = "lower"
    score_range = (1.0, None)
    input_fields = ("text_column",)
    preprocessing_class = _Tokenization
    preprocessing_fields = ("model", "revision", "gguf_file", "max_caption_tokens", "add_bos")
    model_fields = ("model", "revision", "gguf_file")
    cli_fields = ("gguf_file", "max_caption_tokens", "padding_side")

    def load_model(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        extra = {"gguf_file": self.config.gguf_file} if self.config.gguf_file else {}
        model = load_or_explain(
            AutoModelForCausalLM.from_pretrained,
            self.config.model,
            "language model",
            revision=self.config.revision,
            dtype=dtype,
            **extra,
        )
        return model.to(device).eval()

    # ---- the scorer hooks -------------------------------------------------------------------
    def prepare(self, batch: Batch, index: int) -> list[int]:
        return self.preprocessing.ids(clean_caption(self.cell(batch, "text_column", index)))

    @torch.inference_mode()
    def score_prepared(self, items: list[list[int]], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        inputs = pad_batch(items, self.preprocessing.pad_id, self.config.padding_side)
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        logits = model(**inputs).logits
        total, count = token_nll(logits, inputs["input_ids"], inputs["attention_mask"])
        ppl = torch.exp(total / count).cpu().tolist()
        return [{self.score_column: value} for value in ppl]


def caption_perplexity(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function: adds ``caption_ppl`` and ``caption_ppl_error``.

    ``options`` are :class:`PerplexityConfig` fields, given through ``fn_kwargs``.

    Example:
        >>> ds = ds.map(caption_perplexity, batched=True, batch_size=64)             # doctest: +SKIP
        >>> ds = ds.map(caption_perplexity, batched=True,
        ...             fn_kwargs={"model": "./smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"})  # doctest: +SKIP
    """
    return CaptionPerplexity.shared_instance(**options)(batch, rank)
