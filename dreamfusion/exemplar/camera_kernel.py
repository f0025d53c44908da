"""Camera conditioning of the exemplar prior: how much each exemplar view counts for a render, by how
close its camera is to the render's (the analogue of MVDream's or Zero123's pose conditioning).

Two cameras are compared by the angle between their directions from the origin and by the log-ratio
of the object's apparent size (∝ 1 / (radius · tan(fovy/2))):

    d² = (angle / σ_angle)² + (ln(size ratio) / σ_size)²,    weight ∝ exp(-d²/2) where d <= 2

The widths are fixed by the exemplar set, not tuned: σ_angle is the mean spacing of the exemplar
directions, sqrt(Ω·L/N) for N cameras over the solid angle Ω of their polar/azimuth ranges in L
size layers (L = round(N^(1/3)) when the radius or fovy varies, else 1), and σ_size is the spacing
of the layers (a fixed 5 % when all exemplars share one size). A window of two widths then holds
about 4π ≈ 12 exemplars wherever the render is: the prior mixes a dozen nearby poses, and SDS has
to turn them into one 3D object. Narrowed to nothing it would hand back the one posed ground-truth
image (a lookup, which would prove nothing about SDS); widened to everything it is the plain
unconditional mixture of all views. For a render outside the exemplar ranges, whose nearest
exemplar is farther than one width, distances are shifted to put that exemplar at one width, so the
window is never empty.

Example::

    kernel = CameraKernel.from_config(ExemplarViewConfig(count=384, polar_range=(30, 150)))
    kernel.angle_deg                                          # 9.6
    w = kernel.weights(exemplar_cams, polar, azimuth, radius, fovy)   # [B, V], rows sum to 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamfusion.cameras import spherical_to_position

FIXED_SIZE_WIDTH = 0.05
"""σ_size when every exemplar has the same apparent size: a 5 % change is one width."""


def apparent_size(radius: Tensor, fovy: Tensor) -> Tensor:
    """log of the object's size in the image, up to a constant: -ln(radius · tan(fovy / 2))."""
    return -torch.log(torch.as_tensor(radius).double() * torch.tan(torch.deg2rad(torch.as_tensor(fovy).double()) / 2))


@dataclass(frozen=True)
class CameraKernel:
    """Gaussian window over exemplar cameras (see the module docstring). Widths in degrees and in
    log-size units; ``cutoff`` in widths."""

    angle_deg: float
    size_width: float
    cutoff: float = 2.0

    @classmethod
    def from_config(cls, config) -> "CameraKernel":
        """Widths from an :class:`~dreamfusion.exemplar.views.ExemplarViewConfig`'s spacing."""
        (p0, p1), (a0, a1) = config.polar_range, config.azimuth_range
        solid_angle = math.radians(a1 - a0) * (math.cos(math.radians(p0)) - math.cos(math.radians(p1)))
        sizes = apparent_size(torch.tensor([config.radius_range[0], config.radius_range[1]] * 2),
                              torch.tensor([config.fovy_range[0]] * 2 + [config.fovy_range[1]] * 2))
        size_range = float(sizes.max() - sizes.min())
        layers = max(1, round(config.count ** (1 / 3))) if size_range > 1e-6 else 1
        angle = math.degrees(math.sqrt(max(solid_angle, 1e-6) * layers / max(config.count, 1)))
        return cls(angle_deg=angle, size_width=size_range / layers if layers > 1 else FIXED_SIZE_WIDTH)

    def distances(self, cameras, polar: Tensor, azimuth: Tensor, radius: Tensor, fovy: Tensor) -> Tensor:
        """Normalised distances d [B, V] from B render cameras to the V exemplar ``cameras``."""
        ex = spherical_to_position(cameras.polar.double(), cameras.azimuth.double(), torch.ones(len(cameras)).double())
        to = spherical_to_position(polar.double(), azimuth.double(), torch.ones_like(polar).double())
        angle = torch.rad2deg(torch.acos((to @ ex.T).clamp(-1.0, 1.0)))  # [B, V]
        size = apparent_size(radius, fovy)[:, None] - apparent_size(cameras.radius, cameras.fovy)[None]
        return torch.sqrt((angle / self.angle_deg) ** 2 + (size / self.size_width) ** 2)

    def weights(self, cameras, polar: Tensor, azimuth: Tensor, radius: Tensor, fovy: Tensor) -> Tensor:
        """Window weights [B, V] (rows sum to 1) of the exemplars for B render cameras."""
        d = self.distances(cameras, polar, azimuth, radius, fovy)
        # Outside the exemplar ranges (nearest farther than one width): move the nearest to one width.
        d = d - (d.min(dim=1, keepdim=True).values - 1.0).clamp_min(0.0)
        w = torch.exp(-0.5 * d**2) * (d <= self.cutoff)
        return (w / w.sum(1, keepdim=True)).float()
