"""Score Distillation Sampling: the one implementation shared by every diffusion prior.

For latents z of a render, one step draws t ~ U{min_step … max_step} and ε ~ N(0, I), forms
`z_t = √ᾱ_t·z + √(1−ᾱ_t)·ε`, asks the prior for ε̂ with classifier-free guidance and sets

    ∂L/∂z = grad_scale · w(t) · (ε̂ − ε),     w(t) = 1 − ᾱ_t

without back-propagating through the diffusion network (DreamFusion, spec §3.1). The gradient
is injected either by `SpecifyGradient` (a dummy loss of 1 whose backward returns the gradient
times the incoming gradient, so an AMP GradScaler's scale reaches it) or by the equivalent
"MSE to a detached target" loss `0.5·Σ(z − stopgrad(z − grad))²/B` whose value is informative.

Usage:
    sds = ScoreDistillation(prior, SDSConfig(t_range=(0.02, 0.98), guidance_scale=100))
    out = sds.step(rgb, embeddings)               # rgb [B,3,H,W] in [0,1]; embeddings [2B, ...]
    (out.loss + other_losses).backward()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ..errors import UserError
from ..profiling import section
from .perpneg import aggregate_perpneg
from .prior import conditioning_rows, has_latent_mode

LossForm = Literal["mse", "specify"]


@dataclass
class SDSConfig:
    """Options of the SDS step.

    t_range: timestep range as fractions of T: min_step = int(T·a), max_step = int(T·b), inclusive.
    guidance_scale: classifier-free guidance scale s in `ε̂ = ε_u + s·(ε_c − ε_u)`.
    grad_clip: if set, clamp the SDS gradient to ±grad_clip (after nan_to_num).
    loss_form: "mse" (stable-dreamfusion HEAD: gradient = grad / B, loss = 0.5·‖grad‖²/B) or
        "specify" (SpecifyGradient: gradient = grad, loss value is a constant 1).
    """

    t_range: tuple[float, float] = (0.02, 0.98)
    guidance_scale: float = 100.0
    grad_clip: float | None = None
    loss_form: LossForm = "mse"


@dataclass
class SDSOutput:
    """Everything one SDS step computed (all but `loss` detached)."""

    loss: Tensor          # [] scalar to add to the other losses and backward
    grad: Tensor          # [B,C,h,w] float32, the gradient injected at the latents (before 1/B)
    latents: Tensor       # [B,C,h,w] the (detached) latents z
    t: Tensor             # [B] long timesteps
    noise: Tensor         # [B,C,h,w] ε
    x_t: Tensor           # [B,C,h,w] noisy latents
    eps_hat: Tensor       # [B,C,h,w] guided noise prediction
    w: Tensor             # [B] 1 − ᾱ_t


def timestep_bounds(num_train_timesteps: int, t_range: tuple[float, float]) -> tuple[int, int]:
    """(min_step, max_step) = (int(T·a), int(T·b)), clipped to [0, T−1]."""
    a, b = float(t_range[0]), float(t_range[1])
    if not (0.0 <= a <= b <= 1.0):
        raise UserError(f"t_range must satisfy 0 <= min <= max <= 1, got [{a}, {b}]")
    last = num_train_timesteps - 1
    return min(int(num_train_timesteps * a), last), min(int(num_train_timesteps * b), last)


def sample_timesteps(batch_size: int, min_step: int, max_step: int, device: torch.device | str,
                     generator: torch.Generator | None = None) -> Tensor:
    """[B] long timesteps uniform on {min_step, …, max_step} (both ends included)."""
    gen_device = generator.device if generator is not None else device
    t = torch.randint(min_step, max_step + 1, (batch_size,), generator=generator, device=gen_device)
    return t.to(device)


def add_noise(latents: Tensor, noise: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Forward process `√ᾱ_t·z + √(1−ᾱ_t)·ε` (identical to diffusers' DDPM/DDIM add_noise)."""
    a = alphas_cumprod.to(latents.device)[t].to(latents.dtype).view(-1, *([1] * (latents.dim() - 1)))
    return a.sqrt() * latents + (1 - a).sqrt() * noise


