"""2D guidance for text/image-to-3D: Score Distillation over diffusion priors, and CLIP.

`make_guidance(name, device, ...)` builds one guidance by name:
    "SD"      → ScoreDistillation over StableDiffusionPrior   (step(images, embeddings, ...))
    "IF"      → ScoreDistillation over DeepFloydIFPrior
    "zero123" → Zero123Guidance (set_references(...), step(images, deltas, angles, ...))
    "clip"    → ClipGuidance (loss(rgb, image_embedding, text_embedding, grad_scale))
Heavy libraries (diffusers, transformers) are imported only when a model is built.

Usage:
    sd = make_guidance("SD", "cuda", sd_version="2.1", fp16=True)
    emb = sd.prior.encode_text(["", "a hamburger"])            # [uncond, cond]
    out = sd.step(rgb, emb, grad_scale=1.0)                      # B = 1: rows [uncond ; cond]
    out.loss.backward()
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UserError
from .perpneg import aggregate_perpneg, perpendicular_component, perpneg_embeddings
from .prior import DiffusionPrior, has_latent_mode
from .sds import ScoreDistillation, SDSConfig, SDSOutput, SpecifyGradient, timestep_bounds

GUIDANCE_NAMES = ("SD", "IF", "zero123", "clip")
DEFAULT_GUIDANCE_SCALE = {"SD": 100.0, "IF": 100.0, "zero123": 5.0}

__all__ = ["make_guidance", "GUIDANCE_NAMES", "DiffusionPrior", "ScoreDistillation", "SDSConfig",
           "SDSOutput", "SpecifyGradient", "aggregate_perpneg",
           "perpendicular_component", "perpneg_embeddings", "has_latent_mode", "timestep_bounds"]


def make_guidance(name: str, device: torch.device | str = "cpu", *, sd_version: str = "2.1",
                  hf_key: str | None = None, if_key: str | None = None,
                  zero123_key: str | None = None, clip_key: str | None = None,
                  fp16: bool = False, vram_O: bool = False,
                  t_range: tuple[float, float] = (0.02, 0.98), guidance_scale: float | None = None,
                  grad_clip: float | None = None, loss_form: str = "mse",
                  zero123_grad_scale: str | None = "angle", cache_dir: str | None = None) -> Any:
    """Build the guidance called `name` (one of GUIDANCE_NAMES) on `device`.

    Args:
        sd_version, hf_key: SD checkpoint ("1.5", "2.0", "2.1"/"2.1-base") or any hub id / folder.
        if_key, zero123_key, clip_key: hub id or folder of those models (defaults: the
            DeepFloyd/IF-I-XL-v1.0, kxic/zero123-xl and openai/clip-vit-base-patch16 checkpoints).
        fp16: half precision on CUDA for SD (IF is always half on CUDA; Zero123, CLIP float32).
        vram_O: low-VRAM options (attention/VAE slicing, channels-last, CPU offload).
        t_range, guidance_scale, grad_clip, loss_form: `SDSConfig` (guidance_scale defaults to
            100 for SD/IF and 5 for Zero123).
        zero123_grad_scale: "angle" or None (spec §3.3).
    """
    device = torch.device(device)
    if name not in GUIDANCE_NAMES:
        raise UserError(f"unknown guidance {name!r}; choose from {', '.join(GUIDANCE_NAMES)}")
    if name == "clip":
        from .clip_guidance import CLIP_KEY, ClipGuidance

        return ClipGuidance.from_pretrained(clip_key or CLIP_KEY, device, cache_dir=cache_dir)
    config = SDSConfig(t_range=tuple(t_range),
                       guidance_scale=DEFAULT_GUIDANCE_SCALE[name] if guidance_scale is None else guidance_scale,
                       grad_clip=grad_clip, loss_form=loss_form)  # type: ignore[arg-type]
    if name == "SD":
        from .stable_diffusion import StableDiffusionPrior, resolve_sd_key

        prior = StableDiffusionPrior.from_pretrained(resolve_sd_key(sd_version, hf_key), device,
                                                     fp16=fp16, vram_O=vram_O, cache_dir=cache_dir)
        return ScoreDistillation(prior, config)
    if name == "IF":
        from .deepfloyd_if import IF_KEY, DeepFloydIFPrior

        # IF always runs in half precision on CUDA (spec §3.2); CPU stays float32.
        prior = DeepFloydIFPrior.from_pretrained(if_key or IF_KEY, device, fp16=True,
                                                 vram_O=vram_O, cache_dir=cache_dir)
        return ScoreDistillation(prior, config)
    from .zero123 import ZERO123_KEY, Zero123Guidance, Zero123Prior

    prior = Zero123Prior.from_pretrained(zero123_key or ZERO123_KEY, device, vram_O=vram_O,
                                         cache_dir=cache_dir)
    return Zero123Guidance(prior, config, grad_scale_mode=zero123_grad_scale)
