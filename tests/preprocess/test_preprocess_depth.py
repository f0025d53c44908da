"""Depth and normals: the files' conventions, closed-form normals of a sphere, and a tiny random DPT end to end."""

import cv2
import numpy as np
import pytest
import torch
from preprocess_scenes import rgba_ellipse, run_preprocess, save_tiny_dpt

from dreamfusion import losses
from dreamfusion.preprocess import depth as depth_module
from dreamfusion.preprocess.depth import (DepthEstimator, decode_normals, depth_from_disparity, encode_normals,
                                          normals_from_depth)
from dreamfusion.preprocess.recenter import Sidecar


def sphere(size=161, radius=60.0):
    """Depth (larger = farther, any unit) of a sphere seen from afar, its mask and analytic camera-frame normals."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    cx = cy = size / 2
    u, v = (xx - cx) / radius, (yy - cy) / radius  # v grows downwards (image rows)
    r2 = u ** 2 + v ** 2
    mask = r2 < 1.0
    nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    depth = np.where(mask, 10.0 - nz * radius, 0.0)  # front of the sphere nearest
    normals = np.stack([u, -v, nz], -1)  # x right, y up, z towards the viewer
    return depth, mask, normals, r2


def angles_deg(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def test_depth_png_is_larger_farther_normalised_inside_the_mask():
    yy, xx = np.mgrid[0:64, 0:64]
    disparity = 5.0 - ((xx - 32) ** 2 + (yy - 32) ** 2) / 300.0  # DPT-like: the middle is nearer (larger)
    mask = np.zeros((64, 64), bool)
    mask[8:56, 8:56] = True
    depth = depth_from_disparity(disparity, mask)
    assert depth[32, 32] == pytest.approx(0.0, abs=1e-6)  # nearest -> 0
    assert depth[mask].max() == pytest.approx(1.0, abs=1e-6)  # farthest corner of the mask -> 1
    assert depth[32, 32] < depth[32, 12] < depth[10, 10]
    assert (depth[~mask] == 0).all()


def test_sphere_normals_match_the_analytic_ones_in_the_written_encoding():
    depth, mask, analytic, r2 = sphere()
    normalised = depth_from_disparity(-depth, mask)  # any affine depth; the extent prior fits a sphere
    encoded = encode_normals(normals_from_depth(normalised, mask), mask)
    assert encoded.dtype == np.uint8 and (encoded[~mask] == 0).all()
    decoded = decode_normals(encoded)  # what the training loss makes of the file: 1 - 2x
    inner = r2 < 0.8 ** 2
    error = angles_deg(decoded[inner], analytic[inner])
    assert error.max() < 2.5 and error.mean() < 1.0, (error.max(), error.mean())
    rim = (r2 >= 0.8 ** 2) & (r2 < 0.95 ** 2)
    assert np.median(angles_deg(decoded[rim], analytic[rim])) < 5.0
    # right of the centre the normal points right (+x), above it up (+y); the front faces the viewer
    assert decoded[80, 130, 0] > 0.5 and decoded[30, 80, 1] > 0.5 and decoded[80, 80, 2] > 0.99
    # the training loss agrees: a render with the analytic normals has ~zero normal loss against the file
    pred = torch.from_numpy((analytic + 1.0) / 2.0).float()
    loss = losses.reference_normal_loss(pred, torch.from_numpy(encoded / 255.0).float(), torch.from_numpy(inner))
    assert float(loss) < 1e-3
    flipped = losses.reference_normal_loss(pred, torch.from_numpy(255 - encoded[..., :]).float() / 255.0,
                                           torch.from_numpy(inner))
    assert float(flipped) > 1.0


def test_a_plane_receding_to_the_right_faces_right():
    mask = np.ones((40, 40), bool)
    depth = np.tile(np.arange(40, dtype=np.float64), (40, 1))  # farther to the right
    normals = normals_from_depth(depth, mask, depth_extent=39.0)  # 45 degrees
    np.testing.assert_allclose(normals[20, 20], [np.sqrt(0.5), 0.0, np.sqrt(0.5)], atol=1e-9)
    np.testing.assert_allclose(normals[0, 0], normals[20, 20], atol=1e-9)  # one-sided differences at the edges


def test_default_preprocessing_without_a_processor_config():
    estimator = DepthEstimator(model=None, processor=None, device=torch.device("cpu"), name="x")
    pixels = estimator.model_input(np.full((50, 80, 3), 255, np.uint8))
    assert pixels.shape == (1, 3, 384, 384)
    torch.testing.assert_close(pixels, torch.ones_like(pixels))  # (1 - 0.5) / 0.5
    assert estimator.model_input(np.zeros((50, 80, 3), np.uint8)).eq(-1).all()


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory):
    return save_tiny_dpt(tmp_path_factory.mktemp("tiny-dpt"))


def test_tiny_dpt_end_to_end_through_the_cli(tmp_path, capfd, tiny_dpt):
    box = (60, 40, 260, 200)
    rgba = rgba_ellipse(240, 320, box)
    cv2.imwrite(str(tmp_path / "obj.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    code, out, err = run_preprocess(capfd, str(tmp_path / "obj.png"), "--size", "96", "--depth_model", str(tiny_dpt))
    assert code == 0 and err == [], err  # no progress bars or backend warnings on stderr
    assert f"depth model {tiny_dpt} loaded" in out and "depth (" in out
    alpha = cv2.imread(str(tmp_path / "obj_rgba.png"), cv2.IMREAD_UNCHANGED)[..., 3]
    depth = cv2.imread(str(tmp_path / "obj_depth.png"), cv2.IMREAD_UNCHANGED)
    normal = cv2.cvtColor(cv2.imread(str(tmp_path / "obj_normal.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert depth.shape == (96, 96) and depth.dtype == np.uint8 and normal.shape == (96, 96, 3)
    outside, inside = alpha == 0, cv2.erode(alpha, np.ones((3, 3), np.uint8)) == 255
    assert (depth[outside] == 0).all() and (normal[outside] == 0).all()
    n = decode_normals(normal[inside])
    assert np.abs(np.linalg.norm(n, axis=-1) - 1.0).max() < 0.05 and (n[:, 2] > 0).all()

    # the written depth is the model's disparity, negated, normalised in the mask, placed by the sidecar
    estimator = depth_module.load_depth_estimator(str(tiny_dpt))
    expected = depth_from_disparity(estimator.disparity(np.ascontiguousarray(rgba[..., :3])), rgba[..., 3] > 127)
    sidecar = Sidecar.load(tmp_path / "obj_rgba.json")
    affine = np.array([[sidecar.scale, 0, sidecar.offset[0]], [0, sidecar.scale, sidecar.offset[1]]])
    # warpAffine works in pixel-centre coordinates: shift by half a pixel on both sides
    affine[:, 2] += 0.5 * sidecar.scale - 0.5
    placed = cv2.warpAffine(expected, affine, (96, 96), flags=cv2.INTER_LINEAR)
    correlation = np.corrcoef(placed[inside], depth[inside].astype(np.float64))[0, 1]
    assert correlation > 0.98, correlation
    assert np.corrcoef(placed[inside], 255 - depth[inside].astype(np.float64))[0, 1] < -0.98


def test_nearer_in_the_middle_is_darker_in_the_written_depth(tmp_path, capfd, monkeypatch):
    """A stand-in depth model whose disparity peaks in the middle (nearer): _depth.png is smaller there."""

    class Bump:
        name = "bump"

        def disparity(self, rgb):
            h, w = rgb.shape[:2]
            yy, xx = np.mgrid[0:h, 0:w]
            return (1.0 - ((xx - w / 2) / w) ** 2 - ((yy - h / 2) / h) ** 2).astype(np.float32)

    monkeypatch.setattr(depth_module, "load_depth_estimator", lambda key, device=None: Bump())
    cv2.imwrite(str(tmp_path / "bump.png"), cv2.cvtColor(rgba_ellipse(200, 200, (20, 20, 180, 180)), cv2.COLOR_RGBA2BGRA))
    code, out, err = run_preprocess(capfd, str(tmp_path / "bump.png"), "--size", "64", "--border_ratio", "0",
                                    "--depth_model", "bump")
    assert code == 0 and err == [], err
    depth = cv2.imread(str(tmp_path / "bump_depth.png"), cv2.IMREAD_UNCHANGED).astype(int)
    assert depth[32, 32] <= 3 and depth[32, 32] < depth[32, 12] < depth[32, 3]
    assert depth[12, 12] > depth[20, 20] > depth[32, 32]


def test_depth_model_missing_offline_writes_the_rgba_only(folder, capfd):
    cv2.imwrite(str(folder / "solo.png"), cv2.cvtColor(rgba_ellipse(80, 80, (10, 10, 70, 70)), cv2.COLOR_RGBA2BGRA))
    for stale in ("solo_depth.png", "solo_normal.png"):  # from an earlier run: no longer this photo's
        (folder / stale).write_bytes(b"old")
    code, out, err = run_preprocess(capfd, str(folder / "solo.png"), "--size", "64")
    assert code == 0 and err == [], err
    notes = [line for line in out.splitlines() if "not available offline" in line]
    assert len(notes) == 1 and notes[0].startswith("note: depth model Intel/dpt-hybrid-midas is not available offline (")
    assert notes[0].endswith("writing the RGBA only — training then runs without depth/normal losses")
    assert sorted(p.name for p in folder.iterdir()) == ["solo.png", "solo_rgba.json", "solo_rgba.png"]


def test_missing_depth_folder_is_an_error(folder, capfd):
    cv2.imwrite(str(folder / "solo.png"), cv2.cvtColor(rgba_ellipse(80, 80, (10, 10, 70, 70)), cv2.COLOR_RGBA2BGRA))
    code, out, err = run_preprocess(capfd, str(folder / "solo.png"), "--depth_model", str(folder / "nowhere"))
    assert code == 2 and len(err) == 1 and "depth model weights folder" in err[0] and "--depth_model" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == ["solo.png"]
