"""Signed-distance primitives and operators used to build the built-in objects.

Every function takes points ``p: Float[Tensor, "N 3"]`` in world units (y up, front = +z) and
returns ``Float[Tensor, "N"]``: negative inside, positive outside. The formulas are the standard
closed forms (sphere, box, capped cylinder, torus, round cone); the ellipsoid and the displaced
shapes are only distance *bounds* near the surface, which is why the sphere tracer in
``render.py`` takes under-relaxed steps.

Example::

    d = torch.minimum(sphere(p, (0, 0.4, 0), 0.2), round_box(p, (0, 0, 0), (0.3, 0.1, 0.3), 0.02))
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

Vec3 = Sequence[float]


def _vec(v: Vec3, like: Tensor) -> Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def sphere(p: Tensor, centre: Vec3, radius: float) -> Tensor:
    """Exact distance to a sphere."""
    return (p - _vec(centre, p)).norm(dim=-1) - radius


def ellipsoid(p: Tensor, centre: Vec3, radii: Vec3) -> Tensor:
    """Distance bound to an axis-aligned ellipsoid (k0·(k0-1)/k1; exact on the surface)."""
    r = _vec(radii, p)
    q = p - _vec(centre, p)
    k0 = (q / r).norm(dim=-1)
    k1 = (q / (r * r)).norm(dim=-1).clamp_min(1e-9)  # zero only at the centre, deep inside
    return k0 * (k0 - 1.0) / k1


def round_box(p: Tensor, centre: Vec3, half_size: Vec3, rounding: float = 0.0) -> Tensor:
    """Exact distance to a box of half extents ``half_size`` whose edges are rounded by ``rounding``."""
    q = (p - _vec(centre, p)).abs() - (_vec(half_size, p) - rounding)
    outside = q.clamp_min(0.0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp_max(0.0)
    return outside + inside - rounding


def round_cylinder_y(p: Tensor, centre: Vec3, radius: float, half_height: float, rounding: float = 0.0) -> Tensor:
    """Exact distance to a vertical (y-axis) capped cylinder with rounded rims."""
    q = p - _vec(centre, p)
    radial = q[:, [0, 2]].norm(dim=-1) - (radius - rounding)
    axial = q[:, 1].abs() - (half_height - rounding)
    d = torch.stack([radial, axial], dim=-1)
    return d.clamp_min(0.0).norm(dim=-1) + d.max(dim=-1).values.clamp_max(0.0) - rounding


def torus_y(p: Tensor, centre: Vec3, major: float, minor: float) -> Tensor:
    """Exact distance to a torus lying in the xz plane (axis y)."""
    q = p - _vec(centre, p)
    ring = q[:, [0, 2]].norm(dim=-1) - major
    return torch.stack([ring, q[:, 1]], dim=-1).norm(dim=-1) - minor


def torus_x(p: Tensor, centre: Vec3, major: float, minor: float) -> Tensor:
    """Exact distance to a torus lying in the yz plane (axis x), e.g. a teapot handle."""
    q = p - _vec(centre, p)
    ring = q[:, [1, 2]].norm(dim=-1) - major
    return torch.stack([ring, q[:, 0]], dim=-1).norm(dim=-1) - minor


def round_cone(p: Tensor, a: Vec3, b: Vec3, radius_a: float, radius_b: float) -> Tensor:
    """Exact distance to the convex hull of a sphere at ``a`` and a sphere at ``b`` (a tapered capsule)."""
    a_, b_ = _vec(a, p), _vec(b, p)
    ba = b_ - a_
    l2 = float(ba.dot(ba))
    rr = radius_a - radius_b
    a2 = l2 - rr * rr
    pa = p - a_
    y = pa @ ba
    z = y - l2
    x2 = (pa * l2 - y[:, None] * ba).square().sum(-1)
    y2, z2 = y * y * l2, z * z * l2
    k = math.copysign(1.0, rr) * rr * rr * x2
    cap_b = (x2 + z2).sqrt() / l2 - radius_b
    cap_a = (x2 + y2).sqrt() / l2 - radius_a
    side = ((x2 * a2 / l2).clamp_min(0.0).sqrt() + y * rr) / l2 - radius_a
    return torch.where(torch.sign(z) * a2 * z2 > k, cap_b, torch.where(torch.sign(y) * a2 * y2 < k, cap_a, side))


def cut_below(d: Tensor, p: Tensor, height: float) -> Tensor:
    """Keep only the part of a shape with y >= ``height`` (intersection with a half-space)."""
    return torch.maximum(d, height - p[:, 1])


def cut_above(d: Tensor, p: Tensor, height: float) -> Tensor:
    """Keep only the part of a shape with y <= ``height``."""
    return torch.maximum(d, p[:, 1] - height)


def smooth_union(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Polynomial smooth minimum: blends two shapes over a fillet of width ``k``."""
    h = (k - (a - b).abs()).clamp_min(0.0) / k
    return torch.minimum(a, b) - h * h * k * 0.25


def rotate_y(p: Tensor, degrees: float) -> Tensor:
    """Express points in a frame rotated by ``degrees`` about +y (apply to p before a primitive)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    x, y, z = p.unbind(-1)
    return torch.stack([c * x - s * z, y, s * x + c * z], dim=-1)