def guided_noise(eps_all: Tensor, batch_size: int, guidance_scale: float,
                 perpneg_weights: Tensor | None = None,
                 reference_weights: Tensor | None = None) -> Tensor:
    """Combine the prior's predictions for `(1+K)` conditioning blocks of B rows into ε̂.

    Args:
        eps_all: [(1+K)·B, C, h, w] predictions; block 0 is unconditional.
        perpneg_weights: [B, K] Perp-Neg weights (column 0 = 1), or
        reference_weights: [B, K] non-negative weights for a weighted average of the K guided
            predictions (Zero123 with several reference views); with neither, K must be 1.
    Returns:
        ε̂ [B, C, h, w] = ε_u + s·D where D = Δ_1 (plain CFG), the Perp-Neg aggregate, or
        Σ_k w̃_k·Δ_k with w̃ = w/Σw (equal to Σ_k w̃_k·ε̂_k since every block shares ε_u).
    """
    blocks = eps_all.view(-1, batch_size, *eps_all.shape[1:])
    eps_uncond, deltas = blocks[0], blocks[1:] - blocks[0]
    if perpneg_weights is not None and reference_weights is not None:
        raise ValueError("use perpneg_weights or reference_weights, not both")
    if perpneg_weights is not None:
        direction = aggregate_perpneg(deltas, perpneg_weights.to(eps_all.device))
    elif reference_weights is not None:
        w = reference_weights.to(eps_all.device, eps_all.dtype)
        w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
        direction = torch.einsum("bk,kb...->b...", w, deltas)
    else:
        if deltas.shape[0] != 1:
            raise ValueError(f"{deltas.shape[0]} conditional blocks need perpneg_weights or "
                             "reference_weights")
        direction = deltas[0]
    return eps_uncond + guidance_scale * direction


def sds_gradient(eps_hat: Tensor, noise: Tensor, t: Tensor, alphas_cumprod: Tensor,
                 grad_scale: float | Tensor = 1.0, grad_clip: float | None = None) -> Tensor:
    """`grad_scale · w(t) · (ε̂ − ε)` with w = 1 − ᾱ_t, NaN→0 and ±inf→±max, optional clamp."""
    w = (1 - alphas_cumprod.to(eps_hat.device)[t]).float()
    scale = torch.as_tensor(grad_scale, dtype=torch.float32, device=eps_hat.device)
    scale = scale.view(-1, *([1] * (eps_hat.dim() - 1))) if scale.dim() else scale
    grad = scale * w.view(-1, *([1] * (eps_hat.dim() - 1))) * (eps_hat.float() - noise.float())
    grad = torch.nan_to_num(grad)
    if grad_clip is not None and grad_clip >= 0:
        grad = grad.clamp(-grad_clip, grad_clip)
    return grad


