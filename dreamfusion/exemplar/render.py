"""Ground-truth rendering of an analytic object by sphere tracing (pure PyTorch, batched).

Used to build the exemplar image sets of the built-in prior and as the ground truth of the
benchmark. Rays come from ``dreamfusion.cameras`` (unnormalised directions whose parameter is
planar depth), so ``depth`` here is comparable with the NeRF renderer's depth.

Shading matches the NeRF networks (spec §3.9): ``albedo``; ``lambertian`` =
albedo·(ambient + (1-ambient)·max(0, n·l)); ``textureless`` = the same factor in grey; ``normal`` =
(n+1)/2. Anti-aliasing is by supersampling: ``supersample`` = k renders k×k rays per pixel and
averages alpha and premultiplied colour, which gives soft silhouette edges like a volume render.

Example::

    cams = make_batch(OrbitConfig(), polar, azimuth, radius, fovy, 64, 64)
    out = render_cameras(get_object("a red cube"), cams, supersample=2)
    out.rgb  # [B, 64, 64, 3] on a white background; out.alpha [B, 64, 64]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.cameras import CameraBatch, get_rays, intrinsics_from_fovy
from dreamfusion.exemplar.objects import AnalyticObject

SHADINGS = ("albedo", "lambertian", "textureless", "normal")


@dataclass
class TraceSettings:
    """Sphere-tracing controls.

    ``step_scale`` < 1 under-relaxes the steps because some parts (ellipsoids, the wavy lettuce)
    are distance bounds rather than exact distances.
    """

    bound: float = 1.0
    max_steps: int = 96
    step_scale: float = 0.85
    hit_epsilon: float = 1e-3
    normal_epsilon: float = 1e-3
    chunk_rays: int = 1 << 16


@dataclass
class ObjectRender:
    """Images of an analytic object.

    rgb [B, H, W, 3] composited over the background; alpha [B, H, W] coverage in [0, 1];
    depth [B, H, W] planar depth (coverage-weighted mean over supersamples, 0 where empty);
    normal [B, H, W, 3] unit world normals (0 where empty); premultiplied [B, H, W, 3] =
    shaded colour × coverage, i.e. the image over a black background. With a light: lambert
    [B, H, W] = max(0, n·l) and lambert_albedo [B, H, W, 3] = albedo · max(0, n·l), both
    premultiplied, from which any ambient's lambertian or textureless image is a linear mix
    (``views.ExemplarViews.shaded``).
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    normal: Tensor
    premultiplied: Tensor
    lambert: Tensor | None = None
    lambert_albedo: Tensor | None = None


def sphere_trace(obj: AnalyticObject, rays_o: Tensor, rays_d: Tensor, settings: TraceSettings | None = None) -> tuple[Tensor, Tensor]:
    """First surface hit along each ray.

    Args:
        rays_o, rays_d: [N, 3]; ``rays_d`` need not be unit length.
    Returns:
        hit [N] bool, t [N]: ray parameter of the hit in units of ``rays_d`` (planar depth for
        camera rays), meaningful where ``hit``.
    """
    s = settings or TraceSettings()
    norm = rays_d.norm(dim=-1).clamp_min(1e-12)
    d = rays_d / norm[:, None]
    # Start on the bounding sphere: rays that miss it cannot hit the object.
    b = (rays_o * d).sum(-1)
    disc = b * b - (rays_o.square().sum(-1) - s.bound**2)
    inside_bound = disc > 0
    root = disc.clamp_min(0).sqrt()
    t = (-b - root).clamp_min(0.0)
    t_far = -b + root
    hit = torch.zeros_like(inside_bound)
    active = inside_bound.nonzero().squeeze(-1)
    for _ in range(s.max_steps):
        if active.numel() == 0:
            break
        dist = obj.sdf(rays_o[active] + t[active, None] * d[active])
        converged = dist < s.hit_epsilon
        hit[active[converged]] = True
        # Converged rays still take their last (tiny) step: it lands them closer to the surface.
        t[active] = t[active] + torch.where(converged, dist, s.step_scale * dist)
        alive = ~converged & (t[active] < t_far[active])
        active = active[alive]
    return hit, t / norm


