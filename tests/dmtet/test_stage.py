"""The DMTet stage's geometry and scene: mesh regularisers against closed forms, initialisation from
a density (with the export's clean-up) and from a mesh, rendering, and silhouette fitting through
marching tetrahedra + rasterizer + antialiasing."""

import math

import numpy as np
import pytest
import torch
import trimesh

from dreamfusion.activations import inverse_density_activation
from dreamfusion.cameras import make_batch
from dreamfusion.dmtet.geometry import (
    TetGeometry, crossing_scale, init_from_density, init_from_mesh, laplacian_loss, normal_consistency,
    vertex_normals,
)
from dreamfusion.dmtet.scene import DMTetScene
from dreamfusion.fields import FieldConfig, NeRFField
from dreamfusion.renderers.antialias import edge_neighbours


def test_mesh_regularisers_closed_forms():
    # Regular tetrahedron centred at the origin: every vertex has degree 3 and Σ neighbours = −v,
    # so deg·v − Σ v_j = 4v: the Laplacian loss is 4 × circumradius. Dihedral angle acos(1/3):
    # adjacent outward normals meet at cos = −1/3, so |1 − cos| = 4/3 on every edge.
    v = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    assert float(laplacian_loss(v, f)) == pytest.approx(4 * math.sqrt(3))
    assert float(laplacian_loss(v, f, edge_neighbours(f))) == pytest.approx(4 * math.sqrt(3))
    assert float(normal_consistency(v, f, edge_neighbours(f))) == pytest.approx(4 / 3)
    # A flat, finely split square has no normal change.
    flat = trimesh.creation.box(extents=(1, 1, 1e-9)).subdivide()
    top = torch.as_tensor(flat.faces[flat.face_normals[:, 2] > 0.5])
    verts = torch.as_tensor(flat.vertices)
    assert float(normal_consistency(verts, top, edge_neighbours(top))) == pytest.approx(0.0, abs=1e-9)
    # An open, irregular mesh: edges taken once from the neighbours (boundary edges included) give
    # the sorted-edge result exactly.
    sphere = trimesh.creation.icosphere(subdivisions=2)
    keep = sphere.vertices[sphere.faces].mean(1)[:, 2] < 0.4
    sv = torch.as_tensor(sphere.vertices) * torch.tensor([1.0, 0.7, 1.3], dtype=torch.float64)
    sf = torch.as_tensor(sphere.faces[keep])
    assert float(laplacian_loss(sv, sf, edge_neighbours(sf))) == pytest.approx(float(laplacian_loss(sv, sf)), rel=1e-12)


def test_vertex_normals_of_a_sphere_point_outwards():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    v, f = torch.as_tensor(sphere.vertices), torch.as_tensor(sphere.faces)
    n = vertex_normals(v, f)
    assert float((n * v).sum(1).min()) > 0.995


def sphere_density(radius=0.5, centre=(0.0, 0.0, 0.0), sigma=20.0):
    c = torch.tensor(centre)
    return lambda x: torch.where((x - c).norm(dim=-1) < radius, torch.full_like(x[:, 0], sigma), torch.zeros_like(x[:, 0]))


def radii(geometry):
    with torch.no_grad():
        vertices, faces = geometry.surface()
    return vertices.norm(dim=1), faces


def test_init_from_density_scales_the_grid_and_finds_the_sphere(tmp_path):
    geometry = TetGeometry(48, cache=tmp_path)  # 24 cells
    init_from_density(geometry, sphere_density(0.5), level=10.0, fill_hidden=False)
    cell = 2.0 / geometry.cells
    # tet_scale = the largest coordinate of a grid vertex inside the sphere + 0.1, per axis.
    expected = np.abs(np.linspace(-1, 1, geometry.cells + 1))
    expected = expected[expected < 0.5].max() + 0.1
    np.testing.assert_allclose(geometry.tet_scale.numpy(), expected, atol=1e-6)
    r, faces = radii(geometry)
    assert len(faces) > 100
    assert float((r - 0.5).abs().max()) < cell * expected  # the surface lies within a cell of r = 0.5


