"""Sample a density function on a regular grid over [-bound, bound]^3, in chunks, on any device.

Example:
    >>> grid = sample_density_grid(lambda x: 20 * (0.5 - x.norm(dim=-1)), resolution=64)
    >>> grid.shape   # (64, 64, 64), grid[i, j, k] = sigma(x_i, y_j, z_k)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

# sigma(x: Float[N, 3]) -> Float[N]
DensityFn = Callable[[Tensor], Tensor]


def grid_coordinates(resolution: int, bound: float) -> np.ndarray:
    """Float[resolution]: the sample positions along each axis, endpoints included."""
    return np.linspace(-bound, bound, resolution, dtype=np.float64)


def resolve_density_threshold(density_thresh: float, mean_density: float | None = None) -> float:
    """The iso-level used by stable-dreamfusion: min(mean density, density_thresh) when the
    occupancy grid tracked a positive mean density, else density_thresh."""
    if mean_density is not None and mean_density > 0:
        return float(min(mean_density, density_thresh))
    return float(density_thresh)


@torch.no_grad()
def sample_density_grid(
    density_fn: DensityFn,
    resolution: int,
    bound: float = 1.0,
    *,
    device: torch.device | str | None = None,
    points_per_chunk: int = 1 << 20,
    progress: bool = False,
) -> np.ndarray:
    """Evaluate `density_fn` at every node of a resolution^3 grid.

    Args:
        density_fn: maps Float[N, 3] world points to Float[N] (or [N, 1]) densities.
        resolution: nodes per axis; node i sits at -bound + 2 bound i / (resolution - 1).
        bound: half size of the cube.
        device: where the points are created (the field's device).
        points_per_chunk: points per call, rounded down to whole x-slabs (at least one slab).
        progress: show a tqdm bar.

    Returns:
        Float32[resolution, resolution, resolution] on the CPU, indexed [x, y, z]. NaN becomes
        -inf-like (empty) and +inf a large finite value, so marching cubes stays well defined.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    axis = torch.from_numpy(grid_coordinates(resolution, bound)).float().to(device)
    plane_y, plane_z = torch.meshgrid(axis, axis, indexing="ij")
    plane = torch.stack([plane_y.reshape(-1), plane_z.reshape(-1)], dim=-1)  # [R*R, 2] (y, z)
    slabs_per_chunk = max(1, points_per_chunk // (resolution * resolution))
    grid = np.empty((resolution, resolution, resolution), dtype=np.float32)
    big = float(np.finfo(np.float32).max) / 4
    starts = range(0, resolution, slabs_per_chunk)
    for start in tqdm(starts, desc="density grid", disable=not progress, leave=False):
        stop = min(start + slabs_per_chunk, resolution)
        xs = axis[start:stop]
        points = torch.cat(
            [
                xs.repeat_interleave(plane.shape[0])[:, None],
                plane.repeat(stop - start, 1),
            ],
            dim=-1,
        )  # [(stop-start)*R*R, 3], x slowest so the reshape below is [x, y, z]
        sigma = density_fn(points)
        if sigma.dim() == 2 and sigma.shape[-1] == 1:
            sigma = sigma[:, 0]
        if sigma.shape != (points.shape[0],):
            raise ValueError(
                f"density_fn must return [N] densities for [N,3] points, got {tuple(sigma.shape)}"
            )
        sigma = torch.nan_to_num(sigma.float(), nan=-big, posinf=big, neginf=-big)
        grid[start:stop] = sigma.reshape(stop - start, resolution, resolution).cpu().numpy()
    return grid


def grid_density_fn(grid: np.ndarray, bound: float = 1.0, device: torch.device | str | None = None) -> DensityFn:
    """The trilinear interpolant of a node grid (``sample_density_grid``'s layout) as a density
    function: exactly the field marching cubes meshes, at a grid lookup's cost per point.
    Points outside the cube get the nearest face's value (clamped)."""
    volume = torch.from_numpy(np.ascontiguousarray(grid.transpose(2, 1, 0)))[None, None]  # [1, 1, z, y, x]
    volume = volume.to(torch.device(device) if device is not None else torch.device("cpu"))

    def density(points: Tensor) -> Tensor:
        coords = (points.to(volume.device, torch.float32) / bound).clamp(-1.0, 1.0).reshape(1, -1, 1, 1, 3)
        values = torch.nn.functional.grid_sample(volume, coords, mode="bilinear", align_corners=True)
        return values.reshape(-1).to(points.device)

    return density
