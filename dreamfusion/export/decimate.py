"""Reduce a mesh to a target face count by quadric edge collapse (pymeshlab).

Example:
    >>> vertices, faces = decimate_mesh(vertices, faces, target_faces=50_000)
"""

from __future__ import annotations

import numpy as np

from dreamfusion.export.meshlab import from_meshset, to_meshset


def decimate_mesh(
    vertices: np.ndarray, faces: np.ndarray, target_faces: int
) -> tuple[np.ndarray, np.ndarray]:
    """Collapse edges until about `target_faces` faces remain (no-op if already below).

    Vertices move to the quadric-optimal position; topology (genus, closedness) and face
    orientation are preserved, so a watertight input stays watertight.

    Args:
        vertices: Float[V, 3]; faces: Int[F, 3]; target_faces: <= 0 disables decimation.

    Returns:
        (vertices Float32[V', 3], faces Int64[F', 3]).
    """
    if target_faces <= 0 or len(faces) <= target_faces:
        return np.asarray(vertices, dtype=np.float32), np.asarray(faces, dtype=np.int64)
    meshset = to_meshset(vertices, faces)
    meshset.meshing_decimation_quadric_edge_collapse(
        targetfacenum=int(target_faces),
        optimalplacement=True,
        preservetopology=True,
        preservenormal=True,  # refuse collapses that flip a face
        planarquadric=True,  # keeps flat regions (caps, floors) from sliding
    )
    meshset.meshing_remove_unreferenced_vertices()
    return from_meshset(meshset)
