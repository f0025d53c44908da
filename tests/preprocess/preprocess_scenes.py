"""Synthetic photos with known silhouettes for the preprocessing tests, and a one-call CLI runner."""

from __future__ import annotations

import numpy as np

from dreamfusion.cli import main


def cluttered_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``[H, W, 3]`` float: sine textures, random coloured rectangles and noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([127 + 60 * np.sin(xx / (5 + 3 * c) + c) + 40 * np.cos(yy / (9 + 2 * c)) for c in range(3)], -1)
    for _ in range(30):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(8, max(9, width // 6)), rng.integers(8, max(9, height // 6))
        background[y0:y0 + h, x0:x0 + w] = rng.integers(0, 255, 3)
    return background + rng.normal(0.0, 12.0, background.shape)


def blob_photo(size: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping shaded ellipsoid blobs (one smooth coloured object) on a cluttered background.

    Returns:
        rgb ``[size, size, 3]`` uint8 and the object's silhouette ``[size, size]`` bool.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    photo = cluttered_background(size, size, rng)
    silhouette = np.zeros((size, size), bool)
    height_map = np.full((size, size), -np.inf, np.float32)
    colours = [(225, 95, 40), (240, 150, 60), (200, 70, 50)]
    blobs = [(0.48, 0.55, 0.24, 0.17), (0.60, 0.40, 0.15, 0.13), (0.36, 0.42, 0.13, 0.15)]
    for (cx, cy, a, b), colour in zip(blobs, colours):
        cx, cy, a, b = (v * size for v in (cx, cy, a, b))
        r2 = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2
        inside = r2 < 1.0
        nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
        shade = 0.35 + 0.65 * np.clip(-0.35 * (xx - cx) / a - 0.45 * (yy - cy) / b + 0.8 * nz, 0.0, 1.0)
        front = inside & (nz * b > height_map)  # the nearer blob is seen where they overlap
        photo[front] = (np.asarray(colour, np.float32) * shade[..., None])[front]
        height_map[front] = (nz * b)[front]
        silhouette |= inside
    return np.clip(photo, 0, 255).astype(np.uint8), silhouette


def rgba_ellipse(height: int, width: int, box: tuple[int, int, int, int], dtype=np.uint8) -> np.ndarray:
    """``[H, W, 4]`` RGBA (RGB order) of a hard-edged ellipse filling ``box`` = (x0, y0, x1, y1) exactly:
    its alpha > 127 bounding box is ``box`` (alpha 255 inside, 0 outside)."""
    x0, y0, x1, y1 = box
    yy, xx = np.ogrid[0:height, 0:width]
    yy, xx = yy.astype(np.float32) + 0.5, xx.astype(np.float32) + 0.5
    cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    inside = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0
    inside[y0:y1, int(cx)] = True  # the extreme rows/columns touch the box edges
    inside[int(cy), x0:x1] = True
    inside[:y0] = inside[y1:] = False
    inside[:, :x0] = inside[:, x1:] = False
    top = np.iinfo(dtype).max
    rgba = np.empty((height, width, 4), dtype)
    rgba[..., 0] = (xx / width * top).astype(dtype)  # colour encodes the position: R ~ x, G ~ y
    rgba[..., 1] = (yy / height * top).astype(dtype)
    rgba[..., 2] = top // 3
    rgba[..., 3] = np.where(inside, top, 0)
    return rgba


def run_preprocess(capfd, *args: str) -> tuple[int, str, list[str]]:
    """``dreamfusion preprocess ARGS`` in-process; returns (exit code, stdout, non-empty stderr lines).
    ``capfd`` captures file descriptors, so anything a C library prints on stderr counts too."""
    capfd.readouterr()
    code = main(["preprocess", *args])
    out, err = capfd.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def save_tiny_dpt(folder, *, processor_size: int | None = 64, seed: int = 0):
    """A randomly initialised DPT (ViT, 4 layers of width 16, 67k parameters) saved with ``save_pretrained``,
    with a DPT image processor at ``processor_size`` (None: no preprocessor config, DPT's 384 defaults)."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16],
                       fusion_hidden_size=16, head_hidden_size=8, reassemble_factors=[4, 2, 1, 0.5])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DPTForDepthEstimation(config).eval()
    model.save_pretrained(folder)
    if processor_size is not None:
        DPTImageProcessor(size={"height": processor_size, "width": processor_size}, keep_aspect_ratio=False,
                          image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder
