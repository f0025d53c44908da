"""Probe the exemplar prior with the smallest possible 3D model: SDS into a dense voxel field.

This checks the *prior* (does SDS with it turn a prompt into the right object?) independently of
the project's NeRF, renderer and trainer: a G³ grid of density and colour, trilinear lookups,
64 uniform samples per ray, Adam, batch 1, renders over one random background colour per step,
the project's ScoreDistillation and ViewPrompts. It prints silhouette IoU and PSNR against the
analytic object from the evaluation rings (``exemplar.metrics``, 64², white background) inside the
training polar band, and writes the renders above the ground truth.
The pipeline benchmark proper (`benchmarks/exemplar.py`) runs the real trainer. ``--field hashgrid``
swaps the voxels for the project's NeRFField (hash grid + MLP, the demo's 2^16 tables, Adan with the
trainer's learning rates) in the same loop, to tell the field apart from the trainer.

    python benchmarks/exemplar_prior_probe.py --text "a rubber duck"
    python benchmarks/exemplar_prior_probe.py --text "a rubber duck" --condition view --no-view_prompt   # Janus
    python benchmarks/exemplar_prior_probe.py --text "a rubber duck" --no-opacity                         # haze
    python benchmarks/exemplar_prior_probe.py --iters 300 --field hashgrid --theta_range 30,150
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F

from dreamfusion.cameras import OrbitConfig, OrbitSampler, framing_fovy
from dreamfusion.exemplar import get_object, make_exemplar_prior
from dreamfusion.exemplar.metrics import RingSpec, ViewRender, evaluation_cameras, ground_truth, score_views
from dreamfusion.fields import FieldConfig, NeRFField
from dreamfusion.guidance.sds import ScoreDistillation, SDSConfig
from dreamfusion.optimizers import build_optimizer
from dreamfusion.prompts import ViewPrompts


def pair(text: str) -> tuple[float, float]:
    a, b = (float(v) for v in text.split(","))
    return a, b


class VoxelField(torch.nn.Module):
    """Density and albedo on a G³ grid over [-1, 1]³, with stable-dreamfusion's density blob."""

    def __init__(self, size: int, init_density: float):
        super().__init__()
        self.density = torch.nn.Parameter(torch.full((1, 1, size, size, size), init_density))
        self.colour = torch.nn.Parameter(torch.zeros(1, 3, size, size, size))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = points.view(1, -1, 1, 1, 3)
        raw = F.grid_sample(self.density, grid, align_corners=True).view(-1)
        blob = 5.0 * torch.exp(-points.square().sum(-1) / 0.08)  # the initial density bump at the centre
        sigma = torch.exp((raw + blob).clamp(max=15.0))
        colour = torch.sigmoid(F.grid_sample(self.colour, grid, align_corners=True).view(3, -1).T)
        return sigma, colour


