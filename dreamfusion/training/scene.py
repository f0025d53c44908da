"""The scene the Trainer optimises: a :class:`~dreamfusion.fields.NeRFField` inside a
:class:`~dreamfusion.renderers.VolumeRenderer`, seen through the few operations training needs.

    scene = build_scene(config)
    out = scene.render(rays_o, rays_d, shading="lambertian", ambient_ratio=0.4, bg_color=None,
                       perturb=True, training=True)
    groups = scene.param_groups(5e-3)            # hash grid at 10x

``scene.state_dict()`` is the renderer's own (``field.*``, ``occupancy.*``), so a checkpoint's
``model`` loads straight into a ``VolumeRenderer`` built with the same options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor, nn


@dataclass
class HashGridView:
    """What the TV / weight-decay gradient injections need from a hash-grid encoder."""

    embeddings: nn.Parameter
    offsets: list[int]              # L+1 row offsets
    resolutions: list[int]          # vertices per axis of each level
    vertex_index: Callable[[int, Tensor], Tensor]
    active_levels: int
    tv_points: int = 1 << 16


def hash_grid_view(encoder, max_level: float | None, tv_points: int) -> HashGridView:
    """Describe a :class:`dreamfusion.encoders.HashGridEncoder`'s table layout."""
    levels = encoder.levels

    def vertex_index(level: int, v: Tensor) -> Tensor:
        # Same rows the encoder reads: dense x + y(res+1) + z(res+1)^2, or the instant-NGP hash.
        lv = levels[level]
        v = v.to(torch.int64)
        if lv.hashed:
            mask = lv.size - 1
            return ((v[:, 0] & mask) ^ ((v[:, 1] * lv.stride_y) & mask)) ^ ((v[:, 2] * lv.stride_z) & mask)
        return v[:, 0] + v[:, 1] * lv.stride_y + v[:, 2] * lv.stride_z

    offsets = [lv.offset for lv in levels] + [levels[-1].offset + levels[-1].size]
    return HashGridView(encoder.embeddings, offsets, [lv.resolution for lv in levels], vertex_index,
                        encoder.active_levels(max_level), tv_points)


