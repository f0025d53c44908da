"""Regularisers and reference-view losses of the NeRF stage (spec §3.10 steps 5, 7 and 8).

Every function is pure: tensors in, a scalar tensor out (or, for the hash-grid terms, gradients
added in place). The lambdas and ramps are applied by the Trainer so that each term can be tested
on a hand-made input::

    H = alpha_entropy(outputs["weights"])                # per-sample weights [N_rays, N_samples]
    loss = cfg.lambda_entropy * entropy_ramp(step, cfg.iters) * H

Ramps (all clamp at 1):
    entropy:   min(1, 2·step/iters)
    depth, normal (reference view):  min(1, step/iters)
    total variation:  min(1, step/(0.5·iters))
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# --------------------------------------------------------------------------------------- ramps


def entropy_ramp(step: int, iters: int) -> float:
    """Coefficient of the alpha-entropy loss: min(1, 2·step/iters)."""
    return min(1.0, 2.0 * step / max(iters, 1))


def linear_ramp(step: int, iters: int) -> float:
    """Coefficient of the reference depth/normal losses: min(1, step/iters)."""
    return min(1.0, step / max(iters, 1))


def tv_ramp(step: int, iters: int) -> float:
    """Coefficient of the hash-grid TV gradient: min(1, step/(0.5·iters))."""
    return min(1.0, step / max(0.5 * iters, 1e-12))


# ------------------------------------------------------------------------- novel-view regularisers


def alpha_entropy(weights: Tensor, clamp: float = 1e-5) -> Tensor:
    """Binary entropy (base 2) of the per-sample compositing weights, averaged over all entries.

    Pushes every sample to be either empty or opaque. Applied to per-*sample* weights, not to the
    accumulated opacity (stable-dreamfusion's choice; spec §11).

    Args:
        weights: ``[..., N_samples]`` compositing weights in [0, 1].
    Returns:
        scalar ``mean(-a·log2 a - (1-a)·log2(1-a))`` with ``a = clamp(weights, 1e-5, 1-1e-5)``.
    """
    a = weights.float().clamp(clamp, 1.0 - clamp)
    return (-a * torch.log2(a) - (1.0 - a) * torch.log2(1.0 - a)).mean()


def opacity_loss(weights_sum: Tensor) -> Tensor:
    """``mean(weights_sum²)``: penalises opacity everywhere (sparsity). ``weights_sum``: ``[...]``."""
    return (weights_sum.float() ** 2).mean()


def orientation_loss(weights: Tensor, normals: Tensor, dirs: Tensor) -> Tensor:
    """Penalise normals that face away from the camera where the ray deposits weight.

    ``Σ_samples stopgrad(w)·max(0, n·d)²`` per ray, averaged over rays (the pure-PyTorch renderer's
    normalisation). ``d`` is the normalised ray direction (pointing away from the camera), so a
    visible surface with an outward normal has ``n·d < 0`` and costs nothing.

    Args:
        weights: ``[N_rays, N_samples]``.
        normals: ``[N_rays, N_samples, 3]`` unit normals.
        dirs: ``[N_rays, 3]`` or ``[N_rays, N_samples, 3]`` ray directions.
    """
    if dirs.dim() == 2:
        dirs = dirs[:, None, :]
    dirs = F.normalize(dirs.float(), dim=-1)
    facing = (normals.float() * dirs).sum(-1).clamp(min=0.0)
    return (weights.detach().float() * facing**2).sum(-1).mean()


def distortion_loss(weights: Tensor, midpoints: Tensor, lengths: Tensor) -> Tensor:
    """mip-NeRF 360's distortion loss, per ray, averaged over rays: how far apart the ray's weight is
    spread. A ray whose weight sits in one thin interval costs ~0; fog of total weight 1 spread evenly
    over a depth L costs L/3. It sharpens a foggy surface into a thin one without moving it.

    ``Σ_ij w_i w_j |m_i - m_j| + Σ_i w_i² δ_i / 3``, with the pair sum in O(S) from running sums.

    Args:
        weights: ``[R, S]`` compositing weights; midpoints: ``[R, S]`` metric distances of the
            intervals' centres along the ray, ascending; lengths: ``[R, S]`` metric interval lengths.
    """
    w, m = weights.float(), midpoints.float()
    w_before = torch.cumsum(w, -1) - w  # Σ_{j<i} w_j
    wm_before = torch.cumsum(w * m, -1) - w * m  # Σ_{j<i} w_j m_j
    pairs = 2.0 * (w * (m * w_before - wm_before)).sum(-1)
    return (pairs + (w ** 2 * lengths.float()).sum(-1) / 3.0).mean()


def distortion_loss_packed(weights: Tensor, midpoints: Tensor, lengths: Tensor, ray_index: Tensor,
                           n_rays: int) -> Tensor:
    """`distortion_loss` for packed samples ``[M]`` sorted by ray (``ray_index`` [M], ascending) and
    by distance within a ray; rays without samples count as zeros in the mean over ``n_rays``."""
    w, m = weights.float(), midpoints.float()
    if w.numel() == 0:
        return w.sum()
    counts = torch.bincount(ray_index, minlength=n_rays)
    start = (torch.cumsum(counts, 0) - counts)[ray_index]  # index of each sample's first sibling

    def before(x: Tensor) -> Tensor:  # Σ over earlier samples of the same ray (float64: a running
        run = torch.cumsum(x.double(), 0)  # sum over all rays minus another would lose the digits)
        return (run - run[start] - x.double() + x[start].double()).float()

    pairs = 2.0 * w * (m * before(w) - before(w * m))
    per_sample = pairs + w ** 2 * lengths.float() / 3.0
    return per_sample.sum() / n_rays


def normal_smoothness_2d(normal_image: Tensor) -> Tensor:
    """Squared finite differences of a rendered normal image along rows and columns.

    Args:
        normal_image: ``[B, H, W, 3]``.
    Returns:
        ``mean((N[:,1:]-N[:,:-1])²) + mean((N[:,:,1:]-N[:,:,:-1])²)``.
    """
    n = normal_image.float()
    return ((n[:, 1:] - n[:, :-1]) ** 2).mean() + ((n[:, :, 1:] - n[:, :, :-1]) ** 2).mean()


def normal_smoothness_3d(normals: Tensor, normals_perturbed: Tensor) -> Tensor:
    """``mean|n(x) - n(x + ε)|`` for normals at sample points and at jittered copies (L1)."""
    return (normals.float() - normals_perturbed.float()).abs().mean()


# --------------------------------------------------------------------------- reference-view losses


def reference_rgb_loss(pred_rgb: Tensor, gt_rgb: Tensor) -> Tensor:
    """MSE between the rendered and the reference RGB, both ``[B, H, W, 3]`` (same background)."""
    return F.mse_loss(pred_rgb.float(), gt_rgb.float())


def reference_mask_loss(pred_opacity: Tensor, gt_mask: Tensor) -> Tensor:
    """MSE between rendered opacity (``weights_sum``) and the reference mask (0/1), same shape."""
    return F.mse_loss(pred_opacity.float(), gt_mask.float())


def pearson_correlation(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation coefficient of two 1-D tensors of equal length."""
    x = x.float().flatten()
    y = y.float().flatten()
    xc = x - x.mean()
    yc = y - y.mean()
    return (xc * yc).sum() / torch.sqrt((xc * xc).sum() * (yc * yc).sum() + eps)


def reference_depth_loss(pred_depth: Tensor, gt_depth: Tensor, mask: Tensor) -> Tensor:
    """``1 - Pearson(pred_depth, gt_depth)`` over mask pixels.

    Monocular depth is only known up to an affine map (and its sign convention may differ), so the
    loss scores correlation, not values. Returns 0 (with a graph) when fewer than 2 mask pixels.
    """
    m = mask.bool()
    if int(m.sum()) < 2:
        return pred_depth.sum() * 0.0
    return 1.0 - pearson_correlation(pred_depth[m], gt_depth[m])


def reference_normal_loss(
    pred_normal_image: Tensor, gt_normal_image: Tensor, mask: Tensor, flip_gt: bool = True
) -> Tensor:
    """``1 - mean cos(pred_n, gt_n)`` over mask pixels.

    Args:
        pred_normal_image: ``[..., 3]`` rendered normal image in [0, 1] (``(n+1)/2`` composited);
            mapped back with ``2x - 1``.
        gt_normal_image: ``[..., 3]`` the ``_normal.png`` in [0, 1]. With ``flip_gt`` (the
            stable-dreamfusion convention) it becomes ``1 - 2x``: the stored (Omnidata) normals and
            the NeRF normals ``-∇σ`` point opposite ways.
        mask: ``[...]`` boolean, pixels of the object.
    """
    m = mask.bool()
    if int(m.sum()) == 0:
        return pred_normal_image.sum() * 0.0
    pred = 2.0 * pred_normal_image.float()[m] - 1.0
    gt = gt_normal_image.float()[m]
    gt = 1.0 - 2.0 * gt if flip_gt else 2.0 * gt - 1.0
    return 1.0 - F.cosine_similarity(pred, gt, dim=-1).mean()


# ------------------------------------------------------------------ hash-grid gradient injections

# Maps (level, integer vertex coordinates [N, 3]) to row indices *within that level's table* [N].
VertexIndexFn = Callable[[int, Tensor], Tensor]


@torch.no_grad()
def add_hash_grid_tv_grad_(
    embeddings: Tensor,
    grad: Tensor,
    level_offsets: Sequence[int],
    level_resolutions: Sequence[int],
    vertex_index: VertexIndexFn,
    weight: float,
    num_points: int,
    generator: torch.Generator | None = None,
    max_level: int | None = None,
) -> None:
    """Add a total-variation gradient to hash-grid embeddings in place (spec §3.10 step 8).

    For ``num_points`` random grid vertices per level, each with its (up to 6) axis neighbours
    ``v ± e_d`` inside the grid, the gradient of the isotropic TV ``sqrt(Σ_nb (e_v - e_nb)²)`` with
    respect to ``e_v`` is added, per channel and scaled by ``weight/(2·D)``::

        grad[v] += weight/(2D) · Σ_nb (e_v - e_nb) / sqrt(Σ_nb (e_v - e_nb)² + 1e-9)

    Colliding hashed vertices accumulate (``index_add_``), as atomics do on CUDA.

    Args:
        embeddings: ``[T_total, C]`` the table (read only).
        grad: ``[T_total, C]`` its ``.grad`` (updated in place; call after backward/unscale).
        level_offsets: ``L+1`` row offsets of each level in the table.
        level_resolutions: vertices per axis of each level (vertex coords in ``[0, R)``).
        vertex_index: see :data:`VertexIndexFn`.
        weight: already includes ``λ_tv`` and its ramp.
        num_points: random vertices per level (stable-dreamfusion uses 1e6 random points).
        max_level: number of active levels (progressive level); ``None`` = all.
    """
    D = 3
    n_levels = len(level_offsets) - 1
    if max_level is not None:
        n_levels = min(n_levels, max_level)
    w = weight / (2 * D)
    dev = embeddings.device
    emb = embeddings.detach().float()
    for level in range(n_levels):
        R = int(level_resolutions[level])
        off = int(level_offsets[level])
        v = torch.randint(0, R, (num_points, D), device=dev, generator=generator)
        idx = vertex_index(level, v).long() + off
        centre = emb[idx]                                    # [P, C]
        total = torch.zeros_like(centre)
        total_sq = torch.zeros_like(centre)
        for d in range(D):
            for step in (1, -1):
                nb = v.clone()
                nb[:, d] += step
                valid = ((nb[:, d] >= 0) & (nb[:, d] < R)).to(centre.dtype)[:, None]
                nb[:, d].clamp_(0, R - 1)
                diff = (centre - emb[vertex_index(level, nb).long() + off]) * valid
                total += diff
                total_sq += diff * diff
        contrib = w * total * torch.rsqrt(total_sq + 1e-9)
        grad.index_add_(0, idx, contrib.to(grad.dtype))


@torch.no_grad()
def add_level_weight_decay_grad_(
    embeddings: Tensor, grad: Tensor, level_offsets: Sequence[int], weight: float
) -> None:
    """Add the level-normalised weight-decay gradient ``2·weight·e/|level table|`` in place.

    It is the gradient of ``weight · Σ_levels (1/|level|)·Σ_rows ‖e‖²``: each level contributes a
    mean over its own rows, so small coarse levels are not drowned by big fine ones (zip-nerf).
    """
    for level in range(len(level_offsets) - 1):
        a, b = int(level_offsets[level]), int(level_offsets[level + 1])
        if b > a:
            grad[a:b].add_(embeddings.detach()[a:b].to(grad.dtype), alpha=2.0 * weight / (b - a))
