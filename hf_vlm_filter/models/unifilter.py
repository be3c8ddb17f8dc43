"""UniFilter (arXiv 2510.15162) as a plain torch module built from transformers parts.

Published checkpoints (``weizhiwang/UniFilter-Qwen2.5-1.5B``, ``weizhiwang/UniFilter-Qwen3-0.6B``) are
LLaVA-style folders: a Qwen ``config.json`` extended with ``mm_*`` keys, safetensors whose names are

* ``model.embed_tokens.*``, ``model.layers.*``, ``model.norm.*`` — the Qwen2 / Qwen3 decoder;
* ``model.vision_tower.vision_tower.vision_model.*`` — a SigLIP vision tower;
* ``model.mm_projector.mlp_projector.{0,2}.*`` — the ``aapool_mlp`` projector (adaptive average pool of
  the patch grid to ``sqrt(mm_num_image_tokens)`` squared tokens, then Linear -> GELU -> Linear);
* ``score.weight`` — ``Linear(hidden, num_labels, bias=False)`` read on the last non-pad token.

The image goes where the caption text has ``<image>`` (token id ``IMAGE_TOKEN_INDEX = -200`` in the
reference code). :func:`load_unifilter` reads such a folder (local or through
``huggingface_hub.snapshot_download``) with strict name checks; no remote code is run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .plain_text import plain_text_ids
from .loading import CheckpointUnavailableError, is_local, load_or_explain, resolve_device, resolve_dtype

IMAGE_TOKEN_INDEX = -200
DEFAULT_IMAGE_TOKEN = "<image>"
#: SigLIP towers named by published checkpoints, so that only the UniFilter folder itself is needed.
KNOWN_VISION_TOWERS: dict[str, dict[str, Any]] = {
    name: {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
           "patch_size": 14, "image_size": 384, "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh"}
    for name in ("google/siglip-so400m-patch14-384", "google/siglip2-so400m-patch14-384")
}
#: Vision-tower parameters the scorer never uses (it reads a hidden state, not the pooled output):
#: a checkpoint may or may not carry them.
_OPTIONAL_VISION = ("vision_tower.post_layernorm.", "vision_tower.head.")
_CONFIG_DROP = {"architectures", "model_type", "transformers_version", "auto_map", "_name_or_path"}


class UniFilterWeightsError(ValueError):
    """The checkpoint's weights do not match the UniFilter layout (names missing or unexpected)."""


class AvgPoolProjector(nn.Module):
    """``aapool_mlp``: average-pool the square patch grid to ``side x side`` tokens, then an MLP."""

    def __init__(self, vision_hidden: int, text_hidden: int, num_tokens: int = 144) -> None:
        super().__init__()
        self.side = int(round(math.sqrt(num_tokens)))
        self.mlp = nn.Sequential(nn.Linear(vision_hidden, text_hidden), nn.GELU(), nn.Linear(text_hidden, text_hidden))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, patches, dim = features.shape
        grid = int(round(math.sqrt(patches)))
        if grid * grid != patches:
            raise ValueError(f"{patches} vision patches do not form a square grid")
        maps = features.reshape(batch, grid, grid, dim).permute(0, 3, 1, 2)
        pooled = nn.functional.adaptive_avg_pool2d(maps, (self.side, self.side))
        return self.mlp(pooled.flatten(2).transpose(1, 2))


