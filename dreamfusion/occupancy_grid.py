"""Occupancy-grid ray marching (stable-dreamfusion's ``--cuda_ray`` path) in pure PyTorch.

The grid (``resolution^3`` cells over [-bound, bound]^3, 1 cascade) keeps an EMA-max of the density
at jittered cell centres; a cell is occupied while its value exceeds ``min(mean density,
density_thresh)``. Rays march from the AABB entry with a fixed step ``dt = 2 sqrt(3) bound /
max_steps`` (metric units; grows as ``t * dt_gamma`` when ``dt_gamma > 0``); a sample is emitted only
in occupied cells, so empty space costs index math but no network evaluation. Samples are packed
(sorted by ray, then t) and composited with ``alpha = 1 - exp(-sigma dt)`` and early termination once
the transmittance falls below ``T_thresh``. Without gradients (inference) the samples are evaluated
block by block and rays that became opaque are dropped, as the CUDA ``march_rays`` loop does.

Example::

    renderer = VolumeRenderer(field, RenderConfig(cuda_ray=True))
    renderer.update_occupancy(step)          # every update_extra_interval steps (trainer)
    out = renderer(rays_o, rays_d)           # uses march_and_composite

State (``density_grid``, ``occupied``, ``mean_density``, ``iteration_count``) is in buffers, so it is
saved in and restored from checkpoints.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor


class OccupancyGrid(nn.Module):
    """EMA density grid and its occupancy bits (one bool per cell, Morton order not needed here)."""

    def __init__(self, bound: float = 1.0, resolution: int = 128, density_thresh: float = 10.0, decay: float = 0.95):
        super().__init__()
        self.bound, self.resolution, self.density_thresh, self.decay = bound, resolution, density_thresh, decay
        self.register_buffer("density_grid", torch.zeros(resolution**3))
        self.register_buffer("occupied", torch.zeros(resolution**3, dtype=torch.bool))
        self.register_buffer("mean_density", torch.zeros(()))
        self.register_buffer("iteration_count", torch.zeros((), dtype=torch.long))
        self._box: tuple[int, Tensor] | None = None  # (version of `occupied` it was made from, box)

    @property
    def iterations(self) -> int:
        """How many times :meth:`update` ran (0: the grid is still empty)."""
        return int(self.iteration_count)

    @property
    def threshold(self) -> float:
        """Occupancy threshold ``min(mean_density, density_thresh)``."""
        return min(float(self.mean_density), self.density_thresh)

    def cell_centres(self) -> Tensor:
        """[R^3, 3] centres of all cells, in the grid's flat order (x-major: i = (x R + y) R + z)."""
        R, b = self.resolution, self.bound
        axis = -b + (2 * torch.arange(R, device=self.density_grid.device, dtype=torch.float32) + 1) * b / R
        return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)

    @torch.no_grad()
    def update(self, density_fn, chunk: int = 1 << 18, generator: torch.Generator | None = None) -> None:
        """``grid = max(decay * grid, sigma(jittered centres))``, then re-threshold.

        Args:
            density_fn: ``x [M, 3] -> {'sigma': [M], ...}`` (``NeRFField.density``).
            chunk: points per density call.
        """
        half_cell = self.bound / self.resolution
        centres = self.cell_centres()
        fresh = torch.empty_like(self.density_grid)
        for s in range(0, centres.shape[0], chunk):
            pts = centres[s : s + chunk]
            jitter = torch.rand(pts.shape, device=pts.device, generator=generator) * 2 - 1
            fresh[s : s + chunk] = density_fn(pts + jitter * half_cell)["sigma"].reshape(-1).float()
        torch.maximum(self.density_grid * self.decay, fresh, out=self.density_grid)
        self.mean_density.copy_(self.density_grid.mean())
        self.occupied.copy_(self.density_grid > self.threshold)
        self.iteration_count += 1

    def box(self) -> Tensor:
        """[2, 3] corners (lo, hi) of the smallest box of whole cells that holds every occupied cell
        (lo > hi when none is). Cached until ``occupied`` changes (any in-place write bumps its version)."""
        version = self.occupied._version
        if self._box is None or self._box[0] != version or self._box[1].device != self.occupied.device:
            R, b = self.resolution, self.bound
            cells = self.occupied.view(R, R, R)
            lo, hi = [], []
            for axis in range(3):
                others = [a for a in range(3) if a != axis]
                used = cells.any(dim=others[1]).any(dim=others[0]).nonzero().squeeze(1).tolist()
                first, last = (used[0], used[-1]) if used else (R, -1)
                lo.append(-b + 2 * b * first / R)
                hi.append(-b + 2 * b * (last + 1) / R)
            self._box = (version, torch.tensor([lo, hi], dtype=torch.float32, device=self.occupied.device))
        return self._box[1]

    def cell_index(self, x: Tensor) -> Tensor:
        """Flat cell index [...] (long) of points x [..., 3] (clamped into the grid)."""
        R = self.resolution
        c = ((x + self.bound) * (R / (2 * self.bound))).floor().long().clamp(0, R - 1)
        return (c[..., 0] * R + c[..., 1]) * R + c[..., 2]

    def is_occupied(self, x: Tensor) -> Tensor:
        """Bool [...] occupancy of the cells holding x [..., 3]."""
        return self.occupied[self.cell_index(x)]


