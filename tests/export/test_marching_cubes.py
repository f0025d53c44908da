import numpy as np
import pytest
import trimesh

from dreamfusion.errors import UserError
from dreamfusion.export.density_grid import sample_density_grid
from dreamfusion.export.marching_cubes import extract_isosurface

from export_test_fields import sphere_density


@pytest.mark.parametrize("backend", ["mcubes", "skimage"])
def test_off_centre_sphere_lands_in_place_with_outward_normals(backend):
    centre, radius = np.array([0.3, -0.1, 0.05]), 0.4
    grid = sample_density_grid(sphere_density(radius, tuple(centre)), 64)
    vertices, faces = extract_isosurface(grid, 10.0, 1.0, backend=backend)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    np.testing.assert_allclose(vertices.mean(0), centre, atol=2e-3)
    radii = np.linalg.norm(vertices - centre, axis=1)
    assert np.abs(radii / radius - 1).max() < 0.01
    assert mesh.is_watertight
    # Every face normal points away from the centre (consistent outward winding), volume > 0.
    outward = np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center - centre)
    assert (outward > 0).all()
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.02)


def test_surface_cut_by_the_cube_is_capped_on_the_cube():
    # A cylinder along x that sticks out of [-1, 1]^3: open tube without padding, closed with it.
    def cylinder(p):
        return 10.0 + 20.0 * (0.5 - p[:, 1:].norm(dim=-1))

    grid = sample_density_grid(cylinder, 48)
    vertices, faces = extract_isosurface(grid, 10.0, 1.0, close_boundary=True)
    closed = trimesh.Trimesh(vertices, faces, process=False)
    assert closed.is_watertight
    assert np.abs(vertices).max() <= 1.0
    assert closed.volume == pytest.approx(np.pi * 0.5**2 * 2.0, rel=0.02)
    open_vertices, open_faces = extract_isosurface(grid, 10.0, 1.0, close_boundary=False)
    assert not trimesh.Trimesh(open_vertices, open_faces, process=False).is_watertight


def test_empty_field_raises_one_line_user_error():
    grid = np.full((16, 16, 16), 3.0, dtype=np.float32)
    with pytest.raises(UserError) as info:
        extract_isosurface(grid, 10.0)
    message = str(info.value)
    assert "\n" not in message and "threshold 10" in message and "3" in message
