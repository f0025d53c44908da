import math

import pytest
import torch
from scipy import stats

from dreamfusion import cameras as C


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_poses_are_proper_rotations_looking_at_the_target():
    sampler = C.OrbitSampler(C.OrbitConfig(jitter_pose=False))
    batch = sampler.sample(64, 8, 8, generator=_gen())
    rot = batch.c2w[:, :3, :3]
    eye = torch.eye(3).expand_as(rot)
    assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-5)
    assert torch.allclose(torch.det(rot), torch.ones(64), atol=1e-5)
    centre = batch.c2w[:, :3, 3]
    viewing = -rot[:, :, 2]  # the camera looks along -back
    assert torch.allclose(viewing, torch.nn.functional.normalize(-centre, dim=-1), atol=1e-5)
    # up has a positive world-y component for cameras away from the poles
    assert (rot[:, 1, 1] > 0).all()


def test_sampled_angles_and_radius_match_the_pose_and_lie_in_range():
    config = C.OrbitConfig(radius_range=(2.0, 2.5), theta_range=(60, 80), phi_range=(-40, 40), fovy_range=(15, 25))
    batch = C.OrbitSampler(config).sample(200, 4, 4, generator=_gen(1))
    polar, azimuth, radius = C.position_to_spherical(batch.c2w[:, :3, 3])
    assert torch.allclose(polar, batch.polar, atol=1e-3) and torch.allclose(azimuth, batch.azimuth, atol=1e-3)
    assert torch.allclose(radius, batch.radius, atol=1e-5)
    assert (batch.radius >= 2.0).all() and (batch.radius <= 2.5).all()
    assert (batch.polar >= 60).all() and (batch.polar <= 80).all()
    assert (batch.azimuth >= -40).all() and (batch.azimuth <= 40).all()
    assert batch.fovy.unique().numel() == 1 and 15 <= batch.fovy[0] <= 25  # one field of view per batch


def test_front_camera_position_and_axes():
    position = C.spherical_to_position(torch.tensor(90.0), torch.tensor(0.0), torch.tensor(3.0))
    assert torch.allclose(position, torch.tensor([0.0, 0.0, 3.0]), atol=1e-6)
    position = C.spherical_to_position(torch.tensor(90.0), torch.tensor(90.0), torch.tensor(2.0))
    assert torch.allclose(position, torch.tensor([2.0, 0.0, 0.0]), atol=1e-6)
    position = C.spherical_to_position(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.5))
    assert torch.allclose(position, torch.tensor([0.0, 1.5, 0.0]), atol=1e-6)


def test_rays_start_at_camera_centres_and_the_central_ray_hits_the_origin():
    batch = C.OrbitSampler(C.OrbitConfig()).sample(5, 3, 3, generator=_gen(2))
    rays_o, rays_d = batch.rays()
    assert torch.allclose(rays_o, batch.c2w[:, None, :3, 3].expand_as(rays_o))
    centre_ray = rays_d[:, 4]  # pixel (1, 1) of a 3x3 image sits on the optical axis
    # planar depth: origin reached at t = radius exactly
    assert torch.allclose(rays_o[:, 4] + batch.radius[:, None] * centre_ray, torch.zeros(5, 3), atol=1e-5)
    # every camera-space direction has z = -1 (t is depth along the optical axis)
    d_cam = rays_d @ batch.c2w[:, :3, :3]
    assert torch.allclose(d_cam[..., 2], -torch.ones(5, 9), atol=1e-5)


def test_image_is_not_mirrored():
    # Camera on +z looking at the origin: image right is world +x, image top is world +y.
    config = C.OrbitConfig()
    batch = C.make_batch(config, torch.tensor([90.0]), torch.tensor([0.0]), torch.tensor([3.0]), torch.tensor([40.0]), 4, 4)
    _, rays_d = batch.rays()
    grid = rays_d.view(4, 4, 3)
    assert grid[1, 3, 0] > 0 > grid[1, 0, 0]  # right column points to +x
    assert grid[0, 1, 1] > 0 > grid[3, 1, 1]  # top row points to +y


def test_intrinsics_and_projection_agree_with_rays():
    intrinsics = C.intrinsics_from_fovy(90.0, 64, 48)
    assert torch.allclose(intrinsics, torch.tensor([32.0, 32.0, 24.0, 32.0]))
    batch = C.OrbitSampler(C.OrbitConfig()).sample(3, 16, 12, generator=_gen(3))
    rays_o, rays_d = batch.rays()
    pixel = 5 * 12 + 7  # row 5, column 7
    point = rays_o[:, pixel] + 2.5 * rays_d[:, pixel]
    clip = (batch.mvp() @ torch.cat([point, torch.ones(3, 1)], -1)[..., None])[..., 0]
    ndc = clip[:, :2] / clip[:, 3:]
    column = (ndc[:, 0] + 1) / 2 * 12
    row = (1 - ndc[:, 1]) / 2 * 16  # NDC +y is the image top
    assert torch.allclose(column, torch.full((3,), 7.5), atol=1e-3)
    assert torch.allclose(row, torch.full((3,), 5.5), atol=1e-3)


