"""The Kuhn tet grid and marching tetrahedra against closed forms: volumes, conformity, planes,
spheres, watertightness, orientation and gradients."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from dreamfusion.dmtet import MarchingTets, cubic_cells, kuhn_cells, kuhn_grid, marching_tets, tet_grid


def signed_volumes(vertices, tets):
    a, b, c, d = (vertices[tets[:, i]] for i in range(4))
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a) / 6.0


@pytest.mark.parametrize("cells", [4, (5, 3, 2)])
def test_kuhn_grid_fills_the_cube_conformingly_with_positive_tets(cells):
    a, b, c = (cells,) * 3 if isinstance(cells, int) else cells
    vertices, tets = kuhn_grid(cells)
    assert vertices.shape == ((a + 1) * (b + 1) * (c + 1), 3) and tets.shape == (6 * a * b * c, 4)
    # x slowest: vertex (i, j, k) at index (i (b+1) + j)(c+1) + k
    assert np.allclose(vertices[((2 * (b + 1)) + 1) * (c + 1) + 1], [-1 + 2 * 2 / a, -1 + 2 / b, -1 + 2 / c])
    volumes = signed_volumes(vertices.astype(np.float64), tets)
    assert (volumes > 0).all()
    assert volumes.sum() == pytest.approx(8.0)  # [-1, 1]^3
    assert np.allclose(volumes, 8.0 / (6 * a * b * c))  # all six Kuhn tets are congruent in volume
    faces = Counter(tuple(sorted(f)) for t in tets for f in (t[[0, 1, 2]], t[[0, 1, 3]], t[[0, 2, 3]], t[[1, 2, 3]]))
    shared = Counter(faces.values())
    assert set(shared) == {1, 2}  # conforming: an inner face belongs to exactly two tets
    assert shared[1] == 2 * 2 * (a * b + b * c + a * c)  # boundary: two triangles per square of the box's faces


def test_cubic_cells_divide_a_box_into_as_many_cubes_as_the_cube_grid():
    shape, extent = cubic_cells([1.0, 0.5, 0.25], 8)  # volume 1 = 512 cubes of side 1/8
    assert shape == (16, 8, 4)
    np.testing.assert_allclose(extent, [1.0, 0.5, 0.25])
    shape, extent = cubic_cells([0.9, 0.62, 0.55], 64)
    side = 2 * extent / np.asarray(shape)
    np.testing.assert_allclose(side, side[0])  # every cell a cube
    assert abs(np.prod(shape) / 64 ** 3 - 1) < 0.05  # about as many cells as 64^3
    assert (np.abs(extent - [0.9, 0.62, 0.55]) <= side / 2 + 1e-12).all()  # within half a cell of the box
    assert cubic_cells([0.7] * 3, 24)[0] == (24, 24, 24)


def test_a_box_grid_is_cached_under_its_shape(tmp_path):
    vertices, tets = tet_grid(cells=(3, 2, 2), cache=tmp_path)
    assert (tmp_path / "kuhn_3x2x2.npz").is_file() and tets.shape == (6 * 12, 4)
    assert np.array_equal(tet_grid(cells=(3, 2, 2), cache=tmp_path)[1], tets)


def test_tet_grid_size_maps_to_half_as_many_cells_and_is_cached(tmp_path):
    assert kuhn_cells(128) == 64 and kuhn_cells(32) == 16
    vertices, tets = tet_grid(8, cache=tmp_path)
    assert (tmp_path / "kuhn_4.npz").is_file() and tets.shape == (6 * 64, 4)
    again_v, again_t = tet_grid(8, cache=tmp_path)
    assert np.array_equal(again_v, vertices) and np.array_equal(again_t, tets)
    (tmp_path / "kuhn_4.npz").write_bytes(b"truncated")
    assert np.array_equal(tet_grid(8, cache=tmp_path)[1], tets)  # a bad cache file is made again


def grid(cells):
    vertices, tets = kuhn_grid(cells)
    return torch.from_numpy(vertices).double(), torch.from_numpy(tets)


def edge_uses(faces):
    directed = Counter()
    for f in faces.tolist():
        for i in range(3):
            directed[(f[i], f[(i + 1) % 3])] += 1
    return directed


def test_a_plane_is_extracted_exactly_and_faces_point_outward():
    vertices, tets = grid(6)
    sdf = 0.3 - vertices[:, 0] + 0.01  # inside: x < 0.31 (off the grid's planes)
    points, faces = marching_tets(vertices, tets, sdf)
    assert torch.allclose(points[:, 0], torch.full_like(points[:, 0], 0.31))
    v = points[faces]
    normals = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
    assert (normals[:, 0] > 0).all() and normals[:, 1:].abs().max() < 1e-9  # +x: towards sdf < 0
    area = 0.5 * normals.norm(dim=-1).sum()
    assert area.item() == pytest.approx(4.0)  # the 2 x 2 cross-section of the cube


def test_a_sphere_is_one_watertight_outward_surface_of_the_right_volume():
    vertices, tets = grid(16)
    r = 0.62
    points, faces = marching_tets(vertices, tets, r - vertices.norm(dim=-1))
    directed = edge_uses(faces)
    assert all(count == 1 and directed[(b, a)] == 1 for (a, b), count in directed.items())  # closed, consistent
    v = points[faces]
    volume = (torch.cross(v[:, 0], v[:, 1], dim=-1) * v[:, 2]).sum() / 6.0
    assert volume.item() == pytest.approx(4.0 / 3.0 * math.pi * r ** 3, rel=0.03)
    assert (points.norm(dim=-1) - r).abs().max() < 0.02  # chords of a 0.125 grid
    assert len(set(map(tuple, points.tolist()))) == len(points)  # each edge crossing once


def test_gradients_with_respect_to_sdf_and_vertices_match_finite_differences():
    vertices, tets = grid(2)
    g = torch.Generator().manual_seed(0)
    sdf0 = torch.rand(vertices.shape[0], generator=g, dtype=torch.float64) - 0.5
    sdf0 = torch.where(sdf0.abs() < 0.1, sdf0.sign() * 0.1, sdf0)  # signs stay put under eps
    weights = torch.randn(200, 3, generator=g, dtype=torch.float64)

    def surface(sdf, positions):
        points, _ = marching_tets(positions, tets, sdf)
        return (points * weights[: len(points)]).sum()

    assert torch.autograd.gradcheck(surface, (sdf0.clone().requires_grad_(), vertices.clone().requires_grad_()))


def test_the_band_extracts_the_whole_grids_surface_as_the_surface_moves():
    """MarchingTets keeps a band of tets around the surface between calls: as a sphere grows by a
    little (band reused), by a lot (rebuilt), splits and vanishes, every call returns exactly the
    full pass's vertices and faces, and gradients reach the same SDF entries."""
    vertices, tets = grid(12)
    extract = MarchingTets(tets, len(vertices))
    g = torch.Generator().manual_seed(1)
    centre = torch.tensor([0.1, -0.05, 0.0], dtype=torch.float64)
    radii = [0.5, 0.51, 0.53, 0.5, 0.8, 0.79, 0.3]
    for step, r in enumerate(radii + [None, 0.4]):
        if r is None:  # two spheres: the band must follow a new piece far from the old surface
            sdf = torch.maximum(0.3 - (vertices - 0.5).norm(dim=-1), 0.25 - (vertices + 0.5).norm(dim=-1))
        else:
            sdf = r - (vertices - centre).norm(dim=-1) + 0.01 * torch.rand(len(vertices), generator=g,
                                                                              dtype=torch.float64)
        sdf = sdf.clone().requires_grad_()
        got_p, got_f = extract(sdf, vertices.__getitem__)
        want_p, want_f = marching_tets(vertices, tets, sdf.detach())
        assert torch.equal(got_f, want_f) and torch.equal(got_p.detach(), want_p), step
        got_p.sum().backward()
        moved = sdf.grad != 0
        crossing = torch.zeros(len(vertices), dtype=torch.bool)
        inside = sdf.detach() > 0
        pairs = tets[:, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]].reshape(-1, 2)
        changing = pairs[inside[pairs[:, 0]] != inside[pairs[:, 1]]]
        crossing[changing.reshape(-1)] = True
        assert torch.equal(moved, crossing)  # the ends of sign-changing edges, no other entry
    assert 1 < extract.rebuilds < len(radii) + 2  # small moves reuse the band
    empty_p, empty_f = extract(torch.full((len(vertices),), -1.0, dtype=torch.float64), vertices.__getitem__)
    assert empty_p.shape == (0, 3) and empty_f.shape == (0, 3)
