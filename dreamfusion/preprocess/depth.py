"""Monocular depth (DPT through ``transformers``) and normals derived from it, in the files' conventions.

    estimator = load_depth_estimator("Intel/dpt-hybrid-midas")  # or a local folder; raises if unavailable
    disparity = estimator.disparity(rgb)               # [H, W] float32, larger = nearer (DPT's output)
    depth = depth_from_disparity(disparity, mask)      # [H, W] in [0, 1], larger = farther, 0 outside
    normals = normals_from_depth(depth, mask)          # [H, W, 3] unit, camera space (x right, y up, z to the viewer)
    encoded = encode_normals(normals, mask)            # [H, W, 3] uint8, what _normal.png holds

Normals are resampled (recentring) as vectors, 0 outside the object, and normalised afterwards, so the
pixels on the object's edge keep the object's direction instead of a blend with the background's code.

Conventions of the files (the ones stable-dreamfusion's Omnidata files follow and our training reads):

- ``_depth.png``: 8-bit grey, **larger = farther**, min-max normalised inside the mask (0 nearest,
  255 farthest), 0 outside. DPT predicts relative inverse depth (disparity, larger = nearer), so it is
  negated before normalising. Only the ordering matters downstream: the depth loss is 1 - Pearson.
- ``_normal.png``: 8-bit RGB (R holds x), ``255 * (n + 1) / 2`` with ``n = -n_cam``, where ``n_cam`` is
  the outward unit normal in the camera frame (x right, y up, z towards the viewer), 0 outside the mask.
  The training loss maps the stored value x back with ``1 - 2x`` (as stable-dreamfusion does for
  Omnidata's normals), which gives ``n_cam`` again: for the reference camera (front view) that is the
  world-space normal our renderer outputs. A surface facing the camera is stored as (128, 128, 0).

Normals come from the depth map itself (no normal network is available offline): finite differences
under a distant (orthographic) camera. A relative depth map has no unit, so its range inside the mask is
taken to be half the longer side of the object's box (a sphere's or a cylinder's depth); that sets how
strongly the normals tilt.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from dreamfusion.errors import UserError

if TYPE_CHECKING:  # torch and transformers load only when a depth model does
    import torch

DEFAULT_DEPTH_MODEL = "Intel/dpt-hybrid-midas"
DPT_INPUT_SIZE = 384  # DPT's defaults when the model has no preprocessor config (Omnidata's too)
DPT_MEAN = DPT_STD = 0.5


class DepthModelUnavailable(UserError):
    """The depth model named by a hub id is not in the cache and cannot be fetched now."""


@dataclass
class DepthEstimator:
    """A DPT-style ``AutoModelForDepthEstimation`` and how to feed it.

    Attributes:
        model: returns ``predicted_depth`` ``[B, h, w]`` (relative inverse depth).
        processor: the model's image processor, or None for DPT's defaults (384x384, mean = std = 0.5).
        name: the hub id or folder it came from.
    """

    model: torch.nn.Module
    processor: object | None
    device: torch.device
    name: str

    def model_input(self, rgb: np.ndarray) -> torch.Tensor:
        """``[H, W, 3]`` uint8 to ``[1, 3, h, w]`` float32 pixel values."""
        import torch

        if self.processor is not None:
            return self.processor(images=rgb, return_tensors="pt")["pixel_values"].float()
        from PIL import Image

        resized = np.asarray(Image.fromarray(rgb).resize((DPT_INPUT_SIZE, DPT_INPUT_SIZE), Image.Resampling.BICUBIC))
        pixels = (resized.astype(np.float32) / 255.0 - DPT_MEAN) / DPT_STD
        return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()

    def disparity(self, rgb: np.ndarray) -> np.ndarray:
        """Relative inverse depth ``[H, W]`` float32 (larger = nearer), bicubic back to the image size."""
        import torch

        pixels = self.model_input(rgb).to(self.device)
        with torch.no_grad():
            predicted = self.model(pixel_values=pixels).predicted_depth.float()  # [1, h, w]
        resized = torch.nn.functional.interpolate(predicted[:, None], size=rgb.shape[:2], mode="bicubic",
                                                  align_corners=False)
        return resized[0, 0].cpu().numpy().astype(np.float32)


def _load(key: str, local_only: bool) -> tuple[torch.nn.Module, object | None]:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(key, local_files_only=local_only)
    processor = None
    if not os.path.isdir(key) or os.path.isfile(os.path.join(key, "preprocessor_config.json")):
        try:
            processor = AutoImageProcessor.from_pretrained(key, local_files_only=local_only)
        except (OSError, ValueError):  # a hub model without a preprocessor config: DPT's defaults
            processor = None
    return model, processor


@functools.lru_cache(maxsize=2)
def load_depth_estimator(key: str = DEFAULT_DEPTH_MODEL, device: str | None = None) -> DepthEstimator:
    """Load a depth model from the Hugging Face cache, the hub (when online) or a local folder.

    Raises:
        DepthModelUnavailable: a hub id that is neither cached nor downloadable now (offline).
        UserError: a local folder that does not exist or does not hold a depth model.
    """
    from dreamfusion.devices import select_device
    from dreamfusion.guidance.weights import load_pretrained, looks_like_path, quiet_transformers

    with quiet_transformers():
        try:
            model, processor = load_pretrained(_load, key, what="depth model", option_hint="--depth_model")
        except DepthModelUnavailable:
            raise
        except UserError as error:
            if looks_like_path(key):
                raise
            raise DepthModelUnavailable(str(error)) from None
    torch_device = select_device(device)
    model = model.to(torch_device).eval().requires_grad_(False)
    return DepthEstimator(model=model, processor=processor, device=torch_device, name=key)


def depth_from_disparity(disparity: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ``_depth.png`` convention from relative inverse depth.

    Args:
        disparity: ``[H, W]`` float, larger = nearer.
        mask: ``[H, W]`` bool, the object.
    Returns:
        ``[H, W]`` float32: larger = farther, 0 (nearest) .. 1 (farthest) inside the mask, 0 outside.
    """
    depth = np.zeros(disparity.shape, np.float32)
    inside = -disparity[mask].astype(np.float64)
    if inside.size:
        depth[mask] = (inside - inside.min()) / (inside.max() - inside.min() + 1e-9)
    return depth


