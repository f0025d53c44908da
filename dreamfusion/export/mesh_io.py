"""Write a textured mesh: OBJ + MTL + PNG (stable-dreamfusion's layout) and one self-contained GLB.

Example:
    >>> ensure_writable_dir("ws/mesh")
    >>> write_obj("ws/mesh", vertices, faces, layout, texture)   # mesh.obj, mesh.mtl, albedo.png
    >>> write_glb("ws/mesh/mesh.glb", vertices, faces, layout, texture)

Axes are written as they are (y up, docs/conventions.md), which is also glTF's and Blender's
OBJ importer's default "Y up", so the model stands upright in Blender and three.js.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from dreamfusion.errors import UserError
from dreamfusion.export.uv_unwrap import UVLayout

OBJ_NAME, MTL_NAME, TEXTURE_NAME, GLB_NAME = "mesh.obj", "mesh.mtl", "albedo.png", "mesh.glb"


def ensure_writable_dir(out_dir: str | os.PathLike) -> Path:
    """Create `out_dir` if needed and check that files can be written there (fail before the
    long export, not after).

    Raises:
        UserError: one line naming the directory and the reason.
    """
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"mesh export: cannot write to output directory '{path}': {reason}") from None
    return path


def texture_to_uint8(image: np.ndarray) -> np.ndarray:
    """Float[S, S, 3] in [0, 1] -> Uint8[S, S, 3] (rounded)."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_obj(
    out_dir: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    layout: UVLayout,
    texture: np.ndarray,
) -> tuple[Path, Path, Path]:
    """Write mesh.obj (v, vt, f v/vt; 1-based; no normals), mesh.mtl and albedo.png.

    Args:
        vertices: Float[V, 3] (welded; UV seams live in `vt`); faces: Int[F, 3];
        layout: UVs for these faces; texture: Uint8[S, S, 3], row 0 = top (v = 1).

    Returns:
        paths of the OBJ, the MTL and the PNG.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    obj_path, mtl_path, png_path = out_dir / OBJ_NAME, out_dir / MTL_NAME, out_dir / TEXTURE_NAME
    corners = np.stack([np.asarray(faces) + 1, layout.uv_faces + 1], axis=-1).reshape(-1, 6)
    with open(obj_path, "w") as f:
        f.write(f"mtllib {MTL_NAME}\n")
        np.savetxt(f, vertices, fmt="v %.6f %.6f %.6f")
        np.savetxt(f, layout.uvs, fmt="vt %.6f %.6f")
        f.write("usemtl mat0\n")
        np.savetxt(f, corners, fmt="f %d/%d %d/%d %d/%d")
    with open(mtl_path, "w") as f:
        # Same material as stable-dreamfusion: unlit-looking diffuse texture.
        f.write("newmtl mat0\nKa 1.000000 1.000000 1.000000\nKd 1.000000 1.000000 1.000000\n")
        f.write(f"Ks 0.000000 0.000000 0.000000\nTr 1.000000\nillum 1\nNs 0.000000\nmap_Kd {TEXTURE_NAME}\n")
    Image.fromarray(texture).save(png_path)
    return obj_path, mtl_path, png_path


def write_glb(
    path: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    layout: UVLayout,
    texture: np.ndarray,
) -> Path:
    """Write one binary glTF with the texture embedded.

    Vertices are split at UV seams (glTF has one UV per vertex); normals are computed on the
    welded mesh first so shading stays smooth across seams. metallicFactor is written as 0:
    glTF's default of 1 makes the model render black without an environment map.
    """
    import trimesh
    from PIL import Image

    welded = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    normals = np.asarray(welded.vertex_normals)[layout.vertex_map]
    material = trimesh.visual.material.PBRMaterial(
        name="mat0",
        baseColorTexture=Image.fromarray(texture),
        metallicFactor=0.0,
        roughnessFactor=1.0,
    )
    mesh = trimesh.Trimesh(
        vertices=np.asarray(vertices)[layout.vertex_map],
        faces=layout.uv_faces,
        vertex_normals=normals,
        visual=trimesh.visual.TextureVisuals(uv=layout.uvs, material=material),
        process=False,
    )
    path = Path(path)
    path.write_bytes(mesh.export(file_type="glb", include_normals=True))
    return path
