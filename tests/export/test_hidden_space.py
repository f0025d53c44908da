"""The visible solid (`--mesh_surface visible`): pockets, tunnels and narrow pits become solid,
open concavities and see-through holes stay; the sky fraction against a closed form; and the
texture takes the colour a view along the normal renders."""

import math

import numpy as np
import pytest
import torch
import trimesh

from dreamfusion.export import MeshExportConfig, extract_density_surface
from dreamfusion.export.texture import seen_colour
from dreamfusion.export.hidden_space import enclosed_space, line_directions, open_fraction


def mesh_of(density, resolution=64, surface="visible"):
    config = MeshExportConfig(resolution=resolution, density_thresh=10.0, surface=surface)
    return trimesh.Trimesh(*extract_density_surface(density, config), process=False)


def test_pockets_tunnels_and_a_narrow_pit_are_filled():
    """A dense skin around a core full of low-density pockets and channels, and a well 0.16 wide
    and 0.45 deep sunk into the top (in albedo a pit with the surface's colour looks like the
    surface): the density level meshes the pit, the visible solid fills all but its mouth."""
    def spongy(p):
        r = p.norm(dim=-1)
        skin = (r > 0.42) & (r < 0.5)
        channels = torch.sin(25 * p[:, 0]) * torch.sin(25 * p[:, 1]) * torch.sin(25 * p[:, 2]) > 0.2
        well = (p[:, [0, 2]].norm(dim=-1) < 0.08) & (p[:, 1] > 0.05)
        dense = (skin | ((r <= 0.42) & ~channels)) & ~well
        return torch.where(dense, torch.full_like(r, 40.0), torch.zeros_like(r))

    well, mouth = math.pi * 0.08**2 * 0.45, math.pi * 0.08**2 * 0.107
    density_mesh = mesh_of(spongy, resolution=96, surface="density")
    solid = mesh_of(spongy, resolution=96)
    assert len(solid.split(only_watertight=False)) == 1 and solid.is_watertight
    # A point in the well sees the sky through a cone of half-angle atan(0.08 / depth): at most
    # 10 % of it (37°) deeper than 0.107 below the mouth. All of that is filled, and no more than
    # the well (98 discrete directions blur where the 10 % falls).
    filled = solid.volume - density_mesh.volume
    assert well - 2 * mouth < filled < 1.05 * well


def test_open_concavities_and_see_through_holes_stay_open():
    def mushroom(p):  # a flat cap (y 0..0.2, radius 0.6) with a lip drooping 0.05 at its rim, on a thin stem
        rho = p[:, [0, 2]].norm(dim=-1)
        cap = (rho < 0.6) & (p[:, 1] > 0.0) & (p[:, 1] < 0.2)
        lip = (rho > 0.5) & (rho < 0.6) & (p[:, 1] > -0.05) & (p[:, 1] <= 0.0)
        stem = (rho < 0.1) & (p[:, 1] > -0.5) & (p[:, 1] <= 0.0)
        return torch.where(cap | lip | stem, torch.full_like(rho, 40.0), torch.zeros_like(rho))

    flat = mesh_of(mushroom, surface="density")
    solid = mesh_of(mushroom)
    # Under the cap a point sees everything below it: the underside stays where it is.
    assert solid.volume == pytest.approx(flat.volume, rel=0.02)

    def torus(p):
        ring = p[:, [0, 2]].norm(dim=-1) - 0.5
        inside = ring.square() + p[:, 1].square() < 0.18**2
        return torch.where(inside, torch.full_like(ring, 40.0), torch.zeros_like(ring))

    ring = mesh_of(torus)
    assert ring.is_watertight and ring.euler_number == 0  # genus one: the hole is open
    assert ring.volume == pytest.approx(mesh_of(torus, surface="density").volume, rel=0.02)


def test_open_fraction_is_the_sky_a_point_sees():
    """Next to a ball of radius 0.3 whose centre is 0.6 away, the ball hides a cone of half-angle
    30°: (1 - cos 30°) / 2 = 6.7 % of the sky. Inside a closed shell nothing is open."""
    axis = np.linspace(-1, 1, 97)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    ball = (x - 0.3) ** 2 + y**2 + z**2 < 0.3**2
    sky = open_fraction(ball)
    left = np.argmin(np.abs(axis + 0.3))  # the node at (-0.3, 0, 0)
    assert sky[left, 48, 48] == pytest.approx(1 - (1 - math.cos(math.radians(30))) / 2, abs=0.04)
    shell = (np.sqrt(x**2 + y**2 + z**2) > 0.4) & (np.sqrt(x**2 + y**2 + z**2) < 0.5)
    inside = open_fraction(shell)
    assert inside[48, 48, 48] == 0.0
    # From a corner of the cube, sqrt(3) away, the shell hides a cone of half-angle asin(0.5 / sqrt(3)).
    hidden = (1 - math.cos(math.asin(0.5 / math.sqrt(3)))) / 2
    assert inside[0, 0, 0] == pytest.approx(1 - hidden, abs=0.015) and inside[0, 0, 0] < 1.0


def test_enclosed_space_computed_on_the_solids_box_equals_the_whole_grid():
    """Only the solid's bounding box is computed (outside it half the sky is open): the result is
    the whole grid's open fraction thresholded, node for node, for a solid off the grid's centre."""
    axis = np.linspace(-1, 1, 72)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt((x - 0.35) ** 2 + (y + 0.2) ** 2 + z**2)
    channels = np.sin(25 * x) * np.sin(25 * y) * np.sin(25 * z) > 0.2
    solid = (r < 0.45) & ((r > 0.38) | ~channels)
    whole = ~solid & (open_fraction(solid) <= 0.1)
    boxed = enclosed_space(solid)
    assert 200 < whole.sum() and np.array_equal(boxed, whole)
    assert not enclosed_space(np.zeros_like(solid)).any()
    with pytest.raises(ValueError, match="max_open"):  # at 1/2 a node outside the box could count: refused
        enclosed_space(solid, max_open=0.5)


def test_directions_cover_the_sphere_and_the_horizon():
    d = line_directions()
    assert d.shape == (49, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    assert (np.abs(d[:16, 1]) < 1e-12).all() and np.allclose(d[16], [0, 1, 0])  # the ring and the vertical
    # Every direction on the sphere is within ~22° of a line (a direction or its opposite).
    probe = torch.nn.functional.normalize(torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    cos = np.abs(probe.numpy() @ d.T).max(1)
    assert np.degrees(np.arccos(cos.min())) < 22


def test_seen_colour_is_what_a_view_along_the_normal_renders():
    """Above a red slab the field's albedo is green (empty space: nothing renders it); a texel
    floating 0.05 above the slab gets red, as a camera looking down at it sees."""
    def density(x):
        return torch.where(x[:, 1] < 0.0, torch.full_like(x[:, 0], 200.0), torch.zeros_like(x[:, 0]))

    def albedo(x):
        red, green = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
        return torch.where((x[:, 1] < 0.0)[:, None], red, green)

    colour = seen_colour(density, albedo, outside=0.02, inside=0.2)
    points = torch.tensor([[0.0, 0.05, 0.0], [0.3, 0.05, 0.1]])
    up = torch.tensor([[0.0, 1.0, 0.0]] * 2)
    torch.testing.assert_close(colour(points, up), torch.tensor([[1.0, 0.0, 0.0]] * 2), atol=1e-3, rtol=0)
    # Nothing opaque along the normal (looking up from below into empty space): the albedo itself.
    torch.testing.assert_close(colour(points + torch.tensor([0.0, 0.5, 0.0]), -up), albedo(points), atol=1e-6, rtol=0)
