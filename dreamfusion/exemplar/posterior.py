"""The exact posterior mean of a weighted exemplar set under the diffusion noise model.

Noise model (DDPM): x_t = s·x0 + σ·ε with s = √ᾱ_t, σ² = 1 - ᾱ_t, ε ~ N(0, I). Given exemplars x_i
with prior weights π_i, p(i | x_t) ∝ π_i·N(x_t; s·x_i, σ²I) and E[x0 | x_t] = Σ_i p(i | x_t)·x_i.

Images live in [-1, 1]. An exemplar is stored as premultiplied colour F_i and coverage A_i (both in
[0, 1]), so its image over a flat background colour b is x_i(b) = m_i + u_i·b' per RGB channel,
with m_i = 2F_i - A_i, u_i = 1 - A_i, b' = 2b - 1. The background colour either is fixed (τ = 0) or
has a Gaussian prior b' ~ N(μ, τ²) per channel and is integrated out in closed form: with
y = x_t - s(m_i + μu_i) and D = σ² + s²τ²‖u_i‖²,

    β = E[b' - μ | i, x_t] = s·τ²·⟨u_i, y⟩ / D
    log p(x_t | i) = -½ (‖y‖²/σ² - s²τ²⟨u_i, y⟩²/(σ²D) + log(D/σ²)) + const      (per channel)
    E[x0 | i, x_t] = m_i + (μ + β)·u_i.

An optional fourth channel is the opacity, 2A - 1 in [-1, 1], with a plain Gaussian term.

Distances are expanded into inner products (‖x - s·m‖² = ‖x‖² - 2s⟨x, m⟩ + s²‖m‖²), so the work
is a few matrix products against the exemplar matrix, streamed over chunks of exemplars with a
running log-sum-exp. In float32 the rounding of those sums moves a log-likelihood by about
1e-7·P/σ² (≈ 0.02 at P = 3·32², t = 20), far below the gaps between distinct exemplars.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


class ExemplarStatistics:
    """One object's exemplars as the posterior uses them (views along n, pixels along P).

    base [3, n, P]: m_i + μ·u_i, the exemplar over the mean background colour, in [-1, 1];
    u [n, P]: background visibility 1 - A_i; base_sq [3, n] = ‖base_c‖²; u_base [3, n] = ⟨u, base_c⟩;
    u_sq [n] = ‖u‖²; coverage [n, P] = 2A_i - 1 (the opacity channel); coverage_sq [n].
    """

    FIELDS = ("base", "u", "base_sq", "u_base", "u_sq", "coverage", "coverage_sq")

    def __init__(self, base: Tensor, u: Tensor, base_sq: Tensor, u_base: Tensor, u_sq: Tensor, coverage: Tensor,
                 coverage_sq: Tensor):
        self.base, self.u, self.base_sq, self.u_base, self.u_sq = base, u, base_sq, u_base, u_sq
        self.coverage, self.coverage_sq = coverage, coverage_sq

    @classmethod
    def build(cls, colour: Tensor, alpha: Tensor, background_mean: float, dtype: torch.dtype = torch.float32) -> "ExemplarStatistics":
        """From premultiplied colour [n, 3, r, r] and alpha [n, 1, r, r] in [0, 1]; ``background_mean``
        is μ's colour in [0, 1]."""
        n = colour.shape[0]
        colour, alpha = colour.to(dtype).reshape(n, 3, -1), alpha.to(dtype).reshape(n, -1)
        u = 1.0 - alpha
        mu = 2.0 * background_mean - 1.0
        base = (2.0 * colour - alpha[:, None] + mu * u[:, None]).transpose(0, 1).contiguous()
        coverage = (2.0 * alpha - 1.0).contiguous()
        return cls(base, u.contiguous(), base.square().sum(-1), torch.einsum("cnp,np->cn", base, u),
                   u.square().sum(-1), coverage, coverage.square().sum(-1))

    def to(self, device: torch.device) -> "ExemplarStatistics":
        if self.base.device == torch.device(device):
            return self
        return ExemplarStatistics(*(getattr(self, f).to(device) for f in self.FIELDS))

    def slice(self, a: int, b: int) -> "ExemplarStatistics":
        """Exemplars a..b-1 (views, no copies)."""
        return ExemplarStatistics(self.base[:, a:b], self.u[a:b], self.base_sq[:, a:b], self.u_base[:, a:b],
                                  self.u_sq[a:b], self.coverage[a:b], self.coverage_sq[a:b])

    def take(self, index: Tensor) -> "ExemplarStatistics":
        """The exemplars at ``index`` [k] (copies)."""
        index = index.to(self.u.device)
        return ExemplarStatistics(self.base[:, index], self.u[index], self.base_sq[:, index], self.u_base[:, index],
                                  self.u_sq[index], self.coverage[index], self.coverage_sq[index])

    def weighted_mean(self, p: Tensor, beta: Tensor, channels: int = 3) -> Tensor:
        """Σ_i p_i·(base_i + β_i·u_i) for p [R, n], β [R, 3, n] -> [R, 3, P]; with ``channels`` = 4
        the opacity channel Σ_i p_i·(2A_i - 1) is appended -> [R, 4, P]."""
        rgb = torch.einsum("rn,cnp->rcp", p, self.base) + torch.einsum("rcn,np->rcp", p[:, None] * beta, self.u)
        if channels == 3:
            return rgb
        return torch.cat([rgb, (p @ self.coverage)[:, None]], dim=1)


