"""Cameras: orbit poses around the origin, rays, view classes and the Zero123 angle convention.

Axes (the one definition every module follows)
----------------------------------------------
World frame is right-handed with **+y up**. A camera on the sphere of radius ``r`` is placed by its
polar angle ``θ`` (degrees from +y: 0 = top, 90 = equator, 180 = bottom) and azimuth ``φ`` (degrees,
0 on **+z, the "front"**, 90 on +x, increasing counter-clockwise seen from above):

    centre = r · (sin θ sin φ,  cos θ,  sin θ cos φ)

The camera-to-world pose ``c2w`` [4, 4] has columns ``right, up, back, centre`` (OpenGL: the camera
looks along ``-back``), with ``back = normalize(centre - target)``, ``right = normalize(y × back)``,
``up = back × right``. The rotation is proper (det = +1). stable-dreamfusion builds a mirrored frame
(right = back × y, det = -1), so its renders are mirror images of the world; ours are not, which is
why our Zero123 azimuth delta has the opposite sign from theirs (see :func:`zero123_deltas`).

Pixel (i, j) with j = 0 at the top has camera-space direction ``((i+.5-cx)/fx, -(j+.5-cy)/fy, -1)``,
not normalised, so the ray parameter ``t`` is planar depth along the optical axis.

Zero123 uses z-up axes with azimuth = atan2(Y, X). The proper rotation (X, Y, Z) = (z, x, y) maps our
frame onto theirs; under it their polar and azimuth equal our θ and φ, so only deltas are needed.

Example::

    sampler = OrbitSampler(OrbitConfig())
    batch = sampler.sample(4, generator=torch.Generator().manual_seed(0))
    rays_o, rays_d = get_rays(batch.c2w, batch.intrinsics, 64, 64)   # [4, 4096, 3] each
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

VIEW_NAMES = ("front", "side", "back", "side", "overhead", "bottom")
"""Names of the 6 view-direction classes (index = class id; 1 and 3 are both 'side')."""

WORLD_UP = (0.0, 1.0, 0.0)


# --------------------------------------------------------------------------------------------------
# Angles and poses
# --------------------------------------------------------------------------------------------------


def spherical_to_position(polar_deg: Tensor, azimuth_deg: Tensor, radius: Tensor) -> Tensor:
    """Camera centre(s) from angles in degrees. Inputs broadcast; returns [..., 3]."""
    theta, phi = torch.deg2rad(torch.as_tensor(polar_deg)), torch.deg2rad(torch.as_tensor(azimuth_deg))
    radius = torch.as_tensor(radius, dtype=theta.dtype)
    return torch.stack(
        [radius * torch.sin(theta) * torch.sin(phi), radius * torch.cos(theta), radius * torch.sin(theta) * torch.cos(phi)],
        dim=-1,
    )


def position_to_spherical(position: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`spherical_to_position`: [..., 3] -> polar, azimuth in [-180, 180), radius."""
    radius = position.norm(dim=-1)
    polar = torch.rad2deg(torch.acos((position[..., 1] / radius.clamp_min(1e-12)).clamp(-1, 1)))
    azimuth = wrap_degrees(torch.rad2deg(torch.atan2(position[..., 0], position[..., 2])))
    return polar, azimuth, radius


def wrap_degrees(angle: Tensor) -> Tensor:
    """Wrap angles to [-180, 180)."""
    return torch.remainder(angle + 180.0, 360.0) - 180.0


