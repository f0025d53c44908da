"""Antialiasing pass: exact 1D coverage, silhouette-only blending, gradients against finite
differences at interior and silhouette pixels, and shapes fitted to target silhouettes and depth."""

import pytest
import torch
import trimesh

from dreamfusion.cameras import intrinsics_from_fovy, look_at
from dreamfusion.renderers.antialias import antialias, edge_neighbours
from dreamfusion.renderers.mesh import mvp_from_c2w
from dreamfusion.renderers.rasterizer import interpolate, rasterize


def pixels_to_clip(points_px, width, height):
    """Float64 pixel coordinates [N, 2] (x right, y down) -> clip [N, 4] with z = 0, w = 1."""
    x = points_px[:, 0] / width * 2 - 1
    y = 1 - points_px[:, 1] / height * 2
    return torch.stack([x, y, torch.zeros_like(x), torch.ones_like(x)], 1)


def shade(points_px, faces, colours, width, height, background=0.0):
    clip = pixels_to_clip(points_px, width, height)
    raster = rasterize(clip, faces, height, width)
    image = interpolate(colours, faces, raster)
    image = torch.where(raster.mask[..., None], image, torch.full_like(image, background))
    return antialias(image, raster, clip, faces)


def test_edge_neighbours_of_a_tetrahedron_and_a_lone_triangle():
    tet = torch.tensor([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
    nb = edge_neighbours(tet)
    assert (nb >= 0).all()
    for f in range(4):
        for e in range(3):
            a, b = int(tet[f, (e + 1) % 3]), int(tet[f, (e + 2) % 3])
            other = int(nb[f, e])
            assert other != f and {a, b} <= set(tet[other].tolist())
    assert (edge_neighbours(torch.tensor([[0, 1, 2]])) == -1).all()


@pytest.mark.parametrize("edge_x", [3.3, 7.5 + 0.2, 10.81])
def test_vertical_silhouette_gives_exact_box_coverage_and_its_derivative(edge_x):
    # A quad (two triangles: its diagonal is an interior edge, not a silhouette) covering x < s.
    w = h = 16
    s = torch.tensor(edge_x, dtype=torch.float64, requires_grad=True)
    far = torch.tensor(-20.0, dtype=torch.float64)
    big = torch.tensor(h + 20.0, dtype=torch.float64)
    pts = torch.stack([torch.stack([far, far]), torch.stack([s, far]), torch.stack([s, big]), torch.stack([far, big])])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    image = shade(pts, faces, torch.ones(4, 1, dtype=torch.float64), w, h)
    row_sums = image[0, :, :, 0].sum(1)
    torch.testing.assert_close(row_sums, torch.full((h,), edge_x, dtype=torch.float64))
    (grad,) = torch.autograd.grad(row_sums.sum(), s)
    assert float(grad) == pytest.approx(h)


def test_interior_edges_are_not_blended():
    # Two triangles sharing an edge, different constant colours: without the silhouette test the
    # shared edge would be smeared; with it, the image equals the plain rasterization inside.
    w = h = 12
    pts = torch.tensor([[-5.0, -5.0], [17.0, -5.0], [17.0, 17.0], [-5.0, 17.0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    clip = pixels_to_clip(pts, w, h)
    raster = rasterize(clip, faces, h, w)
    face_colour = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    plain = face_colour[raster.triangle_index.clamp(min=0)]
    torch.testing.assert_close(antialias(plain, raster, clip, faces), plain)


def random_triangle_scene(seed):
    gen = torch.Generator().manual_seed(seed)
    w = h = 20
    pts = torch.tensor([[3.3, 2.7], [16.6, 6.1], [7.2, 17.4]], dtype=torch.float64)
    pts = pts + torch.rand(3, 2, generator=gen, dtype=torch.float64)
    colours = torch.rand(3, 3, generator=gen, dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    return pts, faces, colours, w, h


@pytest.mark.parametrize("where", ["interior", "silhouette"])
def test_gradient_matches_finite_differences(where):
    pts, faces, colours, w, h = random_triangle_scene(3)
    clip = pixels_to_clip(pts, w, h)
    raster = rasterize(clip, faces, h, w)
    inside = raster.mask[0]
    # Interior: covered pixels with all 4 neighbours covered; silhouette: covered or not, next to
    # a change of coverage (those the antialiasing pass touches).
    padded = torch.nn.functional.pad(inside[None, None].double(), (1, 1, 1, 1))[0, 0]
    neighbours = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    interior = inside & (neighbours == 4)
    edge = (inside & (neighbours < 4)) | (~inside & (neighbours > 0))
    select = interior if where == "interior" else edge
    assert int(select.sum()) > 10
    weights = torch.rand(h, w, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * select[..., None]

    def loss(p):
        return (shade(p, faces, colours, w, h, background=0.25)[0] * weights).sum()

    p = pts.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(p), p)
    eps = 1e-6
    numeric = torch.zeros_like(pts)
    for i in range(3):
        for j in range(2):
            step = torch.zeros_like(pts)
            step[i, j] = eps
            numeric[i, j] = (loss(pts + step) - loss(pts - step)) / (2 * eps)
    assert grad.abs().max() > 1e-3
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-7)


def sphere_views(centre, radius, mesh, mvps, size):
    """Antialiased alpha and depth of a unit-sphere mesh scaled and moved, from every camera."""
    vertices = mesh[0] * radius + centre
    homogeneous = torch.cat([vertices, torch.ones_like(vertices[:, :1])], 1)
    clip = homogeneous @ mvps.transpose(1, 2)
    raster = rasterize(clip, mesh[1], size, size)
    alpha = antialias(raster.mask[..., None].to(vertices.dtype), raster, clip, mesh[1], mesh[2])
    depth = interpolate(clip[..., 3:4], mesh[1], raster)[..., 0]
    return alpha[..., 0], depth, raster.mask


def test_fit_a_sphere_to_target_silhouettes_and_depth():
    torch.manual_seed(0)
    sphere = trimesh.creation.icosphere(subdivisions=3)
    faces = torch.as_tensor(sphere.faces, dtype=torch.long)
    mesh = (torch.as_tensor(sphere.vertices, dtype=torch.float32), faces, edge_neighbours(faces))
    size = 48
    eyes = torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.3]])
    mvps = mvp_from_c2w(look_at(eyes), intrinsics_from_fovy(40.0, size, size), size, size)
    true_centre, true_radius = torch.tensor([0.12, -0.07, 0.05]), 0.55
    target_alpha, target_depth, target_mask = sphere_views(true_centre, true_radius, mesh, mvps, size)

    centre = torch.zeros(3, requires_grad=True)
    log_radius = torch.tensor(0.35).log().requires_grad_(True)
    optimizer = torch.optim.Adam([centre, log_radius], lr=0.02)
    for _ in range(150):
        alpha, depth, mask = sphere_views(centre, log_radius.exp(), mesh, mvps, size)
        both = mask & target_mask
        loss = (alpha - target_alpha).square().mean() + (depth - target_depth)[both].abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(log_radius.detach().exp()) == pytest.approx(true_radius, abs=0.01)
    assert float((centre.detach() - true_centre).norm()) < 0.015


def test_free_vertices_follow_a_target_silhouette():
    # Silhouette-only fit of every vertex: the IoU with the target must rise from ~0.5 to > 0.97.
    sphere = trimesh.creation.icosphere(subdivisions=2)
    faces = torch.as_tensor(sphere.faces, dtype=torch.long)
    neighbours = edge_neighbours(faces)
    base = torch.as_tensor(sphere.vertices, dtype=torch.float32)
    size = 40
    mvps = mvp_from_c2w(look_at(torch.tensor([[0.0, 0.0, 3.0]])), intrinsics_from_fovy(40.0, size, size), size, size)

    def alpha_of(vertices):
        clip = torch.cat([vertices, torch.ones_like(vertices[:, :1])], 1) @ mvps.transpose(1, 2)
        raster = rasterize(clip, faces, size, size)
        return antialias(raster.mask[..., None].float(), raster, clip, faces, neighbours)[..., 0]

    target = alpha_of(base * torch.tensor([0.8, 0.45, 0.8]))  # an ellipse on screen
    offsets = torch.zeros_like(base, requires_grad=True)
    optimizer = torch.optim.Adam([offsets], lr=0.01)

    def iou(a, b):
        a, b = a > 0.5, b > 0.5
        return float((a & b).sum() / (a | b).sum())

    start = iou(alpha_of(base * 0.6), target)
    for _ in range(120):
        loss = (alpha_of(base * 0.6 + offsets) - target).square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert start < 0.8
    assert iou(alpha_of(base * 0.6 + offsets).detach(), target) > 0.97
