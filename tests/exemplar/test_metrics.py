"""Every 3D metric against closed forms: a sphere mesh against the sphere's SDF, a shifted sphere,
a mesh with an inner shell, a mesh with a floater; and the views, framing and mesh renderer."""

import math

import numpy as np
import pytest
import torch

from dreamfusion.errors import UserError
from dreamfusion.exemplar import sdf as S
from dreamfusion.exemplar.metrics import (RingSpec, ViewRender, check_framed, evaluation_cameras, ground_truth,
                                          load_mesh, mesh_geometry_report, normal_error_deg, score_views,
                                          surface_distances, volume_iou, voxelize_mesh)
from dreamfusion.exemplar.metrics.geometry import (edge_report, hidden_area_fraction, object_solid, piece_report,
                                                   sample_surface, weld)
from dreamfusion.exemplar.metrics.views import EVAL_FOVY, EVAL_RADIUS, EVAL_SUPERSAMPLE
from dreamfusion.exemplar.objects import AnalyticObject, Part, get_object

R = 0.5


def sphere_object(radius=R, centre=(0.0, 0.0, 0.0)) -> AnalyticObject:
    return AnalyticObject(name=f"a test sphere {radius} {centre}", parts=[
        Part("ball", lambda p: S.sphere(p, centre, radius), (0.8, 0.2, 0.1))])


def sphere_mesh(radius=R, centre=(0.0, 0.0, 0.0), subdivisions=5, inward=False):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    vertices = np.asarray(mesh.vertices) + np.asarray(centre)
    faces = np.asarray(mesh.faces)
    return vertices, (faces[:, ::-1] if inward else faces).copy()


def two_sphere_iou(r: float, s: float) -> float:
    """Closed form: IoU of two balls of radius r whose centres are s apart."""
    v = 4.0 / 3.0 * math.pi * r**3
    lens = math.pi * (4 * r + s) * (2 * r - s) ** 2 / 12.0
    return lens / (2 * v - lens)


def test_sphere_mesh_matches_its_sdf():
    vertices, faces = sphere_mesh()
    obj = sphere_object()
    assert volume_iou(voxelize_mesh(vertices, faces, 96), object_solid(obj, 96)) > 0.99
    d = surface_distances(vertices, faces, obj, samples=20_000)
    # Flat facets of an icosphere (edge ~0.019) sit at most r(1 - cos(edge/2r)) ~ 2e-4 inside.
    assert d["mesh_to_object"]["p95"] < 1e-3 and d["object_to_mesh"]["p95"] < 5e-3
    assert d["mesh_to_object"]["within"] == 1.0


def test_shifted_sphere_scores_the_closed_form():
    shift = 0.1
    vertices, faces = sphere_mesh(centre=(shift, 0.0, 0.0))
    obj = sphere_object()
    iou = volume_iou(voxelize_mesh(vertices, faces, 128), object_solid(obj, 128))
    assert iou == pytest.approx(two_sphere_iou(R, shift), abs=0.01)  # 0.740
    d = surface_distances(vertices, faces, obj, samples=50_000)
    # Mesh -> sphere: | |c + r·u| - r | for u uniform on the sphere, integrated over cos(theta).
    cos = np.linspace(-1, 1, 200_001)
    dist = np.abs(np.sqrt(R**2 + shift**2 + 2 * R * shift * cos) - R)
    assert d["mesh_to_object"]["mean"] == pytest.approx(dist.mean(), rel=0.02)
    assert d["mesh_to_object"]["max"] == pytest.approx(shift, abs=2e-3)
    assert d["object_to_mesh"]["mean"] == pytest.approx(dist.mean(), rel=0.05)
    # within 0.03: the cap where |sqrt(...) - r| <= 0.03, by area (cos is uniform by area)
    assert d["mesh_to_object"]["within"] == pytest.approx((dist <= 0.03).mean(), abs=0.01)


