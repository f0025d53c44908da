"""The speed-ups of the speed issue agree with the paths they shortcut.

* sparse normals (``RenderConfig.normal_skip_weight``): finite-difference normals only at the samples
  that carry weight; the image moves by less than the budget the option states, the gradients keep
  their direction, and far fewer points go through the field;
* each sample's density is queried once (the coarse samples' values are reused, not recomputed);
* the occupancy-grid march restricted to the box of occupied cells gives the same samples as a
  march through the whole cube;
* the step profiler's sections add up and nest.
"""

from __future__ import annotations

import time

import pytest
import torch

from analytic_scenes import cached_fit, orbit_rays, sphere_field
from dreamfusion.occupancy_grid import OccupancyGrid, march
from dreamfusion.profiling import StepProfile, section
from dreamfusion.renderers import RenderConfig, VolumeRenderer
from dreamfusion.renderers.volume import composite, near_far_from_sphere, sample_pdf


def _count_points(field):
    """Wrap field.common_forward to count the points it evaluates; returns the counter list."""
    seen = []
    original = field.common_forward

    def counting(x):
        seen.append(x.shape[0])
        return original(x)

    field.common_forward = counting
    return seen


@pytest.mark.parametrize("shading", ["lambertian", "textureless", "normal"])
def test_sparse_normals_match_dense_within_the_stated_bound(shading):
    _, field, held_out = cached_fit()  # a grid field fitted to an opaque sphere: real empty space and surface
    rays_o, rays_d = (r[:1] for r in held_out)
    light = torch.nn.functional.normalize(torch.tensor([[0.3, 0.8, 0.5]]), dim=-1)
    outs, grads, points = {}, {}, {}
    budget = 1e-3
    for thresh in (0.0, budget):
        renderer = VolumeRenderer(field, RenderConfig(num_steps=16, upsample_steps=8, normal_skip_weight=thresh))
        seen = _count_points(field)
        field.zero_grad(set_to_none=True)
        out = renderer(rays_o, rays_d, light_d=light, ambient_ratio=0.2, shading=shading, bg_color=0.0,
                       need_orient_loss=True)
        (out["image"].square().sum() + out["loss_orient"]).backward()
        del field.common_forward  # back to the class method
        outs[thresh], points[thresh] = out, sum(seen)
        grads[thresh] = torch.cat([p.grad.reshape(-1) for p in field.parameters() if p.grad is not None])
    dense, sparse = outs[0.0], outs[budget]
    samples = 16 + 8
    # The skipped samples of a ray weigh at most the budget and their colours differ by at most 1.
    assert (sparse["image"] - dense["image"]).abs().max() <= budget
    torch.testing.assert_close(sparse["weights_sum"], dense["weights_sum"])  # density untouched
    torch.testing.assert_close(sparse["loss_orient"], dense["loss_orient"], atol=budget, rtol=0)
    cosine = torch.nn.functional.cosine_similarity(grads[0.0], grads[budget], dim=0)
    assert cosine > 0.999, cosine
    # Dense: 16 coarse samples for the pdf, then the centre and 6 offsets of all 24 samples.
    # Sparse: each sample once (16 coarse reused + 8 fine), plus 6 offsets per kept sample; a sample
    # above the budget is always kept, one below budget / 24 never.
    rays = rays_o.shape[1]
    assert points[0.0] == rays * 16 + 7 * rays * samples
    w = dense["weights"].detach()
    extra = points[budget] - rays * samples
    assert extra % 6 == 0
    assert (w > budget).sum().item() <= extra // 6 <= (w > budget / samples).sum().item()
    assert points[budget] < 0.55 * points[0.0], points


