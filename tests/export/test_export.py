"""End to end: analytic fields -> mesh.obj / mesh.mtl / albedo.png / mesh.glb."""

import json
import struct

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from dreamfusion.errors import UserError
from dreamfusion.export import export_mesh

from export_test_fields import SPHERE_CENTRE, SPHERE_RADIUS, sphere_density, two_colour_albedo


def welded(mesh):
    """The loaded mesh with UV-seam splits merged back (geometry only)."""
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)


def check_sphere(vertices, faces, radius=SPHERE_RADIUS, centre=SPHERE_CENTRE):
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    np.testing.assert_allclose(mesh.vertices.mean(0), centre, atol=0.01)
    radii = np.linalg.norm(mesh.vertices - np.asarray(centre), axis=1)
    assert np.abs(radii / radius - 1).max() < 0.01
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.02)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ws") / "mesh"
    result = export_mesh(
        sphere_density(), two_colour_albedo, out_dir, resolution=128, decimate_target=5000,
        texture_size=256, progress=False,
    )
    return result


def test_sphere_at_128_is_round_closed_and_of_the_right_volume(exported):
    mesh = trimesh.load(exported.obj_path, process=False)
    check_sphere(mesh.vertices, mesh.faces)
    assert abs(exported.num_faces - 5000) <= 2


def test_files_follow_the_stable_dreamfusion_layout(exported):
    assert exported.out_dir.name == "mesh"
    assert sorted(p.name for p in exported.out_dir.iterdir()) == [
        "albedo.png", "mesh.glb", "mesh.mtl", "mesh.obj"]
    obj_text = exported.obj_path.read_text()
    assert obj_text.startswith("mtllib mesh.mtl\n") and "usemtl mat0\n" in obj_text
    assert "map_Kd albedo.png" in exported.mtl_path.read_text()
    assert Image.open(exported.texture_path).size == (256, 256)


def test_obj_and_glb_load_back_with_the_same_vertices_and_uvs(exported):
    obj = trimesh.load(exported.obj_path, process=False)
    scene = trimesh.load(exported.glb_path)
    (glb,) = scene.geometry.values()
    assert len(obj.vertices) == len(glb.vertices)
    assert len(obj.faces) == len(glb.faces) == exported.num_faces
    for mesh in (obj, glb):
        uv = np.asarray(mesh.visual.uv)
        assert uv.shape == (len(mesh.vertices), 2)
        assert uv.min() >= 0.0 and uv.max() <= 1.0
    # Same (position, uv) pairs; the two loaders order vertices differently.
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(np.c_[glb.vertices, glb.visual.uv]).query(np.c_[obj.vertices, obj.visual.uv])
    assert distance.max() < 1e-4
    assert welded(glb).is_watertight


def read_glb(path):
    """Minimal independent glTF reader: (json, accessor reader, image bytes reader)."""
    data = path.read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20 : 20 + json_length])
    binary = data[20 + json_length + 8 :]
    dtypes = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}
    sizes = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}

    def view_bytes(index):
        view = gltf["bufferViews"][index]
        start = view.get("byteOffset", 0)
        return binary[start : start + view["byteLength"]]

    def accessor(index):
        acc = gltf["accessors"][index]
        raw = view_bytes(acc["bufferView"])[acc.get("byteOffset", 0) :]
        count, width = acc["count"], sizes[acc["type"]]
        return np.frombuffer(raw, dtype=dtypes[acc["componentType"]], count=count * width).reshape(count, width)

    return gltf, accessor, view_bytes


