"""Perp-Neg (spec §3.5): negative view prompts pushed only perpendicular to the positive direction.

Per batch element the positive prompt is the azimuth-interpolated view embedding and the other
view(s) act as negatives with weights that decay with the distance to that view. The guidance
is `ε̂ = ε_u + s·(Δ_0 + Σ_k w_k·perp(Δ_k, Δ_0))` with `Δ_k = ε_k − ε_u`, so a negative prompt can
only remove what is not shared with the positive one.

View-interpolated prompting without Perp-Neg lives in `dreamfusion/prompts.py` (lead).

Usage:
    emb, weights = perpneg_embeddings(azimuth, uncond, front, side, back, negative_w=-2.0)
    out = sds.step(rgb, emb, perpneg_weights=weights)      # emb: [(1+K)·B, ...], weights [B, K]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def perpendicular_component(x: Tensor, y: Tensor) -> Tensor:
    """Part of x perpendicular to y, per sample: `x − (⟨x,y⟩/max(‖y‖², 1e-6))·y`.

    Args:
        x, y: [B, ...]; inner products run over all non-batch dimensions of one sample.
    Returns:
        [B, ...] with ⟨result_b, y_b⟩ ≈ 0.
    """
    xf, yf = x.flatten(1), y.flatten(1)
    coef = (xf * yf).sum(1) / (yf * yf).sum(1).clamp_min(1e-6)
    return x - coef.view(-1, *([1] * (x.dim() - 1))) * y


def aggregate_perpneg(deltas: Tensor, weights: Tensor) -> Tensor:
    """`Δ_0 + Σ_{k≥1} w_k·perp(Δ_k, Δ_0)` per sample.

    Args:
        deltas: [K, B, C, h, w] conditional-minus-unconditional noise predictions; k = 0 is the
            positive prompt.
        weights: [B, K]; `weights[:, 0]` must be 1 (the positive prompt's weight).
    Returns:
        [B, C, h, w] the aggregated guidance direction (multiply by the CFG scale).
    """
    if deltas.shape[0] != weights.shape[1] or deltas.shape[1] != weights.shape[0]:
        raise ValueError(f"perp-neg deltas {tuple(deltas.shape)} do not match weights "
                         f"{tuple(weights.shape)} ([K,B,...] vs [B,K])")
    if not torch.all(weights[:, 0] == 1):
        raise ValueError("perp-neg weight of the positive prompt (column 0) must be 1")
    positive = deltas[0]
    out = positive.clone()
    w = weights.to(deltas.dtype)
    for k in range(1, deltas.shape[0]):
        # Rows with a (near) zero weight are padding or switched-off negatives: skip the math.
        active = w[:, k].abs() > 1e-4
        if active.any():
            perp = perpendicular_component(deltas[k][active], positive[active])
            out[active] += w[active, k].view(-1, *([1] * (perp.dim() - 1))) * perp
    return out


def perpneg_view_weights(azimuth_deg: float, negative_w: float = -2.0,
                         front_decay: float = 2.0, side_decay: float = 10.0
                         ) -> tuple[str, str, float, list[str], list[float]]:
    """Prompt mix and weights for one camera (spec §3.5).

    Args:
        azimuth_deg: camera azimuth relative to the front view, in [-180, 180].
    Returns:
        (start, end, r, prompts, weights): the positive embedding is `r·start + (1−r)·end`;
        `prompts` names the K embeddings (first = "positive") and `weights` their K weights.
    """
    az = float(azimuth_deg)
    if -90 <= az < 90:
        r = 1 - abs(az) / 90
        w_front = 0.0 if r > 0.8 else math.exp(-r * front_decay) * negative_w
        w_side = 0.0 if r < 0.2 else math.exp(-(1 - r) * side_decay) * negative_w
        return "front", "side", r, ["positive", "front", "side"], [1.0, w_front, w_side]
    r = 1 - (abs(az) - 90) / 90
    w_side = 0.0 if r > 0.8 else math.exp(-r * side_decay) * negative_w / 2
    return "side", "back", r, ["positive", "side", "front"], [1.0, w_side, negative_w]


def perpneg_embeddings(azimuth: Tensor, uncond: Tensor, front: Tensor, side: Tensor, back: Tensor,
                       negative_w: float = -2.0, front_decay: float = 2.0,
                       side_decay: float = 10.0) -> tuple[Tensor, Tensor]:
    """Build the Perp-Neg conditioning batch for B cameras.

    Args:
        azimuth: [B] degrees relative to the front view, in [-180, 180].
        uncond, front, side, back: [1, L, D] text embeddings (uncond = negative prompt).
    Returns:
        embeddings [(1+K)·B, L, D] laid out `[uncond × B ; block_1 ; … ; block_K]` where block k
        holds the k-th prompt of every camera (shorter lists padded with their first prompt), and
        weights [B, K] (padding weight 0; column 0 is 1).
    """
    views = {"front": front[0], "side": side[0], "back": back[0]}
    per_camera: list[tuple[list[Tensor], list[float]]] = []
    for az in azimuth.detach().flatten().tolist():
        start, end, r, names, ws = perpneg_view_weights(az, negative_w, front_decay, side_decay)
        positive = r * views[start] + (1 - r) * views[end]
        per_camera.append(([positive] + [views[n] for n in names[1:]], ws))
    k_max = max(len(p) for p, _ in per_camera)
    blocks = [torch.stack([p[k] if k < len(p) else p[0] for p, _ in per_camera]) for k in range(k_max)]
    weights = torch.tensor([[w[k] if k < len(w) else 0.0 for k in range(k_max)] for _, w in per_camera],
                           dtype=torch.float32, device=uncond.device)
    b = len(per_camera)
    embeddings = torch.cat([uncond.expand(b, *uncond.shape[1:])] + blocks, dim=0)
    return embeddings, weights
