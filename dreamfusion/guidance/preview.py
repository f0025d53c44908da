"""`--save_guidance` previews: render | decoded noisy latent | decoded one-step x0 (PNG, PIL).

The x0 estimate is the exact one-step DDPM inversion `x0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t`
(stable-dreamfusion indexed ᾱ with a shifted timestep, a visual approximation only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


def to_uint8_grid(rows: list[Tensor]) -> np.ndarray:
    """Images [B,3,H,W] in [0,1], side by side per row, rows stacked → uint8 [B·H, n·W, 3]."""
    grid = torch.cat([torch.cat(list(r), dim=-1) for r in zip(*rows)], dim=-2)  # [3, B·H, n·W]
    return (grid.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def save_guidance_preview(path: str | Path, prior, render: Tensor, out) -> Path:
    """Write one PNG with a row per batch element: render, noisy latent, one-step x0.

    Args:
        render: [B, 3, H, W] in [0, 1] (the image that was encoded).
        out: the `SDSOutput` of the step.
    """
    alphas = prior.alphas_cumprod.to(out.x_t.device)[out.t].view(-1, 1, 1, 1)
    x0 = (out.x_t - (1 - alphas).sqrt() * out.eps_hat) / alphas.sqrt()
    decode = getattr(prior, "decode_latents", None)
    if decode is None:
        raise ValueError(f"{type(prior).__name__} cannot decode latents for save_guidance")
    noisy, pred = decode(out.x_t).float(), decode(x0).float()
    size = noisy.shape[-2:]
    render = F.interpolate(render.detach().float(), size, mode="bilinear", align_corners=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8_grid([render.cpu(), noisy.cpu(), pred.cpu()])).save(path)
    return path
