"""Training a UniFilter-style score head: regression on levels 0-3 (one label) or level classes.

The model is :class:`~hf_vlm_filter.models.unifilter.UniFilterModel` (SigLIP tower -> ``aapool_mlp``
projector -> Qwen decoder -> ``score`` head on the last token), loaded with the same strict loader
the scorer uses, fed with exactly the scorer's inputs (:func:`~hf_vlm_filter.models.unifilter.caption_input_ids`
and the checkpoint's SigLIP image processor), and saved back in the published layout, so that a
trained folder loads in :func:`~hf_vlm_filter.scorers.unifilter_score.unifilter_scores` as is.

:func:`new_score_head` writes a randomly initialised checkpoint of a chosen size (byte-level
tokenizer), the starting point for training from scratch (see ``benchmarks/judge_quality.py``).

Example:
    >>> from hf_vlm_filter.training.score_head import ScoreHeadSize, new_score_head
    >>> path = new_score_head("/tmp/scratch-head", ScoreHeadSize(image_size=56, patch_size=7))
    >>> (path / "config.json").is_file(), (path / "model.safetensors").is_file()
    (True, True)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..inputs import ImagePolicy, clean_caption, load_image
from ..models.unifilter import (
    UniFilterModel,
    caption_input_ids,
    head_readout,
    load_unifilter,
    load_unifilter_processors,
    read_spec,
    save_published_checkpoint,
)

if TYPE_CHECKING:
    from datasets import Dataset

    from .options import JudgeTrainingOptions

PAD_ID = 0  # any id: padded positions are cut off before the model sees them


@dataclass(frozen=True)
class ScoreHeadSize:
    """Shape of a score-head model trained from scratch (a SigLIP tower and a Qwen2 decoder).

    Args:
        image_size / patch_size: SigLIP input side and patch side (``image_size % patch_size == 0``).
        vision_hidden / vision_layers / vision_heads: the SigLIP tower.
        text_hidden / text_layers / text_heads: the Qwen2 decoder (``text_heads // 2`` KV heads).
        image_tokens: tokens the projector pools the patch grid to (a square number).
        num_labels: 1 = regression on levels 0-3, 4 = level classes.
        init_std: standard deviation of the decoder's initial weights (``None``: ``1 / sqrt(text_hidden)``;
            transformers' 0.02 suits wide models, and leaves a narrow one on a long plateau).
    """

    image_size: int = 56
    patch_size: int = 7
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    image_tokens: int = 16
    num_labels: int = 1
    init_std: float | None = None

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if round(self.image_tokens ** 0.5) ** 2 != self.image_tokens:
            raise ValueError(f"image_tokens must be a square number, got {self.image_tokens}")
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be positive, got {self.num_labels}")


def new_score_head(out_dir: str | Path, size: ScoreHeadSize = ScoreHeadSize(), seed: int = 0) -> Path:
    """Write a randomly initialised score-head checkpoint of ``size`` (published layout) to ``out_dir``,
    with a byte-level Qwen tokenizer (every byte one token, Qwen's special tokens)."""
    from transformers import Qwen2Config, SiglipVisionConfig
    from transformers.models.siglip import SiglipImageProcessorPil

    from ..models.tiny.tokenizers import tiny_qwen_tokenizer

    tokenizer = tiny_qwen_tokenizer()
    vision = SiglipVisionConfig(hidden_size=size.vision_hidden, intermediate_size=4 * size.vision_hidden,
                                num_hidden_layers=size.vision_layers, num_attention_heads=size.vision_heads,
                                image_size=size.image_size, patch_size=size.patch_size)
    text = {
        "vocab_size": len(tokenizer), "hidden_size": size.text_hidden, "intermediate_size": 4 * size.text_hidden,
        "num_hidden_layers": size.text_layers, "num_attention_heads": size.text_heads,
        "num_key_value_heads": max(1, size.text_heads // 2), "max_position_embeddings": 4096,
        "rope_theta": 10_000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"), "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "hidden_act": "silu",
        "initializer_range": size.init_std if size.init_std is not None else size.text_hidden ** -0.5,
    }
    torch.manual_seed(seed)
    model = UniFilterModel(Qwen2Config(**text), vision, num_labels=size.num_labels, num_image_tokens=size.image_tokens)
    tower = f"siglip-scratch-patch{size.patch_size}-{size.image_size}"
    config = {
        "architectures": ["LlavaQwenClassifier"], "model_type": "llava_qwen", **text,
        "mm_vision_tower": tower, "mm_projector_type": "aapool_mlp", "mm_hidden_size": vision.hidden_size,
        "mm_vision_select_layer": -1, "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat",
        "mm_num_image_tokens": size.image_tokens, "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "use_mm_proj": True, "image_aspect_ratio": "pad", "tokenizer_padding_side": "right",
        "tokenizer_model_max_length": 2048, "torch_dtype": "float32",
    }
    out = Path(out_dir)
    processor = SiglipImageProcessorPil(size={"height": size.image_size, "width": size.image_size},
                                        image_mean=[0.5] * 3, image_std=[0.5] * 3)
    vision.save_pretrained(out / tower)
    processor.save_pretrained(out / tower)
    save_published_checkpoint(model, config, tokenizer, out)
    return out


class ScoreHeadCollator:
    """Rows of a graded dataset -> score-head inputs, exactly as the UniFilter scorer builds them.

    Returns ``input_ids`` (right-padded, with ``IMAGE_TOKEN_INDEX`` at the image slot), ``lengths``,
    ``pixel_values`` and, when rows carry ``level``, ``labels`` (float levels for a regression head,
    class ids otherwise).
    """

    def __init__(self, tokenizer: Any, image_processor: Any, *, num_labels: int, image_column: str = "image",
                 text_column: str = "text", max_text_tokens: int = 75) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.num_labels = num_labels
        self.image_column = image_column
        self.text_column = text_column
        self.max_text_tokens = max_text_tokens

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [caption_input_ids(self.tokenizer, clean_caption(row[self.text_column]), self.max_text_tokens)
               for row in rows]
        images = [load_image(row[self.image_column], ImagePolicy()) for row in rows]
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), PAD_ID, dtype=torch.long)
        for index, row in enumerate(ids):
            input_ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        batch = {
            "input_ids": input_ids,
            "lengths": torch.tensor([len(row) for row in ids], dtype=torch.long),
            "pixel_values": self.image_processor(images=images, return_tensors="pt")["pixel_values"],
        }
        if all("level" in row for row in rows):
            levels = torch.tensor([int(row["level"]) for row in rows])
            batch["labels"] = levels.float() if self.num_labels == 1 else levels
        return batch


class ScoreHeadForTraining(nn.Module):
    """:class:`UniFilterModel` with a loss: MSE on levels (one label) or cross-entropy (classes)."""

    def __init__(self, model: UniFilterModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, pixel_values: torch.Tensor,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        rows = [row[:length].tolist() for row, length in zip(input_ids, lengths.tolist())]
        logits = self.model(rows, pixel_values)
        out = {"logits": logits}
        if labels is not None:
            if self.model.num_labels == 1:
                out["loss"] = nn.functional.mse_loss(logits[:, 0].float(), labels.float())
            else:
                out["loss"] = nn.functional.cross_entropy(logits.float(), labels.long())
        return out


class ScoreHeadRecipe:
    """What :func:`~hf_vlm_filter.training.trainer.train_judge` needs for a score head: the model to
    train, its collator, how to score an evaluation set, and how to save the result."""

    kind = "score_head"
    scale = "level"

    def __init__(self, base_model: str | Path, options: JudgeTrainingOptions) -> None:
        self.base = Path(base_model)
        self.options = options
        self.spec = read_spec(str(base_model))
        self.tokenizer, self.image_processor = load_unifilter_processors(self.spec)
        unifilter = load_unifilter(str(base_model), dtype="float32", device="cpu").train()
        if options.freeze_vision:
            unifilter.vision_tower.requires_grad_(False)
        self.model = ScoreHeadForTraining(unifilter)
        self.collator = ScoreHeadCollator(
            self.tokenizer, self.image_processor, num_labels=unifilter.num_labels,
            image_column=options.image_column, text_column=options.text_column,
            max_text_tokens=options.max_text_tokens,
        )

    @torch.no_grad()
    def score(self, model: nn.Module, dataset: Dataset, batch_size: int) -> list[float]:
        """Scores of every row of ``dataset`` on the 0-3 scale, as the scorer would write them."""
        device = next(model.parameters()).device
        scores: list[float] = []
        for start in range(0, dataset.num_rows, batch_size):
            rows = dataset.select(range(start, min(start + batch_size, dataset.num_rows)))
            batch = self.collator(list(rows))
            batch.pop("labels", None)
            batch = {key: value.to(device) for key, value in batch.items()}
            scores += head_readout(model(**batch)["logits"])[0].cpu().tolist()
        return scores

    def save(self, model: nn.Module, out_dir: str | Path) -> Path:
        """Save in the published layout, with the base checkpoint's vision-tower folder and processor."""
        out = Path(out_dir)
        unifilter = model.model if isinstance(model, ScoreHeadForTraining) else model
        save_published_checkpoint(unifilter, self.spec.raw, self.tokenizer, out)
        tower = self.spec.vision_folder()
        if tower is not None and tower.parent == self.spec.folder:
            shutil.copytree(tower, out / tower.name, dirs_exist_ok=True)
        if (self.spec.folder / "preprocessor_config.json").is_file():
            shutil.copy2(self.spec.folder / "preprocessor_config.json", out / "preprocessor_config.json")
        return out
