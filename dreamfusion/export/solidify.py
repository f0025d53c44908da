"""Make the density grid a clean solid before marching cubes: close hairline gaps, fill enclosed
voids, drop floaters.

A radiance field trained by SDS only has to be opaque where rays enter it, so its inside is often
hollow: a dense skin around a thin-density core. Marching cubes meshes that as an outer skin plus
an inner skin facing inwards — a shell a slicer or a rigging tool treats as two walls. Empty space
that no path through empty voxels connects to the grid's border cannot be seen from outside, so it
is filled; so are gaps about one voxel wide (hairline cracks between layers, pinholes), far below
what a training render resolves. Separate solid pieces much smaller than the largest (fog blobs,
stray density under the object) are removed.

Example::

    grid, stats = solidify_grid(grid, threshold=10.0)     # before extract_isosurface
    stats.filled_voxels, stats.removed_pieces
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SolidifyStats:
    """What solidifying changed: voxels of hidden space filled (surface="visible"), voxels filled as
    gaps or voids, pieces removed (and their voxels), pieces kept."""

    hidden_voxels: int = 0
    filled_voxels: int = 0
    removed_pieces: int = 0
    removed_voxels: int = 0
    kept_pieces: int = 0


def solidify_grid(grid: np.ndarray, threshold: float, *, fill_voids: bool = True, close_gaps: int = 1,
                  min_piece_volume: float = 0.01) -> tuple[np.ndarray, SolidifyStats]:
    """A copy of ``grid`` [R, R, R] whose inside (> threshold) has no enclosed voids, no gaps
    narrower than about 2·``close_gaps`` voxels (a morphological closing) and no pieces smaller
    than ``min_piece_volume`` × the largest piece's voxel count.

    Filled voxels take a value above the threshold (so no surface separates them from the solid
    around them), removed pieces one below it; every other voxel keeps its value, so the
    marching-cubes interpolation of the outer surface does not move. Pieces are face-connected
    voxel sets; voids are empty regions not face-connected to the grid's border.
    """
    from scipy import ndimage

    stats = SolidifyStats()
    inside = grid > threshold
    if not inside.any():
        return grid, stats
    out = np.array(grid, dtype=np.float32, copy=True)
    span = max(abs(float(threshold)), 1.0)
    if fill_voids:
        voids = ndimage.binary_fill_holes(inside)
        if close_gaps > 0:  # padded, so that the grid's border does not count as solid
            padded = np.pad(voids, close_gaps)
            voids = ndimage.binary_closing(padded, iterations=close_gaps)[(slice(close_gaps, -close_gaps),) * 3]
            voids = ndimage.binary_fill_holes(voids)
        voids &= ~inside
        stats.filled_voxels = int(voids.sum())
        out[voids] = threshold + span
        inside |= voids
    labels, count = ndimage.label(inside)
    sizes = np.bincount(labels.reshape(-1), minlength=count + 1)[1:]
    small = np.nonzero(sizes < min_piece_volume * sizes.max())[0] + 1
    if len(small):
        drop = np.isin(labels, small)
        out[drop] = threshold - span
        stats.removed_pieces, stats.removed_voxels = int(len(small)), int(drop.sum())
    stats.kept_pieces = int(count - len(small))
    return out, stats
