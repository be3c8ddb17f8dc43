"""A tiny random UniFilter checkpoint in the published LLaVA layout."""

from __future__ import annotations

from pathlib import Path

import torch

from ..unifilter import UniFilterModel, save_published_checkpoint
from .tokenizers import tiny_qwen_tokenizer
from .towers import spread_weights, tiny_tower


def save_tiny_unifilter(out: Path, seed: int, num_labels: int = 1) -> None:
    from transformers import Qwen2Config, SiglipVisionConfig
    from transformers.models.siglip import SiglipImageProcessorPil

    tokenizer = tiny_qwen_tokenizer()
    tower = "siglip-tiny-patch7-42"
    vision = SiglipVisionConfig(**tiny_tower(), image_size=42, patch_size=7)
    text = {
        "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
        "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"), "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "hidden_act": "silu",
    }
    torch.manual_seed(seed)
    model = UniFilterModel(Qwen2Config(**text), vision, num_labels=num_labels, num_image_tokens=9)
    spread_weights(model)
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


def move_tower_out(out: Path) -> Path:
    """Turn a tiny UniFilter folder into the layout whose safetensors omit the frozen SigLIP tower:
    the tower becomes a ``SiglipVisionModel`` checkpoint (weights, config, image processor) in the
    sibling folder ``{out}-tower``, which ``mm_vision_tower`` names, as a Hub id would be named.
    Returns the tower's folder."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = json.loads((out / "config.json").read_text())
    inside = out / config["mm_vision_tower"]
    prefix = "model.vision_tower.vision_tower.vision_model."
    weights = load_file(str(out / "model.safetensors"))
    tower = SiglipVisionModel(SiglipVisionConfig.from_pretrained(inside))
    getattr(tower, "vision_model", tower).load_state_dict(
        {name[len(prefix):]: t for name, t in weights.items() if name.startswith(prefix)})
    target = out.parent / f"{out.name}-tower"
    tower.save_pretrained(target)
    shutil.copy(inside / "preprocessor_config.json", target / "preprocessor_config.json")
    shutil.rmtree(inside)
    save_file({name: t for name, t in weights.items() if not name.startswith(prefix)}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    config["mm_vision_tower"] = str(target.resolve())
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return target
