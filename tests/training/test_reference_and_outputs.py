"""Reference-image loading (RGBA + depth/normal siblings), reference losses, output files."""

import cv2
import numpy as np
import pytest
import torch

from dreamfusion.config import ReferenceView
from dreamfusion.errors import UserError
from dreamfusion.training import outputs
from dreamfusion.training.reference import ReferenceImages, reference_losses, sibling


def write_reference(folder, size=16, with_depth=True, with_normal=True):
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[4:12, 4:12] = (255, 0, 0, 255)        # a red opaque square on a transparent background
    path = folder / "thing_rgba.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if with_depth:
        depth = np.tile(np.arange(size, dtype=np.uint8)[None] * 10, (size, 1))
        cv2.imwrite(str(folder / "thing_depth.png"), depth)
    if with_normal:
        normal = np.full((size, size, 3), 128, np.uint8)
        normal[..., 2] = 0  # RGB (128,128,0): stored flipped, 1 - 2n = (0, 0, 1)
        cv2.imwrite(str(folder / "thing_normal.png"), cv2.cvtColor(normal, cv2.COLOR_RGB2BGR))
    return path


def test_load_reference_with_siblings(tmp_path):
    path = write_reference(tmp_path)
    assert sibling(path, "depth").name == "thing_depth.png"
    refs = ReferenceImages.load([ReferenceView(str(path), 3.2, 90.0, 0.0)], 8, 8)
    assert refs.rgb.shape == (1, 8, 8, 3) and refs.mask.shape == (1, 8, 8)
    # INTER_AREA halves: the square covers pixels 2..5; outside is white (composited), inside red
    assert refs.mask[0, 2:6, 2:6].all() and refs.mask.sum() == 16
    assert torch.allclose(refs.rgb[0, 3, 3], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(refs.rgb[0, 0, 0], torch.ones(3))
    assert refs.depth.shape == (1, 8, 8) and refs.depth[0, 0, 1] > refs.depth[0, 0, 0]
    assert refs.normal.shape == (1, 8, 8, 3) and refs.polar == [90.0]


def test_missing_siblings_and_bad_files(tmp_path):
    path = write_reference(tmp_path, with_depth=False, with_normal=False)
    refs = ReferenceImages.load([ReferenceView(str(path), 3.2, 90.0, 0.0)], 8, 8)
    assert refs.depth is None and refs.normal is None
    rgb_only = tmp_path / "flat_rgba.png"
    cv2.imwrite(str(rgb_only), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="no alpha"):
        ReferenceImages.load([ReferenceView(str(rgb_only), 3.2, 90.0, 0.0)], 8, 8)
    with pytest.raises(UserError, match="cannot read"):
        ReferenceImages.load([ReferenceView(str(tmp_path / "none_rgba.png"), 3.2, 90.0, 0.0)], 8, 8)


def test_reference_losses_zero_on_a_perfect_render(tmp_path):
    refs = ReferenceImages.load([ReferenceView(str(write_reference(tmp_path)), 3.2, 90.0, 0.0)], 8, 8)
    bg = torch.rand(1, 8, 8, 3)
    m = refs.mask[..., None].float()
    pred_rgb = refs.rgb * m + bg * (1 - m)          # the reference re-composited on the same background
    pred_depth = 3.0 * refs.depth + 1.0             # any increasing affine map of the reference depth
    pred_normal = torch.zeros(1, 8, 8, 3)
    pred_normal[..., :] = torch.tensor([0.5, 0.5, 1.0])   # (n+1)/2 of n = (0,0,1)
    terms = reference_losses(pred_rgb, refs.mask.float(), pred_depth, pred_normal, refs, bg, lambda_rgb=1000,
                             lambda_mask=500, lambda_depth=10, lambda_normal=1, ramp=0.5)
    assert set(terms) == {"rgb", "mask", "depth", "normal"}
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-3), name
    # an empty render: mask loss = 500 · (16/64), rgb loss counts the red square against the background
    empty = reference_losses(bg, torch.zeros(1, 8, 8), None, None, refs, bg, lambda_rgb=1000, lambda_mask=500,
                             lambda_depth=10, lambda_normal=0, ramp=1.0)
    assert empty["mask"].item() == pytest.approx(500 * 16 / 64)
    expected_rgb = 1000 * ((bg - (refs.rgb * m + bg * (1 - m))) ** 2).mean()
    assert empty["rgb"].item() == pytest.approx(expected_rgb.item(), rel=1e-5)


def test_video_frame_count_and_index(tmp_path):
    frames = [outputs.to_uint8(torch.full((32, 32, 3), i / 10)) for i in range(10)]
    path = tmp_path / "results" / "df_ep0001_rgb.mp4"
    outputs.write_video(path, frames, fps=25)
    assert outputs.count_video_frames(path) == 10
    outputs.save_png(tmp_path / "validation" / "df_ep0001_0000_rgb.png", torch.zeros(4, 4, 3))
    index = outputs.write_index_html(tmp_path).read_text()
    assert "results/df_ep0001_rgb.mp4" in index and "validation/df_ep0001_0000_rgb.png" in index


def test_depth_normalisation_and_uint8():
    d = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    n = outputs.normalize_depth(d)
    assert n.min().item() == 0.0 and n.max().item() == pytest.approx(1.0, abs=1e-5)
    assert outputs.to_uint8(torch.tensor([0.0, 0.5, 1.0, 2.0])).tolist() == [0, 128, 255, 255]
