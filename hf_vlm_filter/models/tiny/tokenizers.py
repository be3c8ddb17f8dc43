"""Byte-level tokenizers for tiny checkpoints: every byte one token (digits single tokens), no merges."""

from __future__ import annotations

from ..qwen_vl_inputs import QWEN_VL_CHAT_TEMPLATE

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def tiny_qwen_tokenizer():
    """A byte-level Qwen2 tokenizer (every byte one token, digits single tokens) with Qwen's specials."""
    from transformers import Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS})
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    return tokenizer


def tiny_clip_tokenizer():
    """A byte-level CLIP tokenizer without merges: every byte one token (``</w>`` variants for word ends)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {token: index for index, token in enumerate(chars + [c + "</w>" for c in chars])}
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def tiny_gpt2_tokenizer():
    """A byte-level GPT-2 tokenizer without merges; ``<|endoftext|>`` is BOS, EOS and padding."""
    from transformers import GPT2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    return GPT2Tokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                         eos_token="<|endoftext|>", pad_token="<|endoftext|>")
