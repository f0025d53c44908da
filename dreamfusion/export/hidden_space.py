"""Space inside a density solid that no view sees into: pockets, tunnels and pits.

A field trained by SDS is only constrained where some camera looks, and in albedo shading only
through silhouettes and colours: behind its opaque skin the density is whatever the optimisation
left (often a sponge of low-density pockets and channels), and a pit whose walls have the colour of
the surface around it looks like that surface in every render. Meshed at one density level, those
become inner skins, tunnels and pits no render ever showed.

For every empty node x of the solid S = {density > level}, :func:`open_fraction` counts the viewing
directions (both ways along 49 line orientations: 16 horizontal, the vertical and 32 from a
Fibonacci lattice, :func:`line_directions`) in which the half-line from x leaves the scene crossing
less than half a voxel of S: the share of the sky x sees. :func:`enclosed_space` is where that share
is at most 10 %: an enclosed pocket or tunnel (0 %), or a pit seen only through a narrow mouth
(a well 0.15 wide and 0.2 deep sees ~3 % of the sky) — space a camera must look straight into to
see, whose walls albedo renders cannot tell from a flat surface. Open concavities stay: the space
under a mushroom's cap sees ~40 % of the sky (everything below), a torus' hole and a teapot
handle's more. The threshold is a choice, stated here: 10 % is a cone of half-angle 37°.

Computed on the grid: per line orientation, the indicator of S is resampled (trilinear) in a frame
whose third axis is the orientation, accumulated from both ends and resampled back.

Why not the visual hull (every line through a point meets S)? It fills every concavity no
silhouette shows: under a mushroom's cap a field's rim droops by 0.02-0.03, every horizontal line
under the cap meets that lip, and the hull fills the underside down to it (77-84 % of the area
within 0.03 instead of 95 %, docs/mesh-export.md).

Example::

    fill = enclosed_space(grid > level)                  # bool [R, R, R], outside the solid
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

OPAQUE_DEPTH = math.log(2.0)
"""Optical depth at which transmittance is one half: the line (or half-line) counts as opaque."""


def sphere_directions(count: int) -> np.ndarray:
    """``count`` unit vectors [count, 3] spread evenly over the sphere (Fibonacci lattice)."""
    k = np.arange(count) + 0.5
    z = 1.0 - 2.0 * k / count
    phi = k * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)


def line_directions(pairs: int = 32, horizontal: int = 16) -> np.ndarray:
    """One direction per line orientation [pairs + horizontal + 1, 3] (each also stands for its
    opposite): ``horizontal`` lines in the ground plane every 180/horizontal degrees of azimuth and
    the vertical (y is up), then ``pairs`` from a Fibonacci lattice for everything in between.

    Horizontal lines get their own ring because an upright object's concavities are mostly
    horizontal — the underside of a mushroom's cap, the groove between a burger's layers — and a
    line must run almost exactly along such a groove to see into it: with the lattice alone (~25°
    apart) the nearest line is up to ~12° off, and the hull fills a wedge under a 0.6-wide cap.
    """
    azimuth = np.pi * np.arange(horizontal) / horizontal
    ring = np.stack([np.sin(azimuth), np.zeros_like(azimuth), np.cos(azimuth)], -1)
    lattice = sphere_directions(2 * pairs)[:pairs]  # the first half has z > 0: no two are opposite
    return np.concatenate([ring, [[0.0, 1.0, 0.0]], lattice])


def _basis(d: np.ndarray) -> np.ndarray:
    """Rows u, v, d: an orthonormal frame whose third axis is ``d``."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(d, u), d])


@torch.no_grad()
def open_fraction(solid: np.ndarray, *, directions: np.ndarray | None = None,
                  device: torch.device | str | None = None) -> np.ndarray:
    """For every node of a grid over a cube: the fraction [R, R, R] of viewing directions (both ways
    along each of ``directions``) in which the half-line from the node leaves the grid crossing
    less than half a voxel of ``solid`` (bool [R, R, R]): how open the sky is from there."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    resolution = solid.shape[0]
    h = 2.0 / (resolution - 1)
    directions = line_directions() if directions is None else directions
    # The solid as a density whose half voxel is optical depth ln 2 (on the unit cube's grid).
    volume = torch.from_numpy(np.ascontiguousarray(solid, dtype=np.float32)).to(device).permute(2, 1, 0)[None, None]
    volume = volume * (2.0 * OPAQUE_DEPTH / h)
    axis = torch.linspace(-1.0, 1.0, resolution, device=device)
    frame = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
    escapes = torch.zeros(solid.shape, device=device)
    for d in directions:
        rot = torch.from_numpy(_basis(d)).float().to(device)  # rows u, v, d
        along = F.grid_sample(volume, (frame @ rot)[None], mode="bilinear", padding_mode="zeros",
                              align_corners=True)[0, 0]  # [u, v, d]
        total = torch.cumsum(along, dim=2)
        ahead = (total[..., -1:] - total) * h  # solid crossed towards +d, beyond each node
        behind = (total - along) * h  # towards -d
        depths = torch.stack([ahead, behind]).permute(0, 3, 2, 1)[None]  # [1, 2, d, v, u]
        back = F.grid_sample(depths, (frame @ rot.T)[None], mode="bilinear", padding_mode="zeros",
                             align_corners=True)[0]  # [2, x, y, z]
        escapes += (back < OPAQUE_DEPTH).float().sum(0)
    return (escapes / (2 * len(directions))).cpu().numpy()


def enclosed_space(solid: np.ndarray, *, max_open: float = 0.1, directions: np.ndarray | None = None,
                   device: torch.device | str | None = None) -> np.ndarray:
    """Empty nodes (bool [R, R, R]) of ``solid``'s grid from which at most ``max_open`` of the
    viewing directions lead out without crossing the solid: pockets, tunnels, and pits a view must
    look straight into to see (see the module docstring)."""
    return ~solid & (open_fraction(solid, directions=directions, device=device) <= max_open)
