"""One viewer frame: the scene (NeRF or DMTet stage) rendered from a :class:`ViewCamera` with the
viewer's shading settings, as uint8 pixels.

    settings = ViewSettings(shading="lambertian", light_polar=60, light_azimuth=0)
    image = render_frame(scene, camera.batch(orbit, 96, 128), settings, cancelled=lambda: False)

A NeRF frame is rendered in chunks of rays so that a newer camera can cancel it between chunks
(``cancelled`` returns True: the function returns None). Nothing here draws random numbers: the
light is always given, sampling is deterministic, so a viewer never disturbs a seeded run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dreamfusion.cameras import CameraBatch, spherical_to_position

SHADINGS = ("albedo", "lambertian", "textureless", "normal", "depth")
"""What the viewer shows: the field's shadings, its normals, or its depth."""

CHUNK_RAYS = 1 << 10  # small enough that a newer camera cancels a frame within ~0.05 s on a CPU
FAR = 1000.0


@dataclass(frozen=True)
class ViewSettings:
    """How a frame is shaded (stable-dreamfusion's GUI options).

    ``light_polar`` / ``light_azimuth``: the light direction in degrees, ``(sinθ sinφ, cosθ, sinθ cosφ)``.
    ``ambient_ratio``: the share of ambient light in lambertian / textureless shading.
    ``background``: RGB in [0, 1] behind the object, or None for the scene's own background
    (its background network, else white).
    """

    shading: str = "albedo"
    light_polar: float = 60.0
    light_azimuth: float = 0.0
    ambient_ratio: float = 0.1
    background: tuple[float, float, float] | None = None

    def light_direction(self) -> torch.Tensor:
        return spherical_to_position(torch.tensor(self.light_polar), torch.tensor(self.light_azimuth),
                                     torch.tensor(1.0)).float()


@torch.no_grad()
def render_frame(scene, camera: CameraBatch, settings: ViewSettings, *, device: torch.device,
                 amp: bool = False, cancelled: Callable[[], bool] | None = None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Render one camera. Returns ``(image, depth)``: uint8 [H, W, 3] and float32 [H, W], the
    depth of the surface along the optical axis (``FAR`` where the pixel is mostly empty), for the
    browser to hide what lies behind the object; or None when ``cancelled()`` turned True."""
    camera = camera.to(device)
    height, width = camera.height, camera.width
    rays_o, rays_d = camera.rays()  # [1, H*W, 3]
    shading = settings.shading
    surface_shading = shading if shading in ("albedo", "lambertian", "textureless") else "albedo"
    ambient = 1.0 if surface_shading == "albedo" else settings.ambient_ratio
    light = settings.light_direction().to(device)[None]
    background = None if settings.background is None else torch.tensor(settings.background, device=device)
    if shading in ("normal", "depth"):
        background = torch.zeros(3, device=device)
    need_normal = shading == "normal"
    kwargs = dict(shading=surface_shading, ambient_ratio=ambient, bg_color=background, perturb=False,
                  training=False, light_d=light, need_normal_image=need_normal)
    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        if getattr(scene, "stage", "nerf") == "dmtet":  # a rasterised surface: one pass, from the camera
            parts = [scene.render(rays_o, rays_d, cameras=camera, **kwargs)]
        else:
            parts = []
            for start in range(0, rays_o.shape[1], CHUNK_RAYS):
                if cancelled is not None and cancelled():
                    return None
                end = start + CHUNK_RAYS
                parts.append(scene.render(rays_o[:, start:end], rays_d[:, start:end], **kwargs))
    if cancelled is not None and cancelled():
        return None
    depth = torch.cat([p["depth"].reshape(-1) for p in parts]).float()
    alpha = torch.cat([p["weights_sum"].reshape(-1) for p in parts]).float()
    if shading == "depth":
        image = depth_image(depth, alpha).reshape(height, width, 1).expand(height, width, 3)
    else:
        key = "normal_image" if need_normal else "image"
        image = torch.cat([p[key].reshape(-1, 3) for p in parts]).float().reshape(height, width, 3)
    surface = torch.where(alpha > 0.5, depth / alpha.clamp_min(1e-6), torch.full_like(depth, FAR))
    return ((image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy(),
            surface.reshape(height, width).cpu().numpy())


def depth_image(depth: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Grey levels [N] in [0, 1] for a depth map: near = bright, far = dark, empty pixels black.
    The range is that of the covered pixels (alpha > 0.5), so the object spans the whole scale."""
    covered = alpha > 0.5
    if not bool(covered.any()):
        return torch.zeros_like(depth)
    surface = depth / alpha.clamp_min(1e-6)  # the expected depth of the surface, not depth x opacity
    near, far = surface[covered].min(), surface[covered].max()
    level = 1.0 - 0.8 * (surface - near) / (far - near).clamp_min(1e-6)
    return torch.where(covered, level, torch.zeros_like(level))
