"""Building the DMTet stage from a run's options: ``--dmtet``, ``--tet_grid_size``, ``--init_with``
(a NeRF checkpoint such as ``<ws>/checkpoints/df.pth``, or a mesh file), ``--lock_geo``.

    scene = build_dmtet_scene(config)                  # geometry empty until initialised
    initialise(scene, config, device, log)             # from --init_with, when not resuming
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from dreamfusion.activations import inverse_density_activation
from dreamfusion.dmtet.geometry import TetGeometry, init_from_density, init_from_mesh
from dreamfusion.dmtet.scene import DMTetScene
from dreamfusion.errors import UserError

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")


def build_dmtet_scene(config) -> DMTetScene:
    """The NeRF field the options describe (its colour network becomes the texture) and an empty
    tet geometry (sdf 0: no surface) of ``--tet_grid_size``."""
    from dreamfusion.training.scene import build_scene

    nerf = build_scene(dataclasses.replace(config, dmtet=False))
    return DMTetScene(nerf.field, TetGeometry(config.tet_grid_size), lock_geo=config.lock_geo,
                      lr_scale=config.dmtet_lr_scale, lr_decay=config.dmtet_lr_decay)


def checkpoint_stage(state: dict | None) -> str:
    """"dmtet" or "nerf": the stage a checkpoint holds (recorded since the DMTet stage exists;
    older checkpoints are NeRF ones)."""
    if not state:
        return "nerf"
    if "stage" in state:
        return str(state["stage"])
    return "dmtet" if any(k.startswith("geometry.") for k in state.get("model", {})) else "nerf"


def initialise(scene: DMTetScene, config, device: torch.device, log: Callable[[str], None]) -> None:
    """Fill the geometry (and, from a NeRF, the field) from ``--init_with``."""
    source = config.init_with
    if not source:
        raise UserError("--dmtet needs --init_with <NeRF workspace>/checkpoints/df.pth (or a mesh file) "
                        "to start from, or a DMTet checkpoint in the workspace to resume")
    path = Path(source).expanduser()
    if path.is_dir():  # a NeRF workspace: its best (EMA) checkpoint, else its newest full one
        folder = path / "checkpoints"
        newest = sorted(folder.glob("df_ep*.pth"))
        path = folder / "df.pth" if (folder / "df.pth").is_file() or not newest else newest[-1]
    if not path.is_file():
        raise UserError(f"--init_with: file not found: {path}")
    if path.suffix.lower() in MESH_SUFFIXES:
        _from_mesh(scene, path, log)
    else:
        _from_nerf(scene, path, config, device, log)
    vertices, faces = scene.surface()
    if len(faces) == 0:
        raise UserError(f"--init_with {path}: the initial surface is empty (nothing above the density level)")
    log(f"DMTet initialised from {path}: grid {'x'.join(map(str, scene.geometry.shape))} cubic cells "
        f"({len(scene.geometry.grid)} vertices, "
        f"{len(scene.geometry.tets)} tets), tet_scale {[round(v, 3) for v in scene.geometry.tet_scale.tolist()]}, "
        f"surface {len(vertices)} vertices, {len(faces)} faces")


def _from_mesh(scene: DMTetScene, path: Path, log: Callable[[str], None]) -> None:
    import trimesh

    try:
        mesh = trimesh.load(path, force="mesh", process=True)
    except Exception as error:  # trimesh raises many types for unreadable files
        raise UserError(f"--init_with: cannot read the mesh {path}: {str(error).splitlines()[0][:160]}") from None
    if not hasattr(mesh, "faces") or len(mesh.faces) == 0:
        raise UserError(f"--init_with: {path} holds no triangles")
    if not mesh.is_watertight:
        log(f"--init_with: {path} is not watertight; inside/outside is taken by ray parity and may leak")
    init_from_mesh(scene.geometry, mesh.vertices, mesh.faces)


def _from_nerf(scene: DMTetScene, path: Path, config, device: torch.device, log: Callable[[str], None]) -> None:
    from dreamfusion.checkpoints import load_checkpoint
    from dreamfusion.export.density_grid import sample_density_grid
    from dreamfusion.training.entry import mesh_level
    from dreamfusion.training.scene import build_scene

    state = load_checkpoint(path, map_location=device, log=log)
    if checkpoint_stage(state) != "nerf":
        raise UserError(f"--init_with {path} is a DMTet checkpoint; give the NeRF stage's df.pth")
    nerf_config = dataclasses.replace(config, dmtet=False)
    nerf = build_scene(nerf_config).to(device)
    try:
        nerf.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise UserError(f"--init_with {path} does not fit these options (use the NeRF run's --backbone and size "
                        f"options): {first[:160]}") from None
    nerf.eval()
    if nerf.uses_occupancy_grid and not any(k.startswith("occupancy.") for k in state["model"]):
        with torch.no_grad():
            nerf.update_occupancy_grid()
    with torch.no_grad():
        grid = sample_density_grid(nerf.density_fn, config.mcubes_resolution, config.bound, device=device)
    # The SDF is interpolated in the field's raw output, where the density is close to linear, at
    # the level whose silhouettes, so interpolated, match the NeRF's renders (as its mesh's do).
    level = mesh_level(nerf, nerf_config, grid, device, log, raw_output=True)
    with torch.no_grad():
        changed = init_from_density(scene.geometry, nerf.density_fn, level,
                                    fill_hidden=config.mesh_surface == "visible", device=device,
                                    transform=inverse_density_activation(config.density_activation))
    scene.field.load_state_dict(nerf.field.state_dict())
    log(f"DMTet SDF from the NeRF's density at level {level:.3g}: {changed['inside']} grid vertices inside "
        f"({changed['hidden']} hidden and {changed['filled']} enclosed made solid, {changed['removed']} of floaters "
        "removed)")
    if config.dmtet_texture_fit > 0 and config.mesh_surface == "visible":
        _fit_texture(scene, nerf, config, log)


def _fit_texture(scene: DMTetScene, nerf, config, log: Callable[[str], None]) -> None:
    """The colour network fitted to the colours the NeRF renders on the initial surface
    (:mod:`dreamfusion.dmtet.texture_fit`; what the NeRF's ``visible`` mesh export bakes), over a
    shell of one lattice cell."""
    from dreamfusion.dmtet.texture_fit import fit_surface_colour
    from dreamfusion.export.texture import seen_colour

    with torch.no_grad():
        vertices, faces = scene.surface()
    if len(faces) == 0:
        return
    geometry = scene.geometry
    shell = 2 * geometry.cell_size
    with torch.enable_grad():
        fit = fit_surface_colour(scene.field, seen_colour(nerf.density_fn, nerf.albedo_fn), vertices, faces,
                                 steps=config.dmtet_texture_fit, lr=config.lr, shell=shell, seed=config.seed)
    log(f"DMTet texture fitted to the NeRF's rendered colours on the initial surface: RMSE {fit.rmse_before:.4f} -> "
        f"{fit.rmse_after:.4f} ({fit.steps} steps, {fit.points} points, shell ±{shell:.3g})")