def test_init_from_density_regrids_an_elongated_object_with_cubic_cells_and_it_reloads(tmp_path):
    """An ellipsoid with half axes (0.8, 0.4, 0.2): stable-dreamfusion's per-axis tet_scale box,
    divided into cubic cells (about as many as the 24^3 cube grid: more along x, fewer along z);
    the surface lies within a cell of the ellipsoid; a fresh geometry takes the grid from the state
    dict, and a state dict saved before per-axis cells loads as the cube grid."""
    axes = torch.tensor([0.8, 0.4, 0.2])
    ellipsoid = lambda x: torch.where((x / axes).norm(dim=-1) < 1.0, 50.0, 0.0) + 0 * x[:, 0]  # noqa: E731
    geometry = TetGeometry(48, cache=tmp_path)
    init_from_density(geometry, ellipsoid, level=10.0, fill_hidden=False)
    shape = np.asarray(geometry.shape)
    side = 2 * geometry.tet_scale.numpy() / shape
    np.testing.assert_allclose(side, side[0], rtol=1e-5)
    assert shape[0] > 24 > shape[2] and abs(np.prod(shape) / 24 ** 3 - 1) < 0.05
    # the box: the largest inside vertex of the 24^3 start grid + 0.1 per axis, to within half a cell
    assert (np.abs(geometry.tet_scale.numpy() - (axes.numpy() + 0.1)) < side[0] / 2 + 2.0 / 24).all()
    with torch.no_grad():
        vertices, faces = geometry.surface()
    assert len(faces) > 100
    assert float(((vertices / axes).norm(dim=1) - 1).abs().mul(0.2).max()) < side[0]
    # along x, 0.6 times the cell of the cube grid stretched over the box (stable-dreamfusion's)
    assert float(side[0]) < 0.6 * 2 * float(geometry.tet_scale[0]) / 24

    again = TetGeometry(48, cache=tmp_path)
    again.load_state_dict(geometry.state_dict())
    assert again.shape == geometry.shape
    with torch.no_grad():
        assert torch.equal(again.surface()[1], faces) and torch.equal(again.surface()[0], vertices)
    old = {k: v for k, v in TetGeometry(48, cache=tmp_path).state_dict().items() if k != "cells_per_axis"}
    again.load_state_dict(old)
    assert again.shape == (24, 24, 24) and again.sdf.shape == (25 ** 3,)
    bad = dict(geometry.state_dict(), cells_per_axis=torch.tensor([0, 5, 5]))
    with pytest.raises(RuntimeError, match="cells_per_axis"):  # the trainer reports it as a checkpoint that does not fit
        again.load_state_dict(bad)


def test_init_places_the_surface_where_the_density_crosses_the_level(tmp_path):
    """A steep density (level + 400 per unit across the sphere r = 0.5, so stable-dreamfusion's
    clamp(σ − level, −1, 1) saturates at both ends of every crossing edge and puts the surface at
    the edges' midpoints): scaled by crossing_scale before the clamp, the SDF keeps the linear
    interpolant's zero crossing: r = 0.5 within a tenth of a cell at most surface vertices (the rest:
    chords of r, which is not linear along an edge), and |sdf| at the surface is about 1."""
    level = 10.0
    steep = lambda x: (level + 400.0 * (0.5 - x.norm(dim=-1))).clamp_min(0.0)  # noqa: E731
    geometry = TetGeometry(48, cache=tmp_path)
    init_from_density(geometry, steep, level=level, fill_hidden=False)
    r, _ = radii(geometry)
    cell = 2.0 * float(geometry.tet_scale.max()) / geometry.cells
    error = (r - 0.5).abs()
    # chords of the sphere between exact crossings are off by at most the sagitta (< 0.002 here)
    assert float(error.median()) < 0.03 * cell and float((error < 0.1 * cell).float().mean()) > 0.8
    # the clamp alone (stable-dreamfusion) is half a cell off on average
    near = geometry.sdf.abs() < 8.0
    assert 0.3 < float(geometry.sdf.detach()[near].abs().median()) < 3.0
    raw = TetGeometry(48, cache=tmp_path)
    raw.tet_scale.copy_(geometry.tet_scale)
    raw.sdf.data = (steep(raw.lattice().reshape(-1, 3)) - level).clamp(-1.0, 1.0)
    raw_r, _ = radii(raw)
    raw_error = (raw_r - 0.5).abs()
    assert float(raw_error.median()) > 0.1 * cell and float((raw_error < 0.1 * cell).float().mean()) < 0.5


