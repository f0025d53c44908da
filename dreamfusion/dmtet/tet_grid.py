"""The tetrahedral grid of the DMTet stage: a Kuhn (Freudenthal) split of a cube grid, 6 tetrahedra
per cell, generated in numpy and cached on disk (nothing is downloaded).

Every cell is split along its main diagonal, by the 6 monotone paths from its corner (0,0,0) to
(1,1,1): for each order (a, b, c) of the axes, the tet (p, p+e_a, p+e_a+e_b, p+1). All cells use the
same diagonal, so the split is conforming (two neighbours share whole faces), and each tet is
stored with positive volume.

``--tet_grid_size N`` (stable-dreamfusion's names 32 / 64 / 128 / 256 for its quartet grids) maps to
``N // 2`` Kuhn cells per side: stable-dreamfusion's 128 grid has ~277k vertices and ~1.5M tets, and
64 cells give 274,625 vertices and 1,572,864 tets (a literal 128 cells would be 8x larger).

A grid may have a different number of cells along each axis (``cells`` a triple): the DMTet stage
fits its grid to the object's box with cubic cells (:func:`cubic_cells`), as many as the cube grid.

    vertices, tets = tet_grid(128)          # Float32[V, 3] in [-1, 1]^3, Int64[T, 4]
    vertices, tets = tet_grid(cells=(70, 52, 48))
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import numpy as np

_PATHS = list(itertools.permutations(range(3)))  # 6 axis orders: one tet each


def kuhn_cells(tet_grid_size: int) -> int:
    """Cells per side for ``--tet_grid_size`` (see the module docstring)."""
    if tet_grid_size < 2:
        raise ValueError(f"tet_grid_size must be at least 2, got {tet_grid_size}")
    return tet_grid_size // 2


Cells = int | tuple[int, int, int]


def cells_per_axis(cells: Cells) -> tuple[int, int, int]:
    """``cells`` as a triple (one int: the same along every axis)."""
    shape = (cells,) * 3 if isinstance(cells, (int, np.integer)) else tuple(int(c) for c in cells)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"cells must be a positive int or three of them, got {cells!r}")
    return shape  # type: ignore[return-value]


def cubic_cells(extent, cells: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """Cells per axis for a box of half sizes ``extent`` (3 floats) with about ``cells``^3 cells,
    all cubes: the count along each axis is proportional to the box's side there. Returns the
    counts and the half sizes that make every cell an exact cube of side
    ``(prod(2 extent) / cells^3)^(1/3)`` (each within half a cell of ``extent``)."""
    extent = np.asarray(extent, dtype=np.float64)
    side = float(np.prod(2.0 * extent) / cells ** 3) ** (1.0 / 3.0)
    shape = tuple(max(1, int(round(float(2.0 * e / side)))) for e in extent)
    return shape, np.asarray(shape, dtype=np.float64) * side / 2.0  # type: ignore[return-value]


def kuhn_grid(cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    """Vertices Float32[(a+1)(b+1)(c+1), 3] spanning [-1, 1]^3 (x slowest) and tets Int64[6abc, 4],
    each with positive signed volume, for ``cells`` = (a, b, c) per axis (or one int for all)."""
    shape = cells_per_axis(cells)
    nx, ny, nz = (c + 1 for c in shape)
    axes = [np.linspace(-1.0, 1.0, c + 1, dtype=np.float64) for c in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    vertices = np.stack([x, y, z], -1).reshape(-1, 3)
    corner = np.stack(np.meshgrid(*[np.arange(c) for c in shape], indexing="ij"), -1).reshape(-1, 3)  # [C, 3]
    index = lambda p: (p[..., 0] * ny + p[..., 1]) * nz + p[..., 2]  # noqa: E731
    tets = []
    for order in _PATHS:
        point, chain = corner.copy(), [index(corner)]
        for axis_id in order:
            point = point.copy()
            point[:, axis_id] += 1
            chain.append(index(point))
        tets.append(np.stack(chain, -1))
    tets = np.concatenate(tets, 0).astype(np.int64)
    # Orient: odd permutations of the axes give negative volume; swap two vertices there.
    a, b, c, d = (vertices[tets[:, i]] for i in range(4))
    negative = np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a) < 0
    tets[negative] = tets[negative][:, [1, 0, 2, 3]]
    return vertices.astype(np.float32), tets


def cache_dir() -> Path:
    root = os.environ.get("DREAMFUSION_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "dreamfusion") / "tets"


def tet_grid(tet_grid_size: int | None = None, cache: str | os.PathLike | None = None, *,
             cells: Cells | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The grid for ``--tet_grid_size`` (or of ``cells``, per axis), read from ``cache`` (default
    ``$DREAMFUSION_CACHE/tets``) or generated and written there atomically."""
    if cells is None:
        if tet_grid_size is None:
            raise ValueError("tet_grid needs tet_grid_size or cells")
        cells = kuhn_cells(tet_grid_size)
    shape = cells_per_axis(cells)
    folder = Path(cache) if cache is not None else cache_dir()
    name = str(shape[0]) if len(set(shape)) == 1 else "x".join(map(str, shape))
    path = folder / f"kuhn_{name}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                return data["vertices"], data["tets"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable: make it again
    vertices, tets = kuhn_grid(shape)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, vertices=vertices, tets=tets)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the generation next time
    return vertices, tets
