"""Tiny random checkpoints, written offline in seconds, for smoke runs, examples and tests.

They are saved with ``save_pretrained`` in the published layouts and are meant to be loaded back
through the same ``from_pretrained`` paths users run; their scores are random but deterministic.
``hf-vlm-filter tiny-model DIR`` writes the judge from the command line.
"""

from __future__ import annotations

from pathlib import Path

from .detection import save_tiny_grounding_dino, save_tiny_sam
from .qwen2_vl import save_tiny_qwen2_vl, to_transformers_4_layout
from .tokenizers import QWEN_SPECIAL_TOKENS, tiny_clip_tokenizer, tiny_gpt2_tokenizer, tiny_qwen_tokenizer
from .towers import save_tiny_clip, save_tiny_gpt2, save_tiny_siglip
from .unifilter import move_tower_out, save_tiny_unifilter

_WRITERS = {
    "compact_vlm": save_tiny_qwen2_vl,
    "clip": save_tiny_clip,
    "siglip": save_tiny_siglip,
    "causal_lm": save_tiny_gpt2,
    "unifilter": save_tiny_unifilter,
    "unifilter_classifier": lambda out, seed: save_tiny_unifilter(out, seed, num_labels=4),
    "sam": save_tiny_sam,
    "grounding_dino": save_tiny_grounding_dino,
}
KINDS = tuple(_WRITERS)
#: File layouts a kind can be written in besides today's: ``"transformers-4"`` (a Qwen2-VL judge as
#: transformers 4.4x saved it, like the published checkpoints), ``"external-tower"`` (a UniFilter
#: checkpoint without its frozen SigLIP tower, which ``mm_vision_tower`` names, as published code reads it).
LAYOUTS = {"compact_vlm": ("transformers-5", "transformers-4"), "unifilter": ("published", "external-tower"),
           "unifilter_classifier": ("published", "external-tower")}

__all__ = ["KINDS", "QWEN_SPECIAL_TOKENS", "save_tiny_model", "tiny_clip_tokenizer", "tiny_gpt2_tokenizer",
           "tiny_qwen_tokenizer"]


def save_tiny_model(out_dir: str | Path, kind: str = "compact_vlm", seed: int = 0, layout: str | None = None) -> Path:
    """Write a complete tiny random checkpoint of ``kind`` to ``out_dir`` and return the path.

    ``kind="compact_vlm"``: a Qwen2-VL judge (weights, config, tokenizer with chat template,
    image-processor config), about 0.5 MB.
    ``kind="clip"`` / ``kind="siglip"``: a CLIPModel / SiglipModel with a byte-level CLIP tokenizer
    and a PIL image-processor config (32x32 images, 32 / 16 text positions), for
    :class:`~hf_vlm_filter.scorers.clip_score.ClipScorer`.
    ``kind="causal_lm"``: a GPT-2 with a byte-level tokenizer (``<|endoftext|>`` as BOS/EOS), for
    :class:`~hf_vlm_filter.scorers.caption_perplexity.CaptionPerplexity`.
    ``kind="unifilter"`` / ``"unifilter_classifier"``: a UniFilter checkpoint in the published LLaVA
    layout (Qwen2 ``config.json`` with ``mm_*`` keys, published weight names, tokenizer, and the SigLIP
    tower's config + preprocessor in the ``mm_vision_tower`` sub-folder), with a regression head
    (``num_labels=1``) or a 4-class head, for :class:`~hf_vlm_filter.scorers.unifilter_score.UniFilterScorer`.
    ``layout``: ``"transformers-4"`` writes the judge in the file layout transformers 4.4x saved (the
    published checkpoints' layout); ``"external-tower"`` writes a UniFilter checkpoint whose
    safetensors omit the SigLIP tower, saved beside it in ``{out_dir}-tower`` and named by
    ``mm_vision_tower`` (see :data:`LAYOUTS`).
    ``kind="sam"`` / ``kind="grounding_dino"``: a SamModel / GroundingDinoForObjectDetection with a PIL
    image processor (and a word-piece BERT tokenizer), for the ViSA agents in :mod:`hf_vlm_filter.visa`.

    Example:
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> path = save_tiny_model("/tmp/tiny-judge")
        >>> {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in path.iterdir()}
        True
    """
    if kind not in _WRITERS:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    layouts = LAYOUTS.get(kind, (None,))
    if layout is not None and layout not in layouts:
        raise ValueError(f"kind {kind!r} is written in layouts {layouts}, not {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _WRITERS[kind](out, seed)
    if layout == "transformers-4":
        to_transformers_4_layout(out)
    elif layout == "external-tower":
        move_tower_out(out)
    return out
