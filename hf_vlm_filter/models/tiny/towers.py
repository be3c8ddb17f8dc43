"""Tiny random CLIP, SigLIP and GPT-2 checkpoints (the dual-encoder and language-model scorers)."""

from __future__ import annotations

from pathlib import Path

import torch

from .tokenizers import tiny_clip_tokenizer, tiny_gpt2_tokenizer


def spread_weights(model: torch.nn.Module) -> None:
    # Random init at std 0.02 gives nearly uniform outputs; a wider spread makes scores differ by row.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3 if "embed" in name else 0.15)


def tiny_tower(hidden: int = 32) -> dict:
    return {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2, "num_attention_heads": 4}


def save_tiny_clip(out: Path, seed: int) -> None:
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip import CLIPImageProcessorPil

    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config={**tiny_tower(), "vocab_size": len(tokenizer), "max_position_embeddings": 32,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**tiny_tower(), "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    spread_weights(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)


def save_tiny_siglip(out: Path, seed: int) -> None:
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip import SiglipImageProcessorPil

    tokenizer = tiny_clip_tokenizer()
    config = SiglipConfig(
        text_config={**tiny_tower(), "vocab_size": len(tokenizer), "max_position_embeddings": 16,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**tiny_tower(), "image_size": 32, "patch_size": 8},
    )
    torch.manual_seed(seed)
    model = SiglipModel(config)
    spread_weights(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)


def save_tiny_gpt2(out: Path, seed: int) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_gpt2_tokenizer()
    special = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=special, eos_token_id=special, pad_token_id=special)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    spread_weights(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
