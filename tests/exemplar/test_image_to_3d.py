"""Image to 3D end to end at reduced size: a photo on clutter -> ``dreamfusion preprocess`` -> a run
with the offline image prior that estimates the elevation itself -> a field that matches the photo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from dreamfusion.cli import main
from dreamfusion.exemplar.photos import PhotoCamera, PhotoTruth, placement_from_recentring, render_photo, truth_path
from dreamfusion.preprocess.background import model_path

ROOT = Path(__file__).resolve().parents[2]
REDUCED = ["--iters", "160", "--w", "24", "--h", "24", "--exemplar_resolution", "32", "--exemplar_views", "24",
           "--dataset_size_valid", "1", "--dataset_size_test", "4", "--W", "32", "--H", "32", "--test_interval", "1000",
           "--eval_interval", "1000"]


@pytest.mark.slow
def test_photo_to_field_offline(tmp_path, capsys):
    if not model_path().is_file():
        pytest.skip(f"u2netp is not installed at {model_path()} (make models)")
    camera = PhotoCamera(66.0, 40.0)
    photo = render_photo("a rubber duck", camera, size=192, background="checker", seed=3)
    path = photo.save(tmp_path / "duck.png")
    assert PhotoTruth.load(truth_path(path)).camera == camera
    assert main(["preprocess", str(path), "--depth_model", "none"]) == 0
    rgba = tmp_path / "duck_rgba.png"
    ws = tmp_path / "ws"
    code = main(["--file", str(ROOT / "configs/exemplar-image-demo.txt"), "--image", str(rgba), "--workspace", str(ws),
                 *REDUCED])
    assert code == 0
    out = capsys.readouterr().out
    assert "'a rubber duck'" in out and "--default_polar" in out
    saved = yaml.safe_load((ws / "config.yaml").read_text())
    assert abs(saved["default_polar"] - camera.polar) <= 10.0  # estimated, never given
    assert saved["references"][0]["polar"] == saved["default_polar"]

    # The field seen from the reference camera is the photo's object where the photo has it, and
    # the placement computed from the recentring agrees with the one the prior read.
    from dreamfusion.cameras import OrbitConfig, make_batch
    from dreamfusion.exemplar.metrics.workspace import field_renderer, load_scene
    from dreamfusion.exemplar.image_prior import silhouette_boxes

    config, scene = load_scene(ws)
    cams = make_batch(OrbitConfig(), torch.tensor([config.default_polar]), torch.tensor([0.0]),
                      torch.tensor([config.default_radius]), torch.tensor([config.default_fovy]), 48, 48)
    alpha = field_renderer(scene, "cpu")(cams).alpha[0]
    import cv2

    ref = cv2.resize(cv2.imread(str(rgba), cv2.IMREAD_UNCHANGED)[..., 3], (48, 48), interpolation=cv2.INTER_AREA) / 255.0
    ref = torch.from_numpy(ref).float()
    iou = float(((alpha > 0.5) & (ref > 0.5)).sum() / ((alpha > 0.5) | (ref > 0.5)).sum())
    assert iou >= 0.8, iou
    sidecar = json.loads((tmp_path / "duck_rgba.json").read_text())
    placement = placement_from_recentring(photo.truth, sidecar, config.default_polar, 0.0, config.default_radius,
                                          config.default_fovy)
    centre, half, _ = silhouette_boxes(ref[None])
    assert abs(float(half[0]) - 0.8) < 0.05  # recentred with --border_ratio 0.2
    assert 0.7 < placement.scale < 2.5


def test_image_config_errors_are_one_line(tmp_path):
    from dreamfusion.config import Config, resolve
    from dreamfusion.errors import UserError

    image = tmp_path / "a_rgba.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.zeros((8, 8, 4), np.uint8))
    cases = {
        "missing column": ("zero123_weight,radius,polar,image\n1,3.2,80,a_rgba.png\n", "needs 5 fields"),
        "bad number": ("1,3.2,eighty,0,a_rgba.png\n", "non-numeric"),
        "not finite": ("1,3.2,nan,0,a_rgba.png\n", "non-finite"),
        "missing file": ("1,3.2,80,0,b_rgba.png\n", "image not found"),
        "radius inside": ("1,0.5,80,0,a_rgba.png\n", "radius must exceed"),
    }
    for name, (text, message) in cases.items():
        csv = tmp_path / f"{name.replace(' ', '_')}.csv"
        csv.write_text(text)
        with pytest.raises(UserError, match=message):
            resolve(Config(image_config=str(csv)))


def test_a_cli_run_with_a_bad_image_config_writes_nothing(tmp_path, capsys):
    csv = tmp_path / "views.csv"
    csv.write_text("1,3.2,80,0,missing_rgba.png\n")
    ws = tmp_path / "ws"
    assert main(["--image_config", str(csv), "--zero123_ckpt", "exemplar", "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image not found" in err[0]
    assert not ws.exists()