def surface_normals(obj: AnalyticObject, points: Tensor, epsilon: float = 1e-3) -> Tensor:
    """Unit normals [N, 3] = normalised central-difference gradient of the SDF."""
    offsets = torch.eye(3, dtype=points.dtype, device=points.device) * epsilon
    probe = torch.cat([points[:, None] + offsets, points[:, None] - offsets], dim=1)  # [N, 6, 3]
    d = obj.sdf(probe.reshape(-1, 3)).reshape(-1, 2, 3)
    return F.normalize(d[:, 0] - d[:, 1], dim=-1)


def shade(albedo: Tensor, normal: Tensor, shading: str, light_dir: Tensor | None, ambient: float | Tensor) -> Tensor:
    """Colour [N, 3] of surface points under the NeRF networks' shading modes."""
    if shading == "albedo":
        return albedo
    if shading == "normal":
        return (normal + 1.0) / 2.0
    if shading not in SHADINGS:
        raise ValueError(f"unknown shading {shading!r}; expected one of {SHADINGS}")
    if light_dir is None:
        raise ValueError(f"shading {shading!r} needs a light direction")
    lam = torch.as_tensor(ambient, dtype=albedo.dtype, device=albedo.device)
    lam = lam + (1.0 - lam) * (normal * light_dir).sum(-1, keepdim=True).clamp_min(0.0)
    return albedo * lam if shading == "lambertian" else lam.expand_as(albedo)


def render_rays(obj: AnalyticObject, rays_o: Tensor, rays_d: Tensor, *, shading: str = "albedo",
                light_dir: Tensor | None = None, ambient: float | Tensor = 1.0,
                settings: TraceSettings | None = None) -> dict[str, Tensor]:
    """Render rays [N, 3].

    Args:
        light_dir: [3] (all rays) or [N, 3] (per ray) light direction, for lambertian/textureless.
        ambient: scalar or [N] ambient ratio.
    Returns:
        hit [N] bool, depth [N] (planar, 0 where missed), normal [N, 3] and colour [N, 3] (0 where
        missed); with ``light_dir`` also lambert [N] = max(0, n·l) and lambert_albedo [N, 3] (0
        where missed).
    """
    s = settings or TraceSettings()
    hit, t = sphere_trace(obj, rays_o, rays_d, s)
    n_rays = rays_o.shape[0]
    depth = torch.where(hit, t, torch.zeros_like(t))
    normal = torch.zeros(n_rays, 3, dtype=rays_o.dtype, device=rays_o.device)
    colour = torch.zeros_like(normal)
    idx = hit.nonzero().squeeze(-1)
    if idx.numel():
        points = rays_o[idx] + t[idx, None] * rays_d[idx]
        n = surface_normals(obj, points, s.normal_epsilon)
        light = None
        if light_dir is not None:
            light = torch.as_tensor(light_dir, dtype=points.dtype, device=points.device)
            light = F.normalize(light[idx] if light.ndim == 2 else light.reshape(1, 3), dim=-1)  # per ray or shared
        amb = torch.as_tensor(ambient, dtype=points.dtype, device=points.device)
        amb = amb[idx, None] if amb.ndim == 1 else amb
        albedo = obj.albedo(points)
        normal[idx] = n
        colour[idx] = shade(albedo, n, shading, light, amb)
    out = {"hit": hit, "depth": depth, "normal": normal, "colour": colour}
    if light_dir is not None:
        out["lambert"] = torch.zeros(n_rays, dtype=rays_o.dtype, device=rays_o.device)
        out["lambert_albedo"] = torch.zeros_like(colour)
        if idx.numel():
            lam = (normal[idx] * light).sum(-1).clamp_min(0.0)
            out["lambert"][idx] = lam
            out["lambert_albedo"][idx] = albedo * lam[:, None]
    return out