class UniFilterModel(nn.Module):
    """SigLIP tower -> ``aapool_mlp`` -> Qwen2/Qwen3 decoder -> score head on the last real token."""

    def __init__(self, text_config: Any, vision_config: Any, num_labels: int, num_image_tokens: int = 144,
                 select_layer: int = -1) -> None:
        super().__init__()
        from transformers import SiglipVisionModel

        if getattr(text_config, "model_type", "") == "qwen3":
            from transformers import Qwen3Model as TextModel
        else:
            from transformers import Qwen2Model as TextModel
        self.language_model = TextModel(text_config)
        tower = SiglipVisionModel(vision_config)
        # transformers 4 nests the transformer under ``vision_model``; 5 does not: keep one naming.
        self.vision_tower = getattr(tower, "vision_model", tower)
        self.projector = AvgPoolProjector(vision_config.hidden_size, text_config.hidden_size, num_image_tokens)
        self.score = nn.Linear(text_config.hidden_size, num_labels, bias=False)
        self.num_labels = num_labels
        self.select_layer = select_layer

    @property
    def device(self) -> torch.device:
        return self.score.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.score.weight.dtype

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.vision_tower(pixel_values=pixel_values.to(self.device, self.dtype), output_hidden_states=True)
        return self.projector(out.hidden_states[self.select_layer])

    def forward(self, input_ids: list[list[int]], pixel_values: torch.Tensor,
                image_counts: list[int] | None = None) -> torch.Tensor:
        """Logits ``(batch, num_labels)``; each id list holds ``IMAGE_TOKEN_INDEX`` where its image goes.

        ``pixel_values`` holds the images of all rows in order; ``image_counts[i]`` images belong to
        row ``i`` (default one each) and fill its ``IMAGE_TOKEN_INDEX`` slots in order (interleaved
        documents). Rows are spliced and left-padded here; positions restart at 0 on each row's first
        real token.
        """
        image_features = self.encode_images(pixel_values)
        counts = [1] * len(input_ids) if image_counts is None else list(image_counts)
        if sum(counts) != image_features.shape[0] or len(counts) != len(input_ids):
            raise ValueError(f"{image_features.shape[0]} images for image counts {counts}")
        per_row = list(torch.split(image_features, counts)) if counts else []
        embed = self.language_model.get_input_embeddings()
        rows = []
        for ids, row_features in zip(input_ids, per_row):
            slots = sum(1 for token in ids if token == IMAGE_TOKEN_INDEX)
            if slots != row_features.shape[0]:
                raise ValueError(f"{slots} image slot(s) for {row_features.shape[0]} image(s)")
            pieces, text, next_image = [], [], 0
            for token in ids:
                if token == IMAGE_TOKEN_INDEX:
                    if text:
                        pieces.append(embed(torch.tensor(text, device=self.device)))
                        text = []
                    pieces.append(row_features[next_image])
                    next_image += 1
                else:
                    text.append(token)
            if text:
                pieces.append(embed(torch.tensor(text, device=self.device)))
            rows.append(torch.cat(pieces))
        width = max(row.shape[0] for row in rows)
        hidden = rows[0].shape[1]
        embeds = torch.zeros(len(rows), width, hidden, dtype=rows[0].dtype, device=self.device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        positions = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for index, row in enumerate(rows):
            length = row.shape[0]
            embeds[index, width - length:] = row
            mask[index, width - length:] = 1
            positions[index, width - length:] = torch.arange(length, device=self.device)
        out = self.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)
        return self.score(out.last_hidden_state[:, -1])


# ---- published layout <-> our state dict ------------------------------------------------------
_PREFIXES = (
    ("model.vision_tower.vision_tower.vision_model.", "vision_tower."),
    ("model.mm_projector.mlp_projector.", "projector.mlp."),
    ("score.", "score."),
    ("model.", "language_model."),
)


def published_to_ours(name: str) -> str | None:
    for published, ours in _PREFIXES:
        if name.startswith(published):
            return ours + name[len(published):]
    return None


def ours_to_published(name: str) -> str:
    for published, ours in _PREFIXES:
        if name.startswith(ours):
            return published + name[len(ours):]
    raise KeyError(name)


def save_published_checkpoint(model: UniFilterModel, config: dict[str, Any], tokenizer: Any, out_dir: str | Path) -> Path:
    """Save ``model`` in the published UniFilter layout: ``config.json`` (``config`` plus the head's
    ``id2label`` / ``label2id``), safetensors under published names, and the tokenizer. Vision-tower
    files are the caller's."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = model.num_labels
    config = {**config, "id2label": {str(i): f"LABEL_{i}" for i in range(labels)},
              "label2id": {f"LABEL_{i}": i for i in range(labels)}}
    config.pop("num_labels", None)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    weights = {ours_to_published(n): t.detach().to("cpu").contiguous() for n, t in model.state_dict().items()}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    return out


def head_readout(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(score, class probabilities)`` from score-head logits: the regression value and ``None`` for
    one label; else the expected level under the softmax, and the softmax."""
    logits = logits.float()
    if logits.shape[-1] == 1:
        return logits[:, 0], None
    probs = logits.softmax(-1)
    levels = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
    return (probs * levels).sum(-1), probs


