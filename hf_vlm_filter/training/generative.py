"""Training a generative Qwen2-VL-family judge to answer ``score: {N}`` to the compact judge's prompt.

Each training sequence is the judge's own prompt — built by the same
:class:`~hf_vlm_filter.models.qwen_vl_inputs.QwenVLPromptBuilder` with the same system prompt and
user prefix as :class:`~hf_vlm_filter.scorers.compact_judge.VLMJudge` — followed by the answer
(the row's ``target``, e.g. ``score: {7}``, then ``<|im_end|>``). Labels are ``-100`` everywhere
but on the answer tokens, so the loss is on the answer only. Evaluation reads the expected score
exactly as the judge's fast mode does (forced ``score: {``, teacher-forced ``1``).

Full fine-tuning, or LoRA on the decoder's projections through peft; LoRA weights are merged
before saving, so the checkpoint (weights, tokenizer, PIL image processor with the training pixel
budget) loads in ``VLMJudge.from_pretrained`` without peft.

Example:
    >>> from hf_vlm_filter.models.tiny import save_tiny_model
    >>> from hf_vlm_filter.training.trainer import JudgeTrainingOptions
    >>> recipe = GenerativeRecipe(save_tiny_model("/tmp/tiny-judge"), JudgeTrainingOptions())
    >>> recipe.answer_ids({"target": "score: {7}"})[-1] == recipe.tokenizer.convert_tokens_to_ids("<|im_end|>")
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..inputs import ImagePolicy, clean_caption, load_image
from ..models.qwen_vl_inputs import QwenVLPromptBuilder
from ..models.score_readout import digit_token_ids, expected_score, score_distribution
from ..models.judge_prompt import FAST_ASSISTANT_PREFIX, SYSTEM_PROMPT, USER_PREFIX
from .levels import judge_target, score_for_level

if TYPE_CHECKING:
    from datasets import Dataset

    from .options import JudgeTrainingOptions

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


class GenerativeCollator:
    """Rows of a graded dataset -> Qwen2-VL training inputs, right-padded, loss on the answer only.

    Returns ``input_ids``, ``attention_mask``, ``labels`` (``-100`` on the prompt and padding),
    ``mm_token_type_ids``, ``pixel_values`` and ``image_grid_thw``.
    """

    def __init__(self, builder: QwenVLPromptBuilder, answer_ids: Any, *, image_column: str = "image",
                 text_column: str = "text") -> None:
        self.builder = builder
        self.answer_ids = answer_ids
        self.image_column = image_column
        self.text_column = text_column

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pairs = [self.builder.build(load_image(row[self.image_column], ImagePolicy()),
                                    clean_caption(row[self.text_column])) for row in rows]
        sequences = [(pair.input_ids, self.answer_ids(row)) for pair, row in zip(pairs, rows)]
        width = max(len(prompt) + len(answer) for prompt, answer in sequences)
        input_ids = torch.full((len(rows), width), self.builder.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, (prompt, answer) in enumerate(sequences):
            length = len(prompt) + len(answer)
            input_ids[index, :length] = torch.tensor(prompt + answer, dtype=torch.long)
            labels[index, len(prompt):length] = torch.tensor(answer, dtype=torch.long)
            attention_mask[index, :length] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "mm_token_type_ids": (input_ids == self.builder.image_token_id).to(torch.int32),
            "pixel_values": torch.cat([pair.pixel_values for pair in pairs]),
            "image_grid_thw": torch.cat([pair.image_grid_thw for pair in pairs]),
        }


class GenerativeRecipe:
    """What :func:`~hf_vlm_filter.training.trainer.train_judge` needs for a generative judge: the
    model (LoRA-wrapped when asked), its collator, fast-mode scoring of an evaluation set, saving."""

    kind = "generative"
    scale = "rubric"

    def __init__(self, base_model: str | Path, options: JudgeTrainingOptions) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        self.options = options
        source = str(base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.image_processor = AutoImageProcessor.from_pretrained(
            source, backend="pil", min_pixels=options.min_pixels, max_pixels=options.max_pixels
        )
        prompt = {"system_prompt": SYSTEM_PROMPT, "user_prefix": USER_PREFIX,
                  "max_caption_tokens": options.max_caption_tokens}
        self.builder = QwenVLPromptBuilder(self.tokenizer, self.image_processor, **prompt)
        self.fast_builder = QwenVLPromptBuilder(self.tokenizer, self.image_processor, **prompt,
                                                assistant_prefix=FAST_ASSISTANT_PREFIX)
        self.digits = digit_token_ids(self.tokenizer)
        self.end_of_turn = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32)
        self.model = self._with_lora(model) if options.lora_rank else model
        self.collator = GenerativeCollator(self.builder, self.answer_ids, image_column=options.image_column,
                                           text_column=options.text_column)

    def _with_lora(self, model: torch.nn.Module) -> torch.nn.Module:
        from peft import LoraConfig, get_peft_model

        names = "|".join(self.options.lora_targets)
        config = LoraConfig(r=self.options.lora_rank, lora_alpha=self.options.lora_alpha,
                            lora_dropout=self.options.lora_dropout,
                            target_modules=rf".*language_model.*\.({names})")  # the decoder, not the vision tower
        return get_peft_model(model, config)

    def answer_ids(self, row: dict[str, Any]) -> list[int]:
        """Token ids of the row's answer: its ``target`` (else ``score: {N}`` of its rubric ``score``, else
        of its level's nominal score), then ``<|im_end|>``."""
        score = row.get("score")
        target = row.get("target") or judge_target(int(score) if score is not None else
                                                   score_for_level(int(row["level"])))
        return self.tokenizer(target, add_special_tokens=False)["input_ids"] + [self.end_of_turn]

    @torch.no_grad()
    def score(self, model: torch.nn.Module, dataset: Dataset, batch_size: int) -> list[float]:
        """Expected 1-10 scores of every row of ``dataset``, read as the judge's fast mode reads them."""
        device = next(model.parameters()).device
        scores: list[float] = []
        for start in range(0, dataset.num_rows, batch_size):
            rows = dataset.select(range(start, min(start + batch_size, dataset.num_rows)))
            items = [self.fast_builder.build(load_image(row[self.options.image_column], ImagePolicy()),
                                             clean_caption(row[self.options.text_column])) for row in rows]
            inputs = self.fast_builder.collate(items, [self.digits[1]])
            inputs = {key: value.to(device) for key, value in inputs.items()}
            logits = model(**inputs, logits_to_keep=2).logits
            probs, _mass = score_distribution(logits[:, 0], logits[:, 1], self.digits)
            scores += expected_score(probs).cpu().tolist()
        return scores

    def save(self, model: torch.nn.Module, out_dir: str | Path) -> Path:
        """Merge LoRA weights (if any) and save model, tokenizer and image processor to ``out_dir``."""
        out = Path(out_dir)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        self.image_processor.save_pretrained(out)
        return out
