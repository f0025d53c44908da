"""A tiny random CLIP over OpenAI's real vocabulary, for tests and offline trials.

Real tokenizer (49408 tokens, 77 positions: see :mod:`.clip_vocabulary`), random weights at width
32, 32×32 images: scoring runs its whole real code path in milliseconds on a CPU, and the folder
loads like any hub CLIP (``dreamfusion evaluate ws --clip_model <folder>``). Its scores mean
nothing about images; they only exercise the code.

    folder = save_tiny_clip(tmp / "tiny-clip")      # needs the BPE file (`make models`)
    clip = ClipEmbedder.from_pretrained(str(folder))
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dreamfusion.evaluation.clip_vocabulary import CONTEXT_LENGTH, clip_tokenizer_from_bpe

WIDTH = 32
IMAGE_SIZE = 32


def tiny_clip_model(tokenizer, seed: int = 0, image_size: int = IMAGE_SIZE):
    """A ``transformers.CLIPModel`` with the tokenizer's vocabulary, random weights (seeded, the
    caller's RNG untouched)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=CONTEXT_LENGTH,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=WIDTH, intermediate_size=37,
                           num_hidden_layers=2, num_attention_heads=4),
        projection_dim=WIDTH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPModel(config).eval()


def save_tiny_clip(folder: str | os.PathLike, *, bpe_path: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Write a transformers CLIP folder (model + tokenizer files, ~7 MB) and return its path."""
    from dreamfusion.guidance.weights import quiet_transformers

    tokenizer = clip_tokenizer_from_bpe(bpe_path)
    with quiet_transformers():
        tiny_clip_model(tokenizer, seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return Path(folder)