def test_inner_shell_is_found_and_measured():
    outer_v, outer_f = sphere_mesh(subdivisions=4)
    inner_v, inner_f = sphere_mesh(radius=0.3, subdivisions=3, inward=True)  # a hollow field's inner skin
    vertices = np.concatenate([outer_v, inner_v])
    faces = np.concatenate([outer_f, inner_f + len(outer_v)])
    pieces = piece_report(vertices, faces)
    assert pieces["pieces"] == 2 and pieces["enclosed_pieces"] == 1
    points, _ = sample_surface(vertices, faces, 100_000)
    inner_share = 0.3**2 / (0.3**2 + 0.5**2)
    assert hidden_area_fraction(vertices, faces, points) == pytest.approx(inner_share, abs=0.01)
    # A torn inner skin (open, as marching cubes leaves them at the grid's edge) is just as hidden.
    torn = np.concatenate([outer_f, inner_f[40:] + len(outer_v)])
    points, _ = sample_surface(vertices, torn, 100_000)
    assert hidden_area_fraction(vertices, torn, points) == pytest.approx(inner_share, abs=0.01)
    assert edge_report(faces)["watertight"] and not edge_report(torn)["watertight"]  # closed and consistently wound, yet not a clean solid
    # The solid is the shell between the skins: volume IoU against the full ball is 1 - (0.3/0.5)^3.
    iou = volume_iou(voxelize_mesh(vertices, faces, 128), object_solid(sphere_object(), 128))
    assert iou == pytest.approx(1 - 0.6**3, abs=0.02)


def test_floater_is_a_second_piece_far_from_the_surface():
    v1, f1 = sphere_mesh(subdivisions=4)
    v2, f2 = sphere_mesh(radius=0.1, centre=(0.0, -0.8, 0.0), subdivisions=2)
    vertices, faces = np.concatenate([v1, v2]), np.concatenate([f1, f2 + len(v1)])
    pieces = piece_report(vertices, faces)
    assert pieces["pieces"] == 2 and pieces["enclosed_pieces"] == 0
    points, _ = sample_surface(vertices, faces, 100_000)
    assert hidden_area_fraction(vertices, faces, points) == 0.0
    d = surface_distances(vertices, faces, sphere_object(), samples=20_000)
    floater_share = (0.1 / 0.5) ** 2 / (1 + (0.1 / 0.5) ** 2)  # its share of the area
    assert 1 - d["mesh_to_object"]["within"] == pytest.approx(floater_share, abs=0.01)
    assert d["mesh_to_object"]["max"] == pytest.approx(0.8 + 0.1 - R, abs=0.01)


def test_open_and_flipped_meshes_are_not_watertight():
    vertices, faces = sphere_mesh(subdivisions=2)
    assert edge_report(faces)["watertight"]
    opened = edge_report(faces[1:])
    assert opened["boundary_edges"] == 3 and not opened["watertight"]
    flipped = faces.copy()
    flipped[0] = flipped[0, ::-1]
    assert edge_report(flipped)["misoriented_edges"] == 3


def test_weld_merges_seam_copies():
    vertices, faces = sphere_mesh(subdivisions=2)
    split = np.concatenate([vertices, vertices[:10]])  # a UV seam duplicates vertices 0..9
    faces2 = faces.copy()
    faces2[faces2 < 10] += len(vertices)
    welded_v, welded_f = weld(split, faces2)
    assert len(welded_v) == len(vertices) and piece_report(welded_v, welded_f)["pieces"] == 1


def test_evaluation_rings_are_all_around_and_frame_the_bound():
    cams = evaluation_cameras(RingSpec(size=16))
    assert cams.c2w.shape[0] == 40
    assert sorted(set(cams.polar.tolist())) == [30.0, 60.0, 90.0, 120.0, 150.0]
    # None on the test video's circle (multiples of 360/N from azimuth 0 for the usual N).
    for n in (8, 60, 100):
        step = 360.0 / n
        assert (torch.remainder(cams.azimuth, step).sub(0).abs() > 1e-3).all()
    assert EVAL_RADIUS * math.sin(math.radians(EVAL_FOVY / 2)) >= 1.0  # the whole unit ball is in view


def test_check_framed_catches_a_cropped_object():
    obj = sphere_object(radius=0.8)
    cams = evaluation_cameras(RingSpec(size=16, polars=(90.0,), azimuths=2))
    check_framed(ground_truth(obj, cams, use_cache=False).alpha, "framed")
    tight = evaluation_cameras(RingSpec(size=16, polars=(90.0,), azimuths=2, fovy=20.0))
    with pytest.raises(UserError, match="touches the image border"):
        check_framed(ground_truth(obj, tight, use_cache=False).alpha, "cropped")


