"""The density level whose iso-surface has the silhouettes of the field's own renders.

A radiance field has no surface, only density: a render turns opaque where the optical depth along
the ray passes about ln 2, which, depending on how steeply the density rises, happens at density 3
in one field and 30 in another. A fixed level (stable-dreamfusion's ``--density_thresh`` 10)
therefore gives a mesh that is fatter or thinner than what the user saw in the video. A pixel's ray
meets the iso-surface of level t exactly when the largest density along it reaches t, so for rays
with known rendered opacity, the level whose covered set best matches {opacity > 0.5} (largest
IoU, found exactly by sorting) is the level at which mesh and renders agree.

Example::

    level = silhouette_iso_level(density_fn, rays_o, rays_d, alpha, bound=1.0, reference=10.0)
    level.threshold, level.iou, level.reference_iou
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass
class IsoLevel:
    """The chosen level and the silhouette IoU it reaches over the given rays; ``reference_iou`` is
    that of the fixed level it replaces, for comparison."""

    threshold: float
    iou: float
    reference_iou: float | None = None


def ray_max_density(density_fn: Callable[[Tensor], Tensor], rays_o: Tensor, rays_d: Tensor, *, bound: float = 1.0,
                    samples: int = 160, chunk_rays: int = 4096) -> Tensor:
    """Largest density [N] at ``samples`` evenly spaced points of each ray [N, 3] inside the ball of
    radius ``bound`` (0 for rays that miss it)."""
    from dreamfusion.renderers import near_far_from_sphere

    out = torch.zeros(rays_o.shape[0], device=rays_o.device)
    steps = torch.linspace(0.0, 1.0, samples, device=rays_o.device)
    with torch.no_grad():
        for a in range(0, rays_o.shape[0], chunk_rays):
            o, d = rays_o[a:a + chunk_rays], rays_d[a:a + chunk_rays]
            near, far = near_far_from_sphere(o, d, bound)
            z = near[:, None] + (far - near)[:, None] * steps[None]
            sigma = density_fn((o[:, None] + d[:, None] * z[..., None]).reshape(-1, 3)).reshape(len(o), samples)
            out[a:a + chunk_rays] = torch.where(far > near, sigma.float().amax(1), torch.zeros_like(near))
    return out


def silhouette_iso_level(density_fn: Callable[[Tensor], Tensor], rays_o: Tensor, rays_d: Tensor, alpha: Tensor, *,
                         bound: float = 1.0, samples: int = 160, reference: float | None = None) -> IsoLevel:
    """The level whose iso-surface covers the rays [N, 3] with rendered opacity ``alpha`` [N] > 0.5,
    and as few others as possible (see the module docstring); ``reference`` is scored too.

    Raises ValueError when no ray is opaque.
    """
    peak = ray_max_density(density_fn, rays_o, rays_d, bound=bound, samples=samples).cpu().double()
    opaque = alpha.reshape(-1).cpu() > 0.5
    if not opaque.any():
        raise ValueError("no rendered pixel is opaque: the field shows nothing to mesh")
    order = torch.argsort(peak, descending=True)
    covered_opaque = torch.cumsum(opaque[order].double(), 0)  # opaque rays among the k highest peaks
    k = torch.arange(1, len(peak) + 1, dtype=torch.float64)
    iou = covered_opaque / (k + opaque.sum() - covered_opaque)
    best = int(torch.argmax(iou))
    high = float(peak[order[best]])
    low = float(peak[order[best + 1]]) if best + 1 < len(peak) else 0.0
    # Every level in (low, high] covers the same rays: take their geometric mean (densities spread
    # over decades), or half of ``high`` when nothing lies below it.
    threshold = (high * low) ** 0.5 if low > 0 else 0.5 * high
    result = IsoLevel(threshold=threshold, iou=float(iou[best]))
    if reference is not None:
        covered = peak >= reference
        union = (covered | opaque).sum()
        result.reference_iou = float((covered & opaque).sum() / union) if union else 1.0
    return result
