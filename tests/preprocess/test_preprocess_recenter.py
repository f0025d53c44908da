"""Recentring geometry and the sidecar transform: exact border ratio, centring, and source <-> output mapping."""

import json

import cv2
import numpy as np
import pytest
from preprocess_scenes import rgba_ellipse, run_preprocess

from dreamfusion.preprocess.recenter import Sidecar, object_bbox, recentre, source_bbox


def out_box(alpha):
    box = object_bbox(alpha)
    assert box is not None
    return np.asarray(box, float)


@pytest.mark.parametrize("shape, box, size, border", [
    ((300, 400), (120, 50, 281, 211), 256, 0.2),    # shrink, square-ish box
    ((300, 400), (10, 100, 390, 160), 256, 0.1),    # wide box, nearly the whole width
    ((120, 90), (40, 30, 52, 75), 256, 0.2),        # tall small box: enlarged 4.5x
    ((200, 200), (0, 0, 90, 200), 128, 0.35),       # box touching the image edges
    ((500, 333), (101, 7, 250, 493), 64, 0.0),      # no border at all
])
def test_box_is_scaled_exactly_and_centred(shape, box, size, border):
    rgba = rgba_ellipse(*shape, box)
    assert object_bbox(rgba[..., 3]) == box
    placed = recentre({"rgba": rgba}, box, size, border)
    out = placed.images["rgba"]
    assert out.shape == (size, size, 4) and out.dtype == np.uint8
    x0, y0, x1, y1 = out_box(out[..., 3])
    target = size * (1 - border)
    assert placed.scale == pytest.approx(target / max(box[2] - box[0], box[3] - box[1]), rel=1e-12)
    assert abs(max(x1 - x0, y1 - y0) - target) <= 1.0
    assert abs((x0 + x1) / 2 - size / 2) <= 1.0 and abs((y0 + y1) / 2 - size / 2) <= 1.0
    # the transform maps the source box corners onto the output box
    ox, oy = placed.offset
    mapped = np.asarray(box, float) * placed.scale + [ox, oy, ox, oy]
    np.testing.assert_allclose(mapped, [x0, y0, x1, y1], atol=1.0)


def test_depth_and_normals_get_the_same_placement():
    rgba = rgba_ellipse(200, 300, (50, 40, 250, 160))
    depth = rgba[..., 3].astype(np.float32) / 255.0
    normal = np.repeat(rgba[..., 3:], 3, axis=-1)
    placed = recentre({"rgba": rgba, "depth": depth, "normal": normal}, (50, 40, 250, 160), 128, 0.2)
    assert placed.images["depth"].shape == (128, 128) and placed.images["depth"].dtype == np.float32
    assert placed.images["normal"].shape == (128, 128, 3)
    np.testing.assert_allclose(placed.images["depth"] * 255.0, placed.images["rgba"][..., 3], atol=1.0)
    np.testing.assert_array_equal(placed.images["normal"][..., 1], placed.images["rgba"][..., 3])


def test_sidecar_round_trip_and_inverse(tmp_path):
    sidecar = Sidecar(source="../photo.jpg", source_size=[600, 800], recentred=True, size=256, border_ratio=0.2,
                      output_size=[256, 256], bbox=[100, 50, 500, 450], scale=0.512, offset=[-23.2, 2.4])
    path = tmp_path / "photo_rgba.json"
    path.write_text(sidecar.to_json())
    assert Sidecar.load(path) == sidecar
    points = np.array([[0.0, 0.0], [100.5, 50.5], [799.0, 599.0]])
    np.testing.assert_allclose(sidecar.to_source(sidecar.to_output(points)), points, atol=1e-12)
    np.testing.assert_allclose(sidecar.to_output(points)[1], [100.5 * 0.512 - 23.2, 50.5 * 0.512 + 2.4])


def test_source_bbox_of_a_downscaled_box_contains_it():
    assert source_bbox((10, 20, 30, 40), 0.25, (1000, 1000)) == [40, 80, 120, 160]
    assert source_bbox((10, 20, 30, 40), 0.3, (1000, 1000)) == [33, 66, 100, 134]
    assert source_bbox((0, 0, 5, 5), 0.5, (9, 9)) == [0, 0, 9, 9]