# ---- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class UniFilterSpec:
    """What the published ``config.json`` says, resolved against the checkpoint folder."""

    folder: Path
    raw: dict[str, Any]

    @property
    def num_labels(self) -> int:
        if "id2label" in self.raw and self.raw["id2label"]:
            return len(self.raw["id2label"])
        return int(self.raw.get("num_labels", 2))

    @property
    def is_qwen3(self) -> bool:
        text = " ".join([str(self.raw.get("model_type", ""))] + [str(a) for a in self.raw.get("architectures") or []])
        return "qwen3" in text.lower()

    @property
    def num_image_tokens(self) -> int:
        return int(self.raw.get("mm_num_image_tokens") or 144)

    def text_config(self) -> Any:
        from transformers import Qwen2Config, Qwen3Config

        values = {k: v for k, v in self.raw.items() if k not in _CONFIG_DROP and not k.startswith("mm_")}
        return (Qwen3Config if self.is_qwen3 else Qwen2Config)(**values)

    def vision_tower_source(self) -> str:
        name = self.raw.get("mm_vision_tower") or self.raw.get("vision_tower")
        if not name:
            raise ValueError(f"{self.folder / 'config.json'} has no mm_vision_tower: not a UniFilter checkpoint")
        return str(name)

    def vision_folder(self) -> Path | None:
        name = self.vision_tower_source()
        for candidate in (self.folder / name, Path(name).expanduser()):
            if candidate.is_dir():
                return candidate
        return None

    def vision_config(self) -> Any:
        from transformers import SiglipVisionConfig

        name = self.vision_tower_source()
        folder = self.vision_folder()
        if folder is not None:
            config = SiglipVisionConfig.from_pretrained(folder)
        elif name in KNOWN_VISION_TOWERS:
            config = SiglipVisionConfig(**KNOWN_VISION_TOWERS[name])
        else:
            config = load_or_explain(SiglipVisionConfig.from_pretrained, name, "UniFilter vision tower config")
        hidden = self.raw.get("mm_hidden_size")
        if hidden is not None and int(hidden) != config.hidden_size:
            raise ValueError(f"mm_hidden_size {hidden} != vision tower hidden_size {config.hidden_size} ({name})")
        return config


def resolve_checkpoint(source: str, revision: str | None = None) -> Path:
    """A local folder as is; a Hub id through ``snapshot_download`` (config, tokenizer, safetensors)."""
    if is_local(source):
        return Path(source).expanduser()
    from huggingface_hub import snapshot_download

    path = load_or_explain(
        snapshot_download, source, "UniFilter checkpoint", revision=revision,
        allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
    )
    return Path(path)


def read_spec(source: str, revision: str | None = None) -> UniFilterSpec:
    folder = resolve_checkpoint(source, revision)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a UniFilter checkpoint")
    return UniFilterSpec(folder, json.loads(config_file.read_text()))


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UniFilterWeightsError(f"no *.safetensors weights in {folder}")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights


def load_unifilter(path_or_id: str, dtype: str | torch.dtype | None = None, device: str | None = None,
                   revision: str | None = None) -> UniFilterModel:
    """Build :class:`UniFilterModel` from a published-layout checkpoint; strict about weight names.

    Raises :class:`UniFilterWeightsError` naming missing and unexpected weights, and
    :class:`~hf_vlm_filter.models.loading.CheckpointUnavailableError` when the Hub cannot be reached.
    """
    spec = read_spec(path_or_id, revision)
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    text_config, vision_config = spec.text_config(), spec.vision_config()
    select = int(spec.raw.get("mm_vision_select_layer", -1))
    model = UniFilterModel(text_config, vision_config, spec.num_labels, spec.num_image_tokens, select)
    ours: dict[str, torch.Tensor] = {}
    unexpected = []
    for name, tensor in _read_weights(spec.folder).items():
        mapped = published_to_ours(name)
        if mapped is None:
            unexpected.append(name)
        else:
            ours[mapped] = tensor
    expected = model.state_dict()
    if not any(name.startswith("vision_tower.") for name in ours):
        # The published scoring code builds the tower with delay_load and reads it from
        # ``mm_vision_tower``, never from the checkpoint: a checkpoint may omit the frozen tower.
        ours.update(tower_weights(spec))
    unexpected += [ours_to_published(n) for n in ours if n not in expected and not n.startswith(_OPTIONAL_VISION)]
    missing = [ours_to_published(n) for n in expected if n not in ours and not n.startswith(_OPTIONAL_VISION)]
    if missing or unexpected:
        raise UniFilterWeightsError(
            f"{path_or_id!r} does not match the UniFilter layout: {len(missing)} missing weight(s) "
            f"{_preview(missing)}, {len(unexpected)} unexpected weight(s) {_preview(unexpected)}"
        )
    shapes = [f"{ours_to_published(n)} {tuple(t.shape)} != {tuple(expected[n].shape)}"
              for n, t in ours.items() if n in expected and t.shape != expected[n].shape]
    if shapes:
        raise UniFilterWeightsError(f"{path_or_id!r}: weight shapes do not match its config.json: {_preview(shapes)}")
    model.load_state_dict({n: t for n, t in ours.items() if n in expected}, strict=False)
    return model.to(device=resolved_device, dtype=resolved_dtype).eval()


