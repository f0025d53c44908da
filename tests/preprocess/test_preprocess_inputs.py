"""Inputs through the CLI: every bad one is one stderr line, exit 2, and leaves every file as it was;
unusual good ones (16-bit, grey, real alpha, EXIF orientation, several photos) are processed with a note."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from preprocess_scenes import blob_photo, rgba_ellipse, run_preprocess

from dreamfusion.cli import legacy_preprocess_main
from dreamfusion.preprocess import background
from dreamfusion.preprocess.images import apply_exif_orientation, read_image

HAVE_MODEL = background.model_path().is_file()
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason=f"u2netp model missing at {background.model_path()} "
                                                        "(run 'make models'; 'make setup' does)")
OLD = b"an earlier result"


def write_rgba(path, rgba):
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    return path


def read_rgba(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)


def truncated(path, suffix, folder, keep):
    """A valid photo of the given type cut to ``keep`` of its bytes (a fraction, or a count from the end)."""
    rgb, _ = blob_photo(128, 3)
    data = cv2.imencode(suffix, rgb[..., ::-1])[1].tobytes()
    path = folder / f"{path}{suffix}"
    path.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[: len(data) - int(keep)])
    return path


def refused(folder, capfd, name, *args, message):
    """Run with ``--out_dir out`` next to a pre-existing ``<stem>_rgba.png``: exit 2, one line, files untouched."""
    out_dir = folder / "out"
    out_dir.mkdir(exist_ok=True)
    stem = name.rsplit(".", 1)[0]
    (out_dir / f"{stem}_rgba.png").write_bytes(OLD)
    (folder / f"{stem}_rgba.png").write_bytes(OLD)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    code, out, err = run_preprocess(capfd, str(folder / name), *args, "--depth_model", "none")
    code2, out2, err2 = run_preprocess(capfd, str(folder / name), *args, "--depth_model", "none", "--out_dir", str(out_dir))
    for c, e in ((code, err), (code2, err2)):
        assert c == 2, e
        assert len(e) == 1 and e[0].startswith("dreamfusion: error: ") and message in e[0], e
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing new, no temp files
    assert (out_dir / f"{stem}_rgba.png").read_bytes() == OLD and (folder / f"{stem}_rgba.png").read_bytes() == OLD
    return err[0]


def test_missing_file(folder, capfd):
    refused(folder, capfd, "nothing.jpg", message="nothing.jpg: file not found")


def test_text_file_named_png(folder, capfd):
    (folder / "notes.png").write_text("this is not a picture\n")
    refused(folder, capfd, "notes.png", message="notes.png: not an image file")


def test_empty_file(folder, capfd):
    (folder / "empty.jpg").write_bytes(b"")
    refused(folder, capfd, "empty.jpg", message="empty.jpg: empty file")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("keep", [0.6, 3])  # 60 % of the file; all but its last 3 bytes
def test_truncated_image(folder, capfd, suffix, keep):
    path = truncated("cut", suffix, folder, keep)
    refused(folder, capfd, path.name, message=f"cut{suffix}: truncated or corrupt image file")


@pytest.mark.parametrize("args, message", [
    (["--size", "16"], "--size must be an integer from 32 to 4096 (got 16)"),
    (["--size", "5000"], "--size must be an integer from 32 to 4096 (got 5000)"),
    (["--size", "big"], "argument --size: invalid int value: 'big'"),
    (["--border_ratio", "1"], "--border_ratio must be a number in [0, 1) (got 1.0)"),
    (["--border_ratio", "-0.1"], "--border_ratio must be a number in [0, 1) (got -0.1)"),
    (["--border_ratio", "nan"], "--border_ratio must be a number in [0, 1) (got nan)"),
    (["--border_ratio", "inf"], "--border_ratio must be a number in [0, 1) (got inf)"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_options_out_of_range(folder, capfd, args, message):
    write_rgba(folder / "ok.png", rgba_ellipse(64, 64, (10, 10, 50, 50)))
    refused(folder, capfd, "ok.png", *args, message=message)


def test_no_image_given(capfd):
    code, out, err = run_preprocess(capfd)
    assert code == 2 and len(err) == 1 and "the following arguments are required: IMAGE" in err[0]


def test_transparent_everywhere_is_no_object(folder, capfd):
    rgba = rgba_ellipse(100, 100, (40, 40, 42, 42))  # 4 pixels: under 0.1 % of the image
    write_rgba(folder / "speck.png", rgba)
    refused(folder, capfd, "speck.png", message="no object found in")


@needs_model
def test_flat_grey_photo_is_no_object(folder, capfd):
    cv2.imwrite(str(folder / "grey.jpg"), np.full((240, 320, 3), 128, np.uint8))
    message = refused(folder, capfd, "grey.jpg", message="no object found in")
    assert "u2netp sees nothing salient" in message


def test_one_bad_photo_among_good_ones_writes_nothing(folder, capfd):
    write_rgba(folder / "good.png", rgba_ellipse(64, 64, (10, 10, 50, 50)))
    (folder / "bad.png").write_text("text")
    code, out, err = run_preprocess(capfd, str(folder / "good.png"), str(folder / "bad.png"), "--depth_model", "none")
    assert code == 2 and len(err) == 1 and "bad.png: not an image file" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == ["bad.png", "good.png"]


def test_two_photos_with_one_output_name_are_refused(folder, capfd):
    write_rgba(folder / "same.png", rgba_ellipse(64, 64, (10, 10, 50, 50)))
    cv2.imwrite(str(folder / "same.jpg"), np.zeros((64, 64, 3), np.uint8))
    code, out, err = run_preprocess(capfd, str(folder / "same.png"), str(folder / "same.jpg"), "--depth_model", "none")
    assert code == 2 and len(err) == 1 and "would both write" in err[0]


def test_sixteen_bit_png_is_scaled_to_eight_bits(folder, capfd):
    rgba = rgba_ellipse(90, 120, (20, 15, 100, 75), dtype=np.uint16)
    write_rgba(folder / "deep.png", rgba)
    assert cv2.imread(str(folder / "deep.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    (folder / "deep_rgba.png").write_bytes(OLD)  # a successful run replaces the earlier result
    code, out, err = run_preprocess(capfd, str(folder / "deep.png"), "--no-recenter", "--depth_model", "none")
    assert code == 0 and err == [], err
    assert "deep.png: note: 16-bit image: scaled to 8 bits" in out
    written = read_rgba(folder / "deep_rgba.png")
    assert written.dtype == np.uint8
    np.testing.assert_array_equal(written, np.round(rgba / 257.0).astype(np.uint8))


def test_grey_photo_becomes_rgb(folder, capfd):
    yy, xx = np.mgrid[0:100, 0:100]
    grey = np.where((xx - 50) ** 2 + (yy - 50) ** 2 < 900, 200, 20).astype(np.uint8)
    Image.fromarray(np.dstack([grey, np.where(grey > 100, 255, 0).astype(np.uint8)]), "LA").save(folder / "grey.png")
    code, out, err = run_preprocess(capfd, str(folder / "grey.png"), "--no-recenter", "--depth_model", "none")
    assert code == 0 and err == [], err
    assert "grey image: converted to RGB" in out
    written = read_rgba(folder / "grey_rgba.png")
    assert written.shape == (100, 100, 4)
    for channel in range(3):
        np.testing.assert_array_equal(written[..., channel], grey)


def test_grey_image_without_alpha_reads_as_rgb(folder):
    cv2.imwrite(str(folder / "g.png"), np.full((20, 30), 77, np.uint8))
    image = read_image(folder / "g.png")
    assert image.rgb.shape == (20, 30, 3) and (image.rgb == 77).all() and image.alpha is None
    assert "grey image: converted to RGB" in image.notes


def test_real_alpha_is_the_mask_and_skips_u2netp(folder, capfd, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("u2netp must not run when the photo has a real alpha")

    monkeypatch.setattr(background, "remove_background", forbidden)
    rgba = rgba_ellipse(80, 100, (10, 20, 90, 70))
    rgba[..., 3] = np.where(rgba[..., 3] > 0, 200, 30)  # soft, and not 0 anywhere: still a real alpha
    write_rgba(folder / "cut.png", rgba)
    code, out, err = run_preprocess(capfd, str(folder / "cut.png"), "--no-recenter", "--depth_model", "none")
    assert code == 0 and err == [], err
    assert "image has an alpha channel: used as the mask" in out and "mask from the image's alpha channel" in out
    np.testing.assert_array_equal(read_rgba(folder / "cut_rgba.png")[..., 3], rgba[..., 3])


@needs_model
def test_opaque_alpha_is_ignored_and_u2netp_runs(folder, capfd):
    rgb, silhouette = blob_photo(256, 0)
    write_rgba(folder / "opaque.png", np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    code, out, err = run_preprocess(capfd, str(folder / "opaque.png"), "--no-recenter", "--depth_model", "none")
    assert code == 0 and err == [], err
    assert "alpha channel is opaque everywhere: ignored" in out and "background removed (u2netp)" in out
    mask = read_rgba(folder / "opaque_rgba.png")[..., 3] > 127
    assert (mask & silhouette).sum() / (mask | silhouette).sum() > 0.99


@needs_model
def test_photo_without_alpha_goes_through_u2netp_and_recentres(folder, capfd):
    rgb, silhouette = blob_photo(384, 1)
    cv2.imwrite(str(folder / "photo.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    code, out, err = run_preprocess(capfd, str(folder / "photo.jpg"), "--depth_model", "none")
    assert code == 0 and err == [], err
    stages = [line.split(": ")[1].split(" ")[0].rstrip(":") for line in out.splitlines()]
    assert stages == ["read", "background", "recentred", "wrote"], out
    written = read_rgba(folder / "photo_rgba.png")
    assert written.shape == (256, 256, 4)
    rows, cols = np.nonzero(written[..., 3] > 127)
    assert abs(max(np.ptp(rows), np.ptp(cols)) + 1 - 204.8) <= 1.5


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    rgb = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif)
    buffer.seek(0)
    from PIL import ImageOps

    expected = np.asarray(ImageOps.exif_transpose(Image.open(buffer)))
    np.testing.assert_array_equal(apply_exif_orientation(rgb, orientation), expected)


def test_legacy_script_interface(folder, capfd):
    write_rgba(folder / "old.png", rgba_ellipse(60, 80, (10, 10, 70, 50)))
    capfd.readouterr()
    assert legacy_preprocess_main([str(folder / "old.png"), "--recenter", "False", "--depth_model", "none"]) == 0
    assert read_rgba(folder / "old_rgba.png").shape == (60, 80, 4)
    assert legacy_preprocess_main([str(folder / "old.png"), "--size", "64", "--border_ratio", "0.1",
                                   "--depth_model", "none"]) == 0
    assert read_rgba(folder / "old_rgba.png").shape == (64, 64, 4)
    assert legacy_preprocess_main([str(folder / "old.png"), "--dont_recenter", "--depth_model", "none"]) == 0
    assert read_rgba(folder / "old_rgba.png").shape == (60, 80, 4)
    capfd.readouterr()
    assert legacy_preprocess_main([str(folder / "old.png"), "--recenter", "maybe"]) == 2
    err = [line for line in capfd.readouterr().err.splitlines() if line]
    assert len(err) == 1 and "expected True or False" in err[0]


def test_refused_run_does_not_create_the_out_dir(folder, capfd):
    (folder / "bad.png").write_text("text")
    code, out, err = run_preprocess(capfd, str(folder / "bad.png"), "--out_dir", str(folder / "new" / "refs"))
    assert code == 2 and len(err) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["bad.png"]


def test_a_write_that_fails_halfway_leaves_the_earlier_results(folder, capfd, monkeypatch):
    import pathlib

    write_rgba(folder / "pic.png", rgba_ellipse(64, 64, (10, 10, 50, 50)))
    (folder / "pic_rgba.png").write_bytes(OLD)
    (folder / "pic_rgba.json").write_bytes(OLD)
    real_write = pathlib.Path.write_bytes
    calls = []

    def failing_second_write(self, data):
        calls.append(self)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", failing_second_write)
    code, out, err = run_preprocess(capfd, str(folder / "pic.png"), "--depth_model", "none")
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0] and "nothing was written" in err[0]
    assert calls[0].name.startswith(".pic_rgba") and calls[0].name.endswith(".tmp")  # a temporary, renamed later
    assert sorted(p.name for p in folder.iterdir()) == ["pic.png", "pic_rgba.json", "pic_rgba.png"]
    assert (folder / "pic_rgba.png").read_bytes() == OLD and (folder / "pic_rgba.json").read_bytes() == OLD
