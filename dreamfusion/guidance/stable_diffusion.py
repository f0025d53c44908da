"""Stable Diffusion as a `DiffusionPrior` (spec §3.1): VAE latents, CLIP text, ε-prediction UNet.

Any diffusers-format SD checkpoint works: the `--sd_version` shortcuts, a hub id or a local
folder (`--hf_key`). The working resolution follows the checkpoint
(`unet.sample_size × vae scale`, 512 for 1.5 / 2.0 / 2.1-base). v-prediction checkpoints are
converted to ε so SDS stays the same.

Usage:
    prior = StableDiffusionPrior.from_pretrained(resolve_sd_key("2.1"), device, fp16=True)
    emb = prior.encode_text(["", "a cat, front view"])                  # [2, 77, 1024]
    latents = prior.encode_images(rgb)                                  # [B, 4, 64, 64]
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError
from .weights import freeze, load_pretrained, pipeline_dtype_kwargs, torch_dtype_for

log = logging.getLogger(__name__)

SD_VERSIONS = {
    "1.5": "runwayml/stable-diffusion-v1-5",
    "2.0": "stabilityai/stable-diffusion-2-base",
    "2.1": "stabilityai/stable-diffusion-2-1-base",
    "2.1-base": "stabilityai/stable-diffusion-2-1-base",
}


def resolve_sd_key(sd_version: str = "2.1", hf_key: str | None = None) -> str:
    """`hf_key` (hub id or folder) if given, else the checkpoint of `sd_version` (spec §2.2)."""
    if hf_key:
        return hf_key
    if str(sd_version) not in SD_VERSIONS:
        raise UserError(f"unknown --sd_version {sd_version!r}; choose one of "
                        f"{', '.join(SD_VERSIONS)} or pass --hf_key")
    return SD_VERSIONS[str(sd_version)]


class StableDiffusionPrior:
    """SD components behind the prior interface (see prior.py)."""

    def __init__(self, vae, unet, text_encoder, tokenizer, scheduler, device: torch.device | str,
                 pipe=None):
        """Components are diffusers/transformers modules already placed on their devices.

        `scheduler` only provides the noise schedule (`alphas_cumprod`, `prediction_type`);
        `pipe` is kept when loaded through a pipeline (CPU offload hooks live there).
        """
        self.vae, self.unet, self.text_encoder, self.tokenizer = vae, unet, text_encoder, tokenizer
        self.scheduler, self.pipe = scheduler, pipe
        self.device = torch.device(device)
        freeze(vae, unet, text_encoder)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.alphas_cumprod = scheduler.alphas_cumprod.float().to(self.device)
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise UserError(f"Stable Diffusion checkpoints predicting {self.prediction_type!r} "
                            "are not supported (need 'epsilon' or 'v_prediction')")
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_size = int(unet.config.sample_size)
        self.resolution = self.latent_size * self.vae_scale
        self.scaling_factor = float(vae.config.scaling_factor)
        self.dtype = unet.dtype

    @classmethod
    def from_pretrained(cls, key: str, device: torch.device | str = "cpu", *, fp16: bool = False,
                        vram_O: bool = False, cache_dir: str | None = None,
                        option_hint: str = "--hf_key") -> "StableDiffusionPrior":
        """Load a diffusers SD pipeline (hub id or folder) and keep what SDS needs.

        fp16: half precision on CUDA/MPS (CPU stays float32). vram_O: attention slicing, VAE
        slicing, channels-last UNet and sequential CPU offload (CUDA with accelerate only).
        """
        from diffusers import DDIMScheduler, StableDiffusionPipeline

        device = torch.device(device)
        dtype = torch_dtype_for(device, fp16)

        def load(k: str, local_only: bool):
            return StableDiffusionPipeline.from_pretrained(
                k, **pipeline_dtype_kwargs(dtype), safety_checker=None, requires_safety_checker=False,
                feature_extractor=None, local_files_only=local_only, cache_dir=cache_dir)

        pipe = load_pretrained(load, key, what="Stable Diffusion", option_hint=option_hint,
                               cache_dir=cache_dir)
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        if vram_O:
            pipe.enable_attention_slicing(1)
            pipe.vae.enable_slicing()
            pipe.unet.to(memory_format=torch.channels_last)
            if device.type == "cuda" and _accelerate_available():
                pipe.enable_sequential_cpu_offload(device=device)
            else:
                log.info("vram_O: sequential CPU offload needs CUDA and accelerate; skipped")
                pipe.to(device)
        else:
            pipe.to(device)
        return cls(pipe.vae, pipe.unet, pipe.text_encoder, pipe.tokenizer, scheduler, device, pipe)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B] prompts → last hidden state [B, model_max_length, D], padded to max length."""
        ids = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                             max_length=self.tokenizer.model_max_length, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.device))[0]

    def encode_images(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B,3,H,W] in [0,1] → VAE latents [B,4,h,w] × scaling_factor (posterior sample)."""
        x = F.interpolate(rgb, (self.resolution, self.resolution), mode="bilinear",
                          align_corners=False)
        x = (2 * x - 1).to(self.device, self.vae.dtype)
        posterior = self.vae.encode(x).latent_dist
        return posterior.sample(generator) * self.scaling_factor

    def latents_from_rgba(self, rgba: Tensor) -> Tensor:
        """Latent warm-up: normal-shaded RGB + opacity [B,4,H,W] → [B,4,h,w] = resize·2 − 1."""
        x = F.interpolate(rgba, (self.latent_size, self.latent_size), mode="bilinear",
                          align_corners=False)
        return 2 * x - 1

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        """ε̂ [N,4,h,w] float32 for noisy latents, timesteps and text embeddings (N rows each)."""
        x = x_t.to(self.device, self.dtype)
        out = self.unet(x, t.to(self.device), encoder_hidden_states=embeddings.to(self.device, self.dtype)
                        ).sample.float()
        if self.prediction_type == "v_prediction":
            # v = √ᾱ·ε − √(1−ᾱ)·x0 and x_t = √ᾱ·x0 + √(1−ᾱ)·ε  ⇒  ε = √ᾱ·v + √(1−ᾱ)·x_t
            a = self.alphas_cumprod[t.to(self.device)].view(-1, 1, 1, 1)
            out = a.sqrt() * out + (1 - a).sqrt() * x_t.to(self.device).float()
        return out

    @torch.no_grad()
    def decode_latents(self, latents: Tensor) -> Tensor:
        """[B,4,h,w] → RGB [B,3,H,W] in [0,1]."""
        x = self.vae.decode((latents / self.scaling_factor).to(self.device, self.vae.dtype)).sample
        return (x.float() / 2 + 0.5).clamp(0, 1)


def _accelerate_available() -> bool:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        return False
    return True
