"""CLIP embeddings of rendered views and captions, for scoring (not for guidance).

Unlike :class:`dreamfusion.guidance.clip_guidance.ClipGuidance` (a differentiable loss on any
render size), this reproduces CLIP's own evaluation preprocessing in torch: resize the shorter side
to the model's input size (bicubic, antialiased), centre crop, clamp to [0, 1], normalise with CLIP's
mean and std. Captions get OpenAI's text clean-up before tokenising (:func:`clean_caption`).

    clip = ClipEmbedder.from_pretrained("openai/clip-vit-base-patch32", device)   # hub id or folder
    images = clip.encode_images(rgb)             # [V, 3, H, W] in [0, 1] -> [V, D], unit norm
    texts = clip.encode_texts(["a hamburger"])   # [1, D], unit norm

Weights load through :func:`dreamfusion.guidance.weights.load_pretrained`: missing ones are one
UserError line saying how to get them (``--clip_model /path/to/folder`` for a local copy).
"""

from __future__ import annotations

import html
import unicodedata

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.guidance.clip_guidance import CLIP_MEAN, CLIP_STD, load_clip, unit_features
from dreamfusion.guidance.weights import freeze

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
TEXT_BATCH = 64

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})


def clean_caption(text: str) -> str:
    """OpenAI's ``basic_clean`` without its ftfy dependency, for the cases that change tokens: HTML
    entities unescaped (twice, as OpenAI does), curly quotes straightened, full-width forms and Latin
    ligatures folded (NFKC on those blocks only). Whitespace and case are the tokenizer's business."""
    text = html.unescape(html.unescape(text)).translate(_QUOTES)
    return "".join(unicodedata.normalize("NFKC", c) if "\uff01" <= c <= "\uff5e" or "\ufb00" <= c <= "\ufb06" else c
                   for c in text).strip()


def center_crop_resize(rgb: Tensor, size: int) -> Tensor:
    """[B, 3, H, W] -> [B, 3, size, size], CLIP's geometry: shorter side resized to ``size``
    (bicubic, antialiased), centre crop; values clamped back to [0, 1] (bicubic overshoots, PIL's
    8-bit images cannot)."""
    _, _, h, w = rgb.shape
    if min(h, w) != size:
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        rgb = F.interpolate(rgb, (new_h, new_w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        h, w = new_h, new_w
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return rgb[:, :, top:top + size, left:left + size]


class ClipEmbedder:
    """A transformers ``CLIPModel`` and its tokenizer giving unit-norm image and text embeddings.

    Args:
        model: a ``transformers.CLIPModel`` (frozen here).
        tokenizer: its ``CLIPTokenizer``.
        device: where the model runs.
        name: the hub id or folder it came from (recorded in reports).
    """

    def __init__(self, model, tokenizer, device: torch.device | str, name: str = "clip"):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.device = torch.device(device)
        freeze(model)
        self.image_size = int(model.config.vision_config.image_size)
        self.text_length = min(int(tokenizer.model_max_length), int(model.config.text_config.max_position_embeddings))
        self.mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        self._text_cache: dict[str, Tensor] = {}

    @classmethod
    def from_pretrained(cls, key: str = DEFAULT_CLIP, device: torch.device | str = "cpu", *,
                        cache_dir: str | None = None, option_hint: str = "--clip_model") -> "ClipEmbedder":
        """Load by hub id (the local cache first; the hub only when online) or from a local folder."""
        model, tokenizer = load_clip(key, cache_dir=cache_dir, option_hint=option_hint)
        return cls(model.to(device).float(), tokenizer, device, name=key)

    def preprocess(self, rgb: Tensor) -> Tensor:
        """[B, 3, H, W] in [0, 1] -> CLIP's input [B, 3, S, S]."""
        x = center_crop_resize(rgb.to(self.device).float(), self.image_size)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def encode_images(self, rgb: Tensor) -> Tensor:
        """[B, 3, H, W] in [0, 1] -> unit-norm image embeddings [B, D]."""
        return unit_features(self.model.get_image_features(pixel_values=self.preprocess(rgb)))

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> Tensor:
        """[N] captions -> unit-norm text embeddings [N, D] (each caption encoded once per embedder,
        so a pool shared by many workspaces costs one pass)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        for start in range(0, len(missing), TEXT_BATCH):
            chunk = missing[start:start + TEXT_BATCH]
            # Padded to the longest caption, not to 77: the causal text transformer reads each
            # caption's features at its end token, which never sees the padding after it.
            tokens = self.tokenizer([clean_caption(t) for t in chunk], padding="longest", truncation=True,
                                    max_length=self.text_length, return_tensors="pt")
            out = unit_features(self.model.get_text_features(input_ids=tokens.input_ids.to(self.device),
                                                             attention_mask=tokens.attention_mask.to(self.device)))
            self._text_cache.update(zip(chunk, out))
        return torch.stack([self._text_cache[t] for t in texts])
