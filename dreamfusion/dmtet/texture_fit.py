"""The DMTet texture's start from a NeRF: its colour network fitted, on the initial tet surface, to
the colour the NeRF renders there.

The NeRF stage's mesh export textures each texel with the colour a ray along the inward normal
renders (:func:`dreamfusion.export.texture.seen_colour`): what SDS shaped is the colour the renders
show, a density-weighted mean over a thin shell below the level, not the albedo exactly at the level
set, which no render shows alone. The DMTet stage rasterizes its surface and reads the albedo at the
surface point, so with the colour network as the NeRF left it, it starts from the level set's colour
(measured on shaded NeRFs: up to 1.4 dB below the NeRF's own mesh, docs/dmtet.md). A short
regression moves that colour to the rendered one. Its points are spread over a shell of ``±shell``
along the normal with the colour of their surface point, so the colour stays right while the
surface moves in training.

    fit = fit_surface_colour(field, seen_colour(nerf.density_fn, nerf.albedo_fn), vertices, faces,
                             steps=200, lr=1e-3, shell=0.016)
    fit.rmse_before, fit.rmse_after
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamfusion.export.texture import SurfaceColorFn


@dataclass
class TextureFit:
    """What the fit did: RMSE of the albedo against the targets on held-out surface points (no
    shell offset), before and after ``steps`` steps on ``points`` training points."""

    steps: int
    points: int
    rmse_before: float
    rmse_after: float


def sample_surface(vertices: Tensor, faces: Tensor, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """``count`` points uniformly by area on the mesh (Float[V, 3], Int64[F, 3] outward faces; the
    metrics' sampler, :func:`dreamfusion.exemplar.metrics.geometry.sample_surface`) and their
    faces' outward unit normals: Float[count, 3] each, on the vertices' device."""
    from dreamfusion.exemplar.metrics.geometry import sample_surface as sample_numpy

    points, face = sample_numpy(vertices.cpu().double().numpy(), faces.cpu().numpy(), count, seed)
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normals = torch.nn.functional.normalize(torch.linalg.cross(b - a, c - a), dim=1)
    face = torch.from_numpy(face).to(vertices.device)
    return torch.from_numpy(points).to(vertices), normals[face]


def fit_surface_colour(field, target_fn: SurfaceColorFn, vertices: Tensor, faces: Tensor, *, steps: int, lr: float,
                       shell: float, points: int = 1 << 16, batch: int = 1 << 13, seed: int = 0,
                       points_per_chunk: int = 1 << 12) -> TextureFit:
    """Fit ``field``'s albedo (``field.density(x)["albedo"]``) to ``target_fn(points, normals)`` on
    the surface (vertices Float[V, 3], faces Int64[F, 3] outward), with Adam on the field's groups
    (``field.get_params(lr)``: the hash grid at 10x), ``steps`` steps of ``batch`` points drawn
    from ``points`` surface points, each moved by U(−shell, shell) along its normal. Seeded."""
    device = vertices.device
    generator = torch.Generator(device=device).manual_seed(seed)
    vertices, faces = vertices.detach().float(), faces.detach()
    with torch.no_grad():
        train_p, train_n = sample_surface(vertices, faces, points, seed)
        held_p, held_n = sample_surface(vertices, faces, min(points, 1 << 13), seed + 1)
        targets = torch.cat([target_fn(train_p[i:i + points_per_chunk], train_n[i:i + points_per_chunk]).float()
                             for i in range(0, points, points_per_chunk)]).clamp(0, 1)
        held_targets = target_fn(held_p, held_n).float().clamp(0, 1)

    def held_rmse() -> float:
        with torch.no_grad():
            albedo = field.density(held_p)["albedo"].float()
            return float((albedo - held_targets).pow(2).mean().sqrt())

    before = held_rmse()
    if steps > 0:
        optimizer = torch.optim.Adam(field.get_params(lr))
        for _ in range(steps):
            pick = torch.randint(0, points, (batch,), generator=generator, device=device)
            offset = (torch.rand(batch, 1, generator=generator, device=device) * 2 - 1) * shell
            albedo = field.density(train_p[pick] + offset * train_n[pick])["albedo"].float()
            loss = (albedo - targets[pick]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return TextureFit(steps=steps, points=points, rmse_before=before, rmse_after=held_rmse())