def test_score_views_of_the_truth_is_perfect_and_a_shift_is_not():
    obj = sphere_object()
    spec = RingSpec(size=24, polars=(60.0, 120.0), azimuths=2)
    cams = evaluation_cameras(spec)
    truth = ground_truth(obj, cams)
    perfect = score_views(lambda c: ViewRender(truth.rgb, truth.alpha, truth.normal), truth, cams)
    assert perfect["all"]["iou"] == 1.0 and perfect["all"]["psnr"] == 99.0 and perfect["all"]["normal_deg"] < 1e-3
    assert [r["polar"] for r in perfect["rings"]] == [60.0, 120.0]
    shifted = ground_truth(sphere_object(centre=(0.0, 0.2, 0.0)), cams)
    worse = score_views(lambda c: ViewRender(shifted.rgb, shifted.alpha, shifted.normal), truth, cams)
    assert worse["all"]["iou"] < 0.8 and worse["all"]["psnr"] < 20


def test_normal_error_of_opposite_normals_is_180():
    n = torch.nn.functional.normalize(torch.randn(2, 4, 4, 3), dim=-1)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    assert normal_error_deg(n, n, mask, mask).max() < 1e-3
    assert normal_error_deg(-n, n, mask, mask).min() == pytest.approx(180.0, abs=0.1)


def test_exported_sphere_mesh_reloads_and_scores_like_the_object(tmp_path):
    """The export pipeline's OBJ (texture included) read back and rasterised scores like the truth."""
    from dreamfusion.exemplar.metrics.workspace import mesh_renderer
    from dreamfusion.export import export_mesh

    obj = sphere_object()
    export_mesh(lambda x: -100.0 * obj.sdf(x), obj.albedo, tmp_path, resolution=64, density_thresh=0.0,
                decimate_target=4000, texture_size=128, progress=False)
    mesh = load_mesh(tmp_path / "mesh.obj")
    assert mesh.texture is not None
    spec = RingSpec(size=32, polars=(30.0, 90.0, 150.0), azimuths=2)
    cams = evaluation_cameras(spec)
    scores = score_views(mesh_renderer(mesh), ground_truth(obj, cams), cams)
    assert scores["min"]["iou"] > 0.97 and scores["min"]["psnr"] > 30 and scores["all"]["normal_deg"] < 8
    report = mesh_geometry_report(mesh, obj, resolution=64, samples=20_000)
    assert report["watertight"] and report["pieces"] == 1 and report["inner_shell_area"] == 0.0
    assert report["volume_iou"] > 0.97 and report["mesh_to_object"]["p95"] < 0.01
    assert report["signed_volume"] == pytest.approx(4 / 3 * math.pi * R**3, rel=0.03)


def test_point_triangle_distance_in_every_region():
    from dreamfusion.exemplar.metrics.geometry import point_triangle_distance

    a, b, c = np.array([[0.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]])
    cases = {(0.2, 0.2, 0.5): 0.5,              # above the face
             (-1.0, -1.0, 0.0): math.sqrt(2),   # vertex a
             (2.0, 0.0, 0.0): 1.0,              # vertex b
             (0.5, -2.0, 0.0): 2.0,             # edge ab
             (-3.0, 0.5, 0.0): 3.0,             # edge ac
             (1.0, 1.0, 0.0): math.sqrt(0.5)}   # edge bc
    for p, want in cases.items():
        got = point_triangle_distance(np.array([p]), a, b, c)[0]
        assert got == pytest.approx(want, abs=1e-9), p


def test_eval_supersampling_resolves_the_half_covered_pixels_of_thin_parts():
    """Coverage thresholded at 0.5 is ambiguous where a pixel is exactly half covered; at 2x2 samples
    that is common on the teapot's spout and handle ("> 0.5" and ">= 0.5" masks then disagree by
    about 5 % of their area, more than the margins the benchmark judges). EVAL_SUPERSAMPLE must keep it small."""
    cams = evaluation_cameras(RingSpec(size=64, polars=(60.0, 120.0), azimuths=4))
    teapot = get_object("a teapot")

    def ambiguity(k):
        alpha = ground_truth(teapot, cams, supersample=k, use_cache=False).alpha
        return float((alpha > 0.5).sum() / (alpha >= 0.5).sum())

    assert ambiguity(2) < 0.96            # measured 0.946
    assert ambiguity(EVAL_SUPERSAMPLE) > 0.975  # measured 0.981 at 4x4
