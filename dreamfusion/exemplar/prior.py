"""The built-in exact prior: the posterior-mean denoiser of a finite set of rendered exemplars.

It implements the 2D prior interface of docs/conventions.md, so the SDS code runs on it unchanged:

* latents are pixels: ``encode_images`` resizes to ``resolution``² and maps [0, 1] to [-1, 1]; an
  optional fourth channel carries the render's opacity (:attr:`ExemplarPrior.accepts_opacity`);
* ``encode_text`` returns mixture weights over (object × view group) plus a "names a view" flag,
  safe to interpolate linearly: "a hamburger, front view" is one-hot on (hamburger, front); "a
  hamburger" weights that object's groups by their sizes (uniform over its views); "" is uniform
  over all objects (the unconditional embedding of classifier-free guidance);
* ``predict_noise`` is the exact denoiser (``posterior.py``) of the mixture those weights define,
  with the background colour integrated out.

Two ways to condition on where the camera is (``condition``):

* ``"view"`` (the analogue of Stable Diffusion's "…, front view" prompts): the trainer mixes
  "…, front/side/back view" embeddings by azimuth (r·front + (1-r)·side, …). With
  ``view_kernel_deg`` set (default 15°) the prior decodes that mix back into the azimuth |φ*| it came
  from and weights exemplars by a Gaussian window around it, cut at two widths; with None it keeps
  the plain group mixture (front = every front-class view). It knows neither the elevation nor the
  side (left/right), exactly like the text prompts, so it shows the Janus problem and the elevation
  ambiguity of text-conditioned priors.
* ``"camera"`` (the analogue of MVDream / Zero123 pose conditioning): :meth:`with_cameras` writes
  the render's camera into the embedding and exemplars are weighted by a window around it
  (:mod:`dreamfusion.exemplar.camera_kernel`, width = the exemplar spacing).

Example::

    prior = make_exemplar_prior("a hamburger", resolution=32)
    emb = prior.encode_text(["", "a hamburger, front view"])          # [2, n_objects·5 + 6]
    emb = prior.with_cameras(emb, cameras)                            # condition="camera" only
    x0 = prior.encode_images(rgb)                                     # [B, 3, 32, 32]
    eps = prior.predict_noise(x_t, t, emb)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.cameras import OrbitConfig
from dreamfusion.errors import UserError
from dreamfusion.exemplar.camera_kernel import CameraKernel
from dreamfusion.exemplar.objects import OBJECT_NAMES, OBJECTS, VIEW_GROUPS, known_prompts_line, parse_prompt
from dreamfusion.exemplar.posterior import ExemplarStatistics, posterior_mean
from dreamfusion.exemplar.views import SHADINGS, ExemplarViewConfig, ExemplarViews, exemplar_cameras, load_exemplar_views

CONDITIONS = ("view", "camera")
"""How the prior knows where the camera is: view-class prompts, or the camera itself."""
CAMERA_COLUMNS = 5
"""Embedding columns after the "names a view" flag: has-camera flag, polar, azimuth, radius, fovy."""
SHADING_COLUMNS = 2
"""The last embedding columns: shading code (index into ``views.SHADINGS``) and ambient ratio."""

BACKGROUNDS = {"random": (0.5, 1.0 / math.sqrt(12.0)), "white": (1.0, 0.0), "black": (0.0, 0.0)}
"""Background colour priors as (mean, std) in [0, 1] per channel; "random" matches U[0, 1]."""


def scaled_linear_alphas_cumprod(num_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Tensor:
    """ᾱ_t [T] of Stable Diffusion's scaled-linear schedule, computed in float32 as diffusers does."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