def test_init_in_the_raw_output_removes_the_outward_bias_of_an_exponential_density(tmp_path):
    """A NeRF-like density σ = exp(raw), raw linear across the sphere r = 0.5 and steep (60 per
    unit: it changes by about 2.6 along an edge): σ is convex along every edge, so the chord of
    σ − level crosses before σ does, outside the sphere; interpolating the raw output (the inverse
    activation) puts the crossings on the sphere, up to the chords' sagitta (inside, < 0.03 cell)."""
    level = 10.0
    density = lambda x: level * torch.exp(60.0 * (0.5 - x.norm(dim=-1)))  # noqa: E731
    linear = TetGeometry(48, cache=tmp_path)
    init_from_density(linear, density, level=level, fill_hidden=False)
    raw = TetGeometry(48, cache=tmp_path)
    init_from_density(raw, density, level=level, fill_hidden=False, transform=inverse_density_activation("exp"))
    assert torch.equal(linear.sdf > 0, raw.sdf > 0)  # the same inside, other crossings
    cell = 2.0 * float(raw.tet_scale.max()) / raw.cells
    offset_raw = (radii(raw)[0] - 0.5) / cell
    offset_linear = (radii(linear)[0] - 0.5) / cell
    assert float(offset_raw.abs().median()) < 0.03 and float(offset_raw.max()) < 0.01
    assert float(offset_linear.median()) > 0.1  # an eighth of a cell out, where a real NeRF's is (docs/dmtet.md)
    assert float(offset_linear.min()) > -0.03  # inside only by the chords' sagitta


def test_mesh_level_in_the_raw_output_matches_the_silhouettes_of_that_surface():
    """An exponential sphere density (raw output linear in r, level 10 on r = 0.5) seen by renders
    whose silhouettes are that sphere's. On a coarse grid the trilinear interpolant of σ bulges
    between nodes (σ is convex), so the σ-calibrated level sits above 10, where it makes the
    interpolated surface as small as the renders; interpolated in the raw output the grid is close to
    exact and the level is 10, returned as a density, not as a raw value (log 10 = 2.3)."""
    from dreamfusion.cli import parse_config
    from dreamfusion.export.density_grid import sample_density_grid
    from dreamfusion.training.entry import mesh_level

    density = lambda x: 10.0 * torch.exp(20.0 * (0.5 - x.norm(dim=-1)))  # noqa: E731

    class SphereRenders:
        def mean_density(self):
            return 10.0

        def render(self, rays_o, rays_d, **_):
            o, d = rays_o.reshape(-1, 3), torch.nn.functional.normalize(rays_d.reshape(-1, 3), dim=-1)
            miss = (o - (o * d).sum(-1, keepdim=True) * d).norm(dim=-1)  # distance of the ray to the centre
            return {"weights_sum": (miss < 0.5).float()}

    config = parse_config(["--text", "a sphere", "--mesh_surface", "visible"])
    grid = sample_density_grid(density, 24, config.bound)
    linear = mesh_level(SphereRenders(), config, grid, torch.device("cpu"), lambda line: None)
    raw = mesh_level(SphereRenders(), config, grid, torch.device("cpu"), lambda line: None, raw_output=True)
    assert abs(raw / 10.0 - 1) < 0.1, raw
    assert linear > 1.2 * raw, (linear, raw)


def test_inverse_density_activations_invert_the_field_activations():
    from dreamfusion.activations import biased_softplus, trunc_exp

    raw = torch.linspace(-20.0, 12.0, 301)
    assert torch.allclose(inverse_density_activation("exp")(trunc_exp(raw)), raw, atol=1e-5)
    assert torch.allclose(inverse_density_activation("softplus")(biased_softplus(raw)), raw, atol=1e-3)
    # Empty space has no preimage: it reads as the preimage of the smallest density, far below any level.
    assert float(inverse_density_activation("exp")(torch.zeros(1))) < -60
    assert float(inverse_density_activation("softplus")(torch.zeros(1))) < -60


def test_crossing_scale_is_a_quantile_next_to_the_zero_level():
    values = torch.full((4, 4, 4), -5.0)
    values[:2] = torch.arange(1.0, 33.0).reshape(2, 4, 4)  # inside: x < 2; the surface vertices: x = 1 and 2
    surface = torch.cat([values[1].reshape(-1), values[2].abs().reshape(-1)])  # 17..32 and sixteen 5s
    assert float(crossing_scale(values)) == float(surface.median()) == 5.0
    assert float(crossing_scale(torch.ones(3, 3, 3))) == 1.0  # no surface: unscaled


def test_init_cleans_up_hollow_shells_and_floaters(tmp_path):
    # A hollow ball (shell 0.35 < r < 0.55) and a small floater: the initial surface must be the
    # outer sphere alone, as the NeRF's exported mesh would be.
    shell = lambda x: torch.where((x.norm(dim=-1) < 0.55) & (x.norm(dim=-1) > 0.35), 20.0, 0.0)  # noqa: E731
    floater = sphere_density(0.07, (0.0, 0.0, -0.9))  # 4+ cells below: not bridged by the closing
    density = lambda x: shell(x) + floater(x)  # noqa: E731
    geometry = TetGeometry(64, cache=tmp_path)
    changed = init_from_density(geometry, density, level=10.0, fill_hidden=True)
    r, faces = radii(geometry)
    assert changed["hidden"] + changed["filled"] > 1000 and changed["removed"] > 0
    assert float(r.min()) > 0.45 and float(r.max()) < 0.62


