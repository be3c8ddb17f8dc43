"""The Compact VLM judge ("Trust the Model", arXiv 2507.20156) as a ``datasets`` map scorer.

A Qwen2-VL fine-tune reads an image-caption pair and answers with a justification and
``score: {N}`` on a 1-10 rubric; the paper keeps pairs scoring 9 or more. Three modes:

``mode="fast"`` (default)
    One forward pass per batch. The assistant turn is forced to start with ``score: {`` and the
    probability of every score 1..10 is read from the logits (see
    :mod:`hf_vlm_filter.models.score_readout`). ``judge_score`` is the expected score, a float in
    [1, 10]. Differences from the reference: the judge does not write its justification first, so
    the score is not conditioned on it (the published judge answers off the distribution it was
    trained on); and the score is a probability-weighted mean rather than one greedy integer,
    which ranks pairs more finely.
``mode="reference"``
    The seed script's procedure: the same prompt and image path, greedy ``generate`` up to
    ``max_new_tokens`` (512), and the seed's ``score:\\s*\\{(\\d+)\\}`` rule on the decoded text
    (first match). Generation stops for a row as soon as that pattern has matched
    (``stop_at_score``; the parsed score is the one the full 512 tokens give). Batched with left
    padding. Output without a score, or with one outside 1..10, gives NaN and a reason.
``mode="justify"``
    The judge writes its justification greedily, exactly as in reference mode, and is stopped when
    it has written ``score: {``; one more forward pass then reads the probability of every score at
    that point with fast mode's two-token readout. ``judge_score`` is the expected score
    conditioned on the judge's own justification (its argmax is the reference mode's score whenever
    the greedy continuation is one digit 2..9 and ``}``). A row that reaches ``max_new_tokens`` (or
    ends its answer) without writing ``score: {`` gets ``score: {`` appended after its text and is
    read there; ``judge_note`` says so (``""`` for the others).

Image path: reference and justify modes first resize each image as the seed script does
(qwen-vl-utils' ``fetch_image``, :mod:`hf_vlm_filter.models.seed_image_path`), then into the pixel
budget; fast mode reads the decoded image into the budget directly unless ``seed_image_path=True``.

Columns written: ``judge_score`` (float32, NaN when not scored), ``judge_error`` (``""`` or a
reason), plus ``judge_probs`` (10 floats, fast and justify modes, ``return_probs=True``),
``judge_output`` (reference: the generated text; justify: the justification;
``return_text=True``) and ``judge_note`` (justify mode).

Throughput: each ``map`` batch is scored in micro-batches of ``micro_batch_size`` rows grouped by
visual-token count (read from the image headers), while ``prefetch_workers`` background threads
decode and preprocess the next micro-batches and stack them into (on CUDA: pinned) input tensors;
see :mod:`hf_vlm_filter.scorers.batching`. Give ``map`` a ``batch_size`` several times
``micro_batch_size`` (e.g. 1024 and 64) so there is something to overlap. Generation pads the rows
that have stopped until the micro-batch's last row stops (transformers keeps finished rows in the
batch), so rows of similar length in one micro-batch waste least.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from datasets import List, Value

from ..inputs import RowError, clean_caption, image_size_hint, load_image
from ..models.judge_prompt import (
    BASE_MODEL,
    DEFAULT_JUDGE,
    FAST_ASSISTANT_PREFIX,
    MAX_PIXELS,
    MIN_PIXELS,
    SYSTEM_PROMPT,
    USER_PREFIX,
    prompt_text,
)
from ..models.loading import CheckpointUnavailableError, resolve_device, resolve_dtype
from ..models.qwen_vl import (
    load_qwen_vl_model,
    load_qwen_vl_processors,
    pixel_budget,
    recorded_pixel_budget,
    ships_image_processor,
)
from ..models.qwen_vl_inputs import PreparedPair, QwenVLPromptBuilder, multimodal_position_ids
from ..models.score_readout import (
    SCORE_OPENING,
    SCORE_PATTERN,
    ScoreStop,
    answer_ids,
    decode_answer,
    digit_token_ids,
    expected_score,
    parse_generated_score,
    readout_ids,
    score_distribution,
)
from ..models.seed_image_path import seed_fetch_image, seed_resize_size
from .base import Batch, Scorer
from .config import CaptionFields, ImageFields, PipelineFields, ScorerConfig

MODES = ("fast", "reference", "justify")
#: ``judge_note`` of a justify-mode row whose score was read after a forced ``score: {``.
FORCED_AT_LIMIT = "no `score: {{` in {limit} new tokens: score read after the text"
FORCED_AT_END = "answer ended without `score: {`: score read after the text"


@dataclass(frozen=True)
class JudgeConfig(PipelineFields, CaptionFields, ImageFields, ScorerConfig):
    """Everything that defines a judge run; frozen, hashable and picklable.

    Shared fields (``model``, ``revision``, ``device``, ``dtype``, ``image_column``, ``image_root``,
    ``text_column``, ``micro_batch_size``, ``prefetch_workers``, ``group_by_length``) are those of
    :mod:`hf_vlm_filter.scorers.config`; the judge defaults to micro-batches of 64 rows grouped by
    visual-token count.

    Args:
        processor: where the tokenizer and image processor come from; ``None`` uses ``model`` and,
            when it ships none, ``Qwen/Qwen2-VL-2B-Instruct`` as the seed does.
        mode: ``"fast"``, ``"reference"`` or ``"justify"`` (see the module docstring).
        min_pixels: lower bound of the image pixel budget (images are resized into the budget);
            ``None``: the budget the checkpoint's image processor records (a judge trained with
            ``train_judge`` records its own), else the seed's 256·28².
        max_pixels: upper bound of the pixel budget (``448 * 448`` for a 448x448 budget); ``None``:
            the checkpoint's recorded one, else the seed's 1280·28².
        max_caption_tokens: captions are truncated to this many tokens.
        max_new_tokens: generation cap in reference and justify modes.
        return_probs: fast and justify modes: also write ``judge_probs`` (probabilities of scores 1..10).
        return_text: reference and justify modes: also write ``judge_output`` (the generated text; in
            justify mode the justification before ``score: {``).
        stop_at_score: reference mode: stop a row's generation once the seed's ``score: {N}`` is
            written (same score as generating on; the text ends there); ``False``: generate on until
            the judge ends its turn or ``max_new_tokens``.
        seed_image_path: resize each image first as the seed script does (qwen-vl-utils'
            fetch_image: sides rounded to multiples of 28 within 4..16384 visual tokens, PIL's
            default filter), then into the pixel budget; ``None``: on in reference and justify
            modes, off in fast mode.
        attn_implementation: transformers attention kernel (``"sdpa"``, ``"flash_attention_2"``,
            ``"eager"``) for the whole model; ``None`` = sdpa, with the vision tower attending to a
            micro-batch's images in one call per layer
            (:mod:`hf_vlm_filter.models.vision_attention`) instead of one call per image.
    """

    model: str = DEFAULT_JUDGE
    micro_batch_size: int | None = 64
    group_by_length: bool = True
    processor: str | None = None
    mode: str = "fast"
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_caption_tokens: int = 512
    max_new_tokens: int = 512
    return_probs: bool = False
    return_text: bool = False
    stop_at_score: bool = True
    seed_image_path: bool | None = None
    attn_implementation: str | None = None

    def validate(self) -> None:
        super().validate()
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"need min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")
        if self.max_caption_tokens < 1 or self.max_new_tokens < 1:
            raise ValueError("max_caption_tokens and max_new_tokens must be positive")

    @property
    def uses_seed_image_path(self) -> bool:
        """Whether images go through the seed's resize first (``seed_image_path``, resolved)."""
        return self.seed_image_path if self.seed_image_path is not None else self.mode != "fast"


class _Preprocessing:
    """Tokenizer + image processor + prompt builder of one judge configuration (CPU only)."""

    def __init__(self, config: JudgeConfig) -> None:
        source = config.processor or config.model
        revision = config.revision if source == config.model else None
        if config.processor is None and not ships_image_processor(source, revision):
            source, revision = BASE_MODEL, None
        self.tokenizer, self.image_processor = load_qwen_vl_processors(
            source, revision, min_pixels=None, max_pixels=None, what="judge")
        budget = judge_pixel_budget(config, self.image_processor)  # read from the files as saved
        if budget != pixel_budget(self.image_processor):
            self.tokenizer, self.image_processor = load_qwen_vl_processors(
                source, revision, min_pixels=budget[0], max_pixels=budget[1], what="judge")
        #: The ``(min_pixels, max_pixels)`` the judge reads images at.
        self.pixel_budget = budget
        prefix = FAST_ASSISTANT_PREFIX if config.mode == "fast" else ""
        self.builder = QwenVLPromptBuilder(
            self.tokenizer,
            self.image_processor,
            system_prompt=SYSTEM_PROMPT,
            user_prefix=USER_PREFIX,
            max_caption_tokens=config.max_caption_tokens,
            assistant_prefix=prefix,
        )
        self.digits = digit_token_ids(self.tokenizer)
        eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        #: Tokens that end the judge's answer (its turn end, and the tokenizer's EOS).
        self.end_ids = {token for token in (eos, self.tokenizer.eos_token_id) if token is not None}


def judge_pixel_budget(config: JudgeConfig, image_processor: Any) -> tuple[int, int]:
    """The budget a judge reads at: each bound as given, else the checkpoint's recorded budget
    (:func:`~hf_vlm_filter.models.qwen_vl.recorded_pixel_budget`), else the seed's."""
    recorded = recorded_pixel_budget(image_processor) or (MIN_PIXELS, MAX_PIXELS)
    low = config.min_pixels if config.min_pixels is not None else recorded[0]
    high = config.max_pixels if config.max_pixels is not None else recorded[1]
    if low > high:
        raise ValueError(f"the pixel budget is empty: min_pixels {low} > max_pixels {high} "
                         f"(the checkpoint records {recorded}); give both bounds")
    return low, high


class VLMJudge(Scorer):
    """The Compact VLM judge as a batched ``datasets`` map function.

    Pickles to its :class:`JudgeConfig` only; the checkpoint is loaded on first use and shared by
    every judge of the same configuration in the process.

    Example:
        >>> from datasets import Dataset
        >>> from PIL import Image
        >>> from hf_vlm_filter import VLMJudge
        >>> from hf_vlm_filter.models.tiny import save_tiny_model
        >>> path = save_tiny_model("/tmp/tiny-judge")
        >>> judge = VLMJudge.from_pretrained(path, device="cpu")
        >>> ds = Dataset.from_dict({"image": [Image.new("RGB", (64, 48), "red"), None],
        ...                         "caption": ["a red square", "lost image"]})
        >>> out = ds.map(judge, batched=True, batch_size=2)
        >>> 1.0 <= out[0]["judge_score"] <= 10.0, out[1]["judge_error"]
        (True, 'missing image')

    Args:
        model: Hub id or local folder (default ``Dauka-transformers/Compact_VLM_filter``).
        **options: any other :class:`JudgeConfig` field.
    """

    prefix = "judge"
    name = "compact"
    summary = "compact VLM judge, 1-10 rubric (arXiv 2507.20156)"
    config_class = JudgeConfig
    model_types = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
    score_range = (1.0, 10.0)
    score_bins = tuple(float(edge) for edge in range(1, 11))
    input_fields = ("image_column", "text_column")
    preprocessing_class = _Preprocessing
    preprocessing_fields = ("model", "revision", "processor", "mode", "min_pixels", "max_pixels", "max_caption_tokens")
    model_fields = ("model", "revision", "attn_implementation")
    checkpoint_fields = ("model", "processor")
    cli_fields = ("mode", "min_pixels", "max_pixels", "max_new_tokens", "seed_image_path", "stop_at_score",
                  "attn_implementation")

    def load_model(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        return load_qwen_vl_model(self.config.model, self.config.revision, dtype, device,
                                  attn_implementation=self.config.attn_implementation, what="judge model")

    def card_facts(self) -> list[dict[str, Any]]:
        facts = super().card_facts()
        facts[0]["prompt"] = prompt_text()
        try:
            facts[0]["min_pixels"], facts[0]["max_pixels"] = self.preprocessing.pixel_budget
        except CheckpointUnavailableError:  # the checkpoint is not at hand (scores read from a file)
            pass
        facts[0]["seed_image_path"] = self.config.uses_seed_image_path
        return facts

    # ---- the scorer hooks -------------------------------------------------------------------
    def extra_features(self) -> dict[str, Any]:
        mode, features = self.config.mode, {}
        if mode in ("fast", "justify") and self.config.return_probs:
            features["judge_probs"] = List(Value("float32"), length=10)
        if mode in ("reference", "justify") and self.config.return_text:
            features["judge_output"] = Value("string")
        if mode == "justify":
            features["judge_note"] = Value("string")
        return features

    def prepare(self, batch: Batch, index: int) -> PreparedPair:
        image = load_image(self.cell(batch, "image_column", index), self.image_policy())
        if self.config.uses_seed_image_path:
            image = seed_fetch_image(image)
        caption = clean_caption(self.cell(batch, "text_column", index))
        return self.preprocessing.builder.build(image, caption)

    def length_hint(self, batch: Batch, index: int) -> tuple[int, int]:
        """``(visual tokens, caption characters)`` of a row, from the image header (no decoding)."""
        size = image_size_hint(self.cell(batch, "image_column", index), self.image_policy())
        caption = self.cell(batch, "text_column", index)
        tokens = 0
        if size:
            height, width = size[1], size[0]
            if self.config.uses_seed_image_path:
                try:
                    height, width = seed_resize_size(height, width)
                except ValueError:  # a hint never raises: prepare refuses the image with its reason
                    pass
            tokens = self.preprocessing.builder.image_tokens(height, width)
        return tokens, len(caption) if isinstance(caption, str) else 0

    def collate(self, items: list[PreparedPair], rank: int | None = None) -> dict[str, torch.Tensor]:
        """Model inputs of a micro-batch on the CPU: padded ids, pixels in the model's dtype, the
        M-RoPE position ids (fast mode: one forward, so they need not be computed inside it), and
        page-locked (pinned) memory when the model is on CUDA, so the copy to the GPU is asynchronous."""
        device = resolve_device(self.config.device, rank)
        suffix = [self.preprocessing.digits[1]] if self.config.mode == "fast" else []
        inputs = self.preprocessing.builder.collate(items, suffix)
        if self.config.mode == "fast":
            position_ids = multimodal_position_ids(self.model(rank), inputs)
            if position_ids is not None:
                inputs["position_ids"] = position_ids
        inputs["pixel_values"] = inputs["pixel_values"].to(resolve_dtype(self.config.dtype, device))
        if device.type == "cuda":
            inputs = {key: value.pin_memory() for key, value in inputs.items()}
        return inputs

    def score_prepared(self, items: list[PreparedPair], rank: int | None = None) -> list[dict[str, Any]]:
        model = self.model(rank)
        inputs = self.collated(items, rank)
        inputs = {key: value.to(model.device, non_blocking=True) for key, value in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        if self.config.mode == "fast":
            return self._read_scores(model, inputs)
        if self.config.mode == "justify":
            return self._score_justify(model, inputs, list(items))
        return self._score_reference(model, inputs)

    @torch.inference_mode()
    def _read_scores(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """Fast mode's readout: each row of ``inputs`` ends with ``score: {`` and a teacher-forced ``1``."""
        logits = model(**inputs, logits_to_keep=2).logits
        probs, _mass = score_distribution(logits[:, 0], logits[:, 1], self.preprocessing.digits)
        scores = expected_score(probs).cpu().tolist()
        probs = probs.cpu().tolist()
        rows = []
        for score, dist in zip(scores, probs):
            row = {"judge_score": score}
            if self.config.return_probs:
                row["judge_probs"] = dist
            rows.append(row)
        return rows

    @torch.inference_mode()
    def generate_answers(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor],
                         stop: re.Pattern | None) -> tuple[list[list[int]], list[bool], int]:
        """Greedy answers of a collated micro-batch (on the model's device).

        Returns per row the answer ids (cut at the first match of ``stop`` when given, else before
        the end of turn) and whether the judge ended its turn; and the decode steps the batch ran,
        its cost (transformers pads stopped rows until the batch's last row stops)."""
        from transformers import StoppingCriteriaList

        pre = self.preprocessing
        width = inputs["input_ids"].shape[1]
        criteria = None
        if stop is not None:
            criteria = ScoreStop(pre.tokenizer, width, stop, trigger="}" if stop is SCORE_PATTERN else "{")
        generated = model.generate(
            **inputs,
            max_new_tokens=self.config.max_new_tokens,
            do_sample=False,
            pad_token_id=pre.builder.pad_token_id,
            stopping_criteria=StoppingCriteriaList([criteria] if criteria is not None else []),
        )
        new = generated[:, width:].cpu().tolist()
        answers, ended = [], []
        for row, tokens in enumerate(new):
            ids, finished = answer_ids(tokens, pre.end_ids, criteria.stopped.get(row) if criteria else None)
            answers.append(ids)
            ended.append(finished)
        return answers, ended, len(new[0]) if new else 0

    def _score_reference(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        stop = SCORE_PATTERN if self.config.stop_at_score else None
        answers, _ended, _steps = self.generate_answers(model, inputs, stop)
        return [self._parse(decode_answer(self.preprocessing.tokenizer, ids)) for ids in answers]

    @torch.inference_mode()
    def _score_justify(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor],
                       items: list[PreparedPair]) -> list[dict[str, Any]]:
        """Generate until ``score: {``, then one forward over prompt + the judge's own text +
        ``score: {`` + ``1`` reads the score distribution (forced after the text when not written)."""
        pre = self.preprocessing
        answers, ended, _steps = self.generate_answers(model, inputs, SCORE_OPENING)
        readouts, rows = [], []
        for item, ids, finished in zip(items, answers, ended):
            read_after, justification, forced = readout_ids(pre.tokenizer, ids)
            readouts.append(PreparedPair(item.input_ids + read_after, item.pixel_values, item.image_grid_thw))
            note = ""
            if forced:
                note = FORCED_AT_END if finished else FORCED_AT_LIMIT.format(limit=self.config.max_new_tokens)
            row: dict[str, Any] = {"judge_note": note}
            if self.config.return_text:
                row["judge_output"] = justification
            rows.append(row)
        readout = pre.builder.collate(readouts, [pre.digits[1]])
        readout = {key: value.to(model.device) for key, value in readout.items()}
        readout["pixel_values"] = readout["pixel_values"].to(model.dtype)
        return [{**row, **scores} for row, scores in zip(rows, self._read_scores(model, readout))]

    def _parse(self, text: str) -> dict[str, Any]:
        row: dict[str, Any] = {"judge_output": text} if self.config.return_text else {}
        score = parse_generated_score(text)
        if score is None:
            row["error"] = RowError("no `score: {N}` in the judge's output")
        elif not 1 <= score <= 10:
            row["error"] = RowError(f"judge wrote score {score}, outside 1-10")
        else:
            row["judge_score"] = float(score)
        return row


def judge_scores(batch: Batch, rank: int | None = None, **options: Any) -> dict[str, list[Any]]:
    """Batched map function: adds ``judge_score`` and ``judge_error`` (and optional columns).

    ``options`` are :class:`JudgeConfig` fields, given through ``fn_kwargs``.

    Example:
        >>> ds = ds.map(judge_scores, batched=True)                                  # doctest: +SKIP
        >>> ds = ds.map(judge_scores, batched=True,
        ...             fn_kwargs={"model": "./my-judge", "text_column": "text"})     # doctest: +SKIP
    """
    return VLMJudge.shared_instance(**options)(batch, rank)

