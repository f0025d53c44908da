"""Rasterizer: coverage, fill rule, depth and perspective-correct interpolation against closed forms."""

import numpy as np
import pytest
import torch

from dreamfusion.cameras import get_rays, intrinsics_from_fovy, look_at
from dreamfusion.renderers.mesh import mvp_from_c2w, render_mesh
from dreamfusion.renderers.rasterizer import interpolate, nvdiffrast_available, rasterize


def pixel_to_clip(points_px, width, height, z=None):
    """Pixel coordinates (x right, y down) -> clip positions with w = 1."""
    points_px = torch.as_tensor(points_px, dtype=torch.float32)
    x = points_px[:, 0] / width * 2 - 1
    y = 1 - points_px[:, 1] / height * 2
    z = torch.zeros_like(x) if z is None else torch.as_tensor(z, dtype=torch.float32)
    return torch.stack([x, y, z, torch.ones_like(x)], 1)


def lattice_count_inside(corners_px, width, height):
    """Independent float64 count of pixel centres strictly inside a triangle (brute force)."""
    i, j = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    a, b, c = np.asarray(corners_px, dtype=np.float64)

    def edge(p, q):
        return (q[0] - p[0]) * (j - p[1]) - (q[1] - p[1]) * (i - p[0])

    e = np.stack([edge(a, b), edge(b, c), edge(c, a)])
    return int(((e > 0).all(0) | (e < 0).all(0)).sum())


def test_right_triangle_covers_closed_form_count():
    # Hypotenuse x + y = N + 0.5 passes through no pixel centre: centres with i + j <= N - 1.
    n = 16
    clip = pixel_to_clip([[0, 0], [n + 0.5, 0], [0, n + 0.5]], n, n)
    raster = rasterize(clip, torch.tensor([[0, 1, 2]]), n, n)
    assert int(raster.mask.sum()) == n * (n + 1) // 2
    rows, cols = torch.nonzero(raster.mask[0], as_tuple=True)
    assert int((rows + cols).max()) == n - 1


@pytest.mark.parametrize("winding", [[0, 1, 2], [0, 2, 1]])
def test_general_triangle_matches_lattice_count_either_winding(winding):
    corners = [[3.3, 2.1], [40.7, 11.9], [12.2, 29.6]]
    clip = pixel_to_clip(corners, 48, 32)
    raster = rasterize(clip, torch.tensor([winding]), 32, 48)
    assert int(raster.mask.sum()) == lattice_count_inside(corners, 48, 32)
    # Shoelace area is close to the count (sanity on the closed form itself).
    assert abs(int(raster.mask.sum()) - 0.5 * abs(37.4 * 27.5 - 8.9 * 9.8)) < 30


def test_shared_edges_through_pixel_centres_are_drawn_exactly_once():
    # A square split along its diagonal; the diagonal passes through 16 pixel centres.
    n = 16
    clip = pixel_to_clip([[0, 0], [n, 0], [n, n], [0, n]], n, n)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    first = rasterize(clip, faces[:1], n, n).mask
    second = rasterize(clip, faces[1:], n, n).mask
    assert int((first & second).sum()) == 0
    assert int((first | second).sum()) == n * n
    both = rasterize(clip, faces, n, n)
    assert bool(both.mask.all())


def test_interpolated_depth_is_the_plane_at_pixel_centres():
    n = 32
    corners = [[1.0, 1.0], [31.0, 4.0], [6.0, 30.0]]
    z = [-0.5, 0.25, 0.75]
    clip = pixel_to_clip(corners, n, n, z=z)
    raster = rasterize(clip, torch.tensor([[0, 1, 2]]), n, n)
    # Closed form: z is affine in pixel coordinates, z = p0 + p1 x + p2 y through the 3 corners.
    coeffs = np.linalg.solve(np.c_[np.ones(3), np.asarray(corners)], np.asarray(z))
    rows, cols = torch.nonzero(raster.mask[0], as_tuple=True)
    expected = coeffs[0] + coeffs[1] * (cols.numpy() + 0.5) + coeffs[2] * (rows.numpy() + 0.5)
    np.testing.assert_allclose(raster.ndc_depth[0, rows, cols].numpy(), expected, atol=1e-5)
    assert torch.isinf(raster.ndc_depth[~raster.mask]).all()
    # Barycentrics reproduce the pixel position itself.
    xy = interpolate(torch.tensor(corners), torch.tensor([[0, 1, 2]]), raster)[0, rows, cols]
    np.testing.assert_allclose(xy[:, 0].numpy(), cols.numpy() + 0.5, atol=1e-4)
    np.testing.assert_allclose(xy[:, 1].numpy(), rows.numpy() + 0.5, atol=1e-4)


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_depth_test_keeps_the_nearer_triangle_in_any_order(order):
    n = 16
    near = pixel_to_clip([[0, 0], [16, 0], [0, 16]], n, n, z=[-0.2] * 3)
    far = pixel_to_clip([[0, 0], [16, 0], [0, 16]], n, n, z=[0.3] * 3)
    clip = torch.cat([near, far])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])[order]
    raster = rasterize(clip, faces, n, n, max_candidates=50)  # force several chunks
    near_index = order.index(0)
    assert bool((raster.triangle_index[raster.mask] == near_index).all())
    assert torch.allclose(raster.ndc_depth[raster.mask], torch.tensor(-0.2))