# --------------------------------------------------------------------------------------------------
# Marching
# --------------------------------------------------------------------------------------------------


def _candidate_steps(far: Tensor, t0: Tensor, dt_min: float, dt_max: float, dt_gamma: float, max_steps: int) -> tuple[Tensor, Tensor | None]:
    """Sample positions t [R, K] (metric) from t0 towards far, and their steps [R, K] (None: all dt_min)."""
    if dt_gamma <= 0:
        span = float((far - t0).max().clamp(min=0)) if far.numel() else 0.0
        k = int(min(max_steps, math.ceil(span / dt_min) + 1))
        return t0[:, None] + dt_min * torch.arange(k, device=t0.device, dtype=t0.dtype)[None], None
    ts, dts, t = [], [], t0.clone()
    for _ in range(max_steps):  # the step depends on t, so the positions are built step by step
        dt = (t * dt_gamma).clamp(dt_min, dt_max)
        ts.append(t), dts.append(dt)
        t = t + dt
        if bool((t >= far).all()):
            break
    return torch.stack(ts, 1), torch.stack(dts, 1)


def _near_far_box(o: Tensor, dirs: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Metric entry and exit distances [R] of rays o + t dirs (unit dirs [R, 3]) through the box
    [lo, hi] (lo, hi [3]); a miss gives near >= far."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-15, torch.full_like(dirs, 1e-15), dirs)
    t_lo, t_hi = (lo - o) * inv, (hi - o) * inv
    return torch.minimum(t_lo, t_hi).amax(-1), torch.maximum(t_lo, t_hi).amin(-1)


def march(
    grid: OccupancyGrid, rays_o: Tensor, rays_d: Tensor, max_steps: int, dt_gamma: float = 0.0, min_near: float = 0.0,
    perturb: bool = False, generator: torch.Generator | None = None, max_candidates: int = 1 << 22,
    max_samples: int = 0,
):
    """Packed samples in occupied cells along rays.

    Args:
        rays_o, rays_d: [R, 3]; rays_d may be unnormalised.
        max_candidates: rays are marched in chunks of at most this many candidate positions.
        max_samples: when > 0, a ray with more occupied positions than this keeps every k-th of them
            (k = ceil(count / max_samples)) with a step k times as long, so no ray takes more samples.
    Returns:
        ray_index [M] (long, sorted), t [M] (metric distance along the unit direction), dt [M],
        xyzs [M, 3], unit directions [R, 3], and the metric length of one unit of t per ray [R].
    """
    from .renderers import near_far_from_aabb

    bound, R = grid.bound, grid.resolution
    d_len = rays_d.norm(dim=-1)
    dirs = rays_d / d_len[:, None]
    near, far = near_far_from_aabb(rays_o, rays_d, bound, min_near)
    near, far = near * d_len, far * d_len  # metric
    dt_min = 2 * math.sqrt(3) * bound / max_steps
    dt_max = 2 * math.sqrt(3) * bound / R
    t0 = near
    if perturb:
        t0 = near + dt_min * torch.rand(near.shape, device=near.device, dtype=near.dtype, generator=generator)
    # March only where a ray crosses the box of occupied cells (grown by half a cell against rounding):
    # outside it every candidate would be dropped. With a constant step the first position is moved
    # to the ray's own lattice t0 + k dt_min, so the samples are exactly those of a march from the cube.
    box = grid.box().to(dtype=rays_o.dtype)
    half_cell = bound / R
    box_near, box_far = _near_far_box(rays_o, dirs, box[0] - half_cell, box[1] + half_cell)
    far = torch.minimum(far, box_far)
    if dt_gamma <= 0:
        t0 = t0 + ((box_near - t0) / dt_min).ceil().clamp(min=0) * dt_min
    hit = (far > t0).nonzero().squeeze(1)  # only rays that cross the cube and the box are marched
    # Cell coordinates are affine in t: computed per axis, never as [R, K, 3] points.
    scale = R / (2 * bound)
    base, step = (rays_o + bound) * scale, dirs * scale
    chunk = max(1, max_candidates // max_steps)
    parts = []
    for s in range(0, hit.shape[0], chunk):
        h = hit[s : s + chunk]
        t, dt = _candidate_steps(far[h], t0[h], dt_min, dt_max, dt_gamma, max_steps)
        cell = None
        for axis in range(3):
            ci = torch.addcmul(base[h, axis : axis + 1], step[h, axis : axis + 1], t).floor_().clamp_(0, R - 1).to(torch.int32)
            cell = ci if cell is None else cell * R + ci
        keep = grid.occupied[cell] & (t < far[h][:, None])
        stride = None
        if max_samples > 0:
            count = keep.sum(1, keepdim=True)
            stride = (count + max_samples - 1).div(max_samples, rounding_mode="floor").clamp(min=1)
            if bool((stride > 1).any()):
                rank = keep.cumsum(1) - 1  # position among the ray's occupied candidates
                keep = keep & (rank % stride == 0)
            else:
                stride = None
        rows, cols = keep.nonzero(as_tuple=True)  # row-major: sorted by ray, then by t
        t_s = t[rows, cols]
        dt_s = torch.full_like(t_s, dt_min) if dt is None else dt[rows, cols]
        if stride is not None:
            dt_s = dt_s * stride[rows, 0].to(dt_s.dtype)
        parts.append((h[rows], t_s, dt_s))
    if parts:
        ray_index, t_s, dt_s = (torch.cat(p) for p in zip(*parts))
    else:
        ray_index = torch.zeros(0, dtype=torch.long, device=rays_o.device)
        t_s = dt_s = torch.zeros(0, dtype=rays_o.dtype, device=rays_o.device)
    xyzs = (rays_o[ray_index] + dirs[ray_index] * t_s[:, None]).clamp(-bound, bound)
    return ray_index, t_s, dt_s, xyzs, dirs, d_len


def composite_packed(
    sigma: Tensor, dt: Tensor, ray_index: Tensor, n_rays: int, T_thresh: float, T_start: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Weights of packed samples (sorted by ray) with early termination.

    ``w_i = (1 - exp(-sigma_i dt_i)) T_i``, ``T_i = T_start(ray) exp(-sum_{j<i, same ray} sigma_j dt_j)``;
    samples whose incoming ``T_i < T_thresh`` get weight 0 (the CUDA loop stops there).
    Returns weights [M], the transmittance after each ray's last sample [n_rays] and a bool [M]
    telling which samples were reached (incoming ``T_i >= T_thresh``; they have gradients even
    where their weight is 0).
    """
    tau = sigma * dt
    # Exclusive per-ray prefix sums from one global cumsum (fp64: no cancellation between rays).
    cs = torch.cumsum(tau.double(), 0)
    excl = cs - tau.double()
    counts = torch.bincount(ray_index, minlength=n_rays)
    first = torch.cumsum(counts, 0) - counts
    prefix = (excl - excl[first[ray_index]]).float()
    trans = torch.exp(-prefix)
    if T_start is not None:
        trans = trans * T_start[ray_index]
    weights = (1 - torch.exp(-tau)) * trans
    reached = trans >= T_thresh
    weights = torch.where(reached, weights, torch.zeros_like(weights))
    total = torch.zeros(n_rays, dtype=torch.float64, device=sigma.device).index_add_(0, ray_index, tau.detach().double())
    T_end = torch.exp(-total).float() if T_start is None else T_start * torch.exp(-total).float()
    return weights, T_end, reached


def march_and_composite(
    renderer, rays_o: Tensor, rays_d: Tensor, light_d: Tensor, ambient_ratio=1.0, shading="albedo", perturb=False,
    need_orient_loss=False, need_normal_perturb_loss=False, need_distortion_loss=False, generator=None,
) -> dict[str, Tensor]:
    """The fast path of :meth:`VolumeRenderer.render` (no background mixing). rays [B, N, 3]."""
    c, grid, field = renderer.config, renderer.occupancy, renderer.field
    B, N = rays_o.shape[:2]
    o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
    n_rays = o.shape[0]
    # No ray takes more samples than `run` would (num_steps + upsample_steps): where a ray crosses
    # more occupied cells than that (a fresh blob, a thick object), its step grows instead.
    ray_index, t, dt, xyzs, dirs, d_len = march(grid, o, d, c.max_steps, c.dt_gamma, c.min_near, perturb, generator,
                                                max_samples=c.num_steps + c.upsample_steps)
    light = light_d.repeat_interleave(N, 0)  # [R, 3]

    def density(sel: Tensor):
        out = field.density(xyzs[sel])
        return out["sigma"], out["albedo"]

    # Front to back in rounds of density and albedo queries, dropping rays once opaque: behind a
    # surface nothing is evaluated. Training keeps the rounds' graphs: the weights are recomposited
    # from the reached samples' sigma with autograd, which equals compositing every marched sample
    # (the rest weigh 0). Normals (6 more density queries per sample for finite differences) are
    # taken only at the reached samples, after the march.
    keep, (weights, sigma, albedo) = _march_progressively(density, dt, ray_index, n_rays, c.T_thresh,
                                                          keep_graph=torch.is_grad_enabled())
    normals = None
    if albedo is None:  # no sample reached compositing
        rgb = weights.new_zeros(0, 3)
        normals = None if shading == "albedo" else weights.new_zeros(0, 3)
    else:
        if torch.is_grad_enabled():
            weights, _, _ = composite_packed(sigma, dt[keep], ray_index[keep], n_rays, c.T_thresh)
        rgb = albedo
        if shading != "albedo":
            normals = field.normal(xyzs[keep])
            rgb = field.shade(albedo, normals, light[ray_index[keep]], ambient_ratio, shading)

    idx = ray_index[keep]
    zeros = lambda *s: torch.zeros(n_rays, *s, dtype=weights.dtype, device=weights.device)  # noqa: E731
    out = {
        "image": zeros(3).index_add(0, idx, weights.unsqueeze(-1) * rgb).view(B, N, 3),
        # planar depth: metric t over the metric length of one unit of t
        "depth": zeros().index_add(0, idx, weights * t[keep] / d_len[idx]).view(B, N),
        "weights_sum": zeros().index_add(0, idx, weights).view(B, N),
        "weights": weights,
    }
    if normals is not None:
        out["normal_image"] = zeros(3).index_add(0, idx, weights.unsqueeze(-1) * (normals + 1) / 2).view(B, N, 3)
        if need_orient_loss:
            # CUDA-path normalisation: mean over samples (the naive path sums per ray).
            from .losses import orientation_loss

            # each packed sample as a ray of one sample: the mean over samples
            out["loss_orient"] = orientation_loss(weights[:, None], normals[:, None], dirs[idx]) if weights.numel() \
                else weights.sum()
        if need_normal_perturb_loss:
            out["loss_normal_perturb"] = renderer._normal_perturb_loss(xyzs[keep], normals, generator) if normals.numel() else normals.sum()
    if need_distortion_loss:
        from .losses import distortion_loss_packed

        out["loss_distortion"] = distortion_loss_packed(weights, t[keep] + dt[keep] / 2, dt[keep], idx, n_rays)
    return out


def _march_progressively(evaluate, dt: Tensor, ray_index: Tensor, n_rays: int, T_thresh: float, block: int = 16,
                         keep_graph: bool = False):
    """Evaluate packed samples front to back in rounds (``block`` positions per ray, then twice as
    many each round), dropping rays whose transmittance fell below ``T_thresh`` (samples behind an
    opaque surface are rarely evaluated).

    Args:
        evaluate: ``sel [S] -> (sigma [S], *extras)`` for sample indices ``sel`` (sorted).
        keep_graph: evaluate with autograd (the returned sigma and extras carry their graphs; the
            weights do not: recomposite them from sigma).
    Returns:
        keep [K]: indices of the samples that reached compositing (sorted by ray, then t), and
        (weights [K], sigma [K], *extras [K, ...]) concatenated over rounds (extras may be None).
    """
    with torch.set_grad_enabled(keep_graph and torch.is_grad_enabled()):
        return _march_rounds(evaluate, dt, ray_index, n_rays, T_thresh, block)


def _march_rounds(evaluate, dt: Tensor, ray_index: Tensor, n_rays: int, T_thresh: float, block: int):
    device = ray_index.device
    M = ray_index.shape[0]
    counts = torch.bincount(ray_index, minlength=n_rays)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(M, device=device) - first[ray_index]  # position of each sample on its ray
    order = torch.argsort(k, stable=True)  # samples grouped by position along the ray
    n_max = int(counts.max()) if M else 0
    # Rounds of 16, 32, 64, ... positions per ray: most rays end in the first (the surface), and
    # the few that go on take few rounds (each round is a field call and, in training, a backward one).
    edges, size = [0], block
    while edges[-1] < n_max:
        edges.append(edges[-1] + size)
        size *= 2
    bounds = torch.searchsorted(k[order], torch.tensor(edges, device=device)).tolist()
    trans = torch.ones(n_rays, device=device)
    kept, results = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        sel = order[lo:hi]
        sel = sel[trans[ray_index[sel]] >= T_thresh]  # rays still alive
        if sel.numel() == 0:
            continue
        sel, _ = torch.sort(sel)  # back to (ray, t) order for the per-ray prefix sums
        ri = ray_index[sel]
        sigma, *extras = evaluate(sel)
        with torch.no_grad():
            w, trans_end, alive = composite_packed(sigma.detach(), dt[sel], ri, n_rays, T_thresh, T_start=trans)
        touched = torch.zeros(n_rays, dtype=torch.bool, device=device)
        touched[ri] = True
        trans = torch.where(touched, trans_end, trans)
        kept.append(sel[alive])
        results.append([w[alive], sigma[alive]] + [None if e is None else e[alive] for e in extras])
    if not kept:
        empty = torch.zeros(0, device=device)
        return torch.zeros(0, dtype=torch.long, device=device), (empty, empty, None)
    keep = torch.cat(kept)
    merged = [torch.cat([r[i] for r in results]) if results[0][i] is not None else None for i in range(len(results[0]))]
    order_back = torch.argsort(keep)
    return keep[order_back], tuple(m[order_back] if m is not None else None for m in merged)
