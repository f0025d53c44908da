"""The DMTet stage as a training scene: the same interface as the NeRF stage's
:class:`~dreamfusion.training.scene.Scene`, so the trainer, checkpoints, validation, the test video
and export talk to either.

The surface is extracted from the tet grid by marching tetrahedra on every render, rasterized
(:mod:`dreamfusion.renderers.rasterizer`, pure PyTorch, or nvdiffrast on CUDA when importable),
textured by the NeRF's own colour network at the visible surface points, shaded like the NeRF
(albedo / lambertian / textureless / normal), and antialiased so silhouettes carry gradients to
the SDF and the deformations (:mod:`dreamfusion.renderers.antialias`).

    scene = DMTetScene(field, TetGeometry(128))
    out = scene.render(rays_o, rays_d, cameras=cameras, shading="lambertian", ambient_ratio=0.1,
                       bg_color=None, perturb=True, training=True)
    out["image"], out["weights_sum"], out["loss_mesh_normal"], out["loss_mesh_laplacian"]
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamfusion.dmtet.geometry import TetGeometry, laplacian_loss, normal_consistency, vertex_normals
from dreamfusion.errors import UserError
from dreamfusion.renderers.antialias import antialias, edge_neighbours
from dreamfusion.renderers.rasterizer import interpolate, rasterize
from dreamfusion.renderers.volume import random_light_direction


class DMTetModel(nn.Module):
    """The stage's parameters: the NeRF field (its colour network is the texture) and the geometry.
    State dict: ``field.*``, ``geometry.sdf``, ``geometry.deform``, ``geometry.tet_scale``."""

    def __init__(self, field: nn.Module, geometry: TetGeometry):
        super().__init__()
        self.field = field
        self.geometry = geometry


class DMTetScene:
    """Adapter exposing :class:`DMTetModel` to the trainer (see the module docstring).

    Args:
        field: a :class:`dreamfusion.fields.NeRFField` (normally loaded from the NeRF stage).
        geometry: the tet grid's SDF and deformations.
        lock_geo: optimise the texture only (``--lock_geo``).
        lr_scale: learning rate of sdf and deform relative to the base rate (``--dmtet_lr_scale``).
        lr_decay: their rate's fraction left at the end of the stage (``--dmtet_lr_decay``; the
            scheduler decays it geometrically).
        points_per_chunk: colour queries per call when rendering without gradients.
    """

    stage = "dmtet"
    uses_occupancy_grid = False

    def __init__(self, field, geometry: TetGeometry, *, lock_geo: bool = False, lr_scale: float = 1.0,
                 lr_decay: float = 1.0, points_per_chunk: int = 1 << 18):
        self.model = DMTetModel(field, geometry)
        self.lock_geo = lock_geo
        self.lr_scale = lr_scale
        self.lr_decay = lr_decay
        self.points_per_chunk = points_per_chunk
        geometry.sdf.requires_grad_(not lock_geo)
        geometry.deform.requires_grad_(not lock_geo)

    @property
    def field(self):
        return self.model.field

    @property
    def geometry(self) -> TetGeometry:
        return self.model.geometry

    # -- module plumbing
    def to(self, device) -> "DMTetScene":
        self.model.to(device)
        return self

    def train(self) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return self.model.named_parameters()

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)

    # -- what training asks
    @property
    def has_background(self) -> bool:
        return self.field.bg_net is not None

    def update_occupancy_grid(self) -> None:
        pass

    def mean_density(self) -> float | None:
        return None

    def param_groups(self, lr: float) -> list[dict]:
        """The field's groups (hash grid at 10x), plus sdf and deform at ``lr_scale × lr`` unless
        locked, decaying to ``lr_decay`` × that by the end (``final_lr_factor``: see
        :func:`dreamfusion.optimizers.build_lr_scheduler`)."""
        groups = self.field.get_params(lr)
        if not self.lock_geo:
            groups.append({"params": [self.geometry.sdf, self.geometry.deform], "lr": self.lr_scale * lr,
                           "final_lr_factor": self.lr_decay})
        return groups

    def set_max_level(self, fraction: float | None) -> None:
        self.field.max_level = fraction

    def hash_grid(self):
        return None  # the grid TV / weight decay regularise the NeRF's density; not used here

    # -- the surface
    def surface(self) -> tuple[Tensor, Tensor]:
        """Float[K, 3] vertices, Int64[F, 3] outward faces of the current surface."""
        return self.geometry.surface()

    def render(self, rays_o: Tensor, rays_d: Tensor, *, shading: str, ambient_ratio: float,
               bg_color: Tensor | float | None, perturb: bool, training: bool,
               need_normal_image: bool = False, light_d: Tensor | None = None,
               cameras=None) -> dict[str, Tensor]:
        """Rasterize the surface from ``cameras`` (a CameraBatch; ``rays_o``/``rays_d`` [B, N, 3]
        are its rays, used for the background and the default light). Returns ``image`` [B, N, 3],
        ``weights_sum`` [B, N] (antialiased coverage), ``depth`` [B, N] (planar, 0 where empty),
        ``normal_image`` [B, N, 3] when asked, and in training the two mesh regularisers."""
        if cameras is None:
            raise ValueError("the DMTet scene renders from cameras (pass cameras=)")
        batch, height, width = cameras.c2w.shape[0], cameras.height, cameras.width
        if self.lock_geo and shading in ("textureless", "normal"):
            shading = "lambertian"  # no trainable parameter would see those renders
        with torch.set_grad_enabled(training and not self.lock_geo and torch.is_grad_enabled()):
            vertices, faces = self.surface()
        dtype = torch.float32
        background = self._background(bg_color, rays_d, batch, height, width, rays_o.device)
        if len(faces) == 0:  # no surface (an SDF of one sign): the background alone
            if training and not self.lock_geo:
                raise UserError("the DMTet surface vanished (the SDF has one sign everywhere); restart the stage "
                                "with a lower --dmtet_lr_scale")
            empty = torch.zeros(batch, height * width, device=rays_o.device, dtype=dtype)
            out = {"image": background.reshape(batch, -1, 3), "weights_sum": empty, "depth": empty}
            if need_normal_image:
                out["normal_image"] = torch.zeros_like(out["image"])
            return out
        out: dict[str, Tensor] = {}
        homogeneous = torch.cat([vertices, torch.ones_like(vertices[:, :1])], 1)
        clip = homogeneous @ cameras.mvp().to(vertices).transpose(1, 2)  # [B, V, 4]
        raster = rasterize(clip, faces, height, width)
        mask = raster.mask  # [B, H, W]
        normals = vertex_normals(vertices, faces)
        pixel_normal = F.normalize(interpolate(normals, faces, raster), dim=-1)
        points = interpolate(vertices, faces, raster)[mask]  # [M, 3]
        albedo = torch.zeros(batch, height, width, 3, device=vertices.device, dtype=dtype)
        if len(points):
            albedo = albedo.index_put((mask,), self._albedo(points, training).to(dtype))
        if shading == "albedo":
            colour = albedo
        elif shading == "normal":
            colour = (pixel_normal + 1.0) / 2.0
        else:
            if light_d is None:
                light_d = random_light_direction(rays_o)
            light = light_d.to(dtype).reshape(batch, 1, 1, 3)
            lam = ambient_ratio + (1.0 - ambient_ratio) * (pixel_normal * light).sum(-1, keepdim=True).clamp(min=0)
            colour = albedo * lam if shading == "lambertian" else lam.expand(-1, -1, -1, 3)
        alpha = mask[..., None].to(dtype)
        composed = torch.where(mask[..., None], colour, background)
        channels = [composed, alpha]
        if need_normal_image:
            channels.append(torch.where(mask[..., None], (pixel_normal + 1.0) / 2.0, torch.zeros_like(pixel_normal)))
        neighbours = edge_neighbours(faces)
        stacked = antialias(torch.cat(channels, -1), raster, clip, faces, neighbours)
        out["image"] = stacked[..., :3].reshape(batch, -1, 3)
        out["weights_sum"] = stacked[..., 3].reshape(batch, -1)
        if need_normal_image:
            out["normal_image"] = stacked[..., 4:7].reshape(batch, -1, 3)
        depth = interpolate(clip[..., 3:4], faces, raster)[..., 0]
        out["depth"] = torch.where(mask, depth, torch.zeros_like(depth)).reshape(batch, -1)
        if training and not self.lock_geo:
            out["loss_mesh_normal"] = normal_consistency(vertices, faces, neighbours)
            out["loss_mesh_laplacian"] = laplacian_loss(vertices, faces, neighbours)
        return out

    def _albedo(self, points: Tensor, training: bool) -> Tensor:
        if training:
            return self.field.density(points)["albedo"]
        chunk = self.points_per_chunk
        return torch.cat([self.field.density(points[i:i + chunk])["albedo"] for i in range(0, len(points), chunk)])

    def _background(self, bg_color, rays_d: Tensor, batch: int, height: int, width: int, device) -> Tensor:
        """Float[B, H, W, 3] from None (the field's background network, else white), a number, a
        colour [3], or one colour per pixel [B*H*W, 3]."""
        if bg_color is None:
            if self.field.bg_net is not None:
                return self.field.background(rays_d.reshape(-1, 3)).reshape(batch, height, width, 3)
            bg_color = 1.0
        bg = torch.as_tensor(bg_color, dtype=torch.float32, device=device)
        if bg.numel() == 1:
            return bg.reshape(1, 1, 1, 1).expand(batch, height, width, 3)
        if bg.numel() == 3:
            return bg.reshape(1, 1, 1, 3).expand(batch, height, width, 3)
        return bg.reshape(batch, height, width, 3)

    # -- export
    def albedo_fn(self, x: Tensor) -> Tensor:
        return self.field.density(x)["albedo"]

    @torch.no_grad()
    def surface_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """The surface to export: the SDF after the export's clean-up (``TetGeometry.cleaned_sdf``)."""
        vertices, faces = self.geometry.surface(cleaned=True)
        return vertices.float().cpu().numpy(), faces.cpu().numpy()
