"""Bake a colour function into a UV texture: rasterize the UV layout, look up the 3D point (and
normal) of every covered texel, query the colour there, then pad the seams.

The colour is either the field's albedo at the texel's point, or (:func:`seen_colour`) the colour
a camera looking straight at the texel along its normal would render: what the user saw there,
even where the mesh surface lies a little off the field's densest layer (a filled pit, say).

Example:
    >>> texture = bake_texture(vertices, layout, albedo_fn, texture_size=1024)
    >>> texture.image.shape   # (1024, 1024, 3) float32 in [0, 1], row 0 = top (v = 1)
    >>> texture = bake_texture(vertices, layout, seen_colour(density_fn, albedo_fn), with_normals=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from dreamfusion.renderers.rasterizer import interpolate, rasterize
from dreamfusion.export.uv_unwrap import UVLayout

# rgb(x: Float[N, 3]) -> Float[N, 3] in [0, 1]
ColorFn = Callable[[Tensor], Tensor]
# rgb(x: Float[N, 3], outward unit normals: Float[N, 3]) -> Float[N, 3] in [0, 1]
SurfaceColorFn = Callable[[Tensor, Tensor], Tensor]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals [V, 3]: the area-weighted sum of the adjacent faces' normals (outward winding)."""
    v = np.asarray(vertices, dtype=np.float64)
    corners = v[np.asarray(faces)]
    face_n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # length = 2 area
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return (normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def seen_colour(density_fn: Callable[[Tensor], Tensor], albedo_fn: ColorFn, *, outside: float = 0.02,
                inside: float = 0.2, samples: int = 48) -> SurfaceColorFn:
    """The colour rendered at a surface point by a ray along its inward normal, from ``outside``
    above the point to ``inside`` below it (``samples`` points, alpha compositing with metric
    steps like the renderer), normalised by the ray's opacity; the plain albedo where that opacity
    is below 1 %."""

    def colour(points: Tensor, normals: Tensor) -> Tensor:
        t = torch.linspace(-outside, inside, samples, device=points.device)
        xyz = points[:, None] - normals[:, None] * t[None, :, None]  # [N, S, 3]
        step = (outside + inside) / (samples - 1)
        sigma = density_fn(xyz.reshape(-1, 3)).reshape(len(points), samples).float().clamp_min(0)
        alpha = 1.0 - torch.exp(-sigma * step)
        transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + 1e-10], 1), 1)
        weights = alpha * transmittance
        opacity = weights.sum(1, keepdim=True)
        rgb = albedo_fn(xyz.reshape(-1, 3)).reshape(len(points), samples, 3).float()
        seen = (weights[..., None] * rgb).sum(1) / opacity.clamp_min(1e-6)
        return torch.where(opacity > 0.01, seen, albedo_fn(points).float())

    return colour


@dataclass
class BakedTexture:
    """image: Float32[S, S, 3] in [0, 1]; mask: Bool[S, S], texels covered by a triangle (the
    others hold seam padding)."""

    image: np.ndarray
    mask: np.ndarray


def texel_positions(
    vertices: np.ndarray, layout: UVLayout, texture_size: int, *,
    device: torch.device | str = "cpu", backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """3D point seen by each texel centre.

    Returns:
        positions Float[S, S, 3], mask Bool[S, S] and the UV rasterization, on `device`.
    """
    uvs = torch.as_tensor(layout.uvs, dtype=torch.float32, device=device)
    uv_faces = torch.as_tensor(layout.uv_faces, dtype=torch.long, device=device)
    # UV (u, v) -> NDC (2u - 1, 2v - 1): row 0 of the image is v = 1, as OBJ/glTF viewers expect.
    clip = torch.cat([uvs * 2.0 - 1.0, torch.zeros_like(uvs[:, :1]), torch.ones_like(uvs[:, :1])], 1)
    raster = rasterize(clip, uv_faces, texture_size, texture_size, backend=backend)
    split_positions = torch.as_tensor(vertices, dtype=torch.float32, device=device)[
        torch.as_tensor(layout.vertex_map, device=device)
    ]
    positions = interpolate(split_positions, uv_faces, raster)[0]
    return positions, raster.mask[0], raster


@torch.no_grad()
def bake_texture(
    vertices: np.ndarray,
    layout: UVLayout,
    color_fn: ColorFn | SurfaceColorFn,
    texture_size: int = 2048,
    *,
    with_normals: bool = False,
    device: torch.device | str = "cpu",
    points_per_chunk: int = 1 << 18,
    backend: str = "auto",
    progress: bool = False,
) -> BakedTexture:
    """Bake `color_fn` (e.g. the field's albedo) into a texture for `layout`.

    Args:
        vertices: Float[V, 3] of the mesh that `layout` unwraps.
        layout: from `unwrap_uv`.
        color_fn: Float[N, 3] points -> Float[N, 3] colours in [0, 1] (clamped), or with
            ``with_normals`` (points, outward unit normals) -> colours (e.g. :func:`seen_colour`).
        texture_size: S, the image is S x S.
        device: where points are created and the rasterizer runs (the field's device).
        points_per_chunk: colour queries per call.
    """
    positions, mask, raster = texel_positions(vertices, layout, texture_size, device=device, backend=backend)
    points = positions[mask]  # [N, 3]
    normals = None
    if with_normals:
        welded_faces = np.asarray(layout.vertex_map)[np.asarray(layout.uv_faces)]
        split_normals = torch.from_numpy(vertex_normals(vertices, welded_faces)[layout.vertex_map]).to(device)
        uv_faces = torch.as_tensor(layout.uv_faces, dtype=torch.long, device=device)
        normals = torch.nn.functional.normalize(interpolate(split_normals, uv_faces, raster)[0][mask], dim=-1)
    colours = torch.empty(points.shape[0], 3, dtype=torch.float32, device=device)
    starts = range(0, points.shape[0], points_per_chunk)
    for start in tqdm(starts, desc="bake texture", disable=not progress, leave=False):
        chunk = points[start : start + points_per_chunk]
        rgb = color_fn(chunk) if normals is None else color_fn(chunk, normals[start : start + points_per_chunk])
        if rgb.shape != (chunk.shape[0], 3):
            raise ValueError(f"albedo_fn must return [N,3] colours for [N,3] points, got {tuple(rgb.shape)}")
        colours[start : start + chunk.shape[0]] = torch.nan_to_num(rgb.float(), nan=0.0).clamp(0, 1)
    image = torch.zeros(texture_size, texture_size, 3, dtype=torch.float32, device=device)
    image[mask] = colours
    mask_np = mask.cpu().numpy()
    return BakedTexture(image=pad_seams(image.cpu().numpy(), mask_np), mask=mask_np)


def pad_seams(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill every uncovered texel with the colour of the nearest covered one.

    Texels on a chart's border whose centre falls just outside every triangle, and the gutters
    between charts, would otherwise be black; bilinear filtering and mip-maps in a viewer read
    them, which shows as dark seams.

    Args:
        image: Float[S, S, C]; mask: Bool[S, S].

    Returns:
        Float[S, S, C], equal to `image` where `mask`.
    """
    if mask.all() or not mask.any():
        return image
    from scipy.ndimage import distance_transform_edt

    _, (rows, cols) = distance_transform_edt(~mask, return_indices=True)
    return image[rows, cols]
