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
whose third axis is the orientation, accumulated from both ends and resampled back; only over the
solid's bounding box, since a node outside it sees at least half of the sky.

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
from torch import Tensor

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
    along each of ``directions``) in which the half-line from the node leaves the scene crossing
    less than half a voxel of ``solid`` (bool [R, R, R]): how open the sky is from there."""
    return _open_fraction_box(solid, (0, 0, 0), solid.shape[0], directions, device)


def _open_fraction_box(solid: np.ndarray, corner: tuple[int, int, int], resolution: int,
                       directions: np.ndarray | None, device: torch.device | str | None) -> np.ndarray:
    """:func:`open_fraction` at the nodes of a box of a resolution^3 grid over [-1, 1]^3: ``solid``
    (bool [a, b, c]) is the box, its first node at grid index ``corner``, and the solid is empty
    outside it.

    Per orientation the indicator is resampled on the grid's lattice rotated (nodes -1 + k h on
    each rotated axis: the same lattice for every box, so a box gives the values the whole grid
    would), only where the box reaches along each rotated axis.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    h = 2.0 / (resolution - 1)
    directions = line_directions() if directions is None else directions
    shape = solid.shape
    # The solid as a density whose half voxel is optical depth ln 2.
    volume = torch.from_numpy(np.ascontiguousarray(solid, dtype=np.float32)).to(device).permute(2, 1, 0)[None, None]
    volume = volume * (2.0 * OPAQUE_DEPTH / h)
    lo = torch.tensor([-1.0 + h * corner[i] for i in range(3)], dtype=torch.float64)
    hi = torch.tensor([-1.0 + h * (corner[i] + shape[i] - 1) for i in range(3)], dtype=torch.float64)
    span = (hi - lo).clamp_min(h)
    axes = [torch.linspace(float(lo[i]), float(hi[i]), shape[i], dtype=torch.float64) for i in range(3)]
    box_corners = torch.stack(torch.meshgrid(*[torch.stack([lo[i], hi[i]]) for i in range(3)], indexing="ij"), -1).reshape(8, 3)
    escapes = torch.zeros(shape, device=device)
    for d in directions:
        rot = torch.from_numpy(_basis(d))  # rows u, v, d (float64: the affine maps below are exact enough)
        proj = box_corners @ rot.T  # [8, 3]: the box's corners on the rotated axes
        first = torch.floor((proj.min(0).values + 1.0) / h).long() - 1
        last = torch.ceil((proj.max(0).values + 1.0) / h).long() + 1
        ticks = [torch.arange(int(first[k]), int(last[k]) + 1, dtype=torch.float64) * h - 1.0 for k in range(3)]
        # lattice node (t_u, t_v, t_d) -> world t @ rot -> the box volume's [-1, 1] sampling coordinates
        scale = 2.0 / span
        along = F.grid_sample(volume, _affine_lattice(ticks, rot * scale, -lo * scale - 1.0, device)[None],
                              mode="bilinear", padding_mode="zeros", align_corners=True)[0, 0]  # [u, v, d]
        total = torch.cumsum(along, dim=2)
        depths = torch.empty((2, *along.shape), device=device)
        torch.sub(total[..., -1:], total, out=depths[0])  # solid crossed towards +d, beyond each lattice node
        torch.sub(total, along, out=depths[1])  # towards -d
        depths.mul_(h)
        del along, total
        # box node (x, y, z) -> rotated x @ rot.T -> the lattice's [-1, 1] sampling coordinates
        t_lo, t_hi = (first.double() * h - 1.0, last.double() * h - 1.0)
        scale = 2.0 / (t_hi - t_lo)
        back = F.grid_sample(depths.permute(0, 3, 2, 1)[None], _affine_lattice(axes, rot.T * scale, -t_lo * scale - 1.0, device)[None],
                             mode="bilinear", padding_mode="zeros", align_corners=True)[0]  # [2, a, b, c]
        escapes += (back < OPAQUE_DEPTH).sum(0)
    return (escapes / (2 * len(directions))).cpu().numpy()


def _affine_lattice(ticks: list[Tensor], matrix: Tensor, offset: Tensor, device) -> Tensor:
    """Float32 [n0, n1, n2, 3]: ticks[0][i] * matrix[0] + ticks[1][j] * matrix[1] + ticks[2][k] *
    matrix[2] + offset, in one pass over the output (a meshgrid and a matmul would take five)."""
    plane = (ticks[0][:, None, None] * matrix[0] + ticks[1][None, :, None] * matrix[1] + offset).float().to(device)
    line = (ticks[2][:, None] * matrix[2]).float().to(device)
    return plane[:, :, None, :] + line[None, None, :, :]


CROP_MARGIN = 3
"""Nodes kept around the solid's bounding box when only enclosed space is wanted. Resampling blurs
the solid by about a node; a node beyond that, outside the box, has every half-line that moves away
from the box free: at least half of the sky."""


def enclosed_space(solid: np.ndarray, *, max_open: float = 0.1, directions: np.ndarray | None = None,
                   device: torch.device | str | None = None) -> np.ndarray:
    """Empty nodes (bool [R, R, R]) of ``solid``'s grid from which at most ``max_open`` (< 1/2) of the
    viewing directions lead out without crossing the solid: pockets, tunnels, and pits a view must
    look straight into to see (see the module docstring).

    Only the solid's bounding box (plus :data:`CROP_MARGIN` nodes) is computed: outside it at
    least half of the sky is open. For a compact object that is a fraction of the cube's nodes."""
    if not 0.0 <= max_open < 0.5:
        raise ValueError(f"max_open must be in [0, 0.5), got {max_open}")
    enclosed = np.zeros(solid.shape, dtype=bool)
    if not solid.any():
        return enclosed
    box = []
    for axis in range(3):
        occupied = np.flatnonzero(solid.any(axis=tuple(i for i in range(3) if i != axis)))
        box.append(slice(max(int(occupied[0]) - CROP_MARGIN, 0), min(int(occupied[-1]) + CROP_MARGIN + 1, solid.shape[axis])))
    crop = solid[tuple(box)]
    sky = _open_fraction_box(crop, tuple(s.start for s in box), solid.shape[0], directions, device)
    enclosed[tuple(box)] = ~crop & (sky <= max_open)
    return enclosed
