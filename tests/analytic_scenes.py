"""Analytic fields and cameras shared by the renderer and occupancy-grid tests (and the benchmark)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn

from dreamfusion.cameras import get_rays, intrinsics_from_fovy, look_at, spherical_to_position
from dreamfusion.fields import FieldConfig, NeRFField
from dreamfusion.renderers import RenderConfig, VolumeRenderer


class AnalyticField(nn.Module):
    """Duck-typed stand-in for NeRFField with closed-form density, colour and normals."""

    bg_net = None

    def __init__(self, sigma_fn, color_fn, normal_fn=None):
        super().__init__()
        self.sigma_fn, self.color_fn, self.normal_fn = sigma_fn, color_fn, normal_fn

    def density(self, x):
        return {"sigma": self.sigma_fn(x), "albedo": self.color_fn(x)}

    def normal(self, x):
        return self.normal_fn(x)

    def forward(self, x, d=None, light_d=None, ambient_ratio=1.0, shading="albedo"):
        sigma, albedo = self.sigma_fn(x), self.color_fn(x)
        if shading == "albedo":
            return sigma, albedo, None
        n = self.normal_fn(x)
        return sigma, self.shade(albedo, n, light_d, ambient_ratio, shading), n

    shade = staticmethod(NeRFField.shade)  # the renderer shades with the field's own shading


def sphere_field(radius=0.5, sigma=50.0, color=(0.2, 0.6, 0.9)):
    col = torch.tensor(color)
    return AnalyticField(
        lambda x: torch.where(x.norm(dim=-1) < radius, sigma, 0.0),
        lambda x: col.expand(x.shape[0], 3),
        lambda x: torch.nn.functional.normalize(x, dim=-1),
    )


def coloured_sphere_field(radius=0.55, sigma=60.0):
    """An opaque sphere whose colour varies smoothly over its surface (a fit target)."""
    return AnalyticField(
        lambda x: sigma * torch.sigmoid((radius - x.norm(dim=-1)) * 80.0),
        lambda x: 0.5 + 0.4 * torch.stack([torch.sin(3 * x[:, 0]), torch.cos(3 * x[:, 1]), torch.sin(2 * x[:, 2] + 1)], -1),
        lambda x: torch.nn.functional.normalize(x, dim=-1),
    )


def orbit_rays(polar, azimuth, radius=3.2, fovy=20.0, size=32):
    """rays_o, rays_d [B, size*size, 3] for cameras at the given angles (degrees) looking at the origin."""
    centre = spherical_to_position(torch.as_tensor(polar, dtype=torch.float32), torch.as_tensor(azimuth, dtype=torch.float32), torch.full((len(polar),), radius))
    return get_rays(look_at(centre), intrinsics_from_fovy(fovy, size, size), size, size)


def fit_field(size=24, iters=100, n_rays=256, steps=16, seed=0, field_config: FieldConfig | None = None):
    """Fit a grid field (small by default) to 24 views of an analytic coloured sphere.

    Returns (held-out PSNR over 3 unseen views, the field, the held-out rays).
    """
    torch.manual_seed(seed)
    target_renderer = VolumeRenderer(coloured_sphere_field(), RenderConfig(num_steps=128, upsample_steps=64))
    polar = torch.tensor([60.0] * 8 + [90.0] * 8 + [120.0] * 8)
    azimuth = torch.arange(24) * 45.0 % 360 + torch.tensor([0.0] * 8 + [22.5] * 8 + [0.0] * 8)
    rays = orbit_rays(polar, azimuth, size=size)
    held_out = orbit_rays(torch.tensor([75.0, 100.0, 80.0]), torch.tensor([10.0, 200.0, 300.0]), size=size)
    with torch.no_grad():
        target = target_renderer(*rays, bg_color=0.0)["image"].reshape(-1, 3)  # premultiplied colour
        alpha = target_renderer(*rays, bg_color=0.0)["weights_sum"].reshape(-1, 1)
        held_out_target = target_renderer(*held_out)["image"]
    small = FieldConfig(num_levels=8, base_resolution=8, desired_resolution=128, log2_hashmap_size=14, hidden_dim=32, bg_radius=-1)
    field = NeRFField(field_config or small)
    renderer = VolumeRenderer(field, RenderConfig(num_steps=steps, upsample_steps=steps // 2))
    opt = torch.optim.Adam(field.get_params(1e-2), betas=(0.9, 0.99), eps=1e-15, fused=True)
    o, d = (r.reshape(-1, 3) for r in rays)
    g = torch.Generator().manual_seed(seed)
    for _ in range(iters):
        idx = torch.randint(0, o.shape[0], (n_rays,), generator=g)
        # A random background per ray makes stray density visible (on white only, white haze is not).
        bg = torch.rand(n_rays, 3, generator=g)
        pred = renderer(o[idx][None], d[idx][None], bg_color=bg, perturb=True, generator=g)["image"][0]
        loss = ((pred - (target[idx] + (1 - alpha[idx]) * bg)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = ((renderer(*held_out)["image"] - held_out_target) ** 2).mean().item()
    return -10 * math.log10(mse), field, held_out


@functools.lru_cache(maxsize=1)
def cached_fit():
    """fit_field() with the default settings, computed once per test session (two test files use it)."""
    return fit_field()
