"""Bake a colour function into a UV texture: rasterize the UV layout, look up the 3D point of
every covered texel, query the colour there, then pad the seams.

Example:
    >>> texture = bake_texture(vertices, layout, albedo_fn, texture_size=1024)
    >>> texture.image.shape   # (1024, 1024, 3) float32 in [0, 1], row 0 = top (v = 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from dreamfusion.export.rasterizer import interpolate, rasterize
from dreamfusion.export.uv_unwrap import UVLayout

# rgb(x: Float[N, 3]) -> Float[N, 3] in [0, 1]
ColorFn = Callable[[Tensor], Tensor]


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
        positions Float[S, S, 3] and mask Bool[S, S], on `device`.
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
    return positions, raster.mask[0]


@torch.no_grad()
def bake_texture(
    vertices: np.ndarray,
    layout: UVLayout,
    color_fn: ColorFn,
    texture_size: int = 2048,
    *,
    device: torch.device | str = "cpu",
    points_per_chunk: int = 1 << 18,
    backend: str = "auto",
    progress: bool = False,
) -> BakedTexture:
    """Bake `color_fn` (e.g. the field's albedo) into a texture for `layout`.

    Args:
        vertices: Float[V, 3] of the mesh that `layout` unwraps.
        layout: from `unwrap_uv`.
        color_fn: Float[N, 3] points -> Float[N, 3] colours in [0, 1] (clamped).
        texture_size: S, the image is S x S.
        device: where points are created and the rasterizer runs (the field's device).
        points_per_chunk: colour queries per call.
    """
    positions, mask = texel_positions(vertices, layout, texture_size, device=device, backend=backend)
    points = positions[mask]  # [N, 3]
    colours = torch.empty(points.shape[0], 3, dtype=torch.float32, device=device)
    starts = range(0, points.shape[0], points_per_chunk)
    for start in tqdm(starts, desc="bake texture", disable=not progress, leave=False):
        chunk = points[start : start + points_per_chunk]
        rgb = color_fn(chunk)
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
