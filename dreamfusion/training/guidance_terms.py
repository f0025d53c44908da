"""The novel-view (guidance) loss of one step: the sum over the ``--guidance`` models (spec §3.10.6).

    terms = GuidanceTerms.from_config(config, device, references, orbit)
    losses = terms.losses(images, cameras, as_latent=False)   # {"SD": tensor, "clip": tensor, ...}

Text priors (``SD``, ``IF``, ``exemplar``) get view-dependent embeddings (interpolated by azimuth, or
Perp-Neg); ``zero123`` is conditioned on the reference views; ``clip`` pulls towards the reference
image and the text. Every SDS term goes through :class:`dreamfusion.guidance.sds.ScoreDistillation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamfusion.cameras import CameraBatch, OrbitConfig, camera_light, zero123_deltas
from dreamfusion.errors import UserError
from dreamfusion.prompts import ViewPrompts


@dataclass
class _TextPrior:
    name: str
    sds: Any            # ScoreDistillation
    prompts: ViewPrompts


@dataclass
class GuidanceTerms:
    """Guidance models of a run and how to turn a render into their losses."""

    config: Any
    text_priors: list[_TextPrior] = field(default_factory=list)
    zero123: Any = None              # Zero123Guidance
    clip: Any = None                 # ClipGuidance
    clip_targets: dict = field(default_factory=dict)
    references: Any = None           # ReferenceImages (for zero123 deltas)

    @classmethod
    def from_config(cls, config, device: torch.device, references=None,
                    orbit: OrbitConfig | None = None, log=print) -> "GuidanceTerms":
        from dreamfusion.guidance import make_guidance
        from dreamfusion.guidance.sds import ScoreDistillation, SDSConfig

        terms = cls(config=config, references=references)
        common = dict(t_range=tuple(config.t_range), guidance_scale=config.guidance_scale)
        for name in config.guidance:
            if name in ("SD", "IF", "exemplar"):
                if not config.text:
                    raise UserError(f"--guidance {name} needs a text prompt (--text)")
                if name == "exemplar":
                    from dreamfusion.exemplar import make_exemplar_prior

                    prior = make_exemplar_prior(config.text, resolution=config.exemplar_resolution,
                                                views_per_class=config.exemplar_views, orbit=orbit, device=device,
                                                condition=config.exemplar_condition)
                    sds = ScoreDistillation(prior, SDSConfig(**common))
                else:
                    sds = make_guidance(name, device, sd_version=config.sd_version, hf_key=config.hf_key,
                                        if_key=config.if_key, fp16=config.fp16, vram_O=config.vram_O, **common)
                prompts = ViewPrompts(sds.prior, config.text, config.negative, view_dependent=config.view_prompt)
                terms.text_priors.append(_TextPrior(name, sds, prompts))
            elif name == "zero123":
                if references is None:
                    raise UserError("--guidance zero123 needs a reference image (--image or --image_config)")
                mode = None if config.zero123_grad_scale == "None" else config.zero123_grad_scale
                if config.zero123_ckpt == "exemplar":  # the offline image prior behind Zero123's interface
                    from dreamfusion.exemplar.image_prior import make_exemplar_image_prior
                    from dreamfusion.guidance.zero123 import Zero123Guidance

                    prior = make_exemplar_image_prior(resolution=config.exemplar_resolution,
                                                      views_per_class=config.exemplar_views, orbit=orbit,
                                                      fovy=config.fovy_range[0], reference_fovy=config.default_fovy,
                                                      device=device, log=log)
                    terms.zero123 = Zero123Guidance(prior, SDSConfig(**common), grad_scale_mode=mode)
                else:
                    terms.zero123 = make_guidance("zero123", device, zero123_key=config.zero123_ckpt,
                                                  vram_O=config.vram_O, zero123_grad_scale=mode, **common)
                weights = [getattr(r, "zero123_weight", 1.0) for r in config.references]
                images = references
                if config.zero123_ckpt == "exemplar":  # the silhouette's box sets the scale: read it sharp
                    from dreamfusion.training.reference import IDENTIFY_SIZE, ReferenceImages

                    images = ReferenceImages.load(config.references, IDENTIFY_SIZE, IDENTIFY_SIZE)
                terms.zero123.set_references(images.rgb.permute(0, 3, 1, 2).to(device), references.polar,
                                             references.azimuth, references.radius, weights,
                                             alpha=images.alpha[:, None].to(device))
            elif name == "clip":
                terms.clip = make_guidance("clip", device, clip_key=config.clip_key)
                if references is not None:
                    with torch.no_grad():
                        terms.clip_targets["image"] = terms.clip.encode_images(
                            references.rgb[:1].permute(0, 3, 1, 2).to(device))
                if config.text:
                    terms.clip_targets["text"] = terms.clip.encode_text([config.text])
            else:
                raise UserError(f"unknown --guidance {name!r}")
        return terms

    @property
    def priors(self) -> list:
        """Every diffusion prior (for tests and previews)."""
        out = [p.sds.prior for p in self.text_priors]
        return out + ([self.zero123.prior] if self.zero123 is not None else [])

    def light_directions(self, cameras: CameraBatch) -> Tensor | None:
        """[B, 3] the cameras' key lights (``cameras.camera_light``) when a prior shows its
        exemplars lit by them (the exemplar prior), so that renders and exemplars share the light;
        None: the renderer's random light."""
        if any(getattr(p.sds.prior, "accepts_shading", False) for p in self.text_priors):
            return camera_light(cameras.c2w)
        return None

    def losses(self, images: Tensor, cameras: CameraBatch, *, as_latent: bool = False,
               opacity: Tensor | None = None, save_guidance_path: Path | None = None,
               shading: str = "albedo", ambient_ratio: float = 1.0) -> dict[str, Tensor]:
        """Guidance losses for renders of ``cameras``.

        Args:
            images: ``[B, 3, H, W]`` in [0, 1], or ``[B, 4, H, W]`` normal image + opacity when
                ``as_latent`` (the latent warm-up; only priors with a latent mode accept it).
            opacity: ``[B, H, W]`` render opacity, appended as a fourth channel for priors that
                compare coverage too (``prior.accepts_opacity``, the exemplar prior).
            save_guidance_path: write the first SDS model's render/noisy/denoised strip there.
            shading, ambient_ratio: how the render was shaded (priors with ``accepts_shading``
                compare it with exemplars shaded the same way).
        """
        c = self.config
        out: dict[str, Tensor] = {}
        preview = save_guidance_path
        for prior in self.text_priors:
            prior_images = images
            if opacity is not None and not as_latent and getattr(prior.sds.prior, "accepts_opacity", False):
                prior_images = torch.cat([images, opacity[:, None]], 1)
            conditions_on_camera = getattr(prior.sds.prior, "conditions_on_camera", False)
            shaded = getattr(prior.sds.prior, "accepts_shading", False) and not as_latent
            if c.perpneg:
                from dreamfusion.guidance.perpneg import perpneg_embeddings

                v = prior.prompts.views
                emb, weights = perpneg_embeddings(
                    cameras.delta_azimuth, prior.prompts.uncond[None], v["front"][None], v["side"][None],
                    v["back"][None], c.negative_w, c.front_decay_factor, c.side_decay_factor)
                if conditions_on_camera:
                    emb = prior.sds.prior.with_cameras(emb, cameras)
                if shaded:
                    emb = prior.sds.prior.with_shading(emb, shading, ambient_ratio)
                result = prior.sds.step(prior_images, emb, as_latent=as_latent, grad_scale=c.lambda_guidance,
                                        perpneg_weights=weights, save_guidance_path=preview)
            else:
                emb = prior.prompts.with_uncond(prior.prompts.interpolated(cameras.delta_azimuth))
                if conditions_on_camera:  # pose-conditioned priors see each render's camera
                    emb = prior.sds.prior.with_cameras(emb, cameras)
                if shaded:  # and priors with shaded exemplars the render's shading
                    emb = prior.sds.prior.with_shading(emb, shading, ambient_ratio)
                result = prior.sds.step(prior_images, emb, as_latent=as_latent, grad_scale=c.lambda_guidance,
                                        save_guidance_path=preview)
            preview = None
            out[prior.name] = result.loss
        if self.zero123 is not None:
            refs = self.references
            deltas = [zero123_deltas(cameras.polar, cameras.azimuth, cameras.radius, p, a, r)
                      for p, a, r in zip(refs.polar, refs.azimuth, refs.radius)]
            d_polar, d_azimuth, d_radius = (torch.stack([d[k] for d in deltas], dim=1) for k in range(3))
            zero123_images = images
            if opacity is not None and not as_latent and getattr(self.zero123.prior, "accepts_opacity", False):
                zero123_images = torch.cat([images, opacity[:, None]], 1)
            result = self.zero123.step(zero123_images, d_polar, d_azimuth, d_radius, cameras.polar, cameras.azimuth,
                                       lambda_guidance=c.lambda_guidance, as_latent=as_latent,
                                       save_guidance_path=preview)
            out["zero123"] = result.loss
        if self.clip is not None:
            from dreamfusion.guidance.clip_guidance import clip_grad_scale

            g = clip_grad_scale(cameras.delta_azimuth, c.lambda_guidance).to(images.device)
            out["clip"] = self.clip.loss(images[:, :3], image_embedding=self.clip_targets.get("image"),
                                         text_embedding=self.clip_targets.get("text"), grad_scale=g)
        return out