def test_init_from_mesh_normalises_it_to_a_0_8_box(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=3.0)
    geometry = TetGeometry(48, cache=tmp_path)
    init_from_mesh(geometry, sphere.vertices + 5.0, sphere.faces)
    np.testing.assert_allclose(geometry.tet_scale.numpy(), 0.9, atol=1e-3)
    r, faces = radii(geometry)
    assert len(faces) > 100 and float((r - 0.8).abs().max()) < 0.04


def tiny_field():
    torch.manual_seed(0)
    return NeRFField(FieldConfig(log2_hashmap_size=12, bg_radius=-1.0, num_levels=4, desired_resolution=64))


def cameras(size, polar=(90.0, 60.0, 120.0, 90.0), azimuth=(0.0, 90.0, 200.0, -60.0)):
    from dreamfusion.cameras import OrbitConfig

    n = len(polar)
    return make_batch(OrbitConfig(), torch.tensor(polar), torch.tensor(azimuth), torch.full((n,), 3.0),
                      torch.full((n,), 30.0), size, size)


def test_scene_renders_the_sphere_silhouette_and_carries_gradients(tmp_path):
    geometry = TetGeometry(48, cache=tmp_path)
    init_from_density(geometry, sphere_density(0.5), level=10.0, fill_hidden=False)
    scene = DMTetScene(tiny_field(), geometry)
    cams = cameras(64)
    rays_o, rays_d = cams.rays()
    out = scene.render(rays_o, rays_d, cameras=cams, shading="lambertian", ambient_ratio=0.2, bg_color=None,
                       perturb=True, training=True)
    # Silhouette of a sphere of radius r seen from 3.0: a disc of angular radius asin(r/3). The
    # surface lies between its smallest and largest vertex radius.
    focal = 32 / math.tan(math.radians(15))
    disc = lambda r: math.pi * (focal * math.tan(math.asin(r / 3.0))) ** 2  # noqa: E731
    r, _ = radii(geometry)
    coverage = out["weights_sum"].sum(1).detach()
    assert torch.all((coverage > disc(float(r.min()))) & (coverage < disc(float(r.max())))), coverage
    assert torch.allclose(out["image"][out["weights_sum"] == 0], torch.ones(3))  # white background
    depth = out["depth"].reshape(4, 64, 64)[:, 32, 32]
    assert torch.allclose(depth, torch.full((4,), 2.5), atol=0.03)
    loss = out["image"].mean() + out["loss_mesh_normal"] + out["loss_mesh_laplacian"]
    loss.backward()
    assert geometry.sdf.grad.abs().sum() > 0 and geometry.deform.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in scene.field.parameters())


def test_lock_geo_optimises_the_texture_only(tmp_path):
    geometry = TetGeometry(32, cache=tmp_path)
    init_from_density(geometry, sphere_density(0.5), level=10.0, fill_hidden=False)
    scene = DMTetScene(tiny_field(), geometry, lock_geo=True)
    assert all(p is not geometry.sdf and p is not geometry.deform for g in scene.param_groups(1e-3) for p in g["params"])
    cams = cameras(32)
    out = scene.render(*cams.rays(), cameras=cams, shading="textureless", ambient_ratio=0.2, bg_color=None,
                       perturb=True, training=True)
    assert "loss_mesh_normal" not in out
    out["image"].mean().backward()  # textureless became lambertian: the texture gets a gradient
    assert geometry.sdf.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in scene.field.parameters())


