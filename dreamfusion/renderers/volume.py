"""Volume rendering of a :class:`~dreamfusion.fields.NeRFField` (spec §3.8).

Two paths with the same outputs:
  * ``run``: stable-dreamfusion's pure-PyTorch renderer: near/far from the bounding sphere,
    ``num_steps`` stratified samples, ``upsample_steps`` importance samples (``sample_pdf``),
    alpha compositing.
  * ``run_fast`` (``RenderConfig.cuda_ray``): occupancy-grid ray marching that skips empty space
    (:mod:`dreamfusion.occupancy_grid`), the ``--cuda_ray`` semantics in pure PyTorch.

Example::

    renderer = VolumeRenderer(NeRFField(FieldConfig()), RenderConfig())
    rays_o, rays_d = get_rays(c2w, intrinsics, 64, 64)                 # [B, 4096, 3] each
    out = renderer(rays_o, rays_d, shading="lambertian", ambient_ratio=0.3, perturb=True)
    out["image"]        # [B, 4096, 3]; also depth [B, N], weights_sum [B, N], weights, ...

Conventions: ``rays_d`` is not normalised (camera-space z = -1), so the ray parameter ``t`` is planar
depth and ``depth`` is planar depth. Opacity uses metric lengths: ``alpha = 1 - exp(-sigma * dt * |d|)``
(stable-dreamfusion uses ``dt`` alone, which under-weights off-axis rays by ``|d|``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from dreamfusion.errors import UserError
from dreamfusion.fields import SHADINGS, NeRFField, safe_normalize
from dreamfusion.losses import distortion_loss, normal_smoothness_3d, orientation_loss


@dataclass
class RenderConfig:
    """Options of :class:`VolumeRenderer` (names follow stable-dreamfusion's CLI)."""

    bound: float = 1.0
    num_steps: int = 64  # stratified samples per ray (run)
    upsample_steps: int = 32  # importance samples per ray (run)
    max_ray_batch: int = 4096  # rays per chunk when staged
    min_near: float = 0.01  # smallest t (planar depth) sampled
    # occupancy-grid fast path ('--cuda_ray')
    cuda_ray: bool = False
    grid_size: int = 128
    max_steps: int = 1024  # max samples per ray; the march step is 2*sqrt(3)*bound/max_steps
    density_thresh: float = 10.0
    update_extra_interval: int = 16
    grid_decay: float = 0.95
    dt_gamma: float = 0.0  # step grows as t * dt_gamma (0 = constant step)
    T_thresh: float = 1e-4  # stop compositing once transmittance falls below this
    # Shade lambertian/textureless/normal renders of `run` once per ray, with the normal at the
    # ray's expected surface point, instead of at every sample (one normal per ray, not per sample).
    deferred_shading: bool = False
    # Finite-difference normals (6 more field queries per sample) are skipped at the samples of least
    # weight of each ray whose weights add up to at most this; those are shaded by the ambient light
    # alone, so a pixel moves by at most this much. 0: normals at every sample (stable-dreamfusion).
    normal_skip_weight: float = 1e-3

    def validate(self) -> None:
        if self.num_steps < 2:
            raise UserError(f"num_steps must be at least 2, got {self.num_steps}")
        if self.upsample_steps < 0 or self.max_ray_batch < 1 or self.max_steps < 1:
            raise UserError("upsample_steps must be >= 0, max_ray_batch and max_steps >= 1")


# --------------------------------------------------------------------------------------------------
# Ray/bound intersections and sampling helpers
# --------------------------------------------------------------------------------------------------


def near_far_from_sphere(rays_o: Tensor, rays_d: Tensor, radius: float, min_near: float = 0.0) -> tuple[Tensor, Tensor]:
    """Where rays enter and leave the sphere |x| <= radius, for unnormalised directions.

    Solves ``|o + t d|^2 = r^2``. Returns near, far [...] in units of t; rays that miss (or only
    touch the sphere behind ``min_near``) get ``near == far`` (zero-length interval, no samples count).
    """
    a = (rays_d * rays_d).sum(-1)
    b = (rays_o * rays_d).sum(-1)
    c = (rays_o * rays_o).sum(-1) - radius * radius
    disc = b * b - a * c
    root = torch.sqrt(disc.clamp(min=0))
    near = ((-b - root) / a).clamp(min=min_near)
    far = ((-b + root) / a).clamp(min=min_near)
    far = torch.where(disc > 0, far, near)
    return near, torch.maximum(far, near)


def near_far_from_aabb(rays_o: Tensor, rays_d: Tensor, bound: float, min_near: float = 0.0) -> tuple[Tensor, Tensor]:
    """Slab test against the cube [-bound, bound]^3; misses get ``near == far``."""
    inv = 1.0 / torch.where(rays_d.abs() < 1e-15, torch.full_like(rays_d, 1e-15), rays_d)
    t0, t1 = (-bound - rays_o) * inv, (bound - rays_o) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=min_near)
    far = torch.maximum(t0, t1).amin(-1).clamp(min=min_near)
    return near, torch.maximum(far, near)


