import numpy as np
import torch
import trimesh

from dreamfusion.export.texture import bake_texture, pad_seams, texel_positions
from dreamfusion.export.uv_unwrap import unwrap_uv

from export_test_fields import two_colour_albedo


def sample_texture(image, uv):
    """Nearest texel for OBJ-convention UVs (v up, row 0 = v 1): Float[N, C]."""
    size = image.shape[0]
    cols = np.clip((uv[:, 0] * size).astype(int), 0, size - 1)
    rows = np.clip(((1 - uv[:, 1]) * size).astype(int), 0, size - 1)
    return image[rows, cols]


def small_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.6)
    return sphere.vertices.astype(np.float32), sphere.faces


def test_unwrap_gives_uvs_in_unit_square_that_map_back_to_the_faces():
    vertices, faces = small_sphere()
    layout = unwrap_uv(vertices, faces, texture_size=256)
    assert layout.uvs.min() >= 0 and layout.uvs.max() <= 1
    np.testing.assert_array_equal(layout.vertex_map[layout.uv_faces], faces)
    assert len(layout.uvs) >= len(vertices)  # split along seams


def test_texel_positions_lie_on_their_triangles():
    vertices, faces = small_sphere()
    layout = unwrap_uv(vertices, faces, texture_size=128)
    positions, mask, _ = texel_positions(vertices, layout, 128)
    points = positions[mask].numpy()
    assert mask.float().mean() > 0.3  # the atlas is reasonably packed
    # Points on flat triangles of an inscribed polyhedron: radius between inradius and 0.6.
    radii = np.linalg.norm(points, axis=1)
    assert radii.max() <= 0.6 + 1e-5 and radii.min() > 0.6 * 0.98


def test_two_colour_field_is_reproduced_at_face_centres():
    vertices, faces = small_sphere()
    layout = unwrap_uv(vertices, faces, texture_size=256)
    baked = bake_texture(vertices, layout, two_colour_albedo, 256, points_per_chunk=1000)
    centres = vertices[faces].mean(1)
    uv_centres = layout.uvs[layout.uv_faces].mean(1)
    colours = sample_texture(baked.image, uv_centres)
    left, right = centres[:, 0] < -0.05, centres[:, 0] > 0.05
    np.testing.assert_allclose(colours[left], [[1.0, 0.0, 0.0]] * int(left.sum()), atol=1e-6)
    np.testing.assert_allclose(colours[right], [[0.0, 0.0, 1.0]] * int(right.sum()), atol=1e-6)


def test_pad_seams_fills_from_nearest_covered_texel_and_keeps_covered_ones():
    image = np.zeros((8, 8, 3), dtype=np.float32)
    mask = np.zeros((8, 8), dtype=bool)
    image[1, 1], mask[1, 1] = [1, 0, 0], True
    image[6, 6], mask[6, 6] = [0, 0, 1], True
    padded = pad_seams(image, mask)
    np.testing.assert_array_equal(padded[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(padded[7, 7], [0, 0, 1])
    np.testing.assert_array_equal(padded[mask], image[mask])
    assert (padded.sum(-1) == 1).all()  # no black texel left


def test_colour_function_is_clamped_and_nan_safe():
    vertices, faces = small_sphere()
    layout = unwrap_uv(vertices, faces, texture_size=64)

    def wild(x):
        out = torch.full((x.shape[0], 3), 2.0)
        out[:, 1] = float("nan")
        out[:, 2] = -1.0
        return out

    baked = bake_texture(vertices, layout, wild, 64)
    np.testing.assert_array_equal(baked.image[baked.mask], [[1.0, 0.0, 0.0]] * int(baked.mask.sum()))
