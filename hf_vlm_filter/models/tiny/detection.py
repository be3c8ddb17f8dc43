"""Tiny random SAM and Grounding DINO checkpoints for the ViSA agents, written offline in seconds.

Used through :func:`hf_vlm_filter.models.tiny.save_tiny_model` (``kind="sam"`` and
``kind="grounding_dino"``). Both are saved with ``save_pretrained`` together with a PIL image
processor (and, for Grounding DINO, a word-piece BERT tokenizer), so the agents load them through
the same ``from_pretrained`` calls as the published checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: Grounding DINO's text self-attention masks are built from these hard-coded BERT ids
#: ([CLS], [SEP], ".", "?"); the tiny tokenizer puts its tokens at the same ids.
BERT_SPECIAL_IDS = {"[CLS]": 101, "[SEP]": 102, ".": 1012, "?": 1029}


def tiny_bert_tokenizer(out: Path):
    """A lower-case word-piece tokenizer whose words split into letters (``##x`` pieces)."""
    from transformers import BertTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz0123456789-'"
    pieces = ["[PAD]", "[UNK]", "[MASK]"] + list(letters) + ["##" + c for c in letters] + [",", "!"]
    size = 1100
    vocab = [f"[unused{i}]" for i in range(size)]
    for token, index in BERT_SPECIAL_IDS.items():
        vocab[index] = token
    free = (i for i in range(size) if i not in BERT_SPECIAL_IDS.values())
    for token, index in zip(pieces, free):
        vocab[index] = token
    path = out / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return BertTokenizer(str(path), do_lower_case=True)


def save_tiny_grounding_dino(out: Path, seed: int) -> None:
    """A ~90K-parameter Grounding DINO (Swin backbone, BERT text encoder) with PIL processor."""
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig
    from transformers.models.grounding_dino import GroundingDinoImageProcessorPil

    tokenizer = tiny_bert_tokenizer(out)
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 1],
                          window_size=4, out_features=["stage1", "stage2"], out_indices=[1, 2])
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=128)
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, use_timm_backbone=False, d_model=32, encoder_layers=1,
        decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
        decoder_attention_heads=2, num_queries=12, num_feature_levels=2, encoder_n_points=2,
        decoder_n_points=2, max_text_len=64,
    )
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(out)


def save_tiny_sam(out: Path, seed: int) -> None:
    """A ~60K-parameter SAM (64-pixel input, 16x16 low-resolution masks) with PIL processor."""
    from transformers import SamConfig, SamModel
    from transformers.models.sam import SamImageProcessorPil

    config = SamConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_dim": 64,
                       "image_size": 64, "patch_size": 8, "output_channels": 16, "window_size": 2,
                       "global_attn_indexes": [1], "num_pos_feats": 8},
        prompt_encoder_config={"hidden_size": 16, "image_size": 64, "patch_size": 8, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_dim": 32,
                             "iou_head_hidden_dim": 16},
    )
    torch.manual_seed(seed)
    model = SamModel(config)
    with torch.no_grad():  # a wider spread than the default init, so masks differ between points
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "mask_decoder" in name:
                param.normal_(0.0, 0.3)
    model.save_pretrained(out)
    SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                         mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16}).save_pretrained(out)
