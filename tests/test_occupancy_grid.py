"""Occupancy grid: EMA update and threshold, checkpoint state, marching, agreement with run."""

import math

import pytest
import torch
from analytic_scenes import AnalyticField, cached_fit, orbit_rays, sphere_field

from dreamfusion.occupancy_grid import OccupancyGrid, composite_packed, march
from dreamfusion.renderers import RenderConfig, VolumeRenderer


def constant_field(value):
    return lambda x: {"sigma": torch.full((x.shape[0],), float(value))}


def test_cell_centres_and_indices():
    grid = OccupancyGrid(bound=2.0, resolution=8)
    centres = grid.cell_centres()
    assert centres[0].tolist() == [-1.75, -1.75, -1.75] and centres[-1].tolist() == [1.75, 1.75, 1.75]
    assert torch.equal(grid.cell_index(centres), torch.arange(8**3))


def test_ema_update_threshold_and_bits():
    grid = OccupancyGrid(bound=1.0, resolution=16, density_thresh=10.0, decay=0.95)
    sphere = sphere_field(0.5, 50.0)
    grid.update(sphere.density)
    inside = grid.density_grid == 50.0
    assert torch.all((grid.density_grid == 0) | inside)
    # the jittered centre of every cell well inside the sphere is inside
    assert inside[grid.cell_centres().norm(dim=-1) < 0.5 - 0.11].all()
    assert grid.mean_density.item() == pytest.approx(grid.density_grid.mean().item())
    assert grid.threshold == pytest.approx(min(grid.mean_density.item(), 10.0))
    assert torch.equal(grid.occupied, grid.density_grid > grid.threshold)
    before = grid.density_grid.clone()
    grid.update(constant_field(1.0))  # max(0.95 * old, 1)
    torch.testing.assert_close(grid.density_grid, torch.maximum(before * 0.95, torch.ones_like(before)))
    assert grid.iterations == 2
    grid.update(constant_field(100.0))  # mean 100 > density_thresh: threshold = 10
    assert grid.threshold == 10.0 and grid.occupied.all()


def test_state_goes_into_checkpoints():
    renderer = VolumeRenderer(sphere_field(0.4, 30.0), RenderConfig(cuda_ray=True, grid_size=32))
    renderer.update_occupancy(0)
    state = renderer.state_dict()
    assert {"occupancy.density_grid", "occupancy.occupied", "occupancy.mean_density", "occupancy.iteration_count"} <= set(state)
    fresh = VolumeRenderer(sphere_field(0.4, 30.0), RenderConfig(cuda_ray=True, grid_size=32))
    fresh.load_state_dict(state)
    assert fresh.occupancy.iterations == 1 and fresh.occupancy.mean_density == renderer.occupancy.mean_density
    rays = orbit_rays([90.0], [0.0], size=8)
    with torch.no_grad():
        torch.testing.assert_close(fresh(*rays)["image"], renderer(*rays)["image"])


def test_update_interval():
    renderer = VolumeRenderer(sphere_field(), RenderConfig(cuda_ray=True, grid_size=16, update_extra_interval=4))
    assert [renderer.update_occupancy(step) for step in range(6)] == [True, False, False, False, True, False]
    assert VolumeRenderer(sphere_field(), RenderConfig()).update_occupancy(0) is False  # no grid without cuda_ray


def test_march_emits_samples_only_in_occupied_cells():
    grid = OccupancyGrid(bound=1.0, resolution=40)
    slab = AnalyticField(lambda x: torch.where(x[:, 2].abs() < 0.2, 5.0, 0.0), lambda x: torch.ones(x.shape[0], 3))
    grid.update(slab.density)
    rays_o = torch.tensor([[0.0, 0.0, 3.0], [0.3, 0.1, 3.0], [0.0, 3.0, 3.0]])
    rays_d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.1, -1.0], [0.0, 0.0, -1.0]])  # last one misses
    ray_index, t, dt, xyzs, dirs, d_len = march(grid, rays_o, rays_d, max_steps=1024)
    dt_min = 2 * math.sqrt(3) / 1024
    assert torch.allclose(dt, torch.full_like(dt, dt_min))
    assert (xyzs[:, 2].abs() < 0.2 + 1e-4).all()
    assert torch.equal(ray_index, torch.sort(ray_index).values) and not (ray_index == 2).any()
    for r in range(2):
        ts = t[ray_index == r]
        assert (ts[1:] > ts[:-1]).all()
        path = 0.4 * d_len[r].item()  # metric length through the slab
        assert abs(ts.numel() - path / dt_min) <= 2


def test_packed_compositing_with_early_termination():
    sigma = torch.tensor([1.0, 2.0, 1000.0, 5.0, 0.5, 0.5])
    dt = torch.full((6,), 0.1)
    ray = torch.tensor([0, 0, 0, 0, 2, 2])
    w, T_end, reached = composite_packed(sigma, dt, ray, 3, T_thresh=1e-4)
    a = 1 - torch.exp(-sigma * 0.1)
    T = [1.0, math.exp(-0.1), math.exp(-0.3)]
    torch.testing.assert_close(w[:3], torch.tensor([a[0] * T[0], a[1] * T[1], a[2] * T[2]]))
    assert w[3] == 0 and reached.tolist() == [True, True, True, False, True, True]  # exp(-100.3) < 1e-4
    torch.testing.assert_close(w[4:], torch.tensor([a[4], a[5] * math.exp(-0.05)]))
    assert T_end[1] == 1.0 and T_end[2].item() == pytest.approx(math.exp(-0.1))


