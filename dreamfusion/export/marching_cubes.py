"""Marching cubes on a density grid -> a triangle mesh in world coordinates with outward normals.

Example:
    >>> vertices, faces = extract_isosurface(grid, threshold=10.0, bound=1.0)
    >>> vertices.shape, faces.shape   # (V, 3) float32 world units, (F, 3) int64

"Outward" means the face winding is counter-clockwise seen from outside the dense region, so the
right-hand-rule normal (v1 - v0) x (v2 - v0) points from high density to low density, in the
world axes of docs/conventions.md (y up); no axis is swapped.
"""

from __future__ import annotations

import numpy as np

from dreamfusion.errors import UserError


def extract_isosurface(
    grid: np.ndarray,
    threshold: float,
    bound: float = 1.0,
    *,
    close_boundary: bool = True,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Extract the surface {sigma = threshold} of a grid sampled by `sample_density_grid`.

    Args:
        grid: Float[R, R, R] densities indexed [x, y, z] over [-bound, bound]^3.
        threshold: iso-level; the inside is where density > threshold.
        bound: half size of the sampled cube.
        close_boundary: pad the grid with one empty layer so that a surface cut by the cube's
            faces is capped there (a watertight mesh); the caps are clamped onto the cube.
        backend: "mcubes" (PyMCubes), "skimage" or "auto" (mcubes if importable).

    Returns:
        vertices Float32[V, 3] in world units, faces Int64[F, 3] with outward winding.

    Raises:
        UserError: when no grid node is above the threshold (nothing to mesh).
    """
    grid = np.asarray(grid, dtype=np.float32)
    resolution = grid.shape[0]
    if grid.ndim != 3 or grid.shape != (resolution,) * 3 or resolution < 2:
        raise ValueError(f"grid must be a cube [R,R,R] with R >= 2, got {grid.shape}")
    peak = float(grid.max())
    if not peak > threshold:
        raise UserError(
            f"mesh export: no density above the threshold {threshold:g} (highest density in the "
            f"grid {peak:.3g}); the field is empty: train longer or lower density_thresh"
        )
    offset = 0
    if close_boundary:
        # A very low pad puts the boundary crossing right on the last grid node (the cube face).
        pad_value = float(threshold) - 1e6 * max(1.0, abs(float(threshold)))
        grid = np.pad(grid, 1, mode="constant", constant_values=pad_value)
        offset = 1
    vertices, faces = _run_marching_cubes(grid, float(threshold), backend)
    vertices = (vertices - offset) * (2.0 * bound / (resolution - 1)) - bound
    if close_boundary:
        np.clip(vertices, -bound, bound, out=vertices)
    return vertices.astype(np.float32), faces.astype(np.int64)


def _run_marching_cubes(grid: np.ndarray, threshold: float, backend: str):
    """Vertices in grid-index units [x, y, z] and outward-wound faces."""
    if backend == "auto":
        try:
            import mcubes  # noqa: F401

            backend = "mcubes"
        except ImportError:
            backend = "skimage"
    if backend == "mcubes":
        import mcubes

        # PyMCubes already winds faces counter-clockwise seen from the low-value side.
        vertices, faces = mcubes.marching_cubes(grid, threshold)
        return np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    if backend == "skimage":
        from skimage.measure import marching_cubes

        vertices, faces, _, _ = marching_cubes(grid, threshold, gradient_direction="descent")
        # scikit-image winds the other way for a "greater inside" field: flip to outward.
        return np.asarray(vertices, dtype=np.float64), np.asarray(faces[:, [0, 2, 1]], dtype=np.int64)
    raise ValueError(f"unknown marching cubes backend {backend!r} (mcubes, skimage or auto)")