class ExemplarPrior:
    """Exact posterior-mean denoiser over per-object exemplar views (see module docstring).

    Args:
        views: object name -> its :class:`ExemplarViews` (all sharing the same cameras), or None to
            load/render every built-in object lazily under ``config``.
        config: view settings (used when ``views`` is None).
        background: "random" (integrate a uniform-like colour out), "white", "black", or a float in
            [0, 1] (fixed grey level).
        view_kernel_deg: how a view-dependent embedding selects exemplars. None: as a mixture over
            view groups ("front view" = uniform over the front group). A width in degrees: the
            front/side/back weights (one-hot, or interpolated by azimuth as the trainer does) are
            decoded into an azimuth magnitude |φ*| (front 0°, side 90°, back 180°, linear between
            adjacent pairs) and exemplars are weighted by exp(-(|φ_i| - |φ*|)²/(2·width²)) where
            ||φ_i| - |φ*|| <= 2·width, and not at all elsewhere.
        condition: "view" or "camera" (see the module docstring).
        camera_kernel: the window of ``condition="camera"`` (default: from ``config``'s spacing).
        chunk_views: exemplars per matrix product (bounds the [B, 3, n] work tensors).
        dtype: compute dtype of the posterior (float64 for reference checks).
    """

    num_train_timesteps = 1000

    def __init__(self, views: Mapping[str, ExemplarViews] | None = None, *, config: ExemplarViewConfig | None = None,
                 objects: Sequence[str] | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
                 device: torch.device | str = "cpu", background: str | float = "random",
                 view_kernel_deg: float | None = 15.0, condition: str = "view",
                 camera_kernel: CameraKernel | None = None, chunk_views: int = 4096, dtype: torch.dtype = torch.float32):
        if condition not in CONDITIONS:
            raise UserError(f"unknown exemplar conditioning {condition!r}; choose one of {', '.join(CONDITIONS)}")
        self.device = torch.device(device)
        self.config = config or ExemplarViewConfig()
        self.cache_dir, self.use_cache = cache_dir, use_cache
        self.chunk_views = max(1, int(chunk_views))
        self.view_kernel_deg = None if view_kernel_deg is None else float(view_kernel_deg)
        self.dtype = dtype
        self._stats: dict[str, ExemplarStatistics] = {}
        if views is not None:
            self.object_names = tuple(views)
            self._views = {name: v.to(self.device) for name, v in views.items()}
            self.cameras = next(iter(views.values())).cameras
            self.resolution = int(next(iter(views.values())).colour.shape[-1])
        else:
            names = tuple(objects) if objects is not None else OBJECT_NAMES
            unknown = [n for n in names if n not in OBJECTS]
            if unknown:
                raise UserError(f"unknown exemplar object {unknown[0]!r}; known prompts: {known_prompts_line()}")
            self.object_names = names
            self._views = {}
            self.cameras = exemplar_cameras(self.config)
            self.resolution = self.config.resolution
        self.group_counts = self.cameras.group_counts()
        self.condition = condition
        self.camera_kernel = camera_kernel or (CameraKernel.from_config(self.config) if condition == "camera" else None)
        self.background_mean, self.background_std = self._background(background)
        self.alphas_cumprod = scaled_linear_alphas_cumprod(self.num_train_timesteps).to(self.device)
        self.cache_key = f"exemplar:{','.join(self.object_names)}"

    # ------------------------------------------------------------------------------ set-up

    @staticmethod
    def _background(background: str | float) -> tuple[float, float]:
        if isinstance(background, str):
            if background not in BACKGROUNDS:
                raise UserError(f"unknown exemplar background {background!r}; use one of {', '.join(BACKGROUNDS)} or a number")
            return BACKGROUNDS[background]
        return float(background), 0.0

    def to(self, device: torch.device | str) -> "ExemplarPrior":
        self.device = torch.device(device)
        self._views = {k: v.to(self.device) for k, v in self._views.items()}
        self._stats = {k: v.to(self.device) for k, v in self._stats.items()}
        self.alphas_cumprod = self.alphas_cumprod.to(self.device)
        return self

    def views(self, name: str) -> ExemplarViews:
        """The exemplar views of one object (rendered or read from the cache on first use)."""
        if name not in self._views:
            views = load_exemplar_views(OBJECTS[name], self.config, self.cache_dir, self.use_cache)
            self._views[name] = views.to(self.device)
        return self._views[name]

    def preload(self) -> None:
        """Load every object's views now (otherwise the first unconditional call does it)."""
        for name in self.object_names:
            self.views(name)

    @property
    def embedding_dim(self) -> int:
        """n_objects × n_groups mixture weights, a "names a view" flag, the camera and shading columns."""
        return len(self.object_names) * len(VIEW_GROUPS) + 1 + CAMERA_COLUMNS + SHADING_COLUMNS

    @property
    def conditions_on_camera(self) -> bool:
        """True when the trainer should pass each render's camera (:meth:`with_cameras`)."""
        return self.condition == "camera"

    # ------------------------------------------------------------------------------ interface

    def group_weights(self, prompt: str) -> Tensor:
        """Mixture weights [n_objects, n_groups] (sum 1) that a prompt stands for."""
        obj, view = parse_prompt(prompt)
        counts = self.group_counts.double()
        weights = torch.zeros(len(self.object_names), len(VIEW_GROUPS), dtype=torch.float64)
        if obj is not None and obj.name not in self.object_names:
            raise UserError(f"prompt {prompt!r} names {obj.name!r}, which this exemplar prior does not hold; "
                            f"known prompts: {', '.join(repr(n) for n in self.object_names)}")
        rows = [self.object_names.index(obj.name)] if obj is not None else list(range(len(self.object_names)))
        if view is None or counts[VIEW_GROUPS.index(view)] == 0:
            # No suffix, or a view the camera ranges never produce (e.g. "overhead" with polar
            # 45-105, which ViewPrompts still encodes): uniform over the object's views.
            per_object = counts / counts.sum()
        else:
            per_object = torch.zeros_like(counts)
            per_object[VIEW_GROUPS.index(view)] = 1.0
        weights[rows] = per_object / len(rows)
        return weights.float()

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """Embeddings [B, n_objects·n_groups + 8]: mixture weights over (object, view group), a flag
        that is 1 when the prompt names a view the exemplars have (see ``view_kernel_deg``), the
        camera columns (zero until :meth:`with_cameras` fills them) and the shading columns
        (albedo until :meth:`with_shading` sets them)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        rows = []
        for prompt in prompts:
            _, view = parse_prompt(prompt)
            names_view = view is not None and bool(self.group_counts[VIEW_GROUPS.index(view)] > 0)
            rows.append(torch.cat([self.group_weights(prompt).reshape(-1), torch.tensor([float(names_view)]),
                                   torch.zeros(CAMERA_COLUMNS), torch.tensor([0.0, 1.0])]))  # albedo
        return torch.stack(rows).to(self.device)

    def with_cameras(self, embeddings: Tensor, cameras) -> Tensor:
        """Embeddings [(1+K)·B, D] with the camera of each render written in: row r gets camera
        r mod B of ``cameras`` (a CameraBatch of B renders), so the unconditional block is
        conditioned on the camera too, as in MVDream."""
        out = embeddings.clone()
        batch = cameras.polar.shape[0]
        if out.shape[0] % batch:
            raise ValueError(f"{out.shape[0]} embedding rows do not divide into {batch} cameras")
        reps = out.shape[0] // batch
        values = torch.stack([torch.ones(batch, device=cameras.polar.device), cameras.polar, cameras.azimuth,
                              cameras.radius, cameras.fovy], -1).to(out)
        out[:, -CAMERA_COLUMNS - SHADING_COLUMNS:-SHADING_COLUMNS] = values.repeat(reps, 1)
        return out

    accepts_shading = True
    """The trainer may render lambertian/textureless steps lit by ``cameras.camera_light`` and say so
    with :meth:`with_shading`: the exemplars are then shown in the same shading and light."""

    def with_shading(self, embeddings: Tensor, shading: str, ambient: float = 1.0) -> Tensor:
        """Embeddings whose rows all ask for exemplars in ``shading`` (``views.SHADINGS``) with
        ambient ratio ``ambient``, lit by each exemplar camera's key light."""
        if shading not in SHADINGS:
            raise ValueError(f"the exemplar prior shows {', '.join(SHADINGS)}, not {shading!r}")
        out = embeddings.clone()
        out[:, -SHADING_COLUMNS:] = torch.tensor([float(SHADINGS.index(shading)), float(ambient)]).to(out)
        return out

    def exemplar_weights(self, embeddings: Tensor) -> Tensor:
        """Prior weight π of every exemplar, [B, n_objects, V] (each row sums to 1).

        The mixture part gives each view w[object, group]/n_group; rows flagged as naming a view
        use the azimuth kernel for their front/side/back mass instead (``view_kernel_deg``). With
        ``condition="camera"``, rows that carry a camera give each object's total weight to the
        camera window instead (the view groups no longer matter).
        """
        n_obj, n_grp = len(self.object_names), len(VIEW_GROUPS)
        emb = embeddings.float().cpu()
        if emb.shape[-1] != self.embedding_dim:
            raise ValueError(f"exemplar embeddings must have {self.embedding_dim} columns, got {emb.shape[-1]}")
        camera = emb[:, -CAMERA_COLUMNS - SHADING_COLUMNS:-SHADING_COLUMNS]
        emb = emb[:, :-CAMERA_COLUMNS - SHADING_COLUMNS]
        weights, flag = emb[:, :-1].reshape(-1, n_obj, n_grp), emb[:, -1].clamp(0, 1)
        if (weights < 0).any() or not (weights.sum((1, 2)) > 0).all():
            raise ValueError("exemplar embeddings must be non-negative mixture weights with a positive sum")
        counts = self.group_counts.float()
        if (weights[:, :, counts == 0] > 0).any():
            raise ValueError("exemplar embeddings put weight on an empty view group")
        if self.condition == "camera" and bool((camera[:, 0] > 0).all()):
            window = self.camera_kernel.weights(self.cameras, *camera[:, 1:].double().unbind(-1))  # [B, V]
            mass = weights.sum(-1, keepdim=True)  # [B, n_obj, 1]
            return mass * window[:, None, :] / mass.sum(1, keepdim=True)
        group = self.cameras.group
        mixture = weights[:, :, group] / counts[group].clamp_min(1)  # [B, n_obj, V]
        if self.view_kernel_deg is None or not (flag > 0).any():
            return mixture
        f, side, b = weights[..., 0], weights[..., 1], weights[..., 2]
        band_mass = f + side + b
        tiny = 1e-6 * band_mass
        # Interpolated embeddings only ever mix adjacent classes: front+side or side+back.
        target = torch.where(b <= tiny, 90.0 * side / (f + side).clamp_min(1e-12),
                             90.0 + 90.0 * b / (side + b).clamp_min(1e-12))
        decodable = (band_mass > 0) & ((f <= tiny) | (b <= tiny))
        band = (group <= 2).float()
        abs_azimuth = self.cameras.azimuth.abs()
        # A Gaussian cut at two widths: a soft tail alone is swamped by the likelihood, which
        # would let a front-looking render pass as a side view.
        offset = (abs_azimuth - target[..., None]) / self.view_kernel_deg
        kernel = torch.exp(-0.5 * offset**2) * (offset.abs() <= 2.0) * band
        total = kernel.sum(-1, keepdim=True)
        kernel = kernel / total.clamp_min(1e-30)
        precise = band_mass[..., None] * kernel + mixture * (1.0 - band)  # overhead/bottom stay groups
        decodable = decodable & (total[..., 0] > 0)  # no exemplar in the window: keep the groups
        precise = torch.where(decodable[..., None], precise, mixture)
        return (1.0 - flag)[:, None, None] * mixture + flag[:, None, None] * precise

    def encode_images(self, rgb: Tensor) -> Tensor:
        """[B, C, H, W] in [0, 1] -> pixel latents [B, C, r, r] in [-1, 1] (differentiable).

        C = 3: the render composited over its background. C = 4: the same plus the render's
        opacity as a fourth channel, which the denoiser then compares with the exemplars' coverage
        (see :attr:`accepts_opacity`).
        """
        if rgb.shape[1] not in (3, 4):
            raise ValueError(f"the exemplar prior takes RGB or RGB+opacity images, got {rgb.shape[1]} channels")
        r = self.resolution
        if rgb.shape[-2:] != (r, r):
            rgb = F.interpolate(rgb, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        return rgb * 2.0 - 1.0

    accepts_opacity = True
    """``encode_images`` also takes [B, 4, H, W] = RGB + opacity. Without the opacity channel, a
    flat haze over the background is indistinguishable from a background colour (the denoiser
    integrates the colour out), so nothing removes it; with it, empty space must be empty."""

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Pixel latents -> RGB [B, 3, r, r] in [0, 1] (the opacity channel, if any, is dropped)."""
        return ((latents[:, :3] + 1.0) / 2.0).clamp(0.0, 1.0)

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        """ε̂(x_t, t) [B, C, r, r] = (x_t - √ᾱ·x̂0)/√(1-ᾱ) for the mixture that ``embeddings`` define."""
        return noise_from_x0(x_t, t, self.predict_x0(x_t, t, embeddings), self.alphas_cumprod)

    # ------------------------------------------------------------------------------ the posterior

    def statistics(self, name: str) -> ExemplarStatistics:
        """Per-object tensors the posterior needs, built once per object (and device)."""
        if name not in self._stats:
            views = self.views(name)
            self._stats[name] = ExemplarStatistics.build(views.colour, views.alpha, self.background_mean, self.dtype)
        return self._stats[name]

    @torch.no_grad()
    def predict_x0(self, x_t: Tensor, t: Tensor, embeddings: Tensor) -> Tensor:
        """Posterior mean E[x0 | x_t] [B, C, r, r] (float32) under the embeddings' mixture."""
        batch, device = x_t.shape[0], x_t.device
        if x_t.shape[1] not in (3, 4):
            raise ValueError(f"x_t must have 3 (RGB) or 4 (RGB + opacity) channels, got {x_t.shape[1]}")
        pi = self.exemplar_weights(embeddings).to(device=device, dtype=self.dtype)  # [B, n_obj, V]
        abar = self.alphas_cumprod.to(device)[torch.as_tensor(t, device=device).long().reshape(-1)]
        abar = abar.expand(batch).to(self.dtype)
        x = x_t.to(self.dtype).reshape(batch, x_t.shape[1], -1)
        tau2 = 4.0 * self.background_std**2  # variance of b' = 2b - 1
        shading_columns = embeddings[:, -SHADING_COLUMNS:].float().cpu()
        if not (shading_columns == shading_columns[:1]).all():
            raise ValueError("all rows of one exemplar call must ask for the same shading and ambient")
        shading, ambient = SHADINGS[int(shading_columns[0, 0])], float(shading_columns[0, 1])
        # Only exemplars some row weighs take part (a camera window holds a dozen of hundreds).
        used = (pi > 0).any(0).any(0).nonzero().squeeze(-1)
        subset = used.numel() < pi.shape[-1]
        if subset:
            pi = pi[..., used]

        def stats(o: int) -> ExemplarStatistics:
            name = self.object_names[o]
            if shading == "albedo":  # built once per object
                full = self.statistics(name).to(device)
                return full.take(used) if subset else full
            views = self.views(name)
            index = used.to(views.alpha.device) if subset else slice(None)
            return ExemplarStatistics.build(views.shaded(shading, ambient)[index], views.alpha[index],
                                            self.background_mean, self.dtype).to(device)

        x0 = posterior_mean(x, abar.sqrt(), 1.0 - abar, pi, stats, tau2, self.chunk_views)
        return x0.reshape(x_t.shape).float()


def noise_from_x0(x_t: Tensor, t: Tensor, x0: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """ε̂ = (x_t - √ᾱ_t·x̂0)/√(1-ᾱ_t) [B, C, r, r]: the noise a posterior mean x̂0 [B, C, r, r] implies."""
    abar = alphas_cumprod.to(x_t.device)[torch.as_tensor(t, device=x_t.device).long().reshape(-1)]
    abar = abar.expand(x_t.shape[0]).float().view(-1, 1, 1, 1)
    return ((x_t.float() - abar.sqrt() * x0) / (1.0 - abar).sqrt()).to(x_t.dtype)


def make_exemplar_prior(prompt: str, *, resolution: int = 32, views_per_class: int | None = 64, count: int | None = None,
                        orbit: OrbitConfig | None = None, cache_dir: str | Path | None = None, device: torch.device | str = "cpu",
                        background: str | float = "random", supersample: int = 2,
                        objects: Sequence[str] | None = None, use_cache: bool = True, preload: bool = True,
                        view_kernel_deg: float | None = 15.0, condition: str = "view", seed: int = 0) -> ExemplarPrior:
    """Build the exemplar prior for ``--guidance exemplar``.

    Args:
        prompt: the user's --text; must name a built-in object (UserError listing them otherwise).
        resolution: image size of the prior (the SDS input is resized to it).
        views_per_class: exemplar density, as views in the 60° front sector; the whole set has
            6× as many (``count`` overrides it with a total).
        orbit: the trainer's camera ranges (OrbitConfig); its defaults otherwise.
        cache_dir: where rendered sets are cached (default ``~/.cache/dreamfusion/exemplar``).
        background: see :class:`ExemplarPrior`.
        objects: which built-in objects the unconditional mixture covers (default all).
        view_kernel_deg: see :class:`ExemplarPrior` (None = plain view-group mixtures).
        condition: "view" (view-class prompts) or "camera" (the render's camera; see the module docstring).
        preload: render/load every object now, so training steps have steady timing.
    """
    obj, _ = parse_prompt(prompt)
    if obj is None:
        raise UserError(f"--guidance exemplar needs --text naming a built-in object; known prompts: {known_prompts_line()}")
    if resolution < 8:
        raise UserError(f"--exemplar_resolution must be at least 8, got {resolution}")
    total = count if count is not None else 6 * int(views_per_class or 64)
    if total < 1:
        raise UserError(f"the exemplar prior needs at least one view, got {total}")
    config = ExemplarViewConfig.from_orbit(orbit or OrbitConfig(), count=total, resolution=resolution,
                                           supersample=supersample, seed=seed)
    names = tuple(objects) if objects is not None else OBJECT_NAMES
    if obj.name not in names:
        names = (obj.name, *names)
    prior = ExemplarPrior(config=config, objects=names, cache_dir=cache_dir, use_cache=use_cache, device=device,
                          background=background, view_kernel_deg=view_kernel_deg, condition=condition)
    prior.views(obj.name)  # the prompt's own object first
    if preload:
        prior.preload()
    return prior
