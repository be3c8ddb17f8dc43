"""Sources and a tiny chat model for the judge-dataset builder tests (all made offline, in memory)."""

from __future__ import annotations

import io
from pathlib import Path

from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage

CAPTIONS = (
    "Two red cars parked on the street near a tall building.",
    "A small dog sitting on a wooden bench in the park.",
    "Three people walking with a white umbrella.",
    "A black cat sleeping on a bed.",
    "An astronaut holding a silver helmet.",
    "A young girl riding a brown horse on the beach.",
    "Five green bottles on a wooden table.",
    "A blue boat on a calm lake under a cloudy sky.",
    "A man standing next to an old bicycle.",
    "Four yellow flowers in a small cup.",
)


def png_bytes(index: int) -> bytes:
    """A distinct 24x24 PNG per ``index`` (colour and a bright pixel at a per-index place)."""
    image = PILImage.new("RGB", (24, 24), ((37 * index) % 256, (91 * index) % 256, (13 * index) % 256))
    image.putpixel((index % 24, (index // 24) % 24), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def caption_source(rows: int = 40, duplicate_every: int = 0) -> Dataset:
    """``rows`` image-caption pairs with ids; every ``duplicate_every``-th row reuses the previous image."""
    images, captions, ids = [], [], []
    for index in range(rows):
        image_index = index - 1 if duplicate_every and index and index % duplicate_every == 0 else index
        images.append({"bytes": png_bytes(image_index), "path": None})
        captions.append(CAPTIONS[index % len(CAPTIONS)])
        ids.append(f"pair-{index:03d}")
    features = Features({"image": Image(), "caption": Value("string"), "id": Value("string")})
    return Dataset.from_dict({"image": images, "caption": captions, "id": ids}, features=features)


def document_source(rows: int = 12) -> Dataset:
    """OBELICS-layout documents: text, image, text, image (None in the other list at each position)."""
    texts, images = [], []
    for index in range(rows):
        first, second = CAPTIONS[index % len(CAPTIONS)], CAPTIONS[(index + 3) % len(CAPTIONS)]
        texts.append([first, None, second, None])
        images.append([None, {"bytes": png_bytes(2 * index), "path": None}, None,
                       {"bytes": png_bytes(2 * index + 1), "path": None}])
    features = Features({"texts": List(Value("string")), "images": List(Image())})
    return Dataset.from_dict({"texts": texts, "images": images}, features=features)


def save_tiny_chat_lm(out: Path) -> Path:
    """A tiny random GPT-2 with room for the rewrite prompts (512 positions), byte-level tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hf_vlm_filter.models.tiny import tiny_gpt2_tokenizer

    tokenizer = tiny_gpt2_tokenizer()
    special = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=special, eos_token_id=special, pad_token_id=special)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
