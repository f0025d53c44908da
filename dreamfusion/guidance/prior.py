"""The small interface every 2D diffusion prior implements; `sds.py` talks only to it.

Implemented by `StableDiffusionPrior`, `DeepFloydIFPrior`, `Zero123Prior` (this package) and the
built-in exemplar prior (`dreamfusion/exemplar/`).

Required members
----------------
alphas_cumprod : Tensor [T] float32, on `device`
    ᾱ_t of the prior's training noise schedule (diffusers' `scheduler.alphas_cumprod`). SDS uses it
    for the forward process `x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε` and the weight `w(t) = 1 − ᾱ_t`.
num_train_timesteps : int
    T (1000 for every real prior). Timesteps are integers in [0, T).

encode_text(prompts: list[str]) -> Tensor [B, ...]
    Text embeddings, one row per prompt, float32 or the model dtype, no grad. Rows must be safe to
    **linearly interpolate** (view-dependent prompting mixes front/side/back embeddings). Priors
    that are not text-conditioned (Zero123) raise `NotImplementedError`.

encode_images(rgb: Tensor [B, 3, H, W] in [0, 1]) -> latents Tensor [B, C, h, w]
    Differentiable w.r.t. `rgb` (the SDS gradient flows back through it into the renderer). Resizes
    to the prior's working resolution itself (SD: 512 → 4×64×64 VAE latents ×0.18215;
    IF: 3×64×64 pixels in [-1, 1]; Zero123: 256 → 4×32×32).

predict_noise(x_t: Tensor [N, C, h, w], t: LongTensor [N], embeddings) -> eps Tensor [N, C, h, w]
    The model's ε-prediction (v-prediction models convert), float32, under `torch.no_grad`.
    `embeddings` is whatever the prior's conditioning is, with N rows: a Tensor for text priors,
    a `Zero123Conditioning` for Zero123. SDS lays rows out as classifier-free-guidance blocks of B
    rows each: `[uncond × B ; cond_1 × B ; … ; cond_K × B]` and repeats `x_t`, `t` to match;
    `len(embeddings)` (or `.shape[0]`) must give N.

Optional members
----------------
device : torch.device
    Where the prior wants its inputs (with CPU offload: the execution device). SDS itself works
    on the device of the latents it is given; the priors here move inputs to `device`.
decode_latents(latents: Tensor [B, C, h, w]) -> rgb Tensor [B, 3, H', W'] in [0, 1]
    For `save_guidance` previews (no grad needed).
latents_from_rgba(rgba: Tensor [B, 4, H, W] in [0, 1]) -> latents Tensor [B, 4, h, w]
    Latent-mode warm-up ("Fantasia3D trick"): the normal-shaded RGB and opacity are used
    directly as the 4-channel latent (`bilinear resize to h×w, ×2 − 1`), differentiable.
    Only latent-diffusion priors with 4 latent channels have it (SD).

Usage:
    prior = StableDiffusionPrior.from_pretrained("stabilityai/stable-diffusion-2-1-base", device)
    sds = ScoreDistillation(prior, SDSConfig(guidance_scale=100))
    out = sds.step(rgb, torch.cat([prior.encode_text([""]), prior.encode_text(["a cat"])]))
    out.loss.backward()
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class DiffusionPrior(Protocol):
    """Structural type of a 2D diffusion prior; see the module docstring for the contract."""

    alphas_cumprod: Tensor
    num_train_timesteps: int

    def encode_text(self, prompts: list[str]) -> Tensor: ...

    def encode_images(self, rgb: Tensor) -> Tensor: ...

    def predict_noise(self, x_t: Tensor, t: Tensor, embeddings: Any) -> Tensor: ...


def conditioning_rows(embeddings: Any) -> int:
    """Number of rows N in a prior's conditioning (Tensor: first dimension, else `len`)."""
    if isinstance(embeddings, Tensor):
        return int(embeddings.shape[0])
    return len(embeddings)


def has_latent_mode(prior: Any) -> bool:
    """Whether the prior accepts normal+opacity renders as latents (`latents_from_rgba`)."""
    return callable(getattr(prior, "latents_from_rgba", None))