def test_glb_as_a_gltf_viewer_reads_it(exported):
    import io

    gltf, accessor, view_bytes = read_glb(exported.glb_path)
    pbr = gltf["materials"][0]["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0  # glTF's default 1.0 renders black
    assert "baseColorTexture" in pbr and len(gltf["images"]) == 1
    image_info = gltf["images"][0]
    assert "uri" not in image_info  # embedded, not a side file
    image = np.asarray(Image.open(io.BytesIO(view_bytes(image_info["bufferView"]))).convert("RGB"))
    (primitive,) = gltf["meshes"][0]["primitives"]
    positions = accessor(primitive["attributes"]["POSITION"])
    uv = accessor(primitive["attributes"]["TEXCOORD_0"])
    faces = accessor(primitive["indices"]).reshape(-1, 3)
    assert "NORMAL" in primitive["attributes"]
    np.testing.assert_allclose(positions.mean(0), SPHERE_CENTRE, atol=0.01)  # axes as in the world
    # glTF: uv (0, 0) is the image's top-left, so row = v * height.
    size = image.shape[0]
    face_uv = uv[faces].mean(1)
    colours = image[(face_uv[:, 1] * size).astype(int), (face_uv[:, 0] * size).astype(int)]
    centres_x = positions[faces].mean(1)[:, 0]
    assert (colours[centres_x < -0.05] == [255, 0, 0]).all()
    assert (colours[centres_x > 0.05] == [0, 0, 255]).all()


@pytest.mark.parametrize("fmt", ["obj", "glb"])
def test_two_colour_texture_is_reproduced_through_the_written_files(exported, fmt):
    if fmt == "obj":
        mesh = trimesh.load(exported.obj_path, process=False)
        image = np.asarray(Image.open(exported.texture_path).convert("RGB"))
    else:
        (mesh,) = trimesh.load(exported.glb_path).geometry.values()
        image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    size = image.shape[0]
    uv = np.asarray(mesh.visual.uv)[mesh.faces].mean(1)  # inside each face's chart
    cols = np.clip((uv[:, 0] * size).astype(int), 0, size - 1)
    rows = np.clip(((1 - uv[:, 1]) * size).astype(int), 0, size - 1)
    colours = image[rows, cols]
    centres_x = mesh.triangles_center[:, 0]
    left, right = centres_x < -0.05, centres_x > 0.05
    assert left.sum() > 100 and right.sum() > 100
    assert (colours[left] == [255, 0, 0]).all()
    assert (colours[right] == [0, 0, 255]).all()


def test_textured_mesh_renders_red_left_blue_right_from_the_front(exported):
    from dreamfusion.cameras import intrinsics_from_fovy, look_at
    from dreamfusion.renderers.mesh import mvp_from_c2w, render_mesh

    (glb,) = trimesh.load(exported.glb_path).geometry.values()
    texture = torch.tensor(np.asarray(glb.visual.material.baseColorTexture.convert("RGB"))) / 255.0
    mvp = mvp_from_c2w(look_at(torch.tensor([[0.0, 0.0, 3.0]])), intrinsics_from_fovy(40.0, 32, 32), 32, 32)
    out = render_mesh(torch.tensor(glb.vertices, dtype=torch.float32), torch.tensor(glb.faces), mvp,
                      32, 32, uvs=torch.tensor(glb.visual.uv, dtype=torch.float32), texture=texture)
    rgb = out["rgb"][0]
    # x = 0 projects to column 16 (the camera looks at the origin); +x is on the right.
    assert torch.allclose(rgb[16, 12], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)
    assert torch.allclose(rgb[16, 20], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)
    assert torch.allclose(rgb[1, 1], torch.ones(3))  # background


@pytest.mark.slow
def test_sphere_at_256_with_default_decimation_and_texture(tmp_path):
    result = export_mesh(sphere_density(), two_colour_albedo, tmp_path / "mesh", resolution=256,
                         progress=False)
    obj = trimesh.load(result.obj_path, process=False)
    check_sphere(obj.vertices, obj.faces)
    assert abs(result.num_faces - 50_000) <= 2
    assert Image.open(result.texture_path).size == (2048, 2048)


def test_unwritable_output_directory_is_a_one_line_user_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError) as info:
        export_mesh(sphere_density(), two_colour_albedo, blocker / "mesh", resolution=16,
                    progress=False)
    assert "cannot write to output directory" in str(info.value) and "\n" not in str(info.value)


def test_empty_field_is_a_one_line_user_error(tmp_path):
    calls = []

    def empty(x):
        calls.append(len(x))
        return torch.zeros(x.shape[0])

    with pytest.raises(UserError) as info:
        export_mesh(empty, two_colour_albedo, tmp_path / "mesh", resolution=16, progress=False)
    assert "no density above the threshold" in str(info.value) and "\n" not in str(info.value)
    assert sum(calls) == 16**3


def test_floaters_only_field_is_empty_after_clean_up(tmp_path):
    # Only the grid's corner node is dense: one triangle, removed as a piece of < 8 faces.
    corner_speck = sphere_density(radius=0.05, centre=(1.0, 1.0, 1.0))
    with pytest.raises(UserError, match="empty after removing small pieces"):
        export_mesh(corner_speck, two_colour_albedo, tmp_path / "mesh", resolution=16,
                    close_boundary=False, progress=False)


@pytest.mark.parametrize("bad", [dict(resolution=4), dict(texture_size=8), dict(bound=0.0),
                                 dict(decimate_target=2), dict(density_thresh=float("nan"))])
def test_bad_options_are_user_errors(tmp_path, bad):
    with pytest.raises(UserError):
        export_mesh(sphere_density(), two_colour_albedo, tmp_path / "mesh", progress=False, **bad)