def volume_render(field: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], rays_o: torch.Tensor, rays_d: torch.Tensor, background: torch.Tensor,
                  samples: int = 64, perturb: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """rgb [N, 3] over ``background`` and opacity [N] of rays [N, 3] through the unit sphere."""
    direction = F.normalize(rays_d, dim=-1)
    near, far = rays_o.norm(dim=-1) - 1.0, rays_o.norm(dim=-1) + 1.0
    z = near[:, None] + (far - near)[:, None] * torch.linspace(0, 1, samples)[None]
    if perturb:
        z = z + (torch.rand_like(z) - 0.5) * ((far - near) / samples)[:, None]
    points = (rays_o[:, None] + direction[:, None] * z[..., None]).clamp(-1, 1)
    sigma, colour = field(points.reshape(-1, 3))
    sigma, colour = sigma.view(-1, samples), colour.view(-1, samples, 3)
    delta = torch.cat([z[:, 1:] - z[:, :-1], ((far - near) / samples)[:, None]], 1)
    alpha = 1.0 - torch.exp(-sigma * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-15], 1), 1)[:, :-1]
    weights = alpha * transmittance
    opacity = weights.sum(1)
    return (weights[..., None] * colour).sum(1) + (1.0 - opacity[:, None]) * background, opacity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", default="a hamburger")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--guidance_scale", type=float, default=1.0)
    ap.add_argument("--resolution", type=int, default=32, help="prior image size")
    ap.add_argument("--render", type=int, default=32, help="training render size")
    ap.add_argument("--views_per_class", type=int, default=64)
    ap.add_argument("--grid", type=int, default=48)
    ap.add_argument("--field", choices=("voxel", "hashgrid"), default="voxel")
    ap.add_argument("--lr", type=float, default=None, help="voxel: Adam 0.05; hashgrid: Adan 5e-3 (10x on the grid)")
    ap.add_argument("--fovy_range", type=pair, default=None, help="default: frames the unit ball (+5 %%)")
    ap.add_argument("--radius_range", type=pair, default=(3.2, 3.2))
    ap.add_argument("--theta_range", type=pair, default=(30.0, 150.0))
    ap.add_argument("--condition", choices=("camera", "view"), default="camera")
    ap.add_argument("--view_kernel_deg", type=float, default=15.0, help="0 = plain view-group mixtures")
    ap.add_argument("--view_prompt", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--opacity", action=argparse.BooleanOptionalAction, default=True, help="give the prior RGB + opacity")
    ap.add_argument("--cache_dir", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="exemplar_probe.png")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    fovy = a.fovy_range or (framing_fovy(a.radius_range[0], 1.05),) * 2
    orbit = OrbitConfig(fovy_range=fovy, radius_range=a.radius_range, theta_range=a.theta_range)
    start = time.time()
    prior = make_exemplar_prior(a.text, resolution=a.resolution, views_per_class=a.views_per_class, orbit=orbit,
                                cache_dir=a.cache_dir, view_kernel_deg=a.view_kernel_deg or None, condition=a.condition)
    print(f"prior ready in {time.time() - start:.1f} s")
    sds = ScoreDistillation(prior, SDSConfig(guidance_scale=a.guidance_scale))
    prompts = ViewPrompts(prior, a.text, "", view_dependent=a.view_prompt)
    if a.field == "voxel":
        field = VoxelField(a.grid, init_density=-3.0)
        optimiser = torch.optim.Adam(field.parameters(), lr=a.lr or 0.05, betas=(0.9, 0.99), eps=1e-15)
    else:
        nerf = NeRFField(FieldConfig(bg_radius=-1.0, log2_hashmap_size=16))
        field = nerf.common_forward  # (sigma [N], albedo [N, 3]) like VoxelField
        optimiser = build_optimizer("adan", nerf.get_params(a.lr or 5e-3))  # trainer: Adan at 5x --lr 1e-3
    sampler = OrbitSampler(orbit)
    size = a.render
    start = time.time()
    for step in range(a.iters):
        cams = sampler.sample(1, size, size)
        rays_o, rays_d = cams.rays()
        rgb, opacity = volume_render(field, rays_o.reshape(-1, 3), rays_d.reshape(-1, 3), torch.rand(3))
        image = rgb.view(1, size, size, 3).permute(0, 3, 1, 2)
        if a.opacity:
            image = torch.cat([image, opacity.view(1, 1, size, size)], 1)
        emb = prompts.with_uncond(prompts.interpolated(cams.delta_azimuth))
        if prior.conditions_on_camera:
            emb = prior.with_cameras(emb, cams)
        out = sds.step(image, emb)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    train_s = time.time() - start

    def render(cams):
        rays_o, rays_d = cams.rays()
        with torch.no_grad():
            rgb, opacity = volume_render(field, rays_o.reshape(-1, 3), rays_d.reshape(-1, 3), torch.ones(3), 128, False)
        return ViewRender(rgb.view(-1, cams.height, cams.width, 3), opacity.view(-1, cams.height, cams.width))

    lo, hi = a.theta_range
    spec = RingSpec(polars=tuple(p for p in RingSpec().polars if lo <= p <= hi) or RingSpec().polars)
    cams = evaluation_cameras(spec)
    truth = ground_truth(get_object(a.text), cams)
    result = score_views(render, truth, cams)
    rings = "  ".join(f"{r['polar']:.0f}°: {r['iou']:.3f}/{r['psnr']:.1f}" for r in result["rings"])
    print(f"{a.text}: IoU {result['all']['iou']:.3f} (min {result['min']['iou']:.3f}), PSNR {result['all']['psnr']:.2f} dB, "
          f"train {train_s:.1f} s for {a.iters} steps; rings (IoU/PSNR) {rings}")
    import imageio.v2 as imageio

    pred = result["images"]["rgb"][::5]
    strip = torch.cat([torch.cat(list(pred), 1), torch.cat(list(truth.rgb[::5]), 1)], 0)
    imageio.imwrite(a.out, (strip.clamp(0, 1) * 255).byte().numpy())


if __name__ == "__main__":
    main()