@pytest.mark.parametrize(
    "polar, azimuth, expected",
    [(90, 0, 0), (90, 29.9, 0), (90, -30, 0), (90, 30, 1), (90, 149.9, 1), (90, 150, 2), (90, 180, 2),
     (90, -180, 2), (90, 209.9, 2), (90, 210, 3), (90, -150.1, 2), (90, -150, 3), (90, -30.1, 3), (90, 330, 0),
     (30, 0, 4), (10, 180, 4), (30.1, 0, 0), (150, 90, 5), (149.9, 90, 1), (179, 0, 5)],
)
def test_view_direction_classes_match_the_spec_table(polar, azimuth, expected):
    result = C.view_direction_class(torch.tensor([float(polar)]), torch.tensor([float(azimuth)]))
    assert result.item() == expected


def test_view_classes_follow_angle_front_and_overhead():
    result = C.view_direction_class(torch.tensor([90.0, 90.0, 40.0]), torch.tensor([40.0, 50.0, 0.0]), angle_overhead=45, angle_front=90)
    assert result.tolist() == [0, 1, 4]


def test_zero123_conversion_round_trips_and_keeps_angles():
    polar = torch.tensor([90.0, 45.0, 120.0, 10.0])
    azimuth = torch.tensor([0.0, 90.0, -135.0, 170.0])
    radius = torch.tensor([3.2, 3.0, 3.5, 2.0])
    ours = C.spherical_to_position(polar, azimuth, radius)
    theirs = C.to_zero123_world(ours)
    z_polar, z_azimuth, z_radius = C.zero123_spherical(theirs)
    # Zero123's own formula from its angles gives back the same z-up point.
    t, p = torch.deg2rad(z_polar), torch.deg2rad(z_azimuth)
    rebuilt = torch.stack([z_radius * torch.sin(t) * torch.cos(p), z_radius * torch.sin(t) * torch.sin(p), z_radius * torch.cos(t)], -1)
    assert torch.allclose(rebuilt, theirs, atol=1e-5)
    assert torch.allclose(z_polar, polar, atol=1e-4)
    assert torch.allclose(C.wrap_degrees(z_azimuth), C.wrap_degrees(azimuth), atol=1e-4)
    back = C.position_to_spherical(theirs[..., [1, 2, 0]])
    assert torch.allclose(back[0], polar, atol=1e-4) and torch.allclose(back[2], radius, atol=1e-5)
    # the axis map is a proper rotation
    perm = C.to_zero123_world(torch.eye(3))
    assert torch.det(perm).item() == pytest.approx(1.0)


def test_zero123_deltas_sign_and_wrap():
    d_polar, d_azimuth, d_radius = C.zero123_deltas(torch.tensor([60.0, 90.0]), torch.tensor([90.0, -170.0]),
                                                    torch.tensor([3.0, 3.2]), 90.0, 170.0, 3.2)
    assert d_polar.tolist() == pytest.approx([-30.0, 0.0])
    assert d_azimuth.tolist() == pytest.approx([-80.0, 20.0])  # -170 - 170 = -340 -> +20
    assert d_radius.tolist() == pytest.approx([-0.2, 0.0], abs=1e-6)


def test_uniform_sphere_rate_samples_the_upper_hemisphere_uniformly():
    sampler = C.OrbitSampler(C.OrbitConfig(uniform_sphere_rate=1.0))
    batch = sampler.sample(20000, 1, 1, generator=_gen(4))
    cos_polar = torch.cos(torch.deg2rad(batch.polar)).numpy()
    assert stats.kstest(cos_polar, "uniform", args=(0, 1)).pvalue > 0.01  # uniform area on the hemisphere
    assert stats.kstest((batch.azimuth.numpy() + 180) / 360, "uniform").pvalue > 0.01
    # the same test rejects polar angles drawn uniformly (not area-uniform): it has power
    flat = C.OrbitSampler(C.OrbitConfig(theta_range=(0, 90))).sample(20000, 1, 1, generator=_gen(4))
    assert stats.kstest(torch.cos(torch.deg2rad(flat.polar)).numpy(), "uniform", args=(0, 1)).pvalue < 1e-6