class SpecifyGradient(torch.autograd.Function):
    """Identity-free gradient injection: forward → ones([1]), backward → grad × incoming.

    The incoming gradient of the dummy 1 is the AMP loss scale (or 1 without a scaler), so the
    injected gradient is scaled exactly like every other loss term (stable-dreamfusion #158).
    """

    @staticmethod
    def forward(ctx, latents: Tensor, grad: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(grad)
        ctx.latents_dtype = latents.dtype
        # float32 dummy: an fp16 one would overflow to inf under GradScaler's 2^16 start scale.
        return torch.ones([1], device=latents.device, dtype=torch.float32)

    @staticmethod
    def backward(ctx, incoming: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return (grad * incoming.float()).to(ctx.latents_dtype), None


def inject_gradient(latents: Tensor, grad: Tensor, form: LossForm = "mse") -> Tensor:
    """A scalar loss whose gradient at `latents` is `grad` ("specify") or `grad / B` ("mse")."""
    if form == "specify":
        return SpecifyGradient.apply(latents, grad.detach()).squeeze(0)
    if form == "mse":
        lat = latents.float()
        target = (lat - grad).detach()
        return 0.5 * ((lat - target) ** 2).sum() / latents.shape[0]
    raise ValueError(f"unknown SDS loss form {form!r} (expected 'mse' or 'specify')")


class ScoreDistillation:
    """SDS over any `DiffusionPrior` (see prior.py)."""

    def __init__(self, prior: Any, config: SDSConfig | None = None):
        self.prior = prior
        self.config = config or SDSConfig()
        self.min_step, self.max_step = timestep_bounds(prior.num_train_timesteps, self.config.t_range)

    def latents(self, images: Tensor, as_latent: bool = False) -> Tensor:
        """Render → prior latents (differentiable). `as_latent`: images are [B,4,H,W] normal+alpha."""
        if as_latent:
            if not has_latent_mode(self.prior):
                raise UserError(f"{type(self.prior).__name__} has no latent mode; set "
                                "latent_iter_ratio to 0 for this guidance")
            return self.prior.latents_from_rgba(images)
        return self.prior.encode_images(images)

    def step(self, images: Tensor, embeddings: Any, *, as_latent: bool = False,
             save_guidance_path: str | Path | None = None, **kwargs) -> SDSOutput:
        """One SDS step on a render.

        Args:
            images: [B, 3, H, W] in [0, 1] (or [B, 4, H, W] normal+alpha with `as_latent`).
            embeddings: the prior's conditioning, `(1+K)·B` rows, unconditional block first.
            save_guidance_path: if set, write render | noisy latent | one-step x0 there (PNG), or,
                when callable, hand it a :class:`~.preview.GuidancePreview`.
            **kwargs: passed to `step_latents` (grad_scale, perpneg_weights, reference_weights,
                t, noise, generator).
        """
        latents = self.latents(images, as_latent)
        out = self.step_latents(latents, embeddings, **kwargs)
        if save_guidance_path is not None:
            from .preview import deliver_preview

            deliver_preview(save_guidance_path, self.prior, images[:, :3], out)
        return out

    def step_latents(self, latents: Tensor, embeddings: Any, *, grad_scale: float | Tensor = 1.0,
                     perpneg_weights: Tensor | None = None, reference_weights: Tensor | None = None,
                     t: Tensor | None = None, noise: Tensor | None = None,
                     generator: torch.Generator | None = None) -> SDSOutput:
        """SDS on latents [B, C, h, w] (which carry the graph back to the render).

        `t` [B] and `noise` [B,C,h,w] may be given (tests, reproducibility); otherwise they are
        drawn from `generator` (or the global RNG).
        """
        batch = latents.shape[0]
        rows = conditioning_rows(embeddings)
        if rows % batch or rows < 2 * batch:
            raise ValueError(f"conditioning has {rows} rows; expected (1+K)·{batch} with K >= 1 "
                             "(unconditional block first)")
        blocks = rows // batch
        alphas = self.prior.alphas_cumprod
        device = latents.device
        if t is None:
            t = sample_timesteps(batch, self.min_step, self.max_step, device, generator)
        t = t.to(device=device, dtype=torch.long)
        with torch.no_grad():
            z = latents.detach().float()
            if noise is None:
                gen_device = generator.device if generator is not None else device
                noise = torch.randn(z.shape, generator=generator, device=gen_device).to(device)
            noise = noise.to(device=device, dtype=torch.float32)
            x_t = add_noise(z, noise, t, alphas)
            with section("prior"):
                eps_all = self.prior.predict_noise(torch.cat([x_t] * blocks), torch.cat([t] * blocks),
                                                   embeddings).float()
            eps_hat = guided_noise(eps_all, batch, self.config.guidance_scale, perpneg_weights,
                                   reference_weights)
            grad = sds_gradient(eps_hat, noise, t, alphas, grad_scale, self.config.grad_clip)
        loss = inject_gradient(latents, grad, self.config.loss_form)
        w = (1 - alphas.to(device)[t]).float()
        return SDSOutput(loss=loss, grad=grad, latents=z, t=t, noise=noise, x_t=x_t,
                         eps_hat=eps_hat, w=w)
