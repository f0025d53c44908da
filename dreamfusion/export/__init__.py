"""Mesh export (`--save_mesh`): density grid -> solid (density above a level, and for
surface="visible" the space no view sees into; hairline gaps closed, enclosed voids filled,
floaters dropped) -> marching cubes -> clean-up -> decimation -> UV unwrap -> baked albedo texture -> mesh.obj +
mesh.mtl + albedo.png and mesh.glb.

Example:
    >>> result = export_mesh(
    ...     lambda x: field.density(x)["sigma"], lambda x: field.density(x)["albedo"],
    ...     "ws/mesh", resolution=256, density_thresh=10.0, device="cuda")
    >>> result.obj_path, result.glb_path

The functions take plain callables, so this package does not depend on the field module.
`export_textured_mesh` starts from an existing surface (e.g. DMTet) and skips marching cubes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dreamfusion.errors import UserError
from dreamfusion.export.cleanup import clean_mesh
from dreamfusion.export.decimate import decimate_mesh
from dreamfusion.export.density_grid import DensityFn, resolve_density_threshold, sample_density_grid
from dreamfusion.export.marching_cubes import extract_isosurface
from dreamfusion.export.mesh_io import (
    GLB_NAME, ensure_writable_dir, texture_to_uint8, write_glb, write_obj,
)
from dreamfusion.export.solidify import SolidifyStats, solidify_grid
from dreamfusion.export.hidden_space import enclosed_space
from dreamfusion.export.texture import ColorFn, bake_texture, seen_colour
from dreamfusion.export.uv_unwrap import unwrap_uv

__all__ = [
    "MeshExportConfig", "MeshExportResult", "export_mesh", "export_textured_mesh",
    "extract_density_surface", "resolve_density_threshold",
]


@dataclass
class MeshExportConfig:
    """Options of the export pipeline (defaults follow stable-dreamfusion; the trainer's
    `--mesh_surface` defaults to "visible").

    resolution: marching-cubes grid nodes per axis (--mcubes_resolution).
    density_thresh: iso-level on the field's density (--density_thresh; see
        `resolve_density_threshold`, and `iso_level.silhouette_iso_level` for the level at which
        the mesh has the silhouettes of the field's renders).
    surface: "density" meshes {density > density_thresh} (stable-dreamfusion); "visible" also
        fills the space that sees at most 10 % of the sky (`hidden_space.enclosed_space`: pockets,
        tunnels, pits seen only through a narrow mouth) and textures each texel with the colour
        rendered along its inward normal.
    bound: the field's half size; the grid spans [-bound, bound]^3.
    decimate_target: target face count (--decimate_target); <= 0 keeps every face.
    texture_size: albedo.png is texture_size x texture_size.
    close_boundary: cap surfaces cut by the cube so the mesh is watertight.
    fill_voids: fill empty space enclosed by the solid (a hollow field's inside) and gaps about
        one voxel wide, so the mesh has no inner skins or hairline cracks (`solidify.solidify_grid`).
    min_piece_volume: drop solid pieces smaller than this fraction of the largest (floaters).
    min_component_diameter, min_component_faces, merge_distance: see `cleanup.clean_mesh`.
    uv_padding, xatlas_iterations: see `uv_unwrap.unwrap_uv`.
    grid_points_per_chunk, color_points_per_chunk: field queries per call (memory bound).
    marching_cubes_backend: "auto" | "mcubes" | "skimage"; rasterizer_backend: "auto" | "torch" |
        "nvdiffrast".
    write_obj, write_glb: which files to write.
    """

    resolution: int = 256
    surface: str = "density"
    density_thresh: float = 10.0
    bound: float = 1.0
    decimate_target: int = 50_000
    texture_size: int = 2048
    close_boundary: bool = True
    fill_voids: bool = True
    min_piece_volume: float = 0.01
    min_component_diameter: float = 0.05
    min_component_faces: int = 8
    merge_distance: float = 0.0
    uv_padding: int = 4
    xatlas_iterations: int = 4
    grid_points_per_chunk: int = 1 << 20
    color_points_per_chunk: int = 1 << 18
    marching_cubes_backend: str = "auto"
    rasterizer_backend: str = "auto"
    write_obj: bool = True
    write_glb: bool = True

    def validate(self) -> None:
        """Raise UserError (one line) for values a user can get wrong."""
        problem = None
        if not 8 <= self.resolution <= 2048:
            problem = f"mcubes resolution must be in [8, 2048], got {self.resolution}"
        elif not 16 <= self.texture_size <= 16384:
            problem = f"texture size must be in [16, 16384], got {self.texture_size}"
        elif not self.bound > 0:
            problem = f"bound must be positive, got {self.bound}"
        elif not np.isfinite(self.density_thresh):
            problem = f"density_thresh must be a finite number, got {self.density_thresh}"
        elif self.surface not in ("visible", "density"):
            problem = f"surface must be 'visible' or 'density', got {self.surface!r}"
        elif not 0.0 <= self.min_piece_volume <= 1.0:
            problem = f"min_piece_volume must lie in [0, 1], got {self.min_piece_volume}"
        elif 0 < self.decimate_target < 4:
            problem = f"decimate_target must be >= 4 (or 0 to keep every face), got {self.decimate_target}"
        if problem:
            raise UserError(f"mesh export: {problem}")
        if not (self.write_obj or self.write_glb):
            raise UserError("mesh export: nothing to write (both write_obj and write_glb are off)")


@dataclass
class MeshExportResult:
    """Paths written (None when that format was off), the mesh size, seconds per stage, and what
    solidifying the grid changed (None for a given surface)."""

    out_dir: Path
    obj_path: Path | None
    mtl_path: Path | None
    texture_path: Path | None
    glb_path: Path | None
    num_vertices: int
    num_faces: int
    timings: dict[str, float] = field(default_factory=dict)
    solidify: SolidifyStats | None = None


def export_mesh(
    density_fn: DensityFn,
    albedo_fn: ColorFn,
    out_dir: str | os.PathLike,
    *,
    resolution: int = 256,
    density_thresh: float = 10.0,
    bound: float = 1.0,
    decimate_target: int = 50_000,
    texture_size: int = 2048,
    device: torch.device | str | None = None,
    progress: bool = True,
    density_grid: np.ndarray | None = None,
    **options,
) -> MeshExportResult:
    """Extract, texture and write the mesh of a density field.

    Args:
        density_fn: Float[N, 3] world points -> Float[N] densities.
        albedo_fn: Float[N, 3] world points -> Float[N, 3] albedo in [0, 1].
        out_dir: directory for mesh.obj, mesh.mtl, albedo.png and mesh.glb (e.g. <workspace>/mesh).
        device: where query points are created (the field's device); default CPU.
        progress: tqdm bars for the long steps.
        density_grid: the field already sampled by ``sample_density_grid`` at ``resolution`` (it is
            not sampled again).
        **options: any other `MeshExportConfig` field.

    Raises:
        UserError: bad options, an unwritable `out_dir`, or an empty field (nothing above the
            threshold, or nothing left after clean-up).
    """
    config = MeshExportConfig(
        resolution=resolution, density_thresh=density_thresh, bound=bound,
        decimate_target=decimate_target, texture_size=texture_size, **options,
    )
    config.validate()
    out_path = ensure_writable_dir(out_dir)
    timings: dict[str, float] = {}
    stats = SolidifyStats()
    vertices, faces = extract_density_surface(
        density_fn, config, device=device, progress=progress, timings=timings, stats=stats, grid=density_grid
    )
    result = export_textured_mesh(
        vertices, faces, albedo_fn, out_path, config=config, device=device, progress=progress,
        timings=timings, density_fn=density_fn if config.surface == "visible" else None,
    )
    result.solidify = stats
    return result


def extract_density_surface(
    density_fn: DensityFn,
    config: MeshExportConfig,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
    timings: dict[str, float] | None = None,
    stats: SolidifyStats | None = None,
    grid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Grid sampling (unless ``grid`` is given) + solidifying + marching cubes: Float32[V, 3]
    vertices, Int64[F, 3] outward faces. ``stats`` (if given) receives what solidifying changed."""
    timings = {} if timings is None else timings
    if grid is not None:
        if grid.shape != (config.resolution,) * 3:
            raise ValueError(f"density grid of shape {grid.shape} for resolution {config.resolution}")
    else:
        with _timed(timings, "density grid"):
            grid = sample_density_grid(
                density_fn, config.resolution, config.bound, device=device,
                points_per_chunk=config.grid_points_per_chunk, progress=progress,
            )
    level = config.density_thresh
    hidden_voxels = 0
    if config.surface == "visible" and (grid > level).any():
        with _timed(timings, "enclosed space"):
            hidden = enclosed_space(grid > level, device=device)
            grid = np.where(hidden, np.float32(level + max(abs(level), 1.0)), grid)
            hidden_voxels = int(hidden.sum())
    with _timed(timings, "solidify"):
        grid, changed = solidify_grid(grid, level, fill_voids=config.fill_voids,
                                      min_piece_volume=config.min_piece_volume)
    if stats is not None:
        vars(stats).update(vars(changed), hidden_voxels=hidden_voxels)
    with _timed(timings, "marching cubes"):
        return extract_isosurface(
            grid, level, config.bound, close_boundary=config.close_boundary,
            backend=config.marching_cubes_backend,
        )


def export_textured_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    albedo_fn: ColorFn,
    out_dir: str | os.PathLike,
    *,
    config: MeshExportConfig | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    density_fn: DensityFn | None = None,
) -> MeshExportResult:
    """Clean-up, decimation, UV unwrap, texture bake and writing, for a given surface.

    Args:
        vertices: Float[V, 3]; faces: Int[F, 3] with outward winding.
        albedo_fn, out_dir, device, progress: as `export_mesh`.
        config: pipeline options (resolution/threshold are unused here).
        density_fn: when given, texels take the colour rendered along their inward normal
            (`texture.seen_colour`) instead of the albedo at their point.
    """
    config = config or MeshExportConfig()
    config.validate()
    out_path = ensure_writable_dir(out_dir)
    device = torch.device(device) if device is not None else torch.device("cpu")
    timings = {} if timings is None else timings
    stages = tqdm(total=5, desc="mesh export", disable=not progress, leave=False)

    with _timed(timings, "clean-up"):
        vertices, faces = clean_mesh(
            vertices, faces, min_component_diameter=config.min_component_diameter,
            min_component_faces=config.min_component_faces, merge_distance=config.merge_distance,
        )
    if len(faces) == 0:
        raise UserError("mesh export: the surface is empty after removing small pieces; "
                        "the field has no solid object (train longer or lower density_thresh)")
    stages.update()
    with _timed(timings, "decimation"):
        vertices, faces = decimate_mesh(vertices, faces, config.decimate_target)
    stages.update()
    with _timed(timings, "uv unwrap"):
        layout = unwrap_uv(
            vertices, faces, texture_size=config.texture_size, padding=config.uv_padding,
            max_iterations=config.xatlas_iterations,
        )
    stages.update()
    with _timed(timings, "texture bake"):
        if density_fn is None:
            colour, chunk = albedo_fn, config.color_points_per_chunk
        else:  # 48 samples per texel: keep the field queries per call as they were
            colour, chunk = seen_colour(density_fn, albedo_fn), max(1024, config.color_points_per_chunk // 48)
        baked = bake_texture(
            vertices, layout, colour, config.texture_size, with_normals=density_fn is not None, device=device,
            points_per_chunk=chunk, backend=config.rasterizer_backend, progress=progress,
        )
        texture = texture_to_uint8(baked.image)
    stages.update()
    obj_path = mtl_path = png_path = glb_path = None
    with _timed(timings, "write files"):
        if config.write_obj:
            obj_path, mtl_path, png_path = write_obj(out_path, vertices, faces, layout, texture)
        if config.write_glb:
            glb_path = write_glb(out_path / GLB_NAME, vertices, faces, layout, texture)
    stages.update()
    stages.close()
    return MeshExportResult(
        out_dir=out_path, obj_path=obj_path, mtl_path=mtl_path, texture_path=png_path,
        glb_path=glb_path, num_vertices=len(vertices), num_faces=len(faces), timings=timings,
    )


class _timed:
    """Context manager adding the elapsed seconds to timings[name]."""

    def __init__(self, timings: dict[str, float], name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start
        return False
