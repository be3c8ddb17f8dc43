"""A tiny random Qwen2-VL judge checkpoint (also the ViSA agents' chat model)."""

from __future__ import annotations

from pathlib import Path

import torch

from .tokenizers import QWEN_SPECIAL_TOKENS, tiny_qwen_tokenizer
from .towers import spread_weights


def save_tiny_qwen2_vl(out: Path, seed: int) -> None:
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
    spread_weights(model)
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], do_sample=False
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28).save_pretrained(out)


def to_transformers_4_layout(folder: Path) -> None:
    """Rewrite a tiny Qwen2-VL folder into the file set and keys transformers 4.4x wrote, as the
    published ``Qwen/Qwen2-VL-2B-Instruct`` and ``Dauka-transformers/Compact_VLM_filter`` have them:
    a flat config (no nested ``text_config``, ``torch_dtype``, ``rope_scaling: {"type": "mrope"}``,
    ``in_chans`` in the vision config), the chat template inside ``tokenizer_config.json`` beside
    ``vocab.json`` / ``merges.txt``, and ``min_pixels`` / ``max_pixels`` as top-level keys of
    ``preprocessor_config.json``. Weight names are already the 4.x ones (``model.layers.*``,
    ``model.embed_tokens.*``, ``visual.*``; the tied ``lm_head`` is not stored)."""
    import json

    config = json.loads((folder / "config.json").read_text())
    text, vision = config.pop("text_config"), config.pop("vision_config")
    rope = text.pop("rope_parameters")
    flat = {key: value for key, value in text.items() if key not in ("model_type", "layer_types", "dtype")}
    flat.update({key: value for key, value in config.items() if key not in ("dtype", "transformers_version")})
    flat.update({
        "rope_theta": rope["rope_theta"], "rope_scaling": {"type": "mrope", "mrope_section": rope["mrope_section"]},
        "sliding_window": text.get("max_position_embeddings"), "torch_dtype": config.get("dtype", "float32"),
        "vision_token_id": config["vision_start_token_id"] + 2, "transformers_version": "4.45.0.dev0",
        "vision_config": {
            "depth": vision["depth"], "embed_dim": vision["embed_dim"], "mlp_ratio": vision["mlp_ratio"],
            "num_heads": vision["num_heads"], "in_chans": vision["in_channels"], "hidden_size": text["hidden_size"],
            "patch_size": vision["patch_size"], "spatial_merge_size": vision["spatial_merge_size"],
            "spatial_patch_size": vision["patch_size"], "temporal_patch_size": vision["temporal_patch_size"],
        },
    })
    (folder / "config.json").write_text(json.dumps(flat, indent=2, sort_keys=True))

    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    added = {str(token["id"]): {"content": token["content"], "lstrip": False, "normalized": False, "rstrip": False,
                                "single_word": False, "special": True} for token in tokenizer["added_tokens"]}
    vocab = tokenizer["model"]["vocab"]
    (folder / "vocab.json").write_text(json.dumps({k: v for k, v in vocab.items() if str(v) not in added}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    template = (folder / "chat_template.jinja").read_text()
    (folder / "chat_template.jinja").unlink()
    names = [token["content"] for token in tokenizer["added_tokens"]]
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_prefix_space": False, "added_tokens_decoder": added,
        "additional_special_tokens": [name for name in names if name != "<|endoftext|>"],
        "bos_token": None, "chat_template": template, "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 32768, "pad_token": "<|endoftext|>",
        "padding_side": "left", "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }, indent=2))

    processor = json.loads((folder / "preprocessor_config.json").read_text())
    size = processor.pop("size")
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": size["shortest_edge"], "max_pixels": size["longest_edge"],
        "patch_size": processor["patch_size"], "temporal_patch_size": processor["temporal_patch_size"],
        "merge_size": processor["merge_size"], "image_mean": processor["image_mean"],
        "image_std": processor["image_std"], "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
    }, indent=2))
    generation = json.loads((folder / "generation_config.json").read_text())
    generation["transformers_version"] = "4.45.0.dev0"
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