def sample_pdf(bins: Tensor, weights: Tensor, n_samples: int, det: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Inverse-CDF sampling of a piecewise-constant pdf (NeRF's hierarchical sampling).

    Args:
        bins: [R, K+1] bin edges; weights: [R, K] (1e-5 is added so empty rays sample uniformly).
        det: stratified-deterministic u (inference) instead of uniform random u.
    Returns:
        [R, n_samples] samples inside the bins.
    """
    weights = weights + 1e-5
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)  # [R, K+1]
    if det:
        u = torch.linspace(0.5 / n_samples, 1 - 0.5 / n_samples, n_samples, device=bins.device, dtype=bins.dtype)
        u = u.expand(cdf.shape[0], n_samples).contiguous()
    else:
        u = torch.rand(cdf.shape[0], n_samples, device=bins.device, dtype=bins.dtype, generator=generator)
    inds = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (inds - 1).clamp(min=0)
    above = inds.clamp(max=cdf.shape[-1] - 1)
    cdf_b, cdf_a = cdf.gather(1, below), cdf.gather(1, above)
    bins_b, bins_a = bins.gather(1, below), bins.gather(1, above)
    denom = cdf_a - cdf_b
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    return bins_b + (u - cdf_b) / denom * (bins_a - bins_b)


def composite(sigmas: Tensor, deltas: Tensor) -> Tensor:
    """Per-sample weights ``alpha_i * prod_{j<i}(1 - alpha_j)`` [R, S] from sigma and metric deltas [R, S]."""
    alphas = 1 - torch.exp(-deltas * sigmas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alphas[:, :1]), 1 - alphas + 1e-15], -1), -1)[:, :-1]
    return alphas * trans


def random_light_direction(rays_o: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``normalize(camera centre + N(0, I))`` per image [B, 3] (one noise vector for the call):
    a light roughly from the camera side, so the visible side is lit (spec §3.8)."""
    noise = torch.randn(3, device=rays_o.device, dtype=rays_o.dtype, generator=generator)
    return safe_normalize(rays_o[:, 0] + noise)


# --------------------------------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------------------------------


class VolumeRenderer(nn.Module):
    """Renders a field along rays; holds the field and (for the fast path) its occupancy grid.

    ``state_dict()`` contains the field (``field.*``) and the occupancy grid (``occupancy.*``,
    with ``mean_density``), so one checkpoint restores both.
    """

    def __init__(self, field: NeRFField, config: RenderConfig | None = None):
        super().__init__()
        self.config = c = config or RenderConfig()
        c.validate()
        self.field = field
        self.bound = c.bound
        if c.cuda_ray:
            from dreamfusion.occupancy_grid import OccupancyGrid

            self.occupancy = OccupancyGrid(bound=c.bound, resolution=c.grid_size, density_thresh=c.density_thresh, decay=c.grid_decay)
        else:
            self.occupancy = None

    # ------------------------------------------------------------------ public API
    def forward(self, rays_o: Tensor, rays_d: Tensor, **kwargs) -> dict[str, Tensor]:
        return self.render(rays_o, rays_d, **kwargs)

    def render(
        self,
        rays_o: Tensor,
        rays_d: Tensor,
        light_d: Tensor | None = None,
        ambient_ratio: float = 1.0,
        shading: str = "albedo",
        bg_color: Tensor | float | None = None,
        perturb: bool = False,
        staged: bool = False,
        need_orient_loss: bool = False,
        need_normal_perturb_loss: bool = False,
        need_distortion_loss: bool = False,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Render rays ``rays_o, rays_d: [B, N, 3]`` (fast path when ``config.cuda_ray``).

        Args:
            light_d: [3] or [B, 3] unit light direction; default ``normalize(rays_o + N(0, I))``.
            ambient_ratio, shading: see :meth:`NeRFField.forward`.
            bg_color: background: a float, [3], [B, N, 3] or [B*N, 3]; None: the field's background
                network if it has one, else white.
            perturb: stratified jitter (training).
            staged: render in chunks of ``max_ray_batch`` rays (inference; per-sample outputs and
                losses are not returned).
            need_orient_loss / need_normal_perturb_loss: also return ``loss_orient`` and
                ``loss_normal_perturb`` (need normals, i.e. shading != 'albedo').
            need_distortion_loss: also return ``loss_distortion`` (`losses.distortion_loss`).
        Returns:
            dict with ``image`` [B, N, 3], ``depth`` [B, N] (planar depth), ``weights_sum`` [B, N],
            ``weights`` (per-sample weights: [B, N, S] for ``run``, packed [M] for the fast path),
            ``normal_image`` [B, N, 3] when normals were computed, and the requested losses.
        """
        if rays_o.dim() != 3 or rays_o.shape != rays_d.shape or rays_o.shape[-1] != 3:
            raise UserError(f"rays_o and rays_d must both be [B, N, 3], got {tuple(rays_o.shape)} and {tuple(rays_d.shape)}")
        if shading not in SHADINGS:
            raise UserError(f"unknown shading {shading!r} (choose one of {', '.join(SHADINGS)})")
        B, N = rays_o.shape[:2]
        if light_d is None:
            light_d = random_light_direction(rays_o, generator)
        light_d = torch.as_tensor(light_d, dtype=rays_o.dtype, device=rays_o.device).reshape(-1, 3).expand(B, 3)
        bg = self._background(rays_d, bg_color)  # [B, N, 3] or None (white)
        kwargs = dict(ambient_ratio=ambient_ratio, shading=shading, perturb=perturb, generator=generator)
        run = self.run_fast if self.config.cuda_ray else self.run
        if not staged:
            out = run(rays_o, rays_d, light_d, need_orient_loss=need_orient_loss,
                      need_normal_perturb_loss=need_normal_perturb_loss, need_distortion_loss=need_distortion_loss, **kwargs)
        else:
            chunk = self.config.max_ray_batch
            parts: dict[str, list[Tensor]] = {}
            for b in range(B):
                for s in range(0, N, chunk):
                    o = run(rays_o[b : b + 1, s : s + chunk], rays_d[b : b + 1, s : s + chunk], light_d[b : b + 1], **kwargs)
                    for k in ("image", "depth", "weights_sum", "normal_image"):
                        if k in o:
                            parts.setdefault(k, []).append(o[k].reshape(-1, *o[k].shape[2:]))
            out = {k: torch.cat(v, 0).reshape(B, N, *v[0].shape[1:]) for k, v in parts.items()}
        alpha = out["weights_sum"].unsqueeze(-1)
        out["image"] = out["image"] + (1 - alpha) * (1.0 if bg is None else bg)
        return out

    def update_occupancy(self, step: int | None = None, force: bool = False) -> bool:
        """Refresh the occupancy grid every ``update_extra_interval`` steps (``step % interval == 0``);
        returns True when it updated. No-op without ``cuda_ray``."""
        if self.occupancy is None:
            return False
        if force or step is None or step % self.config.update_extra_interval == 0:
            self.occupancy.update(self.field.density)
            return True
        return False

    # ------------------------------------------------------------------ helpers
    def _background(self, rays_d: Tensor, bg_color) -> Tensor | None:
        B, N = rays_d.shape[:2]
        if bg_color is None:
            if self.field.bg_net is None:
                return None
            return self.field.background(safe_normalize(rays_d.reshape(-1, 3))).view(B, N, 3)
        bg = torch.as_tensor(bg_color, dtype=rays_d.dtype, device=rays_d.device)
        if bg.dim() == 2 and bg.shape[0] == B * N:
            bg = bg.view(B, N, 3)
        try:
            return torch.broadcast_to(bg, (B, N, 3))
        except RuntimeError:
            raise UserError(f"bg_color of shape {tuple(bg.shape)} does not fit {B} x {N} rays") from None

    def _shade(self, xyzs: Tensor, dirs: Tensor, light: Tensor, ambient_ratio: float, shading: str):
        """Field forward on flat samples; light [M, 3]."""
        return self.field(xyzs, dirs, light, ambient_ratio=ambient_ratio, shading=shading)

    def _normal_perturb_loss(self, xyzs: Tensor, normals: Tensor, generator=None) -> Tensor:
        """Mean |n(x) - n(x + N(0, 0.01^2))| (3D normal smoothness)."""
        noise = torch.randn(xyzs.shape, device=xyzs.device, dtype=xyzs.dtype, generator=generator) * 1e-2
        return normal_smoothness_3d(normals, self.field.normal((xyzs + noise).clamp(-self.bound, self.bound)))

    # ------------------------------------------------------------------ naive path
    def run(
        self, rays_o, rays_d, light_d, ambient_ratio=1.0, shading="albedo", perturb=False,
        need_orient_loss=False, need_normal_perturb_loss=False, need_distortion_loss=False, generator=None,
    ) -> dict[str, Tensor]:
        """stable-dreamfusion's ``run`` (no background mixing; :meth:`render` adds it).

        Rays that miss the bounding sphere (a wide field of view's corners) are not marched: they
        get zero weights, opacity, colour and depth, and count as zeros in the regularisers' means.
        """
        B, N = rays_o.shape[:2]
        o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        near, far = near_far_from_sphere(o, d, self.bound, self.config.min_near)
        light = light_d.repeat_interleave(N, 0)  # [B*N, 3]
        hit = far > near
        if bool(hit.all()):
            out = self._march(o, d, near, far, light, ambient_ratio, shading, perturb, need_orient_loss,
                              need_normal_perturb_loss, need_distortion_loss, generator)
        else:
            idx = hit.nonzero().squeeze(-1)
            part = self._march(o[idx], d[idx], near[idx], far[idx], light[idx], ambient_ratio, shading, perturb,
                               need_orient_loss, need_normal_perturb_loss, need_distortion_loss, generator)
            out = {}
            for key, value in part.items():
                if key.startswith("loss_"):
                    # Means over the hit rays (orientation, distortion) or their samples (normal smoothness),
                    # rescaled to means over all rays, as if the misses contributed zeros.
                    out[key] = value * (idx.numel() / hit.numel())
                    continue
                full = value.new_zeros((hit.numel(),) + value.shape[1:])
                out[key] = full.index_copy(0, idx, value)
        S = out["weights"].shape[-1]
        result = {"image": out["image"].view(B, N, 3), "depth": out["depth"].view(B, N),
                  "weights_sum": out["weights_sum"].view(B, N), "weights": out["weights"].view(B, N, S)}
        for key in ("normal_image",):
            if key in out:
                result[key] = out[key].view(B, N, 3)
        for key in ("loss_orient", "loss_normal_perturb", "loss_distortion"):
            if key in out:
                result[key] = out[key]
        return result

    def _march(self, o, d, near, far, light_rays, ambient_ratio, shading, perturb, need_orient_loss,
               need_normal_perturb_loss, need_distortion_loss, generator) -> dict[str, Tensor]:
        """March flat rays o, d [R, 3] between near, far [R]; light per ray [R, 3]. Outputs are flat.

        Density and albedo are queried once per sample: the coarse samples' values (with their graph
        when training) shape the importance pdf and are merged with the fine samples' values, so
        nothing is evaluated twice. With per-sample finite-difference normals at every sample
        (``normal_skip_weight`` 0, or the 3D smoothness loss) the samples go through the field in
        one batch with their 6 offsets instead, stable-dreamfusion's way.
        """
        c, field = self.config, self.field
        R = o.shape[0]
        d_len = d.norm(dim=-1, keepdim=True)  # metric length of a unit of t
        near, far = near.unsqueeze(-1), far.unsqueeze(-1)
        T = c.num_steps
        sample_dist = (far - near) / T
        z = near + (far - near) * torch.linspace(0.0, 1.0, T, device=o.device, dtype=o.dtype)[None]
        if perturb:
            z = z + (torch.rand(z.shape, device=o.device, dtype=o.dtype, generator=generator) - 0.5) * sample_dist
        xyzs = (o[:, None] + d[:, None] * z[..., None]).clamp(-self.bound, self.bound)
        deferred = c.deferred_shading and shading != "albedo"
        reuse = not deferred and (shading == "albedo" or self._sparse_normals(need_normal_perturb_loss))
        values = None  # (sigma [R, S], albedo [R, S, 3]) of the samples when reused

        if c.upsample_steps > 0 or reuse:
            with torch.set_grad_enabled(reuse and torch.is_grad_enabled()):
                coarse = field.density(xyzs.reshape(-1, 3))
            values = (coarse["sigma"].view(R, T), coarse["albedo"].view(R, T, 3))
        if c.upsample_steps > 0:
            with torch.no_grad():
                deltas = torch.cat([z[:, 1:] - z[:, :-1], sample_dist], -1) * d_len
                w = composite(values[0].detach(), deltas)
                z_mid = z[:, :-1] + 0.5 * (z[:, 1:] - z[:, :-1])
                new_z = sample_pdf(z_mid, w[:, 1:-1], c.upsample_steps, det=not perturb, generator=generator)
                new_xyzs = (o[:, None] + d[:, None] * new_z[..., None]).clamp(-self.bound, self.bound)
                z, order = torch.sort(torch.cat([z, new_z], 1), dim=1)
                xyzs = torch.cat([xyzs, new_xyzs], 1).gather(1, order[..., None].expand(-1, -1, 3))
            if reuse:
                fine = field.density(new_xyzs.reshape(-1, 3))
                sigma = torch.cat([values[0], fine["sigma"].view(R, -1)], 1).gather(1, order)
                albedo = torch.cat([values[1], fine["albedo"].view(R, -1, 3)], 1)
                values = (sigma, albedo.gather(1, order[..., None].expand(-1, -1, 3)))
            else:
                values = None

        S = z.shape[1]
        dirs = safe_normalize(d)[:, None].expand(-1, S, -1)
        light = light_rays[:, None].expand(-1, S, -1)
        if deferred:
            out = self._deferred(o, d, z, xyzs, dirs, sample_dist, d_len, light_rays, ambient_ratio, shading,
                                 need_orient_loss, need_normal_perturb_loss, generator)
        else:
            out = self._shade_and_composite(z, xyzs, dirs, sample_dist, d_len, light, ambient_ratio, shading,
                                            need_orient_loss, need_normal_perturb_loss, generator, values)
        if need_distortion_loss:
            deltas = torch.cat([z[:, 1:] - z[:, :-1], sample_dist], -1) * d_len
            out["loss_distortion"] = distortion_loss(out["weights"], z * d_len + deltas / 2, deltas)
        return out

    def _sparse_normals(self, need_normal_perturb_loss: bool) -> bool:
        """Finite-difference normals only at the samples that carry weight (``normal_skip_weight``)."""
        return (self.config.normal_skip_weight > 0 and not need_normal_perturb_loss
                and getattr(self.field, "normal_mode", None) == "finite_difference")

    def _shade_and_composite(self, z, xyzs, dirs, sample_dist, d_len, light, ambient_ratio, shading, need_orient_loss,
                             need_normal_perturb_loss, generator, values=None) -> dict[str, Tensor]:
        """Shade every sample and composite: flat outputs for rays [R] with samples z [R, S].
        ``values``: the samples' (sigma [R, S], albedo [R, S, 3]) when already queried."""
        R, S = z.shape
        deltas = torch.cat([z[:, 1:] - z[:, :-1], sample_dist], -1) * d_len
        if values is not None:
            sigma, albedo = values
            weights = composite(sigma, deltas)  # [R, S]
            rgbs, normals = albedo, None
            if shading != "albedo":
                normals = self._weighted_normals(xyzs, weights)
                rgbs = self.field.shade(albedo.reshape(-1, 3), normals.reshape(-1, 3), light.reshape(-1, 3),
                                        ambient_ratio, shading)
        else:
            sigma, rgbs, normals = self._shade(xyzs.reshape(-1, 3), dirs.reshape(-1, 3), light.reshape(-1, 3),
                                               ambient_ratio, shading)
            weights = composite(sigma.view(R, S), deltas)  # [R, S]
        rgbs = rgbs.view(R, S, 3)
        out = {
            "image": (weights.unsqueeze(-1) * rgbs).sum(1),
            "depth": (weights * z).sum(1),
            "weights_sum": weights.sum(1),
            "weights": weights,
        }
        if normals is not None:
            normals = normals.view(R, S, 3)
            out["normal_image"] = (weights.unsqueeze(-1) * (normals + 1) / 2).sum(1)
            if need_orient_loss:
                out["loss_orient"] = orientation_loss(weights, normals, dirs)
            if need_normal_perturb_loss:
                out["loss_normal_perturb"] = self._normal_perturb_loss(xyzs.reshape(-1, 3), normals.reshape(-1, 3), generator)
        return out

    def _weighted_normals(self, xyzs: Tensor, weights: Tensor) -> Tensor:
        """Unit normals [R, S, 3] at samples xyzs [R, S, 3], 0 at the samples of least weight of each
        ray whose weights add up to at most ``normal_skip_weight`` (shaded by the ambient light only:
        a pixel moves by at most that budget)."""
        least, order = weights.detach().sort(dim=1)
        skip = torch.zeros_like(order, dtype=torch.bool).scatter_(1, order, least.cumsum(1) <= self.config.normal_skip_weight)
        keep = (~skip).reshape(-1).nonzero().squeeze(-1)
        flat = xyzs.reshape(-1, 3)
        kept = self.field.normal(flat[keep])
        return kept.new_zeros(flat.shape).index_copy(0, keep, kept).view(xyzs.shape)

    def _deferred(self, o, d, z, xyzs, dirs, sample_dist, d_len, light_rays, ambient_ratio, shading,
                  need_orient_loss, need_normal_perturb_loss, generator) -> dict[str, Tensor]:
        """Deferred shading (``RenderConfig.deferred_shading``): composite albedo and depth over
        the samples, then shade each ray once with the normal n at its expected surface point
        p = o + d·depth/opacity: lambertian = albedo·(a + (1-a)·max(0, n·l)), textureless = the
        factor in grey, normal = (n+1)/2, all times the opacity. The regularisers use n too:
        orientation = opacity·max(0, n·v)², smoothness = |n(p) - n(p + N(0, 0.01²))|."""
        R, S = xyzs.shape[:2]
        sigma, albedo, _ = self._shade(xyzs.reshape(-1, 3), dirs.reshape(-1, 3), None, 1.0, "albedo")
        deltas = torch.cat([z[:, 1:] - z[:, :-1], sample_dist], -1) * d_len
        weights = composite(sigma.view(R, S), deltas)
        opacity = weights.sum(1)
        depth = (weights * z).sum(1)
        colour = (weights.unsqueeze(-1) * albedo.view(R, S, 3)).sum(1)
        points = (o + d * (depth / opacity.clamp_min(1e-6))[:, None]).clamp(-self.bound, self.bound)
        normal = self.field.normal(points)  # [R, 3], differentiable through the density
        factor = ambient_ratio + (1.0 - ambient_ratio) * (normal * light_rays).sum(-1, keepdim=True).clamp_min(0.0)
        normal_image = opacity[:, None] * (normal + 1.0) / 2.0
        if shading == "lambertian":
            image = colour * factor
        elif shading == "textureless":
            image = opacity[:, None] * factor.expand(-1, 3)
        else:  # normal
            image = normal_image
        out = {"image": image, "depth": depth, "weights_sum": opacity, "weights": weights, "normal_image": normal_image}
        view = dirs[:, 0]
        if need_orient_loss:
            # one "sample" per ray: the expected surface point, weighted by the opacity
            out["loss_orient"] = orientation_loss(opacity[:, None], normal[:, None], view)
        if need_normal_perturb_loss:
            out["loss_normal_perturb"] = self._normal_perturb_loss(points, normal, generator)
        return out

    # ------------------------------------------------------------------ fast path
    def run_fast(
        self, rays_o, rays_d, light_d, ambient_ratio=1.0, shading="albedo", perturb=False,
        need_orient_loss=False, need_normal_perturb_loss=False, need_distortion_loss=False, generator=None,
    ) -> dict[str, Tensor]:
        """Occupancy-grid marching (``--cuda_ray``); see :mod:`dreamfusion.occupancy_grid`."""
        from dreamfusion.occupancy_grid import march_and_composite

        if self.occupancy.iterations == 0:
            # A never-updated grid is empty and would render only background; fill it once.
            self.update_occupancy(force=True)
        return march_and_composite(
            self, rays_o, rays_d, light_d, ambient_ratio=ambient_ratio, shading=shading, perturb=perturb,
            need_orient_loss=need_orient_loss, need_normal_perturb_loss=need_normal_perturb_loss,
            need_distortion_loss=need_distortion_loss, generator=generator,
        )