class Scene:
    """Adapter over a ``VolumeRenderer`` (which owns the field and the occupancy grid): the NeRF
    stage (:class:`dreamfusion.dmtet.scene.DMTetScene` is the DMTet stage, same interface).

    Args:
        renderer: the volume renderer.
        need_orient_loss / need_normal_perturb_loss: ask the renderer for these regularisers on
            training renders (when normals are computed).
        need_distortion_loss: ask for the distortion loss on training renders.
        tv_points: random vertices per level for the hash-grid TV gradient (stable-dreamfusion:
            1e6 points; fewer here because this runs on every step).
    """

    stage = "nerf"

    def __init__(self, renderer, *, need_orient_loss: bool = True, need_normal_perturb_loss: bool = False,
                 need_distortion_loss: bool = False, tv_points: int = 1 << 16):
        self.renderer = renderer
        self.need_distortion_loss = need_distortion_loss
        self.need_orient_loss = need_orient_loss
        self.need_normal_perturb_loss = need_normal_perturb_loss
        self.tv_points = tv_points

    # -- module plumbing (delegated, so checkpoints hold the renderer's own state dict)
    @property
    def field(self):
        return self.renderer.field

    def to(self, device) -> "Scene":
        self.renderer.to(device)
        return self

    def train(self) -> None:
        self.renderer.train()

    def eval(self) -> None:
        self.renderer.eval()

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.renderer.parameters()

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return self.renderer.named_parameters()

    def state_dict(self) -> dict:
        return self.renderer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Strict for the field; the occupancy grid may be absent on either side (a run trained
        with ``-O`` can be tested without it, and vice versa: the grid is rebuilt from the field)."""
        has_grid = self.uses_occupancy_grid
        state = {k: v for k, v in state.items() if has_grid or not k.startswith("occupancy.")}
        if has_grid and not any(k.startswith("occupancy.") for k in state):
            state.update({k: v for k, v in self.renderer.state_dict().items() if k.startswith("occupancy.")})
        self.renderer.load_state_dict(state)

    # -- what training asks
    @property
    def has_background(self) -> bool:
        return self.field.bg_net is not None

    @property
    def uses_occupancy_grid(self) -> bool:
        return getattr(self.renderer, "occupancy", None) is not None

    def update_occupancy_grid(self) -> None:
        self.renderer.update_occupancy(force=True)

    def mean_density(self) -> float | None:
        grid = getattr(self.renderer, "occupancy", None)
        value = getattr(grid, "mean_density", None) if grid is not None else None
        return float(value) if value is not None else None

    def param_groups(self, lr: float) -> list[dict]:
        return self.field.get_params(lr)

    def set_max_level(self, fraction: float | None) -> None:
        self.field.max_level = fraction

    def hash_grid(self) -> HashGridView | None:
        encoder = self.field.encoder
        if not hasattr(encoder, "levels") or not isinstance(getattr(encoder, "embeddings", None), nn.Parameter):
            return None  # vanilla (frequency) or tiny-cuda-nn encoders: no table we can index
        return hash_grid_view(encoder, self.field.max_level, self.tv_points)

    def render(self, rays_o: Tensor, rays_d: Tensor, *, shading: str, ambient_ratio: float,
               bg_color: Tensor | None, perturb: bool, training: bool,
               need_normal_image: bool = False, light_d: Tensor | None = None, cameras=None) -> dict[str, Tensor]:
        """Render ``[B, N, 3]`` rays (``cameras``, the CameraBatch they come from, is for stages that
        rasterize; unused here). Training renders return per-sample weights and regularisers;
        inference renders go in chunks and, with ``need_normal_image``, add a normal image: the
        field's normal at each pixel's expected surface point o + d·depth/opacity, times the
        opacity (over black, like the renderer's own normal image). One normal per pixel instead
        of a second, normal-shaded pass with a normal per sample (6x cheaper for the demo).
        ``light_d`` [B, 3]: the light of lambertian/textureless shading (default: the renderer's
        random light near the camera)."""
        if training:
            normals = shading != "albedo"
            return self.renderer.render(rays_o, rays_d, shading=shading, ambient_ratio=ambient_ratio,
                                        bg_color=bg_color, perturb=perturb, light_d=light_d,
                                        need_orient_loss=self.need_orient_loss and normals,
                                        need_normal_perturb_loss=self.need_normal_perturb_loss and normals,
                                        need_distortion_loss=self.need_distortion_loss)
        out = self.renderer.render(rays_o, rays_d, shading=shading, ambient_ratio=ambient_ratio, bg_color=bg_color,
                                   perturb=perturb, staged=True, light_d=light_d)
        if need_normal_image and "normal_image" not in out:
            alpha = out["weights_sum"]
            points = rays_o + rays_d * (out["depth"] / alpha.clamp_min(1e-6))[..., None]
            points = points.reshape(-1, 3).clamp(-self.field.bound, self.field.bound)
            chunk = self.renderer.config.max_ray_batch
            normals = torch.cat([self.field.normal(points[a:a + chunk]) for a in range(0, len(points), chunk)])
            out["normal_image"] = alpha[..., None] * (normals.reshape(alpha.shape + (3,)) + 1.0) / 2.0
        return out

    # -- mesh export callables
    def density_fn(self, x: Tensor) -> Tensor:
        """Density [N] at x [N, 3] as the renderer sees it: the plain renderer samples only inside
        the ball of radius ``bound`` (the fast path the whole cube), so density outside it, which
        no view ever shows and no loss ever touches, reads as empty."""
        sigma = self.field.density(x)["sigma"]
        if self.uses_occupancy_grid:
            return sigma
        return torch.where(x.norm(dim=-1) <= self.field.bound, sigma, torch.zeros_like(sigma))

    def albedo_fn(self, x: Tensor) -> Tensor:
        return self.field.density(x)["albedo"]


def build_scene(config) -> Scene:
    """Field + renderer from a resolved Config (the stable-dreamfusion option names)."""
    from dreamfusion.errors import UserError
    from dreamfusion.fields import FieldConfig, NeRFField
    from dreamfusion.renderers import RenderConfig, VolumeRenderer

    if config.backbone == "grid_taichi":
        raise UserError("--backbone grid_taichi is not available in this version (use grid or vanilla)")
    field = NeRFField(FieldConfig(
        backbone=config.backbone, bound=config.bound, density_activation=config.density_activation,
        blob_density=config.blob_density, blob_radius=config.blob_radius, bg_radius=config.bg_radius,
        log2_hashmap_size=config.log2_hashmap_size, compile_encoder=config.compile))
    renderer = VolumeRenderer(field, RenderConfig(
        bound=config.bound, num_steps=config.num_steps, upsample_steps=config.upsample_steps,
        max_ray_batch=config.max_ray_batch, min_near=config.min_near, cuda_ray=config.cuda_ray,
        max_steps=config.max_steps, density_thresh=config.density_thresh,
        update_extra_interval=config.update_extra_interval, dt_gamma=config.dt_gamma,
        grid_size=config.grid_size, deferred_shading=config.deferred_shading,
        normal_skip_weight=config.normal_skip_weight))
    return Scene(renderer, need_orient_loss=config.lambda_orient > 0,
                 need_normal_perturb_loss=config.lambda_3d_normal_smooth > 0,
                 need_distortion_loss=config.lambda_distortion > 0)