def _masked_difference(values: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
    """d values / d index along ``axis`` using only mask pixels: central where both neighbours are in the
    mask, one-sided where one is, 0 where none is."""
    forward = np.zeros_like(values)
    backward = np.zeros_like(values)
    has_forward = np.zeros(mask.shape, bool)
    has_backward = np.zeros(mask.shape, bool)
    head = [slice(None)] * values.ndim
    tail = [slice(None)] * values.ndim
    head[axis], tail[axis] = slice(None, -1), slice(1, None)
    head, tail = tuple(head), tuple(tail)
    pair = mask[head] & mask[tail]
    step = values[tail] - values[head]
    forward[head] = np.where(pair, step, 0.0)
    has_forward[head] = pair
    backward[tail] = np.where(pair, step, 0.0)
    has_backward[tail] = pair
    count = has_forward.astype(values.dtype) + has_backward.astype(values.dtype)
    return np.where(count > 0, (forward + backward) / np.maximum(count, 1.0), 0.0)


def normals_from_depth(depth: np.ndarray, mask: np.ndarray, depth_extent: float | None = None) -> np.ndarray:
    """Outward unit normals of the visible surface, from a depth map and a distant camera.

    Args:
        depth: ``[H, W]`` float, larger = farther, any affine unit (e.g. `depth_from_disparity`'s).
        mask: ``[H, W]`` bool.
        depth_extent: the depth range inside the mask in pixels; default half the longer side of the
            mask's box (right for a sphere).
    Returns:
        ``[H, W, 3]`` float32 in the camera frame (x right, y up, z towards the viewer), 0 outside.
    """
    mask = mask.astype(bool)
    normals = np.zeros(depth.shape + (3,), np.float32)
    if not mask.any():
        return normals
    inside = depth[mask].astype(np.float64)
    span = float(inside.max() - inside.min())
    if depth_extent is None:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        depth_extent = 0.5 * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    z = depth.astype(np.float64) * (depth_extent / span if span > 0 else 0.0)  # distance from the camera, px
    dz_dcol = _masked_difference(z, mask, axis=1)
    dz_drow = _masked_difference(z, mask, axis=0)
    # surface Z = -z(X, Y) with X = col, Y = -row: outward normal ~ (-dZ/dX, -dZ/dY, 1) = (dz/dcol, -dz/drow, 1)
    n = np.stack([dz_dcol, -dz_drow, np.ones_like(z)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    normals[mask] = n[mask]
    return normals


def encode_normals(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Camera-frame normals to the ``_normal.png`` values.

    Args:
        normals: ``[H, W, 3]``, any length (resampled normals are averages: they are normalised here).
        mask: ``[H, W]`` bool.
    Returns:
        ``[H, W, 3]`` uint8, RGB order: ``255 * (1 - n) / 2`` for unit n inside the mask (the training
        loss's ``1 - 2x`` gives n back), 0 outside it and where the normal vanishes.
    """
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = mask.astype(bool) & (length[..., 0] > 1e-6)
    unit = normals / np.maximum(length, 1e-6)
    encoded = np.clip((1.0 - unit) / 2.0 * 255.0, 0.0, 255.0).round().astype(np.uint8)
    encoded[~valid] = 0
    return encoded


def decode_normals(encoded: np.ndarray) -> np.ndarray:
    """Inverse of `encode_normals` (what the training loss computes): ``[H, W, 3]`` uint8 to unit-ish
    camera-frame normals ``1 - 2 * encoded / 255``."""
    return 1.0 - 2.0 * encoded.astype(np.float32) / 255.0
