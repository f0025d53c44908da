import numpy as np
import trimesh

from dreamfusion.export.cleanup import clean_mesh
from dreamfusion.export.decimate import decimate_mesh


def test_clean_mesh_drops_floaters_and_duplicates_and_keeps_the_object():
    body = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    floater = trimesh.creation.icosphere(subdivisions=1, radius=0.02)
    floater.apply_translation([3.0, 0.0, 0.0])
    vertices = np.concatenate([body.vertices, floater.vertices])
    faces = np.concatenate([body.faces, floater.faces + len(body.vertices)])
    faces = np.concatenate([faces, faces[:10]])  # duplicate faces
    vertices = np.concatenate([vertices, [[9.0, 9.0, 9.0]]])  # unreferenced vertex
    clean_vertices, clean_faces = clean_mesh(vertices, faces)
    assert len(clean_faces) == len(body.faces)
    assert len(clean_vertices) == len(body.vertices)
    assert np.abs(clean_vertices).max() <= 1.0 + 1e-6
    assert trimesh.Trimesh(clean_vertices, clean_faces, process=False).is_watertight


def test_decimation_reaches_target_and_keeps_a_closed_outward_surface():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.6)  # 20480 faces
    vertices, faces = decimate_mesh(sphere.vertices, sphere.faces, 2000)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert abs(len(faces) - 2000) <= 2
    assert mesh.is_watertight
    assert mesh.volume > 0  # outward winding kept
    assert np.abs(np.linalg.norm(vertices, axis=1) / 0.6 - 1).max() < 0.01
    # Already below target: unchanged.
    same_v, same_f = decimate_mesh(vertices, faces, 5000)
    assert np.array_equal(same_f, faces)