def test_inference_loop_matches_training_compositing():
    renderer = VolumeRenderer(sphere_field(0.5, 40.0), RenderConfig(cuda_ray=True, grid_size=32))
    renderer.update_occupancy(0)
    rays = orbit_rays([70.0], [20.0], size=16)
    light = torch.tensor([0.0, 0.0, 1.0])
    with torch.no_grad():
        infer = renderer(*rays, light_d=light, shading="lambertian", ambient_ratio=0.2)
    train = renderer(*rays, light_d=light, shading="lambertian", ambient_ratio=0.2)  # grad mode: one pass
    for key in ("image", "depth", "weights_sum", "normal_image"):
        torch.testing.assert_close(infer[key], train[key], atol=2e-4, rtol=0)


@pytest.fixture(scope="module")
def trained():
    psnr, field, held_out = cached_fit()
    return field, held_out


def test_fast_path_agrees_with_run_on_trained_field(trained):
    field, held_out = trained
    """The fast path skips cells below min(mean density, 10) by design, which the naive path integrates
    (the soft edge of the learned surface), so the two agree to ~32 dB, not exactly; a field the
    fast path got wrong (e.g. a missing or shifted object) would be far below 28 dB."""
    naive = VolumeRenderer(field, RenderConfig())
    fast = VolumeRenderer(field, RenderConfig(cuda_ray=True, grid_size=64))  # 64^3: 8x cheaper updates
    for step in range(4):
        fast.update_occupancy(step * 16)
    occupied = fast.occupancy.occupied.float().mean().item()
    assert 0.02 < occupied < 0.5  # the sphere, not the whole cube
    with torch.no_grad():
        a, b = naive(*held_out), fast(*held_out)
    psnr = -10 * math.log10(((a["image"] - b["image"]) ** 2).mean().item())
    assert psnr > 28.0, psnr
    assert (a["weights_sum"] - b["weights_sum"]).abs().mean() < 0.03
    covered = (a["weights_sum"] > 0.99) & (b["weights_sum"] > 0.99)
    assert (a["depth"] - b["depth"])[covered].abs().mean() < 0.02


@pytest.mark.parametrize("shading", ["albedo", "lambertian"])
def test_two_pass_training_matches_evaluating_every_sample(shading):
    """Training marches on density alone without autograd, then shades only the samples early
    termination keeps, in one call; image and gradients must equal those of shading and compositing
    every marched sample (for 'lambertian' also through the finite-difference normals)."""
    from dreamfusion.fields import FieldConfig, NeRFField

    torch.manual_seed(0)
    field = NeRFField(FieldConfig(num_levels=4, base_resolution=8, desired_resolution=64, log2_hashmap_size=12, bg_radius=-1))
    renderer = VolumeRenderer(field, RenderConfig(cuda_ray=True, grid_size=32))
    renderer.update_occupancy(0)  # fresh field: the density blob (e^5 at the centre) is occupied
    rays_o, rays_d = orbit_rays([90.0], [0.0], size=8)
    light = torch.tensor([0.3, 0.5, 0.8])
    light = light / light.norm()
    out = renderer(rays_o, rays_d, light_d=light, shading=shading, ambient_ratio=0.2, bg_color=0.0)
    (out["image"] ** 2).sum().backward()
    fast_grad = field.encoder.embeddings.grad.clone()
    field.zero_grad()

    # (the renderer caps the samples per ray at run's num_steps + upsample_steps, 96)
    ray_index, t, dt, xyzs, dirs, d_len = march(renderer.occupancy, rays_o[0], rays_d[0], max_steps=1024, min_near=0.01,
                                                max_samples=96)
    sigma, rgb, _ = field(xyzs, dirs[ray_index], light, ambient_ratio=0.2, shading=shading)
    weights, _, reached = composite_packed(sigma, dt, ray_index, 64, 1e-4)
    assert not reached.all()  # some samples lie behind the opaque core
    image = torch.zeros(64, 3).index_add(0, ray_index, weights[:, None] * rgb)
    torch.testing.assert_close(out["image"][0], image, atol=1e-5, rtol=1e-5)
    (image**2).sum().backward()
    torch.testing.assert_close(fast_grad, field.encoder.embeddings.grad, atol=1e-6, rtol=1e-4)


def test_rays_that_miss_everything():
    renderer = VolumeRenderer(sphere_field(0.3, 30.0), RenderConfig(cuda_ray=True, grid_size=16))
    renderer.update_occupancy(0)
    rays_o = torch.tensor([[[0.0, 5.0, 3.0], [0.0, 0.9, 3.0]]])  # misses the cube; crosses only empty cells
    rays_d = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]]])
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            out = renderer(rays_o, rays_d, shading="lambertian", need_orient_loss=True, bg_color=0.5)
        assert out["weights_sum"].abs().max() == 0 and torch.allclose(out["image"], torch.full((1, 2, 3), 0.5))
        assert out["weights"].numel() == 0
