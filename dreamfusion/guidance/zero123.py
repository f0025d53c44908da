"""Zero-1-to-3 as a `DiffusionPrior` plus its multi-reference SDS (spec §3.3), diffusers format.

The UNet sees 8 input channels: the noisy latent ⊕ `c_concat` (the reference image's VAE
posterior mean, unscaled). Cross-attention gets `cc_projection(CLIP image embedding ⊕ T)` with
the relative camera `T = [rad(Δpolar), sin(rad(Δazimuth)), cos(rad(Δazimuth)), Δradius]`.
The deltas come from `cameras.zero123_deltas` already in Zero123's own convention, so they are
used as given (sin(+Δazimuth)). The unconditional branch is all zeros (both inputs).

Folder layout (e.g. "kxic/zero123-xl"): unet/, vae/, image_encoder/ (CLIPVisionModelWithProjection),
cc_projection/ (config.json + weights of a Linear 772→768).

Usage:
    guidance = Zero123Guidance(Zero123Prior.from_pretrained("kxic/zero123-xl", device))
    guidance.set_references(rgb_ref, polars=[90], azimuths=[0], radii=[3.2])
    out = guidance.step(rgb, d_polar, d_azimuth, d_radius, polar, azimuth)
    out.loss.backward()
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError
from .clip_guidance import CLIP_MEAN, CLIP_STD
from .sds import ScoreDistillation, SDSConfig, SDSOutput
from .weights import load_errors, freeze, load_pretrained

ZERO123_KEY = "kxic/zero123-xl"


def camera_vector(d_polar: Tensor, d_azimuth: Tensor, d_radius: Tensor) -> Tensor:
    """Zero123's relative camera T = [rad(Δθ), sin(rad(Δφ)), cos(rad(Δφ)), Δr] → [..., 4].

    Args: degrees for the angles, scene units for the radius; any matching shapes.
    """
    p, a = torch.deg2rad(d_polar.float()), torch.deg2rad(d_azimuth.float())
    return torch.stack([p, torch.sin(a), torch.cos(a), d_radius.float()], dim=-1)


def view_angles(polar: Tensor, azimuth: Tensor, ref_polars: Tensor, ref_azimuths: Tensor) -> Tensor:
    """Angle in degrees between each camera's and each reference's viewing direction.

    Args:
        polar, azimuth: [B] degrees (any spherical convention: only differences matter).
        ref_polars, ref_azimuths: [N] degrees in the same convention.
    Returns:
        [B, N] angles in [0, 180] (radius plays no role).
    """
    def unit(p, a):
        p, a = torch.deg2rad(p.double()), torch.deg2rad(a.double())
        return torch.stack([p.sin() * a.cos(), p.sin() * a.sin(), p.cos()], -1)

    cos = unit(polar, azimuth) @ unit(ref_polars, ref_azimuths).T
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1))).float()


def angle_grad_scale(angles: Tensor, mode: str | None = "angle") -> Tensor:
    """'angle': min_i angle / (180 / N) (0 at a reference, 1 opposite a single one); else 1."""
    if mode in (None, "None", "none"):
        return torch.ones(angles.shape[0], device=angles.device)
    if mode != "angle":
        raise UserError(f"unknown zero123_grad_scale {mode!r} (expected 'angle' or 'None')")
    return angles.min(dim=1).values / (180.0 / angles.shape[1])


def reference_weights(angles: Tensor, user_weights: Tensor) -> Tensor:
    """Per-camera weights [B, N] of the references (spec §3.3 multi-reference weighting).

    With several references, nearer ones count more: inv = min(1/angle, 100) / row max, < 0.1 → 0.
    Then `user_weights × inv`, divided by its row max, < 0.1 → 0.
    """
    if angles.shape[1] > 1:
        inv = (1.0 / angles).clamp(max=100.0)
        inv = inv / inv.max(dim=1, keepdim=True).values
        inv = torch.where(inv < 0.1, torch.zeros_like(inv), inv)
    else:
        inv = torch.ones_like(angles)
    w = user_weights.to(angles)[None, :] * inv
    w = w / w.max(dim=1, keepdim=True).values.clamp_min(1e-12)
    return torch.where(w < 0.1, torch.zeros_like(w), w)


class CCProjection(nn.Module):
    """Linear map of [CLIP image embedding ⊕ T] (772) to the cross-attention width (768)."""

    def __init__(self, in_channel: int = 772, out_channel: int = 768):
        super().__init__()
        self.in_channel, self.out_channel = in_channel, out_channel
        self.projection = nn.Linear(in_channel, out_channel)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write config.json + diffusion_pytorch_model.safetensors (the kxic layout)."""
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"_class_name": "CCProjection", "in_channel": self.in_channel,
                       "out_channel": self.out_channel}, f)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()},
                  os.path.join(folder, "diffusion_pytorch_model.safetensors"))

    @classmethod
    def from_pretrained(cls, key: str, subfolder: str = "cc_projection",
                        local_files_only: bool = False, cache_dir: str | None = None) -> "CCProjection":
        """Read the Linear's weight/bias from a folder or hub id (safetensors or .bin); sizes come
        from the weight's shape."""
        path = _cc_projection_file(key, subfolder, local_files_only, cache_dir)
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        weight = next(v for k, v in state.items() if k.endswith("weight"))
        bias = next(v for k, v in state.items() if k.endswith("bias"))
        module = cls(weight.shape[1], weight.shape[0])
        module.projection.load_state_dict({"weight": weight, "bias": bias})
        return module