def look_at(centre: Tensor, target: Tensor | None = None, up_noise: Tensor | None = None) -> Tensor:
    """Camera-to-world poses looking from ``centre`` [B, 3] at ``target`` [B, 3] (default origin).

    ``up_noise`` [B, 3] perturbs the up vector (pose jitter). Returns c2w [B, 4, 4] with a proper
    rotation (det +1). A camera exactly above/below the target uses +z as the reference up instead.
    """
    centre = torch.as_tensor(centre, dtype=torch.float32)
    if target is None:
        target = torch.zeros_like(centre)
    back = torch.nn.functional.normalize(centre - target, dim=-1)
    world_up = torch.tensor(WORLD_UP, dtype=centre.dtype, device=centre.device).expand_as(back)
    right = torch.linalg.cross(world_up, back, dim=-1)
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6  # looking straight up or down
    alt_up = torch.tensor((0.0, 0.0, -1.0), dtype=centre.dtype, device=centre.device).expand_as(back)
    right = torch.where(degenerate, torch.linalg.cross(alt_up, back, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    up = torch.linalg.cross(back, right, dim=-1)
    if up_noise is not None:
        # Tilt the up vector, then re-orthonormalise so the frame stays a rotation.
        up = torch.nn.functional.normalize(up + up_noise, dim=-1)
        right = torch.nn.functional.normalize(torch.linalg.cross(up, back, dim=-1), dim=-1)
        up = torch.linalg.cross(back, right, dim=-1)
    c2w = torch.eye(4, dtype=centre.dtype, device=centre.device).repeat(centre.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, back, centre
    return c2w


def camera_light(c2w: Tensor, elevation_deg: float = 30.0) -> Tensor:
    """The light of a camera-attached key light, [B, 3] unit vectors pointing towards the light:
    from the camera's side, raised ``elevation_deg`` towards the camera's up vector. It depends
    only on the camera, so a prior that knows the camera knows the light (exemplar shading)."""
    back, up = c2w[:, :3, 2], c2w[:, :3, 1]
    e = math.radians(elevation_deg)
    return torch.nn.functional.normalize(back * math.cos(e) + up * math.sin(e), dim=-1)


def intrinsics_from_fovy(fovy_deg: Tensor | float, height: int, width: int) -> Tensor:
    """(fx, fy, cx, cy) [..., 4] for a vertical field of view in degrees; square pixels."""
    fovy = torch.as_tensor(fovy_deg, dtype=torch.float32)
    focal = height / (2.0 * torch.tan(torch.deg2rad(fovy) / 2.0))
    return torch.stack([focal, focal, torch.full_like(focal, width / 2.0), torch.full_like(focal, height / 2.0)], -1)


def framing_fovy(radius: float, extent: float) -> float:
    """Smallest vertical field of view (degrees) in which a camera at distance ``radius`` from the
    origin, looking at it, sees the whole sphere of radius ``extent`` around the origin (square
    images: the horizontal extent is the same). The sphere's outline subtends asin(extent/radius)."""
    if not 0 < extent < radius:
        raise ValueError(f"a sphere of radius {extent} cannot be framed from distance {radius}")
    return 2.0 * math.degrees(math.asin(extent / radius))


def framed_extent(radius: float, fovy: float) -> float:
    """Radius of the largest origin-centred sphere that a camera at ``radius`` with vertical field
    of view ``fovy`` (degrees, square image) sees whole: the inverse of :func:`framing_fovy`."""
    return radius * math.sin(math.radians(min(fovy, 180.0)) / 2.0)


def get_rays(c2w: Tensor, intrinsics: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Rays through pixel centres, in fp32.

    Args:
        c2w: [B, 4, 4] camera-to-world poses.
        intrinsics: [B, 4] or [4] (fx, fy, cx, cy).
    Returns:
        rays_o, rays_d: [B, H*W, 3]; ``rays_d`` has camera-space z = -1 (not normalised), pixels in
        row-major order from the top-left.
    """
    c2w = c2w.float()
    intrinsics = torch.as_tensor(intrinsics, dtype=torch.float32, device=c2w.device).expand(c2w.shape[0], 4)
    j, i = torch.meshgrid(
        torch.arange(height, device=c2w.device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=c2w.device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    fx, fy, cx, cy = (intrinsics[:, k, None] for k in range(4))
    x = (i.reshape(1, -1) - cx) / fx  # [B, HW]
    y = -(j.reshape(1, -1) - cy) / fy  # image rows go down, camera y goes up
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # [B, HW, 3]
    rays_d = d_cam @ c2w[:, :3, :3].transpose(1, 2)
    rays_o = c2w[:, None, :3, 3].expand_as(rays_d)
    return rays_o.contiguous(), rays_d.contiguous()


def projection_matrix(intrinsics: Tensor, height: int, width: int, near: float = 0.01, far: float = 1000.0) -> Tensor:
    """OpenGL clip-space projection [B, 4, 4] matching :func:`get_rays` (NDC +y = image top)."""
    intrinsics = torch.as_tensor(intrinsics, dtype=torch.float32).reshape(-1, 4)
    proj = torch.zeros(intrinsics.shape[0], 4, 4, dtype=torch.float32, device=intrinsics.device)
    proj[:, 0, 0] = 2 * intrinsics[:, 0] / width
    proj[:, 1, 1] = 2 * intrinsics[:, 1] / height
    proj[:, 0, 2] = 1 - 2 * intrinsics[:, 2] / width
    proj[:, 1, 2] = 2 * intrinsics[:, 3] / height - 1
    proj[:, 2, 2] = -(far + near) / (far - near)
    proj[:, 2, 3] = -2 * far * near / (far - near)
    proj[:, 3, 2] = -1
    return proj


# --------------------------------------------------------------------------------------------------
# View classes
# --------------------------------------------------------------------------------------------------


def view_direction_class(polar_deg: Tensor, azimuth_deg: Tensor, angle_overhead: float = 30.0, angle_front: float = 60.0) -> Tensor:
    """6-way view class [B] (long): 0 front, 1 side, 2 back, 3 side, 4 overhead, 5 bottom.

    Azimuth (any range) mod 360 in [-front/2, front/2) is front, [front/2, 180-front/2) side,
    [180-front/2, 180+front/2) back, the rest the other side; then polar <= angle_overhead is
    overhead and polar >= 180 - angle_overhead is bottom (those override the azimuth class).
    """
    polar, azimuth = torch.as_tensor(polar_deg, dtype=torch.float32), torch.as_tensor(azimuth_deg, dtype=torch.float32)
    phi = torch.remainder(azimuth + angle_front / 2.0, 360.0)  # the front sector starts at 0
    result = torch.full(phi.shape, 3, dtype=torch.long)  # other side: [180 + front, 360)
    result[phi < 180.0 + angle_front] = 2
    result[phi < 180.0] = 1
    result[phi < angle_front] = 0
    result[polar <= angle_overhead] = 4
    result[polar >= 180.0 - angle_overhead] = 5
    return result.to(polar.device)


# --------------------------------------------------------------------------------------------------
# Zero123
# --------------------------------------------------------------------------------------------------


def to_zero123_world(points: Tensor) -> Tensor:
    """Map points [..., 3] from this project's y-up frame to Zero123's z-up frame: (X,Y,Z) = (z,x,y)."""
    return points[..., [2, 0, 1]]


def zero123_spherical(points_zero123: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Zero123's own spherical coordinates of z-up points: polar from +Z, azimuth = atan2(Y, X) (deg)."""
    radius = points_zero123.norm(dim=-1)
    polar = torch.rad2deg(torch.acos((points_zero123[..., 2] / radius.clamp_min(1e-12)).clamp(-1, 1)))
    azimuth = torch.rad2deg(torch.atan2(points_zero123[..., 1], points_zero123[..., 0]))
    return polar, azimuth, radius


def zero123_deltas(
    polar: Tensor, azimuth: Tensor, radius: Tensor, ref_polar: float, ref_azimuth: float, ref_radius: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Relative camera (Δpolar, Δazimuth, Δradius) of a view w.r.t. a reference view, in Zero123's
    convention (degrees, Δazimuth wrapped to [-180, 180)).

    Under the axis map of :func:`to_zero123_world` Zero123's angles equal ours, and because our renders
    are not mirrored no sign flip is needed (stable-dreamfusion negates Δazimuth for its mirrored frame).
    """
    polar, azimuth, radius = (torch.as_tensor(v, dtype=torch.float32) for v in (polar, azimuth, radius))
    return polar - ref_polar, wrap_degrees(azimuth - ref_azimuth), radius - ref_radius


# --------------------------------------------------------------------------------------------------
# Camera batches and samplers
# --------------------------------------------------------------------------------------------------


@dataclass
class CameraBatch:
    """A batch of B cameras, all with the same image size and field of view.

    ``delta_*`` are relative to the default (reference) view: Δpolar, Δazimuth wrapped to
    [-180, 180), Δradius; ``direction`` is the 6-way view class.
    """

    c2w: Tensor  # [B, 4, 4]
    intrinsics: Tensor  # [B, 4]
    height: int
    width: int
    polar: Tensor  # [B] degrees
    azimuth: Tensor  # [B] degrees in [-180, 180)
    radius: Tensor  # [B]
    fovy: Tensor  # [B] degrees
    delta_polar: Tensor
    delta_azimuth: Tensor
    delta_radius: Tensor
    direction: Tensor  # [B] long

    def rays(self) -> tuple[Tensor, Tensor]:
        return get_rays(self.c2w, self.intrinsics, self.height, self.width)

    def mvp(self, near: float = 0.01, far: float = 1000.0) -> Tensor:
        """Model-view-projection [B, 4, 4] for rasterisers."""
        return projection_matrix(self.intrinsics, self.height, self.width, near, far) @ torch.linalg.inv(self.c2w)

    def to(self, device: torch.device | str) -> "CameraBatch":
        return replace(self, **{k: v.to(device) for k, v in vars(self).items() if isinstance(v, Tensor)})


@dataclass
class OrbitConfig:
    """Ranges and options of the random training cameras (stable-dreamfusion defaults)."""

    radius_range: tuple[float, float] = (3.0, 3.5)
    theta_range: tuple[float, float] = (45.0, 105.0)
    phi_range: tuple[float, float] = (-180.0, 180.0)
    fovy_range: tuple[float, float] = (10.0, 30.0)
    uniform_sphere_rate: float = 0.0
    jitter_pose: bool = False
    jitter_center: float = 0.2
    jitter_target: float = 0.2
    jitter_up: float = 0.02
    angle_overhead: float = 30.0
    angle_front: float = 60.0
    default_radius: float = 3.2
    default_polar: float = 90.0
    default_azimuth: float = 0.0
    default_fovy: float = 20.0


def progressive_ranges(config: OrbitConfig, progress: float, init_ratio: float = 0.2) -> OrbitConfig:
    """Grow camera ranges from the default view to the full ranges (``--progressive_view``).

    With k = min(1, init_ratio + 2·progress), each range [a, b] becomes
    [d(1-k) + a·k, d(1-k) + b·k] around its default d; the full range is reached at progress 0.4.
    """
    k = min(1.0, init_ratio + 2.0 * max(progress, 0.0))

    def grow(bounds: tuple[float, float], default: float) -> tuple[float, float]:
        return (default * (1 - k) + bounds[0] * k, default * (1 - k) + bounds[1] * k)

    return replace(
        config,
        radius_range=grow(config.radius_range, config.default_radius),
        theta_range=grow(config.theta_range, config.default_polar),
        phi_range=grow(config.phi_range, config.default_azimuth),
        fovy_range=grow(config.fovy_range, config.default_fovy),
    )


def _uniform(low: float, high: float, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def make_batch(config: OrbitConfig, polar: Tensor, azimuth: Tensor, radius: Tensor, fovy: Tensor, height: int, width: int,
               c2w: Tensor | None = None) -> CameraBatch:
    """Assemble a :class:`CameraBatch` from angles (degrees); poses look at the origin unless given."""
    polar, azimuth, radius, fovy = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in (polar, azimuth, radius, fovy))
    azimuth = wrap_degrees(azimuth)
    if c2w is None:
        c2w = look_at(spherical_to_position(polar, azimuth, radius))
    d_polar, d_azimuth, d_radius = zero123_deltas(polar, azimuth, radius, config.default_polar, config.default_azimuth, config.default_radius)
    return CameraBatch(
        c2w=c2w, intrinsics=intrinsics_from_fovy(fovy, height, width), height=height, width=width,
        polar=polar, azimuth=azimuth, radius=radius, fovy=fovy,
        delta_polar=d_polar, delta_azimuth=d_azimuth, delta_radius=d_radius,
        direction=view_direction_class(polar, azimuth, config.angle_overhead, config.angle_front),
    )


class OrbitSampler:
    """Random training cameras on a sphere around the origin (spec §3.6, with a proper frame)."""

    def __init__(self, config: OrbitConfig):
        self.config = config

    def sample(self, batch_size: int, height: int = 64, width: int = 64, *, generator: torch.Generator | None = None,
               config: OrbitConfig | None = None) -> CameraBatch:
        """Draw ``batch_size`` cameras. ``config`` overrides the ranges (progressive view)."""
        c = config or self.config
        radius = _uniform(*c.radius_range, (batch_size,), generator)
        if c.uniform_sphere_rate > 0 and torch.rand((), generator=generator).item() < c.uniform_sphere_rate:
            # Uniform directions on the upper hemisphere (y >= 0), as stable-dreamfusion does.
            u = torch.randn(batch_size, 3, generator=generator)
            u[:, 1] = u[:, 1].abs()
            u = torch.nn.functional.normalize(u, dim=-1)
            polar = torch.rad2deg(torch.acos(u[:, 1].clamp(-1, 1)))
            azimuth = torch.rad2deg(torch.atan2(u[:, 0], u[:, 2]))
        else:
            polar = _uniform(*c.theta_range, (batch_size,), generator)
            azimuth = _uniform(*c.phi_range, (batch_size,), generator)
        fovy = _uniform(*c.fovy_range, (1,), generator).expand(batch_size)
        centre = spherical_to_position(polar, azimuth, radius)
        target = torch.zeros_like(centre)
        up_noise = None
        if c.jitter_pose:
            centre = centre + (torch.rand(centre.shape, generator=generator) - 0.5) * c.jitter_center
            target = target + torch.randn(centre.shape, generator=generator) * c.jitter_target
            up_noise = torch.randn(centre.shape, generator=generator) * c.jitter_up
        c2w = look_at(centre, target, up_noise)
        return make_batch(c, polar, azimuth, radius, fovy, height, width, c2w=c2w)


def circle_poses(config: OrbitConfig, count: int, height: int, width: int, *, polar: float | None = None,
                 radius: float | None = None, fovy: float | None = None) -> CameraBatch:
    """``count`` cameras on a horizontal circle, φ = default_azimuth + 360·i/count (test video)."""
    azimuth = config.default_azimuth + 360.0 * torch.arange(count, dtype=torch.float32) / count
    full = lambda v, d: torch.full((count,), float(d if v is None else v))  # noqa: E731
    return make_batch(config, full(polar, config.default_polar), azimuth, full(radius, config.default_radius),
                      full(fovy, config.default_fovy), height, width)


SIX_VIEWS = (("front", 90.0, 0.0), ("side", 90.0, 90.0), ("back", 90.0, 180.0), ("other_side", 90.0, -90.0),
             ("top", 1e-3, 0.0), ("bottom", 179.999, 0.0))
"""(name, polar, azimuth) of the six fixed views, as in stable-dreamfusion."""


def six_view_poses(config: OrbitConfig, height: int, width: int) -> CameraBatch:
    """The six fixed views (front, side, back, other side, top, bottom) at the default radius/fovy."""
    polar = torch.tensor([v[1] for v in SIX_VIEWS])
    azimuth = torch.tensor([v[2] for v in SIX_VIEWS]) + config.default_azimuth
    return make_batch(config, polar, azimuth, torch.full((6,), config.default_radius), torch.full((6,), config.default_fovy), height, width)


def reference_poses(config: OrbitConfig, polars: list[float], azimuths: list[float], radii: list[float], height: int,
                    width: int) -> CameraBatch:
    """Known (reference-image) cameras at the default field of view."""
    n = len(polars)
    return make_batch(config, torch.tensor(polars), torch.tensor(azimuths), torch.tensor(radii), torch.full((n,), config.default_fovy), height, width)