def test_sdf_and_deformation_fit_target_silhouettes(tmp_path):
    # From a sphere of radius 0.35 to the silhouettes of an ellipsoid (0.55, 0.4, 0.5) seen from
    # four cameras: only the antialiasing pass gives the SDF a gradient at silhouettes.
    geometry = TetGeometry(40, cache=tmp_path)
    init_from_density(geometry, sphere_density(0.6), level=10.0, fill_hidden=False)  # tet_scale ~0.7
    axes = torch.tensor([0.55, 0.4, 0.5])
    with torch.no_grad():
        points = geometry.lattice().reshape(-1, 3)
        geometry.sdf.copy_((0.35 - points.norm(dim=1)).clamp(-0.1, 0.1) * 10)
    scene = DMTetScene(tiny_field(), geometry)
    cams = cameras(48)
    rays_o, rays_d = cams.rays()
    target_geometry = TetGeometry(40, cache=tmp_path)
    target_geometry.tet_scale.copy_(geometry.tet_scale)
    with torch.no_grad():
        pts = target_geometry.lattice().reshape(-1, 3)
        target_geometry.sdf.copy_((1.0 - (pts / axes).norm(dim=1)).clamp(-0.1, 0.1) * 10)
        target = DMTetScene(tiny_field(), target_geometry).render(rays_o, rays_d, cameras=cams, shading="albedo",
                                                                  ambient_ratio=1.0, bg_color=1.0, perturb=False,
                                                                  training=False)["weights_sum"]

    def iou(alpha):
        a, b = alpha > 0.5, target > 0.5
        return float((a & b).sum() / (a | b).sum())

    optimizer = torch.optim.Adam([geometry.sdf, geometry.deform], lr=0.1)
    start = None
    for _ in range(60):
        out = scene.render(rays_o, rays_d, cameras=cams, shading="albedo", ambient_ratio=1.0, bg_color=1.0,
                           perturb=False, training=True)
        start = iou(out["weights_sum"].detach()) if start is None else start
        loss = (out["weights_sum"] - target).square().mean() + 1e-3 * out["loss_mesh_laplacian"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = iou(scene.render(rays_o, rays_d, cameras=cams, shading="albedo", ambient_ratio=1.0, bg_color=1.0,
                             perturb=False, training=False)["weights_sum"])
    assert start < 0.6 and final > 0.93, (start, final)


def test_geometry_learning_rate_scale(tmp_path):
    geometry = TetGeometry(32, cache=tmp_path)
    groups = DMTetScene(tiny_field(), geometry, lr_scale=10.0).param_groups(1e-3)
    geo = [g for g in groups if any(p is geometry.sdf for p in g["params"])]
    assert len(geo) == 1 and geo[0]["lr"] == pytest.approx(1e-2)
    assert any(p is geometry.deform for p in geo[0]["params"])


def test_dmtet_presets():
    from dreamfusion.cli import parse_config  # parses and resolves the presets

    c = parse_config(["--text", "a hamburger", "--guidance", "exemplar", "--dmtet", "--w", "32", "--h", "24",
                      "--dmtet_reso_scale", "2", "--albedo_iter_ratio", "0.5"])
    assert (c.h, c.w) == (48, 64) and c.known_view_scale == 1.0 and c.t_range == [0.02, 0.5]
    assert c.albedo_iter_ratio == 0.0 and c.latent_iter_ratio == 0.0 and not c.progressive_view
    assert c.exemplar_resolution == 48  # raised to the render size
    big = parse_config(["--text", "a hamburger", "--guidance", "exemplar", "--dmtet"])
    assert (big.h, big.w) == (512, 512) and big.exemplar_resolution == 128  # capped


def test_an_empty_surface_renders_the_background_and_stops_training(tmp_path):
    from dreamfusion.errors import UserError

    geometry = TetGeometry(32, cache=tmp_path)  # sdf 0 everywhere: nothing inside
    scene = DMTetScene(tiny_field(), geometry)
    cams = cameras(16)
    out = scene.render(*cams.rays(), cameras=cams, shading="albedo", ambient_ratio=1.0, bg_color=0.25,
                       perturb=False, training=False, need_normal_image=True)
    assert torch.all(out["image"] == 0.25) and torch.all(out["weights_sum"] == 0)
    with pytest.raises(UserError, match="vanished"):
        scene.render(*cams.rays(), cameras=cams, shading="albedo", ambient_ratio=1.0, bg_color=None,
                     perturb=True, training=True)


def test_export_surface_closes_bubbles(tmp_path):
    # A ball of radius 0.6 with an enclosed empty bubble of radius 0.25: training renders never see
    # the bubble, the exported (closed) surface has no inner shell.
    geometry = TetGeometry(48, cache=tmp_path)
    init_from_density(geometry, sphere_density(0.6), level=10.0, fill_hidden=False)
    with torch.no_grad():
        r = geometry.lattice().reshape(-1, 3).norm(dim=1)
        geometry.sdf.copy_(torch.where(r < 0.25, -0.5, geometry.sdf))
        open_v, _ = geometry.surface()
        closed_v, closed_f = geometry.surface(cleaned=True)
    assert float(open_v.norm(dim=1).min()) < 0.3  # the bubble's inner shell
    assert float(closed_v.norm(dim=1).min()) > 0.5 and len(closed_f) > 100
    assert torch.equal(geometry.cleaned_sdf()[r >= 0.3], geometry.sdf.detach()[r >= 0.3])