def test_pixels_beyond_far_plane_and_triangles_behind_eye_are_dropped():
    n = 8
    beyond = pixel_to_clip([[0, 0], [8, 0], [0, 8]], n, n, z=[1.5] * 3)
    raster = rasterize(beyond, torch.tensor([[0, 1, 2]]), n, n)
    assert not raster.mask.any()
    behind = pixel_to_clip([[0, 0], [8, 0], [0, 8]], n, n)
    behind[0, 3] = -1.0
    assert not rasterize(behind, torch.tensor([[0, 1, 2]]), n, n).mask.any()


def test_render_mesh_depth_of_tilted_plane_matches_ray_intersection():
    # Camera on +z looking at the origin; a tilted quad n.p = c; depth = ray parameter t.
    height, width = 24, 32
    c2w = look_at(torch.tensor([[0.0, 0.0, 3.0]]))
    intrinsics = intrinsics_from_fovy(50.0, height, width)
    normal = torch.tensor([0.3, -0.2, 1.0])
    offset = 0.1
    xy = torch.tensor([[-4.0, -4.0], [4.0, -4.0], [4.0, 4.0], [-4.0, 4.0]])
    z = (offset - xy @ normal[:2]) / normal[2]
    vertices = torch.cat([xy, z[:, None]], 1)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    out = render_mesh(vertices, faces, mvp_from_c2w(c2w, intrinsics, height, width), height, width)
    assert bool(out["mask"].all())
    rays_o, rays_d = get_rays(c2w, intrinsics, height, width)
    t = (offset - rays_o[0] @ normal) / (rays_d[0] @ normal)  # rays_d has camera z = -1
    np.testing.assert_allclose(out["depth"][0].reshape(-1).numpy(), t.numpy(), rtol=1e-4)
    # Normals follow the winding (counter-clockwise seen from the camera -> towards +z).
    expected_normal = torch.nn.functional.normalize(normal, dim=0)
    assert torch.allclose(out["normal"][0, 5, 7], expected_normal, atol=1e-5)


def test_render_mesh_sees_plus_x_on_the_right_from_the_front():
    # Vertex colours red at x < 0, blue at x > 0; front camera (+z): left half red, right half blue.
    vertices = torch.tensor([[-1.0, -1, 0], [0, -1, 0], [0, 1, 0], [-1, 1, 0], [1, -1, 0], [1, 1, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
    colors = torch.tensor([[1.0, 0, 0]] * 4 + [[0, 0, 1.0]] * 2)
    colors[1:3] = torch.tensor([0.5, 0.0, 0.5])
    c2w = look_at(torch.tensor([[0.0, 0.0, 4.0]]))
    intrinsics = intrinsics_from_fovy(40.0, 32, 32)
    out = render_mesh(vertices, faces, mvp_from_c2w(c2w, intrinsics, 32, 32), 32, 32,
                      vertex_colors=colors)
    rgb = out["rgb"][0]
    assert rgb[16, 12, 0] > rgb[16, 12, 2] and rgb[16, 20, 2] > rgb[16, 20, 0]


def test_batched_rasterization_equals_separate_views():
    vertices = torch.tensor([[-0.5, -0.5, 0.0], [0.6, -0.4, 0.1], [0.0, 0.7, -0.2], [0.3, 0.3, 0.5]])
    faces = torch.tensor([[0, 1, 2], [0, 1, 3], [1, 2, 3]])
    c2w = look_at(torch.tensor([[0.0, 0.5, 3.0], [2.5, 0.2, 1.0]]))
    mvp = mvp_from_c2w(c2w, intrinsics_from_fovy(40.0, 20, 20), 20, 20)
    both = render_mesh(vertices, faces, mvp, 20, 20)
    for b in range(2):
        single = render_mesh(vertices, faces, mvp[b], 20, 20)
        assert torch.equal(single["triangle_index"][0], both["triangle_index"][b])
        assert torch.allclose(single["depth"][0], both["depth"][b])


@pytest.mark.skipif(
    not (torch.cuda.is_available() and nvdiffrast_available()), reason="needs CUDA and nvdiffrast"
)
def test_torch_backend_agrees_with_nvdiffrast():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=4)
    vertices = torch.tensor(sphere.vertices, dtype=torch.float32, device="cuda")
    faces = torch.tensor(sphere.faces, device="cuda")
    c2w = look_at(torch.tensor([[0.5, 0.8, 3.0]])).cuda()
    mvp = mvp_from_c2w(c2w, intrinsics_from_fovy(40.0, 128, 128), 128, 128)
    clip = torch.cat([vertices, torch.ones_like(vertices[:, :1])], 1) @ mvp[0].T
    ours = rasterize(clip, faces, 128, 128, backend="torch")
    theirs = rasterize(clip, faces, 128, 128, backend="nvdiffrast")
    same = (ours.triangle_index == theirs.triangle_index).float().mean()
    assert same > 0.99
    both = ours.mask & theirs.mask
    assert torch.allclose(ours.ndc_depth[both], theirs.ndc_depth[both], atol=1e-4)


def test_equal_depth_goes_to_the_lower_triangle_index_across_chunks():
    n = 16
    clip = pixel_to_clip([[0, 0], [16, 0], [0, 16]], n, n, z=[0.1] * 3)
    faces = torch.tensor([[0, 1, 2]] * 3)  # the same triangle three times: bit-equal depths
    for max_candidates in (10, 1 << 20):
        raster = rasterize(clip, faces, n, n, max_candidates=max_candidates)
        assert bool((raster.triangle_index[raster.mask] == 0).all())
