"""DeepFloyd IF stage I as a `DiffusionPrior` (spec §3.2): pixel-space diffusion at 64×64.

T5 text embeddings condition a UNet whose 6 output channels are (ε, variance); SDS uses the
first 3. There is no VAE and no latent warm-up: the "latents" are the render resized to the
UNet's size and mapped to [-1, 1].

Usage:
    prior = DeepFloydIFPrior.from_pretrained("DeepFloyd/IF-I-XL-v1.0", device, fp16=True)
    emb = prior.encode_text(["", "a cat"])            # [2, 77, 4096]
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from .weights import freeze, load_pretrained, pipeline_dtype_kwargs, torch_dtype_for

log = logging.getLogger(__name__)

IF_KEY = "DeepFloyd/IF-I-XL-v1.0"


class DeepFloydIFPrior:
    """IF-I components behind the prior interface (see prior.py)."""

    def __init__(self, unet, text_encoder, tokenizer, scheduler, device: torch.device | str,
                 pipe=None, max_length: int = 77):
        self.unet, self.text_encoder, self.tokenizer = unet, text_encoder, tokenizer
        self.scheduler, self.pipe = scheduler, pipe
        self.device = torch.device(device)
        freeze(unet, text_encoder)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.alphas_cumprod = scheduler.alphas_cumprod.float().to(self.device)
        self.resolution = int(unet.config.sample_size)
        self.max_length = min(max_length, int(tokenizer.model_max_length))
        self.dtype = unet.dtype

    @classmethod
    def from_pretrained(cls, key: str = IF_KEY, device: torch.device | str = "cpu", *,
                        fp16: bool = True, vram_O: bool = False, cache_dir: str | None = None,
                        option_hint: str = "--if_key") -> "DeepFloydIFPrior":
        """Load IF stage I (hub id or folder). fp16 (CUDA only) uses the "fp16" weight variant when
        the checkpoint has one. vram_O: channels-last UNet, attention slicing, model CPU offload."""
        from diffusers import IFPipeline

        device = torch.device(device)
        dtype = torch_dtype_for(device, fp16)

        def load(k: str, local_only: bool):
            kwargs = dict(**pipeline_dtype_kwargs(dtype), safety_checker=None, feature_extractor=None,
                          watermarker=None, requires_safety_checker=False,
                          local_files_only=local_only, cache_dir=cache_dir)
            if dtype == torch.float16:
                try:  # the hub repo ships half-size "fp16" files; a plain folder may not
                    return IFPipeline.from_pretrained(k, variant="fp16", **kwargs)
                except (OSError, ValueError):
                    pass
            return IFPipeline.from_pretrained(k, **kwargs)

        pipe = load_pretrained(load, key, what="DeepFloyd IF", option_hint=option_hint,
                               cache_dir=cache_dir)
        if vram_O:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.unet.set_attention_slice(1)
            if device.type == "cuda":
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
        else:
            pipe.to(device)
        return cls(pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler, device, pipe)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B] prompts → T5 last hidden state [B, 77, D] (lower-cased and stripped like IF)."""
        texts = [p.lower().strip() for p in prompts]
        tok = self.tokenizer(texts, padding="max_length", max_length=self.max_length,
                             truncation=True, add_special_tokens=True, return_tensors="pt")
        return self.text_encoder(tok.input_ids.to(self.device),
                                 attention_mask=tok.attention_mask.to(self.device))[0]

    def encode_images(self, rgb: Tensor) -> Tensor:
        """[B,3,H,W] in [0,1] → pixels [B,3,64,64] in [-1,1] (differentiable)."""
        x = F.interpolate(rgb, (self.resolution, self.resolution), mode="bilinear",
                          align_corners=False)
        return 2 * x - 1

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        """ε̂ [N,3,64,64] float32: the first 3 of the UNet's 6 output channels."""
        t = t.to(self.device)
        x = self.scheduler.scale_model_input(x_t.to(self.device, self.dtype), t)
        out = self.unet(x, t, encoder_hidden_states=embeddings.to(self.device, self.dtype)).sample
        return out[:, : x_t.shape[1]].float()

    @torch.no_grad()
    def decode_latents(self, latents: Tensor) -> Tensor:
        """Pixel space: [-1,1] → [0,1]."""
        return (latents.float() / 2 + 0.5).clamp(0, 1)