def tower_weights(spec: UniFilterSpec) -> dict[str, torch.Tensor]:
    """The SigLIP tower's weights under our names, from ``mm_vision_tower`` (a folder beside or in
    the checkpoint, or a Hub id) loaded with ``SiglipVisionModel.from_pretrained``, as the reference does."""
    from transformers import SiglipVisionModel

    source = str(spec.vision_folder() or spec.vision_tower_source())
    tower = load_or_explain(SiglipVisionModel.from_pretrained, source, "UniFilter vision tower (mm_vision_tower)")
    inner = getattr(tower, "vision_model", tower)
    return {f"vision_tower.{name}": tensor for name, tensor in inner.state_dict().items()}


def _preview(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"


def load_unifilter_processors(spec: UniFilterSpec) -> tuple[Any, Any]:
    """The checkpoint's tokenizer, and a PIL SigLIP image processor (checkpoint, tower folder or default)."""
    from transformers import AutoTokenizer
    from transformers.models.siglip import SiglipImageProcessorPil

    # The text config tells AutoTokenizer the tokenizer family; without it transformers reads config.json
    # (model_type llava_qwen, unknown to it) and warns on every load.
    tokenizer = load_or_explain(AutoTokenizer.from_pretrained, str(spec.folder), "UniFilter tokenizer",
                                config=spec.text_config())
    size = spec.vision_config().image_size
    for folder in (spec.folder, spec.vision_folder()):
        if folder is not None and (folder / "preprocessor_config.json").is_file():
            return tokenizer, SiglipImageProcessorPil.from_pretrained(folder)
    tower = spec.vision_tower_source()
    try:  # the tower's own processor, with its resample settings, as the reference loads it
        return tokenizer, load_or_explain(SiglipImageProcessorPil.from_pretrained, tower,
                                          "UniFilter vision tower image processor")
    except CheckpointUnavailableError:
        if tower not in KNOWN_VISION_TOWERS:
            raise
    return tokenizer, SiglipImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.5] * 3,
                                              image_std=[0.5] * 3)


def caption_input_ids(tokenizer: Any, caption: str, max_tokens: int = 75) -> list[int]:
    """``BOS? <image> "\\n"+caption EOS`` as ids with ``IMAGE_TOKEN_INDEX``, cut to ``max_tokens`` ids."""
    text = "\n" + caption.replace(DEFAULT_IMAGE_TOKEN, "image")
    ids = plain_text_ids(tokenizer, text)
    head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return (head + [IMAGE_TOKEN_INDEX] + ids + tail)[:max_tokens]


def document_input_ids(tokenizer: Any, pieces: list[str | None]) -> list[int]:
    """Ids of an interleaved document: ``None`` pieces are image slots (``IMAGE_TOKEN_INDEX``).

    As the reference interleaved script: pieces (``<image>`` for an image) joined with ``"\\n\\n"``,
    the text between image slots tokenised chunk by chunk, BOS (when the tokenizer has one) prepended
    and EOS appended; no length cut (the caller refuses over-long documents). A literal ``<image>`` in
    a text becomes ``image``, as in :func:`caption_input_ids`.
    """
    corpus = "\n\n".join(DEFAULT_IMAGE_TOKEN if piece is None else piece.replace(DEFAULT_IMAGE_TOKEN, "image")
                         for piece in pieces)
    ids: list[int] = []
    for index, chunk in enumerate(corpus.split(DEFAULT_IMAGE_TOKEN)):
        if index:
            ids.append(IMAGE_TOKEN_INDEX)
        if chunk:
            ids += plain_text_ids(tokenizer, chunk)
    head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return head + ids + tail
