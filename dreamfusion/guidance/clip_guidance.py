"""CLIP guidance (spec §3.4): pull renders towards a reference image and a text in CLIP space.

Used with image+text runs. Renders are resized to CLIP's input size and normalised with CLIP's
constants; the loss is `−mean_b(cos(img_b, ref)·g_b) − mean_b(cos(img_b, text)·g_b)` where the
trainer sets `g = 10·(1 − |azimuth|/180)·lambda_guidance` (`clip_grad_scale`).

Usage:
    clip = ClipGuidance.from_pretrained("openai/clip-vit-base-patch16", device)
    ref, txt = clip.encode_images(ref_rgb), clip.encode_text(["a cat"])
    loss = clip.loss(rgb, image_embedding=ref, text_embedding=txt,
                     grad_scale=clip_grad_scale(azimuth))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .weights import freeze, load_pretrained, quiet_transformers

CLIP_KEY = "openai/clip-vit-base-patch16"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_grad_scale(azimuth: Tensor, lambda_guidance: float = 1.0) -> Tensor:
    """Per-camera CLIP weight `10·(1 − |azimuth|/180)·lambda_guidance` (far views pull less)."""
    return 10.0 * (1.0 - azimuth.float().abs() / 180.0) * lambda_guidance


def unit_features(out) -> Tensor:
    """Unit-norm float embeddings [B, D] from ``get_image_features`` / ``get_text_features``
    (a tensor, or in transformers 5 an output object holding it as ``pooler_output``)."""
    return F.normalize(getattr(out, "pooler_output", out).float(), dim=-1)


def load_clip(key: str, *, cache_dir: str | None = None, option_hint: str = "--clip_key"):
    """``(CLIPModel, CLIPTokenizer)`` by hub id (the local cache first; the hub only when online) or
    from a local folder; missing weights are one line naming ``option_hint`` (guidance and evaluation)."""
    from transformers import CLIPModel, CLIPTokenizer

    def load(k: str, local_only: bool):
        common = dict(local_files_only=local_only, cache_dir=cache_dir)
        return CLIPModel.from_pretrained(k, **common), CLIPTokenizer.from_pretrained(k, **common)

    with quiet_transformers():
        return load_pretrained(load, key, what="CLIP", option_hint=option_hint, cache_dir=cache_dir)


class ClipGuidance:
    """A transformers `CLIPModel` + tokenizer giving normalised embeddings and cosine losses."""

    def __init__(self, model, tokenizer, device: torch.device | str):
        self.model, self.tokenizer = model, tokenizer
        self.device = torch.device(device)
        freeze(model)
        self.image_size = int(model.config.vision_config.image_size)
        self.mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_pretrained(cls, key: str = CLIP_KEY, device: torch.device | str = "cpu", *,
                        cache_dir: str | None = None, option_hint: str = "--clip_key") -> "ClipGuidance":
        model, tokenizer = load_clip(key, cache_dir=cache_dir, option_hint=option_hint)
        return cls(model.to(device), tokenizer, device)

    def preprocess(self, rgb: Tensor) -> Tensor:
        """[B,3,H,W] in [0,1] → CLIP input [B,3,S,S] (bilinear resize, CLIP normalisation)."""
        x = F.interpolate(rgb.to(self.device).float(), (self.image_size, self.image_size),
                          mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def encode_images(self, rgb: Tensor) -> Tensor:
        """[B,3,H,W] in [0,1] → unit-norm image embeddings [B, D] (differentiable)."""
        return unit_features(self.model.get_image_features(pixel_values=self.preprocess(rgb)))

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B] prompts → unit-norm text embeddings [B, D]."""
        tok = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                             max_length=self.tokenizer.model_max_length, return_tensors="pt")
        return unit_features(self.model.get_text_features(input_ids=tok.input_ids.to(self.device),
                                                          attention_mask=tok.attention_mask.to(self.device)))

    def loss(self, rgb: Tensor, image_embedding: Tensor | None = None,
             text_embedding: Tensor | None = None, grad_scale: float | Tensor = 1.0) -> Tensor:
        """`−mean_b(cos(img_b, ref)·g_b) − mean_b(cos(img_b, text)·g_b)` (missing terms skipped).

        Args:
            rgb: [B,3,H,W] renders in [0,1].
            image_embedding, text_embedding: [1, D] unit-norm targets.
            grad_scale: g, a float or [B].
        """
        img = self.encode_images(rgb)
        g = torch.as_tensor(grad_scale, dtype=torch.float32, device=img.device)
        loss = img.new_zeros(())
        for target in (image_embedding, text_embedding):
            if target is not None:
                cos = (img * target.to(img.device).float()).sum(-1)   # both unit norm
                loss = loss - (cos * g).mean()
        return loss