def render_cameras(obj: AnalyticObject, cameras: CameraBatch, *, supersample: int = 2, shading: str = "albedo",
                   light_dirs: Tensor | None = None, ambient: Tensor | float = 1.0,
                   background: float | Tensor = 1.0, settings: TraceSettings | None = None) -> ObjectRender:
    """Render every camera of a batch at ``cameras.height`` × ``cameras.width``.

    Args:
        cameras: from ``dreamfusion.cameras`` (c2w [B,4,4], intrinsics [B,4]).
        supersample: k×k rays per pixel (1 = none), averaged in premultiplied space.
        light_dirs: [B, 3] light direction per camera (lambertian/textureless).
        ambient: scalar or [B] ambient ratio.
        background: scalar, [3] or [B, 3] RGB in [0, 1].
    """
    s = settings or TraceSettings()
    k = int(supersample)
    batch, height, width = cameras.c2w.shape[0], cameras.height, cameras.width
    hs, ws = height * k, width * k
    device = cameras.c2w.device
    # The same field of view sampled on a k-times finer pixel grid: each pixel's k×k sub-pixels.
    intrinsics = intrinsics_from_fovy(cameras.fovy, hs, ws).to(device) if k > 1 else cameras.intrinsics
    rays_o, rays_d = get_rays(cameras.c2w, intrinsics, hs, ws)
    per_view = hs * ws
    # All views are traced together (one flat ray list) so small images still fill a chunk.
    lights = None
    if light_dirs is not None:
        lights = torch.as_tensor(light_dirs, dtype=torch.float32, device=device).reshape(batch, 1, 3)
        lights = lights.expand(batch, per_view, 3).reshape(-1, 3)
    ambients = torch.as_tensor(ambient, dtype=torch.float32, device=device).reshape(-1, 1)
    ambients = ambients.expand(batch, per_view).reshape(-1)
    rays_o, rays_d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
    parts = []
    for a in range(0, rays_o.shape[0], s.chunk_rays):
        sl = slice(a, a + s.chunk_rays)
        light = None if lights is None else lights[sl]
        parts.append(render_rays(obj, rays_o[sl], rays_d[sl], shading=shading, light_dir=light, ambient=ambients[sl], settings=s))
    out = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
    hit = out["hit"].float().reshape(batch, hs, ws)
    depth = out["depth"].reshape(batch, hs, ws)
    normal = out["normal"].reshape(batch, hs, ws, 3)
    colour = out["colour"].reshape(batch, hs, ws, 3)

    def pool(x: Tensor) -> Tensor:  # [B, hs, ws, C] -> [B, H, W, C] box average of k×k sub-pixels
        return F.avg_pool2d(x.permute(0, 3, 1, 2), k).permute(0, 2, 3, 1) if k > 1 else x

    alpha = pool(hit[..., None])[..., 0]
    premultiplied = pool(colour)  # colour is 0 where not hit
    lambert = lambert_albedo = None
    if "lambert" in out:  # premultiplied like the colour: 0 where not hit
        lambert = pool(out["lambert"].reshape(batch, hs, ws, 1))[..., 0]
        lambert_albedo = pool(out["lambert_albedo"].reshape(batch, hs, ws, 3))
    covered = alpha.clamp_min(1e-8)
    depth = pool(depth[..., None])[..., 0] / covered
    normal = F.normalize(pool(normal), dim=-1)
    bg = torch.as_tensor(background, dtype=torch.float32, device=alpha.device)
    bg = bg[:, None, None, :] if bg.ndim == 2 else bg.reshape(1, 1, 1, -1)  # [B,3], [3] or scalar
    rgb = premultiplied + (1.0 - alpha[..., None]) * bg
    return ObjectRender(rgb=rgb, alpha=alpha, depth=depth, normal=normal, premultiplied=premultiplied,
                        lambert=lambert, lambert_albedo=lambert_albedo)
