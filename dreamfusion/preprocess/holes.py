"""Background seen through an object: opening the holes that saliency masks fill in.

    alpha, opened = open_see_through_holes(rgb, alpha)   # [H, W, 3] uint8, [H, W] uint8 -> same alpha, pixel count

U²-Net-p gives the object's outline and fills everything inside it: the hole of a ring, a
mug's handle or the gap under an arm comes out opaque (alpha 254 through a torus's hole on four of
the benchmark's backgrounds). Image-to-3D then fits that filled silhouette from the reference
camera, and the reference mask loss is strong, so the hole closes in 3D too.

A hole shows the background, so its colours are common just outside the object and rare on it.
Colours are binned (16 per channel, smoothed over neighbouring bins). Inside the mask, the test is
the likelihood ratio background : object. The background histogram comes from a ring outside the
mask (from 3 px out to a quarter of the object's size); the object histogram from the whole mask, hole
included. Pixels with a ratio above ``SEED_RATIO`` are seeds. A connected group of seeds is a hole
only when

* it is enclosed: not connected to the background that reaches the image border (a region on the
  outline is the outline's business, and U²-Net-p's outline is kept as it is), and
* it covers at least ``MIN_HOLE_FRACTION`` of the mask (a dark eye on a black-and-white checker is
  background-coloured too, but small).

An accepted hole then grows over its connected pixels with a ratio above ``GROW_RATIO`` (hysteresis,
so the hole's shaded edge comes along), still enclosed, and its alpha becomes 0. This is a colour
test. An enclosed part of the object in exactly the background's colours that covers more than 1 %
of the mask would be opened too; ``--no-holes`` keeps the mask as U²-Net-p made it.
"""

from __future__ import annotations

import numpy as np

from .recenter import ALPHA_THRESHOLD

BINS = 16  # colour bins per channel
SEED_RATIO = 2.0
GROW_RATIO = 0.2
MIN_HOLE_FRACTION = 0.01
RING_INNER = 3  # px: the ring starts outside U²-Net-p's soft edge


def _histogram(codes: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Normalised colour histogram [BINS**3] of ``codes[where]``, smoothed over the 3x3x3 neighbouring bins."""
    from scipy import ndimage

    counts = np.bincount(codes[where], minlength=BINS**3).astype(np.float64).reshape(BINS, BINS, BINS)
    counts = ndimage.uniform_filter(counts, 3, mode="constant")
    return (counts / max(float(counts.sum()), 1e-12)).reshape(-1)


def _outside(fg: np.ndarray) -> np.ndarray:
    """Bool[H, W]: the background connected to the image border."""
    from scipy import ndimage

    labels, _ = ndimage.label(~fg)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, border[border > 0])


def _enclosed(labels: np.ndarray, near_outside: np.ndarray) -> np.ndarray:
    """The component ids of ``labels`` (0 = none) with no pixel in ``near_outside``."""
    touching = np.unique(labels[near_outside])
    ids = np.arange(1, int(labels.max()) + 1)
    return ids[~np.isin(ids, touching)]


def open_see_through_holes(rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, int]:
    """Set alpha to 0 where the background shows through the object.

    Args:
        rgb: ``[H, W, 3]`` uint8, the photo.
        alpha: ``[H, W]`` uint8, the background remover's mask (object: > ``ALPHA_THRESHOLD``).
    Returns:
        the new alpha ``[H, W]`` uint8 (a copy; unchanged outside the opened holes) and the number of
        pixels opened.
    """
    from scipy import ndimage

    fg = alpha > ALPHA_THRESHOLD
    area = int(fg.sum())
    if area == 0:
        return alpha.copy(), 0
    outside = _outside(fg)
    distance = ndimage.distance_transform_edt(~fg)
    ring = (distance > RING_INNER) & (distance <= max(2 * RING_INNER, np.sqrt(area) / 4)) & outside
    if not ring.any():  # the object fills the frame
        return alpha.copy(), 0
    near_outside = ndimage.binary_dilation(outside, iterations=2)  # enclosed means 2 px away from it
    q = (rgb.astype(np.int64) * BINS) // 256
    codes = (q[..., 0] * BINS + q[..., 1]) * BINS + q[..., 2]
    ratio = ((_histogram(codes, ring) + 1e-4) / (_histogram(codes, fg) + 1e-4))[codes]

    seeds = ndimage.binary_opening(fg & (ratio > SEED_RATIO), np.ones((3, 3), bool))
    labels, _ = ndimage.label(seeds)
    ids = _enclosed(labels, near_outside)
    if len(ids):
        sizes = ndimage.sum(seeds, labels, index=ids)
        ids = ids[sizes >= max(16.0, MIN_HOLE_FRACTION * area)]
    if not len(ids):
        return alpha.copy(), 0
    holes = np.isin(labels, ids)
    grow, _ = ndimage.label(fg & (ratio > GROW_RATIO))
    grown = np.isin(grow, np.intersect1d(np.unique(grow[holes]), _enclosed(grow, near_outside)))
    holes = ndimage.binary_fill_holes(holes | grown) & fg
    out = alpha.copy()
    out[holes] = 0
    return out, int(holes.sum())
