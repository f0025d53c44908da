"""stable-dreamfusion's recentring, with the transform it applies recorded exactly.

    box = object_bbox(alpha)                                    # (x0, y0, x1, y1), exclusive ends
    placed = recentre({"rgba": rgba, "depth": depth}, box, size=256, border_ratio=0.2)
    placed.images["rgba"]                                       # [256, 256, 4]
    placed.scale, placed.offset                                 # output = scale * input + offset

Coordinates are continuous pixel coordinates: pixel (column i, row j) covers [i, i+1) x [j, j+1), its
centre is (i + 0.5, j + 0.5), x goes right and y down. The map from the input to the output is
``x_out = scale * x_in + offset_x``, ``y_out = scale * y_in + offset_y`` for these coordinates (so
pixel centres map as ``(i + 0.5) * scale + offset_x``), one scale for both axes.

The bounding box is the box of ``alpha > 127``. stable-dreamfusion takes ``alpha > 0``, which suits
carvekit's nearly binary alpha; u2netp's alpha is soft and rarely exactly 0 anywhere, so ``> 0`` would
be the whole image. The longer side of the box becomes ``size * (1 - border_ratio)`` pixels (exactly:
the scale is not rounded per axis as stable-dreamfusion's ``int(h * scale)`` does) and the box centre
lands within half a pixel of the canvas centre. Everything of the input that maps into the canvas is
drawn, so the soft edge of the alpha outside the box is kept, not cut.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

ALPHA_THRESHOLD = 127

BBox = tuple[int, int, int, int]


def object_bbox(alpha: np.ndarray, threshold: int = ALPHA_THRESHOLD) -> BBox | None:
    """Box ``(x0, y0, x1, y1)`` (exclusive ends) of ``alpha > threshold``, None when nothing is above.

    Args:
        alpha: ``[H, W]`` uint8.
    """
    rows = np.flatnonzero((alpha > threshold).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((alpha > threshold).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass
class Placement:
    """Output of `recentre`.

    Attributes:
        images: the placed arrays, each ``[size, size, ...]``, same dtype as given.
        scale: input pixels to output pixels.
        offset: ``(ox, oy)`` in output pixels.
    """

    images: dict[str, np.ndarray]
    scale: float
    offset: tuple[float, float]


def _span(lo: int, hi: int, extent: int, scale: float, size: int) -> tuple[int, int, int, float]:
    """One axis: the input range [c0, c1) to resize, where it is pasted (integer P) and the exact offset."""
    ideal = size / 2.0 - (lo + hi) / 2.0 * scale  # offset that centres the box exactly
    c0 = max(0, math.floor(-ideal / scale) - 1)  # one pixel of margin: the rounding below may shift by 0.5
    c1 = min(extent, math.ceil((size - ideal) / scale) + 1)
    paste = round(c0 * scale + ideal)  # an integer paste position keeps the resize exact; off by <= 0.5 px
    return c0, c1, paste, paste - c0 * scale


def recentre(images: dict[str, np.ndarray], bbox: BBox, size: int, border_ratio: float) -> Placement:
    """Scale the box's longer side to ``size * (1 - border_ratio)`` and centre it in a ``size x size`` canvas.

    Args:
        images: arrays ``[H, W]`` or ``[H, W, C]`` of one image (RGBA uint8, depth, normals ...).
        bbox: ``(x0, y0, x1, y1)`` in their pixels, exclusive ends (`object_bbox`).
        size: canvas side in pixels.
        border_ratio: in [0, 1).
    Returns:
        the canvases (zero where nothing maps) and the transform.
    """
    x0, y0, x1, y1 = bbox
    height, width = next(iter(images.values())).shape[:2]
    scale = size * (1.0 - border_ratio) / max(x1 - x0, y1 - y0)
    cx0, cx1, px, ox = _span(x0, x1, width, scale, size)
    cy0, cy1, py, oy = _span(y0, y1, height, scale, size)
    # INTER_AREA (stable-dreamfusion's) when shrinking; it degenerates to a blocky filter when enlarging
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    placed = {}
    for name, pixels in images.items():
        crop = np.ascontiguousarray(pixels[cy0:cy1, cx0:cx1])
        if round(crop.shape[0] * scale) >= 1 and round(crop.shape[1] * scale) >= 1:
            # fx/fy rather than dsize: OpenCV then uses exactly `scale` on both axes
            resized = cv2.resize(crop, (0, 0), fx=scale, fy=scale, interpolation=interpolation)
        else:  # a sliver thinner than a pixel once scaled: one row or column, scale approximate
            dsize = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
            resized = cv2.resize(crop, dsize, interpolation=interpolation)
        resized = resized.reshape(resized.shape[:2] + pixels.shape[2:])
        canvas = np.zeros((size, size) + pixels.shape[2:], dtype=pixels.dtype)
        top, left = max(0, py), max(0, px)
        bottom, right = min(size, py + resized.shape[0]), min(size, px + resized.shape[1])
        if bottom > top and right > left:
            canvas[top:bottom, left:right] = resized[top - py:bottom - py, left - px:right - px]
        placed[name] = canvas
    return Placement(images=placed, scale=scale, offset=(ox, oy))


@dataclass
class Sidecar:
    """What ``<stem>_rgba.json`` records: how output pixels relate to the source photo's pixels.

    ``output = scale * source + offset`` (continuous pixel coordinates, see the module docstring), with
    source pixels those of the upright photo in the file (EXIF orientation applied), before any downscale.

    Attributes:
        source: the photo's path, relative to the folder of the sidecar.
        source_size: ``[h, w]`` of the upright photo.
        recentred: False for ``--no-recenter`` (the output is the photo, downscaled only if huge).
        size: the ``--size`` option (the canvas side when recentred).
        border_ratio: the ``--border_ratio`` option.
        output_size: ``[h, w]`` of the written images.
        bbox: ``[x0, y0, x1, y1]`` of ``alpha > 127`` in source pixels, exclusive ends.
        scale: source to output pixels, both axes.
        offset: ``[ox, oy]`` in output pixels.
    """

    source: str
    source_size: list[int]
    recentred: bool
    size: int
    border_ratio: float
    output_size: list[int]
    bbox: list[int]
    scale: float
    offset: list[float]

    def to_output(self, points: np.ndarray) -> np.ndarray:
        """Source points ``[N, 2]`` (x, y) to output points ``[N, 2]``."""
        return np.asarray(points, dtype=np.float64) * self.scale + np.asarray(self.offset)

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Output points ``[N, 2]`` (x, y) back to source points ``[N, 2]``."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.offset)) / self.scale

    def to_json(self) -> str:
        """One field a line, lists inline."""
        return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in asdict(self).items()) + "\n}\n"

    @classmethod
    def from_dict(cls, data: dict) -> "Sidecar":
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Sidecar":
        return cls.from_dict(json.loads(Path(path).read_text()))


def source_bbox(bbox: BBox, factor: float, source_size: tuple[int, int]) -> list[int]:
    """A box found in pixels downscaled by ``factor`` as the smallest integer box in source pixels."""
    x0, y0, x1, y1 = bbox
    height, width = source_size
    return [max(0, math.floor(x0 / factor + 1e-9)), max(0, math.floor(y0 / factor + 1e-9)),
            min(width, math.ceil(x1 / factor - 1e-9)), min(height, math.ceil(y1 / factor - 1e-9))]
