"""How a judge is trained: the ``Trainer`` arguments that matter here and the judge-specific ones."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JudgeTrainingOptions:
    """How to train (the ``Trainer`` arguments that matter here, and the judge-specific ones).

    Args:
        learning_rate / weight_decay / warmup_steps / lr_scheduler: the optimiser schedule (AdamW).
        batch_size / eval_batch_size: rows per training step / per evaluation forward.
        epochs: passes over the training split; ``max_steps`` > 0 overrides it.
        eval_steps: evaluate every this many steps (``None``: only once, at the end).
        logging_steps: log the training loss every this many steps.
        seed: seeds the model-independent randomness (data order, dropout).
        image_column / text_column: columns of the graded dataset.
        max_text_tokens: score head: text id budget (75 as UniFilter).
        freeze_vision: score head: keep the vision tower fixed (as UniFilter does on a pretrained tower).
        lora_rank: generative: LoRA rank through peft (``None``: full fine-tuning).
        lora_alpha / lora_dropout / lora_targets: generative LoRA settings (decoder projections).
        min_pixels / max_pixels: generative: the image pixel budget; score with the same budget.
        max_caption_tokens: generative: captions are cut to this many tokens, as in the judge.
        show_progress: a tqdm progress bar over the training steps, with the logs (loss, evaluations)
            printed; ``False``: quiet (logs are kept in the ``Trainer`` state only).
    """

    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_scheduler: str = "linear"
    batch_size: int = 8
    eval_batch_size: int = 32
    epochs: float = 1.0
    max_steps: int = -1
    eval_steps: int | None = None
    logging_steps: int = 10
    seed: int = 0
    image_column: str = "image"
    text_column: str = "text"
    max_text_tokens: int = 75
    freeze_vision: bool = False
    lora_rank: int | None = None
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 64 * 28 * 28
    max_caption_tokens: int = 512
    show_progress: bool = False

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("learning_rate, batch_size and eval_batch_size must be positive")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("give epochs > 0 or max_steps > 0")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ValueError(f"eval_steps must be positive or None, got {self.eval_steps}")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise ValueError(f"lora_rank must be positive or None, got {self.lora_rank}")
