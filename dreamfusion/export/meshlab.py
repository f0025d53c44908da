"""Move meshes between numpy arrays and pymeshlab (imported lazily: it is a heavy dependency)."""

from __future__ import annotations

import numpy as np

from dreamfusion.errors import UserError


def import_pymeshlab():
    try:
        import pymeshlab
    except ImportError:
        raise UserError(
            "mesh export needs pymeshlab for clean-up and decimation: pip install pymeshlab"
        ) from None
    return pymeshlab


def to_meshset(vertices: np.ndarray, faces: np.ndarray):
    """A pymeshlab.MeshSet holding one mesh: Float[V, 3], Int[F, 3]."""
    pymeshlab = import_pymeshlab()
    meshset = pymeshlab.MeshSet()
    meshset.add_mesh(
        pymeshlab.Mesh(
            vertex_matrix=np.ascontiguousarray(vertices, dtype=np.float64),
            face_matrix=np.ascontiguousarray(faces, dtype=np.int32),
        )
    )
    return meshset


def from_meshset(meshset) -> tuple[np.ndarray, np.ndarray]:
    """The current mesh as Float32[V, 3] vertices and Int64[F, 3] faces."""
    mesh = meshset.current_mesh()
    return (
        mesh.vertex_matrix().astype(np.float32),
        mesh.face_matrix().astype(np.int64),
    )