def _cc_projection_file(key: str, subfolder: str, local_files_only: bool,
                        cache_dir: str | None) -> str:
    names = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    if os.path.isdir(key):
        for name in names:
            if os.path.isfile(os.path.join(key, subfolder, name)):
                return os.path.join(key, subfolder, name)
        raise OSError(f"{os.path.join(key, subfolder)} has no {names[0]} or {names[1]}")
    from huggingface_hub import hf_hub_download

    last: BaseException | None = None
    for name in names:
        try:
            return hf_hub_download(key, name, subfolder=subfolder, cache_dir=cache_dir,
                                   local_files_only=local_files_only)
        except load_errors() as exc:  # try the other file name first
            last = exc
    raise OSError(f"{key} has no {subfolder}/{names[0]} or {names[1]}") from last


@dataclass
class Zero123Conditioning:
    """Conditioning rows for the UNet: crossattn [N, 1, D], concat [N, 4, h, w]."""

    crossattn: Tensor
    concat: Tensor

    def __len__(self) -> int:
        return self.crossattn.shape[0]


class Zero123Prior:
    """Zero123 components behind the prior interface (see prior.py)."""

    def __init__(self, unet, vae, image_encoder, cc_projection: CCProjection,
                 device: torch.device | str, scheduler=None):
        from diffusers import DDIMScheduler

        self.unet, self.vae, self.image_encoder, self.cc_projection = unet, vae, image_encoder, cc_projection
        self.device = torch.device(device)
        freeze(unet, vae, image_encoder, cc_projection)
        # stable-dreamfusion builds this schedule explicitly for Zero123 (SD's scaled-linear betas).
        self.scheduler = scheduler or DDIMScheduler(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float().to(self.device)
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_size = int(unet.config.sample_size)
        self.resolution = self.latent_size * self.vae_scale
        self.scaling_factor = float(vae.config.scaling_factor)
        self.clip_size = int(image_encoder.config.image_size)
        self.dtype = unet.dtype

    @classmethod
    def from_pretrained(cls, key: str = ZERO123_KEY, device: torch.device | str = "cpu", *,
                        vram_O: bool = False, cache_dir: str | None = None,
                        option_hint: str = "--zero123_ckpt") -> "Zero123Prior":
        """Load unet/, vae/, image_encoder/, cc_projection/ from a hub id or folder (float32:
        stable-dreamfusion keeps Zero123 in full precision). vram_O drops the VAE decoder."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPVisionModelWithProjection

        def load(k: str, local_only: bool):
            common = dict(local_files_only=local_only, cache_dir=cache_dir)
            return (UNet2DConditionModel.from_pretrained(k, subfolder="unet", **common),
                    AutoencoderKL.from_pretrained(k, subfolder="vae", **common),
                    CLIPVisionModelWithProjection.from_pretrained(k, subfolder="image_encoder", **common),
                    CCProjection.from_pretrained(k, **common))

        unet, vae, image_encoder, cc = load_pretrained(load, key, what="Zero123",
                                                       option_hint=option_hint, cache_dir=cache_dir)
        if vram_O:
            vae.decoder = None  # not needed for SDS; previews then are unavailable
        device = torch.device(device)
        return cls(unet.to(device), vae.to(device), image_encoder.to(device), cc.to(device), device)

    # --- conditioning --------------------------------------------------------------------------
    def reference_conditioning(self, rgb: Tensor, polars: Tensor, azimuths: Tensor, radii: Tensor,
                               alpha: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(CLIP image embeddings [N,1,D], VAE latents [N,4,h,w]) of the references: what
        :meth:`conditioning` takes. Zero123 needs neither their cameras nor their alpha."""
        return self.image_embeddings(rgb), self.image_latents(rgb)

    @torch.no_grad()
    def image_embeddings(self, rgb: Tensor) -> Tensor:
        """[N,3,H,W] in [0,1] → CLIP image embeddings [N, 1, D] (bicubic resize, CLIP normalise)."""
        x = F.interpolate(rgb.float(), (self.clip_size, self.clip_size), mode="bicubic",
                          align_corners=True)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(self.device, self.image_encoder.dtype)
        return self.image_encoder(pixel_values=x).image_embeds[:, None].float()

    @torch.no_grad()
    def image_latents(self, rgb: Tensor) -> Tensor:
        """[N,3,H,W] in [0,1] → VAE posterior means [N,4,h,w] (unscaled: c_concat)."""
        x = F.interpolate(rgb.float(), (self.resolution, self.resolution), mode="bilinear",
                          align_corners=False, antialias=True)
        return self.vae.encode((2 * x - 1).to(self.device, self.vae.dtype)).latent_dist.mode().float()

    @torch.no_grad()
    def conditioning(self, image_embeddings: Tensor, image_latents: Tensor, d_polar: Tensor,
                     d_azimuth: Tensor, d_radius: Tensor) -> Zero123Conditioning:
        """CFG conditioning for B cameras and N references: (1+N)·B rows, zeros first.

        Args:
            image_embeddings: [N,1,D] and image_latents: [N,4,h,w] of the references.
            d_polar, d_azimuth, d_radius: [B, N] (or [B] for N = 1) camera deltas to each reference.
        Returns:
            rows `[uncond × B ; ref_1 × B ; … ; ref_N × B]`.
        """
        n = image_embeddings.shape[0]
        deltas = [d.to(self.device).float().reshape(d.shape[0], -1).expand(-1, n)
                  for d in (d_polar, d_azimuth, d_radius)]
        b = deltas[0].shape[0]
        cam = camera_vector(*deltas)                                         # [B, N, 4]
        emb = image_embeddings.to(self.device)[None].expand(b, -1, -1, -1)   # [B, N, 1, D]
        cross = self.cc_projection(torch.cat([emb, cam[:, :, None, :]], -1))  # [B, N, 1, D']
        cross = cross.transpose(0, 1).reshape(n * b, 1, -1)                   # ref-major blocks
        concat = image_latents.to(self.device).repeat_interleave(b, 0)         # [N·B, 4, h, w]
        return Zero123Conditioning(torch.cat([torch.zeros_like(cross[:b]), cross]),
                                   torch.cat([torch.zeros_like(concat[:b]), concat]))

    # --- prior interface -----------------------------------------------------------------------
    def encode_text(self, prompts: list[str]) -> Tensor:
        raise NotImplementedError("Zero123 is conditioned on images, not text")

    def encode_images(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B,3,H,W] in [0,1] → latents [B,4,h,w] (posterior sample × scaling factor)."""
        x = F.interpolate(rgb, (self.resolution, self.resolution), mode="bilinear",
                          align_corners=False)
        posterior = self.vae.encode((2 * x - 1).to(self.device, self.vae.dtype)).latent_dist
        return posterior.sample(generator) * self.scaling_factor

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Zero123Conditioning) -> Tensor:
        """ε̂ [N,4,h,w]: UNet on noisy latent ⊕ c_concat, cross-attending to the projected embedding."""
        x = torch.cat([x_t.to(self.device), cond.concat.to(self.device)], 1).to(self.dtype)
        return self.unet(x, t.to(self.device),
                         encoder_hidden_states=cond.crossattn.to(self.device, self.dtype)).sample.float()

    @torch.no_grad()
    def decode_latents(self, latents: Tensor) -> Tensor:
        if self.vae.decoder is None:
            raise ValueError("the Zero123 VAE decoder was dropped (vram_O)")
        x = self.vae.decode((latents / self.scaling_factor).to(self.device, self.vae.dtype)).sample
        return (x.float() / 2 + 0.5).clamp(0, 1)


class Zero123Guidance:
    """Multi-reference Zero123 SDS: conditioning per reference, angle-based scale and weights."""

    def __init__(self, prior: Zero123Prior, config: SDSConfig | None = None,
                 grad_scale_mode: str | None = "angle"):
        self.prior = prior
        self.sds = ScoreDistillation(prior, config or SDSConfig(guidance_scale=5.0))
        self.grad_scale_mode = grad_scale_mode
        angle_grad_scale(torch.zeros(1, 1), grad_scale_mode)  # validate the mode early
        self.references: dict[str, Tensor] | None = None

    def set_references(self, rgb: Tensor, polars, azimuths, radii, weights=None, alpha: Tensor | None = None) -> None:
        """Reference views: rgb [N,3,H,W] in [0,1] composited on white; polars/azimuths (degrees,
        the project's camera convention) and radii: N values each; weights: N user weights (1);
        alpha [N,1,H,W]: their coverage (priors that read the silhouette need it)."""
        n = rgb.shape[0]
        as_t = lambda v: torch.as_tensor(v, dtype=torch.float32).reshape(-1)  # noqa: E731
        polars, azimuths, radii = as_t(polars), as_t(azimuths), as_t(radii)
        weights = torch.ones(n) if weights is None else as_t(weights)
        if not (len(polars) == len(azimuths) == len(radii) == len(weights) == n):
            raise UserError(f"{n} reference images need {n} polar/azimuth/radius/weight values")
        embeddings, latents = self.prior.reference_conditioning(rgb, polars, azimuths, radii, alpha)
        self.references = dict(embeddings=embeddings, latents=latents, polars=polars,
                               azimuths=azimuths, radii=radii, weights=weights)

    def step(self, images: Tensor, d_polar: Tensor, d_azimuth: Tensor, d_radius: Tensor,
             polar: Tensor, azimuth: Tensor, *, lambda_guidance: float = 1.0,
             as_latent: bool = False, **kwargs) -> SDSOutput:
        """One SDS step for B renders.

        Args:
            images: [B,3,H,W] in [0,1] (or [B,4,H,W] with the opacity, for priors that accept it).
            d_polar, d_azimuth, d_radius: [B, N] (or [B] for one reference) deltas from each
                reference to the camera in Zero123's convention (`cameras.zero123_deltas`).
            polar, azimuth: [B] the cameras' own angles (degrees, project convention), used only
                for the angle to each reference.
            **kwargs: passed to `ScoreDistillation.step` (t, noise, generator, save_guidance_path).
        """
        if self.references is None:
            raise UserError("Zero123 guidance needs a reference image (--image or --image_config)")
        ref = self.references
        angles = view_angles(polar.cpu(), azimuth.cpu(), ref["polars"], ref["azimuths"])
        grad_scale = angle_grad_scale(angles, self.grad_scale_mode) * lambda_guidance
        weights = reference_weights(angles, ref["weights"])
        cond = self.prior.conditioning(ref["embeddings"], ref["latents"], d_polar, d_azimuth, d_radius)
        return self.sds.step(images, cond, as_latent=as_latent, grad_scale=grad_scale.to(images.device),
                             reference_weights=weights.to(images.device), **kwargs)
