"""Guidance previews: render | decoded noisy latent | decoded one-step x0, for `--save_guidance`
(a PNG) and the viewer's guidance panel (a :class:`GuidancePreview` handed to a callable).

The x0 estimate is the exact one-step DDPM inversion `x0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t`
(stable-dreamfusion indexed ᾱ with a shifted timestep, a visual approximation only).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class GuidancePreview:
    """What the prior saw and made of one step: ``render``, ``noisy`` (the decoded x_t) and
    ``denoised`` (the decoded one-step x0), each [B, 3, H, W] in [0, 1] on the CPU at the prior's
    resolution, and the timesteps ``t`` [B]."""

    render: Tensor
    noisy: Tensor
    denoised: Tensor
    t: Tensor

    def strip(self) -> np.ndarray:
        """uint8 [B·H, 3·W, 3]: render | noisy | denoised, one row per batch element."""
        return to_uint8_grid([self.render, self.noisy, self.denoised])


@torch.no_grad()
def guidance_preview(prior, render: Tensor, out) -> GuidancePreview:
    """Decode a step's noisy latent and one-step x0 (``out``: the step's `SDSOutput`; ``render``
    [B, 3, H, W] in [0, 1], the image that was encoded). Raises ValueError when the prior cannot
    decode latents."""
    alphas = prior.alphas_cumprod.to(out.x_t.device)[out.t].view(-1, 1, 1, 1)
    x0 = (out.x_t - (1 - alphas).sqrt() * out.eps_hat) / alphas.sqrt()
    decode = getattr(prior, "decode_latents", None)
    if decode is None:
        raise ValueError(f"{type(prior).__name__} cannot decode latents for a guidance preview")
    noisy, pred = decode(out.x_t).float(), decode(x0).float()
    render = F.interpolate(render.detach().float(), noisy.shape[-2:], mode="bilinear", align_corners=False)
    return GuidancePreview(render.cpu(), noisy.cpu(), pred.cpu(), out.t.detach().cpu())


def save_guidance_preview(path: str | Path, prior, render: Tensor, out) -> Path:
    """Write one PNG with a row per batch element: render, noisy latent, one-step x0."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(guidance_preview(prior, render, out).strip()).save(path)
    return path


def deliver_preview(target, prior, render: Tensor, out) -> None:
    """Send a step's preview where it was asked for: ``target`` is a path (write the PNG) or a
    callable taking a :class:`GuidancePreview` (the viewer; a prior that cannot decode gives None)."""
    if callable(target):
        try:
            preview = guidance_preview(prior, render, out)
        except ValueError:
            preview = None
        target(preview)
    else:
        save_guidance_preview(target, prior, render, out)
