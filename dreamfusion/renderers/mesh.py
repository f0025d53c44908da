"""Render a triangle mesh from a camera with the rasterizer (CPU or CUDA): mask, depth, normals,
and colour from vertex colours or a UV texture.

Example:
    >>> mvp = mvp_from_c2w(c2w, intrinsics_from_fovy(40.0, 64, 64), height=64, width=64)
    >>> out = render_mesh(vertices, faces, mvp, height=64, width=64)
    >>> out["depth"]   # [1, 64, 64] camera depth along -z (the ray parameter of get_rays)

Cameras follow docs/conventions.md: `c2w` columns are (right, up, back, centre), the camera looks
along -back, and a camera-space point (X, Y, Z) lands on pixel
(cx + fx X / -Z, cy - fy Y / -Z), i.e. exactly where `cameras.get_rays` shoots its ray.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.cameras import projection_matrix
from dreamfusion.renderers.rasterizer import interpolate, rasterize


def mvp_from_c2w(
    c2w: Tensor, intrinsics: Tensor, height: int, width: int,
    near: float = 0.01, far: float = 100.0,
) -> Tensor:
    """Model-view-projection matrices from camera-to-world poses.

    Args:
        c2w: Float[4, 4] or Float[B, 4, 4].
        intrinsics: Float[4] or Float[B, 4], (fx, fy, cx, cy) in pixels, as `cameras.get_rays`.

    Returns:
        Float[B, 4, 4] mapping homogeneous world points to clip space (clip w = camera depth).
    """
    if c2w.dim() == 2:
        c2w = c2w.unsqueeze(0)
    proj = projection_matrix(torch.as_tensor(intrinsics).float().cpu(), height, width, near, far)
    return proj.to(c2w) @ torch.linalg.inv(c2w)


def render_mesh(
    vertices: Tensor,
    faces: Tensor,
    mvp: Tensor,
    height: int,
    width: int,
    *,
    vertex_colors: Tensor | None = None,
    uvs: Tensor | None = None,
    texture: Tensor | None = None,
    background: float = 1.0,
    backend: str = "auto",
) -> dict[str, Tensor]:
    """Rasterize a mesh from B cameras.

    Args:
        vertices: Float[V, 3] world positions.
        faces: Long[F, 3].
        mvp: Float[4, 4] or Float[B, 4, 4] (see `mvp_from_c2w`).
        vertex_colors: optional Float[V, 3] in [0, 1].
        uvs: optional Float[V, 2] per-vertex UVs (v up, OBJ convention) used with `texture`.
        texture: optional Float[Ht, Wt, 3], row 0 = top of the image (v = 1).
        background: colour of empty pixels.

    Returns:
        dict with "mask" Bool[B,H,W], "depth" Float[B,H,W] (camera depth, 0 where empty),
        "normal" Float[B,H,W,3] (world-space face normals from the winding, 0 where empty),
        "triangle_index" Long[B,H,W], and "rgb" Float[B,H,W,3] when colours or a texture are given.
    """
    if mvp.dim() == 2:
        mvp = mvp.unsqueeze(0)
    faces = faces.to(device=vertices.device, dtype=torch.long)
    homogeneous = torch.cat([vertices, torch.ones_like(vertices[:, :1])], dim=1)  # [V, 4]
    clip = homogeneous @ mvp.to(vertices).transpose(1, 2)  # [B, V, 4]
    raster = rasterize(clip, faces, height, width, backend=backend)
    mask = raster.mask
    depth = interpolate(clip[..., 3:4], faces, raster)[..., 0]

    corners = vertices[faces]
    face_normals = F.normalize(
        torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1), dim=1
    )
    normal = face_normals[raster.triangle_index.clamp(min=0)] * mask[..., None]
    out = {"mask": mask, "depth": depth, "normal": normal, "triangle_index": raster.triangle_index}

    rgb = None
    if texture is not None:
        if uvs is None:
            raise ValueError("render_mesh: a texture needs per-vertex uvs")
        uv = interpolate(uvs.to(vertices), faces, raster)  # [B, H, W, 2]
        # grid_sample: x=-1 is the left edge, y=-1 the top row (v = 1).
        grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], dim=-1)
        tex = texture.to(vertices).permute(2, 0, 1).unsqueeze(0).expand(grid.shape[0], -1, -1, -1)
        rgb = F.grid_sample(tex, grid, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    elif vertex_colors is not None:
        rgb = interpolate(vertex_colors.to(vertices), faces, raster)
    if rgb is not None:
        out["rgb"] = torch.where(mask[..., None], rgb, torch.full_like(rgb, background))
    return out
