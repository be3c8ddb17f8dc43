"""Tiny random checkpoints, written offline in seconds, for tests and smoke runs.

They are saved with ``save_pretrained`` in the published layout and are meant to be loaded back
through the same ``from_pretrained`` paths users run; their scores are random but deterministic.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .models.qwen_vl_inputs import QWEN_VL_CHAT_TEMPLATE

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
KINDS = ("compact_vlm", "clip", "siglip", "causal_lm", "unifilter", "unifilter_classifier", "sam", "grounding_dino")


def tiny_qwen_tokenizer():
    """A byte-level Qwen2 tokenizer (every byte one token, digits single tokens) with Qwen's specials."""
    from transformers import Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS})
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    return tokenizer


def save_tiny_model(out_dir: str | Path, kind: str = "compact_vlm", seed: int = 0) -> Path:
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
    ``kind="sam"`` / ``kind="grounding_dino"``: a SamModel / GroundingDinoForObjectDetection with a PIL
    image processor (and a word-piece BERT tokenizer), for the ViSA agents in :mod:`hf_vlm_filter.visa`.

    Example:
        >>> from hf_vlm_filter.testing import save_tiny_model
        >>> path = save_tiny_model("/tmp/tiny-judge")
        >>> {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in path.iterdir()}
        True
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    {"compact_vlm": _save_tiny_qwen2_vl, "clip": _save_tiny_clip, "siglip": _save_tiny_siglip,
     "causal_lm": _save_tiny_gpt2, "unifilter": _save_tiny_unifilter,
     "unifilter_classifier": lambda path, s: _save_tiny_unifilter(path, s, num_labels=4),
     "sam": _save_tiny_sam, "grounding_dino": _save_tiny_grounding_dino}[kind](out, seed)
    return out


def tiny_clip_tokenizer():
    """A byte-level CLIP tokenizer without merges: every byte one token (``</w>`` variants for word ends)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {token: index for index, token in enumerate(chars + [c + "</w>" for c in chars])}
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_gpt2_tokenizer():
    """A byte-level GPT-2 tokenizer without merges; ``<|endoftext|>`` is BOS, EOS and padding."""
    from transformers import GPT2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    return GPT2Tokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                         eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def _spread_weights(model: torch.nn.Module) -> None:
    # Random init at std 0.02 gives nearly uniform outputs; a wider spread makes scores differ by row.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3 if "embed" in name else 0.15)


def _tiny_tower(hidden: int = 32) -> dict:
    return {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2, "num_attention_heads": 4}


def _save_tiny_clip(out: Path, seed: int) -> None:
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip import CLIPImageProcessorPil

    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config={**_tiny_tower(), "vocab_size": len(tokenizer), "max_position_embeddings": 32,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**_tiny_tower(), "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    _spread_weights(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)


def _save_tiny_siglip(out: Path, seed: int) -> None:
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip import SiglipImageProcessorPil

    tokenizer = tiny_clip_tokenizer()
    config = SiglipConfig(
        text_config={**_tiny_tower(), "vocab_size": len(tokenizer), "max_position_embeddings": 16,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**_tiny_tower(), "image_size": 32, "patch_size": 8},
    )
    torch.manual_seed(seed)
    model = SiglipModel(config)
    _spread_weights(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)


def _save_tiny_gpt2(out: Path, seed: int) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_gpt2_tokenizer()
    special = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=special, eos_token_id=special, pad_token_id=special)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    _spread_weights(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _save_tiny_qwen2_vl(out: Path, seed: int) -> None:
    from transformers import GenerationConfig, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = tiny_qwen_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1_000_000.0},
            "tie_word_embeddings": True,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    # Random init at std 0.02 gives nearly uniform outputs; a wider spread makes scores differ by row.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3 if "embed" in name else 0.15)
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], do_sample=False
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28).save_pretrained(out)


def _save_tiny_unifilter(out: Path, seed: int, num_labels: int = 1) -> None:
    from transformers import Qwen2Config, SiglipVisionConfig
    from transformers.models.siglip import SiglipImageProcessorPil

    from .models.unifilter import UniFilterModel, save_published_checkpoint

    tokenizer = tiny_qwen_tokenizer()
    tower = "siglip-tiny-patch7-42"
    vision = SiglipVisionConfig(**_tiny_tower(), image_size=42, patch_size=7)
    text = {
        "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
        "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"), "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "hidden_act": "silu",
    }
    torch.manual_seed(seed)
    model = UniFilterModel(Qwen2Config(**text), vision, num_labels=num_labels, num_image_tokens=9)
    _spread_weights(model)
    # The published LLaVA-style config: a Qwen2 config plus the mm_* keys of the training scripts.
    config = {
        "architectures": ["LlavaQwenClassifier"], "model_type": "llava_qwen", **text,
        "mm_vision_tower": tower, "mm_projector_type": "aapool_mlp", "mm_hidden_size": vision.hidden_size,
        "mm_vision_select_layer": -1, "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat",
        "mm_num_image_tokens": 9, "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "use_mm_proj": True, "image_aspect_ratio": "pad", "tokenizer_padding_side": "right",
        "tokenizer_model_max_length": 2048, "torch_dtype": "float32",
    }
    save_published_checkpoint(model, config, tokenizer, out)
    vision.save_pretrained(out / tower)
    SiglipImageProcessorPil(size={"height": 42, "width": 42}, image_mean=[0.5] * 3,
                            image_std=[0.5] * 3).save_pretrained(out / tower)


def _save_tiny_sam(out: Path, seed: int) -> None:
    from .visa.tiny_models import save_tiny_sam

    save_tiny_sam(out, seed)


def _save_tiny_grounding_dino(out: Path, seed: int) -> None:
    from .visa.tiny_models import save_tiny_grounding_dino

    save_tiny_grounding_dino(out, seed)