def _check_sidecar_against_outputs(folder, stem, box, source_rgba, tolerance_px=1.0):
    """Map the source box through the sidecar onto the output's alpha box, and output pixels back to
    the source: the colour (which encodes the source position) must agree."""
    sidecar = Sidecar.load(folder / f"{stem}_rgba.json")
    out = cv2.cvtColor(cv2.imread(str(folder / f"{stem}_rgba.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    assert list(out.shape[:2]) == sidecar.output_size
    mapped = sidecar.to_output(np.asarray(box, float).reshape(2, 2)).ravel()
    np.testing.assert_allclose(mapped, out_box(out[..., 3]), atol=tolerance_px)
    # output pixel centres well inside the object, mapped back to the source, have the source's colour
    rows, cols = np.nonzero(cv2.erode(out[..., 3], np.ones((5, 5), np.uint8)) == 255)
    pick = np.linspace(0, rows.size - 1, 200).astype(int)
    centres = np.stack([cols[pick] + 0.5, rows[pick] + 0.5], -1)
    source = sidecar.to_source(centres)
    height, width = sidecar.source_size
    expected_r = source[:, 0] / width * 255 - 0.5  # rgba_ellipse truncates: R = floor(x / width * 255)
    expected_g = source[:, 1] / height * 255 - 0.5
    # no bias: half an output pixel of offset error would shift these means by 0.3 to 0.6 levels
    assert abs(np.mean(out[rows[pick], cols[pick], 0] - expected_r)) <= 0.15
    assert abs(np.mean(out[rows[pick], cols[pick], 1] - expected_g)) <= 0.15
    assert np.abs(out[rows[pick], cols[pick], 0] - expected_r).max() <= 2.0
    assert np.abs(out[rows[pick], cols[pick], 1] - expected_g).max() <= 2.0
    return sidecar, out


def test_cli_sidecar_maps_source_pixels_to_output_pixels(tmp_path, capfd):
    box = (130, 60, 371, 241)
    rgba = rgba_ellipse(300, 500, box)
    cv2.imwrite(str(tmp_path / "toy.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    code, out, err = run_preprocess(capfd, str(tmp_path / "toy.png"), "--size", "128", "--border_ratio", "0.25",
                                    "--depth_model", "none")
    assert code == 0 and err == [], err
    sidecar, image = _check_sidecar_against_outputs(tmp_path, "toy", box, rgba)
    assert sidecar.bbox == list(box) and sidecar.source_size == [300, 500] and sidecar.recentred
    assert sidecar.source == "toy.png" and sidecar.size == 128 and sidecar.border_ratio == 0.25
    assert image.shape == (128, 128, 4)
    data = json.loads((tmp_path / "toy_rgba.json").read_text())
    assert set(data) >= {"source", "source_size", "recentred", "size", "border_ratio", "bbox", "scale", "offset"}


def test_no_recenter_keeps_the_resolution(tmp_path, capfd):
    box = (30, 20, 170, 90)
    rgba = rgba_ellipse(120, 210, box)
    cv2.imwrite(str(tmp_path / "flat.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    code, out, err = run_preprocess(capfd, str(tmp_path / "flat.png"), "--no-recenter", "--depth_model", "none")
    assert code == 0 and err == [], err
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "flat_rgba.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    np.testing.assert_array_equal(written, rgba)
    sidecar = Sidecar.load(tmp_path / "flat_rgba.json")
    assert (sidecar.recentred, sidecar.scale, sidecar.offset, sidecar.output_size) == (False, 1.0, [0.0, 0.0], [120, 210])
    assert sidecar.bbox == list(box)


def test_huge_photo_is_downscaled_first_and_the_sidecar_still_maps_the_original(tmp_path, capfd):
    box = (2500, 1200, 6800, 4900)
    rgba = rgba_ellipse(6000, 9000, box)
    cv2.imwrite(str(tmp_path / "huge.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    code, out, err = run_preprocess(capfd, str(tmp_path / "huge.png"), "--depth_model", "none")
    assert code == 0 and err == [], err
    assert "large image (9000x6000): downscaled to 2048x1365" in out
    # the box found at 2048 px is known to within one downscaled pixel (9000 / 2048 = 4.4 source px)
    sidecar, image = _check_sidecar_against_outputs(tmp_path, "huge", box, rgba)
    assert image.shape == (256, 256, 4) and sidecar.source_size == [6000, 9000]
    assert np.abs(np.asarray(sidecar.bbox) - box).max() <= 9000 / 2048 + 1