def test_sparse_normals_are_off_for_albedo_and_the_3d_smoothness_loss():
    _, field, held_out = cached_fit()
    rays_o, rays_d = (r[:1, :64] for r in held_out)
    renderer = VolumeRenderer(field, RenderConfig(num_steps=8, upsample_steps=0))
    seen = _count_points(field)
    try:
        renderer(rays_o, rays_d, shading="albedo")
        assert seen == [64 * 8]
        seen.clear()
        # the 3D normal smoothness compares normals at every sample: all of them are computed
        renderer(rays_o, rays_d, shading="lambertian", ambient_ratio=0.1, need_normal_perturb_loss=True)
        assert seen[0] == 7 * 64 * 8
        seen.clear()
        renderer(rays_o, rays_d, shading="lambertian", ambient_ratio=0.1)
        assert seen[0] == 64 * 8 and sum(seen) < 7 * 64 * 8
    finally:
        del field.common_forward


def test_coarse_samples_are_queried_once_and_agree_with_querying_every_sample_again():
    """A training render reuses the coarse samples' density and albedo (with their graph) instead of
    querying them a second time: each sample goes through the field once, and the image and the
    gradients equal those of querying all merged samples again in one batch (the old path)."""
    _, field, held_out = cached_fit()
    rays_o, rays_d = (r[:1, ::4] for r in held_out)
    rays = rays_o.shape[1]
    renderer = VolumeRenderer(field, RenderConfig(num_steps=16, upsample_steps=8))
    seen = _count_points(field)
    try:
        field.zero_grad(set_to_none=True)
        out = renderer(rays_o, rays_d, shading="albedo", bg_color=0.0)
        out["image"].square().sum().backward()
        assert seen == [rays * 16, rays * 8]
    finally:
        del field.common_forward
    grads = [p.grad.clone() for p in field.parameters()]

    # The old path, written out: coarse densities without graph -> pdf -> all 24 samples queried again.
    o, d = rays_o[0], rays_d[0]
    near, far = near_far_from_sphere(o, d, 1.0, renderer.config.min_near)
    near, far, d_len = near[:, None], far[:, None], d.norm(dim=-1, keepdim=True)
    z = near + (far - near) * torch.linspace(0, 1, 16)[None]
    dist = (far - near) / 16
    with torch.no_grad():
        sigma = field.density((o[:, None] + d[:, None] * z[..., None]).reshape(-1, 3))["sigma"].view(rays, 16)
        w = composite(sigma, torch.cat([z[:, 1:] - z[:, :-1], dist], -1) * d_len)
        new_z = sample_pdf(z[:, :-1] + 0.5 * (z[:, 1:] - z[:, :-1]), w[:, 1:-1], 8, det=True)
        z, _ = torch.sort(torch.cat([z, new_z], 1), dim=1)
    values = field.density((o[:, None] + d[:, None] * z[..., None]).clamp(-1, 1).reshape(-1, 3))
    weights = composite(values["sigma"].view(rays, 24), torch.cat([z[:, 1:] - z[:, :-1], dist], -1) * d_len)
    image = (weights[..., None] * values["albedo"].view(rays, 24, 3)).sum(1)
    torch.testing.assert_close(out["image"][0], image, atol=1e-5, rtol=1e-5)
    field.zero_grad(set_to_none=True)
    image.square().sum().backward()
    for new, old in zip(grads, (p.grad for p in field.parameters())):
        torch.testing.assert_close(new, old, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("perturb", [False, True])
def test_march_in_the_occupied_box_gives_the_samples_of_the_whole_cube(perturb):
    grid = OccupancyGrid(bound=1.0, resolution=32)
    grid.update(sphere_field(radius=0.3).density)
    assert 0 < grid.occupied.float().mean() < 0.05
    lo, hi = grid.box()
    # the box holds whole cells around the sphere: [-0.3, 0.3] grown to the cell lattice (1/16)
    torch.testing.assert_close(lo, torch.full((3,), -0.3125))
    torch.testing.assert_close(hi, torch.full((3,), 0.3125))
    rays_o, rays_d = orbit_rays([70.0, 120.0], [30.0, 250.0], size=24)
    o, d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
    runs = {}
    for whole_cube in (False, True):
        if whole_cube:  # a box as large as the cube: the march of the whole cube
            grid._box = (grid.occupied._version, torch.tensor([[-1.0] * 3, [1.0] * 3]))
        g = torch.Generator().manual_seed(3)
        runs[whole_cube] = march(grid, o, d, max_steps=512, perturb=perturb, generator=g)
    (ri_box, t_box, *_), (ri_cube, t_cube, *_) = runs[False], runs[True]
    assert ri_box.numel() > 0
    assert torch.equal(ri_box, ri_cube)
    torch.testing.assert_close(t_box, t_cube, atol=1e-5, rtol=0)
    # an in-place change to the occupancy invalidates the cached box
    grid.occupied.zero_()
    lo, hi = grid.box()
    assert bool((lo > hi).all())
    assert march(grid, o, d, max_steps=512)[0].numel() == 0


def test_profile_sections_nest_and_add_up():
    with StepProfile("cpu") as prof:
        for _ in range(2):
            with section("outer"):
                time.sleep(0.02)
                with section("inner"):
                    time.sleep(0.03)
    assert prof.calls == {"outer": 2, "outer/inner": 2}
    assert 0.1 <= prof.seconds["outer"] < 0.2
    assert 0.06 <= prof.seconds["outer/inner"] < prof.seconds["outer"]
    rows = {path: (ms, share) for path, ms, share in prof.rows(steps=2)}
    assert list(rows) == ["outer", "outer/inner", "outer/other", "other"]
    assert rows["outer"][0] == pytest.approx(1e3 * prof.seconds["outer"] / 2)
    assert rows["outer/inner"][0] + rows["outer/other"][0] == pytest.approx(rows["outer"][0])
    assert sum(share for path, (ms, share) in rows.items() if "/" not in path) == pytest.approx(1.0)
    assert "| · inner |" in prof.table(steps=2)
    with section("ignored"):  # no profile active: a no-op
        pass
    assert "ignored" not in prof.seconds


def test_hash_grid_blocks_of_points_give_the_same_encoding_and_gradient():
    from dreamfusion.encoders import HashGridEncoder

    torch.manual_seed(0)
    enc = HashGridEncoder(num_levels=6, base_resolution=4, desired_resolution=64, log2_hashmap_size=10, init_std=0.1)
    x = torch.rand(5000, 3) * 2 - 1
    results = []
    for block in (1 << 17, 777):  # one block, and many blocks with a ragged last one
        enc.block_points = block
        enc.zero_grad(set_to_none=True)
        out = enc(x)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        results.append((out.detach(), enc.embeddings.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-7, rtol=1e-5)  # summation order only
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=1e-5)
    assert results[0][1].abs().sum() > 0


def test_march_caps_the_samples_per_ray_and_keeps_the_optical_depth():
    """A ray crossing more occupied cells than max_samples keeps every k-th position with a k times
    longer step: no more samples than `run`, and the same optical depth through a uniform medium."""
    grid = OccupancyGrid(bound=1.0, resolution=16)
    grid.occupied.fill_(True)  # a uniform fog filling the cube
    o = torch.tensor([[0.0, 0.0, 3.0], [0.3, -0.2, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    full = march(grid, o, d, max_steps=1024)
    capped = march(grid, o, d, max_steps=1024, max_samples=96)
    for ray in range(2):
        n_full = (full[0] == ray).sum().item()
        n_capped = (capped[0] == ray).sum().item()
        assert n_full > 96 >= n_capped >= n_full // 8
        # optical depth of sigma = 1: the summed steps are the chord length (2) either way
        torch.testing.assert_close(capped[2][capped[0] == ray].sum(), full[2][full[0] == ray].sum(), atol=0.05, rtol=0)
    # below the cap nothing changes
    small = march(grid, o, d, max_steps=64, max_samples=96)
    plain = march(grid, o, d, max_steps=64)
    assert torch.equal(small[0], plain[0]) and torch.equal(small[2], plain[2])