def log_likelihood(x: Tensor, scale: Tensor, var: Tensor, ex: ExemplarStatistics, tau2: float) -> tuple[Tensor, Tensor]:
    """log N(x_t | exemplar i) up to a shared constant, and the fitted background offsets.

    Args:
        x: [R, 3 or 4, P] noisy images (RGB, optional opacity) in the [-1, 1] scale.
        scale, var: [R] s = √ᾱ and σ² = 1 - ᾱ.
        tau2: variance of b' (0 = fixed background).
    Returns:
        logits [R, n]; β [R, 3, n] = E[b' - μ | i, x_t] (zeros when tau2 = 0).
    """
    s, v = scale[:, None, None], var[:, None, None]
    opacity_term: Tensor | float = 0.0
    if x.shape[1] == 4:
        xa = x[:, 3]
        ya = xa.square().sum(-1)[:, None] - 2.0 * scale[:, None] * (xa @ ex.coverage.T) \
            + scale[:, None].square() * ex.coverage_sq[None]
        opacity_term = -0.5 * ya.clamp_min(0.0) / var[:, None]
        x = x[:, :3]
    xx = x.square().sum(-1)[:, :, None]  # [R, 3, 1]
    xm = torch.einsum("rcp,cnp->rcn", x, ex.base)  # [R, 3, n]
    yy = (xx - 2.0 * s * xm + s * s * ex.base_sq[None]).clamp_min(0.0)  # ‖y_c‖², y = x - s·base_i
    if tau2 == 0.0:
        return -0.5 * (yy / v).sum(1) + opacity_term, torch.zeros_like(yy)
    uy = torch.einsum("rcp,np->rcn", x, ex.u) - s * ex.u_base[None]  # ⟨u_i, y_c⟩
    den = v + s * s * tau2 * ex.u_sq[None, None]  # [R, 1, n]
    beta = s * tau2 * uy / den
    quad = (yy - s * s * tau2 * uy.square() / den).clamp_min(0.0) / v  # the background fitted out
    logits = -0.5 * (quad.sum(1) + 3.0 * torch.log(den[:, 0] / v[:, 0])) + opacity_term
    return logits, beta


def posterior_mean(x: Tensor, scale: Tensor, var: Tensor, weights: Tensor,
                   statistics: Callable[[int], ExemplarStatistics], tau2: float, chunk_views: int = 4096) -> Tensor:
    """E[x0 | x_t] for every row, over exemplars grouped by object.

    Args:
        x: [B, C, P] noisy images (C = 3 RGB or 4 RGB + opacity).
        scale, var: [B].
        weights: [B, n_objects, V] prior weights π (rows sum to 1; zeros exclude exemplars).
        statistics: object index -> its :class:`ExemplarStatistics` (called only for objects with
            weight, so sets load lazily).
    Returns:
        [B, C, P].
    """
    batch = x.shape[0]
    # Streaming softmax per row: running max, normaliser and weighted sum of E[x0 | i, x_t].
    top = torch.full((batch,), -math.inf, device=x.device, dtype=x.dtype)
    norm = torch.zeros(batch, device=x.device, dtype=x.dtype)
    acc = torch.zeros_like(x)
    for o in range(weights.shape[1]):
        if not (weights[:, o] > 0).any():
            continue
        stats = statistics(o)
        for a in range(0, weights.shape[-1], chunk_views):
            b = min(a + chunk_views, weights.shape[-1])
            chunk_pi = weights[:, o, a:b]
            rows = (chunk_pi > 0).any(1).nonzero().squeeze(-1)
            if rows.numel() == 0:
                continue
            chunk = stats.slice(a, b)
            logits, beta = log_likelihood(x[rows], scale[rows], var[rows], chunk, tau2)
            logits = logits + chunk_pi[rows].log()  # -inf where an exemplar has no prior weight
            new_top = torch.maximum(top[rows], logits.max(dim=1).values)
            safe = torch.where(torch.isfinite(new_top), new_top, torch.zeros_like(new_top))
            decay = torch.exp(top[rows] - safe)
            p = torch.exp(logits - safe[:, None])  # [R, n]
            norm[rows] = norm[rows] * decay + p.sum(1)
            acc[rows] = acc[rows] * decay[:, None, None] + chunk.weighted_mean(p, beta, x.shape[1])
            top[rows] = new_top
    return acc / norm[:, None, None]