def test_seeded_sampling_is_repeatable_and_jitter_moves_the_camera():
    config = C.OrbitConfig(jitter_pose=True)
    first = C.OrbitSampler(config).sample(4, 2, 2, generator=_gen(7))
    second = C.OrbitSampler(config).sample(4, 2, 2, generator=_gen(7))
    assert torch.equal(first.c2w, second.c2w)
    plain = C.spherical_to_position(first.polar, first.azimuth, first.radius)
    offset = (first.c2w[:, :3, 3] - plain).abs()
    assert (offset <= 0.1 + 1e-6).all() and offset.max() > 0.0  # U(-0.1, 0.1) per component
    rot = first.c2w[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand_as(rot), atol=1e-5)


def test_progressive_ranges_grow_from_the_default_view():
    config = C.OrbitConfig()
    start = C.progressive_ranges(config, 0.0, 0.2)
    assert start.phi_range == pytest.approx((-36.0, 36.0))
    assert start.theta_range == pytest.approx((90 * 0.8 + 45 * 0.2, 90 * 0.8 + 105 * 0.2))
    assert start.radius_range == pytest.approx((3.2 * 0.8 + 0.6, 3.2 * 0.8 + 0.7))
    middle = C.progressive_ranges(config, 0.1, 0.2)
    assert middle.phi_range == pytest.approx((-72.0, 72.0))
    assert C.progressive_ranges(config, 0.4, 0.2).phi_range == pytest.approx((-180.0, 180.0))
    assert C.progressive_ranges(config, 0.9, 0.2).fovy_range == pytest.approx((10.0, 30.0))


def test_circle_and_six_views():
    config = C.OrbitConfig()
    circle = C.circle_poses(config, 4, 8, 8)
    centres = circle.c2w[:, :3, 3]
    expected = torch.tensor([[0, 0, 3.2], [3.2, 0, 0], [0, 0, -3.2], [-3.2, 0, 0]])
    assert torch.allclose(centres, expected, atol=1e-5)
    assert circle.direction.tolist() == [0, 1, 2, 3]
    six = C.six_view_poses(config, 8, 8)
    assert torch.allclose(six.c2w[4, :3, 3], torch.tensor([0.0, 3.2, 0.0]), atol=1e-3)
    assert torch.allclose(six.c2w[5, :3, 3], torch.tensor([0.0, -3.2, 0.0]), atol=1e-3)
    assert six.direction.tolist() == [0, 1, 2, 3, 4, 5]
    rot = six.c2w[:, :3, :3]
    assert torch.isfinite(rot).all() and torch.allclose(torch.det(rot), torch.ones(6), atol=1e-4)


def test_look_at_straight_down_is_a_valid_frame():
    c2w = C.look_at(torch.tensor([[0.0, 2.0, 0.0]]))
    rot = c2w[0, :3, :3]
    assert torch.allclose(rot.T @ rot, torch.eye(3), atol=1e-6)
    assert torch.allclose(-rot[:, 2], torch.tensor([0.0, -1.0, 0.0]))
    assert math.isclose(torch.det(rot).item(), 1.0, abs_tol=1e-6)


def test_framing_fovy_sees_the_sphere_exactly():
    fovy = C.framing_fovy(3.2, 1.0)
    assert fovy == pytest.approx(2 * math.degrees(math.asin(1 / 3.2)))
    assert C.framed_extent(3.2, fovy) == pytest.approx(1.0)
    # A ray at the edge of the image is tangent to the sphere: closest approach to the origin = 1.
    batch = C.make_batch(C.OrbitConfig(), torch.tensor([90.0]), torch.tensor([0.0]), torch.tensor([3.2]),
                         torch.tensor([fovy]), 64, 64)
    o, d = batch.rays()
    d = torch.nn.functional.normalize(d[0].reshape(64, 64, 3)[32, 0], dim=0)  # left edge, middle row
    closest = (o[0, 0] - (o[0, 0] @ d) * d).norm()
    assert closest == pytest.approx(1.0, abs=0.03)  # pixel centres sit half a pixel inside the edge
    with pytest.raises(ValueError):
        C.framing_fovy(1.0, 1.0)


def test_camera_light_is_raised_from_the_camera_side():
    batch = C.make_batch(C.OrbitConfig(), torch.tensor([90.0, 60.0]), torch.tensor([0.0, 135.0]),
                         torch.tensor([3.2, 3.2]), torch.tensor([40.0, 40.0]), 8, 8)
    light = C.camera_light(batch.c2w)
    torch.testing.assert_close(light.norm(dim=-1), torch.ones(2))
    back, up = batch.c2w[:, :3, 2], batch.c2w[:, :3, 1]
    cos30 = math.cos(math.radians(30))
    torch.testing.assert_close((light * back).sum(-1), torch.full((2,), cos30))  # 30° off the view axis...
    torch.testing.assert_close((light * up).sum(-1), torch.full((2,), 0.5))      # ...towards the image's top
    torch.testing.assert_close(light[0], torch.tensor([0.0, 0.5, cos30]))        # front camera: from +z, raised
