"""Entry points the CLI calls: ``train``, ``test``, ``six_views``, ``export_workspace``.

Each takes a resolved :class:`dreamfusion.config.Config` and a device, and returns a process exit
code (0 = done, 130 = stopped by Ctrl-C after saving a checkpoint). The CLI has already validated
the config, created the workspace and seeded the generators.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch

from dreamfusion.errors import UserError
from dreamfusion.training import outputs
from dreamfusion.training.scene import build_scene
from dreamfusion.training.trainer import Trainer
from dreamfusion.pause_points import pause_point
from dreamfusion.workspace_guard import mark_started


def build_trainer(config, device: torch.device, *, mode: str = "train", progress_bar: bool = True,
                  log_echo: bool = True) -> Trainer:
    """A Trainer with its scene (and, for training, its guidance models), checkpoint applied."""
    trainer = Trainer(config, device, build_scene(config), mode=mode, progress_bar=progress_bar,
                      log_echo=log_echo)
    try:
        trainer.log.line("command: " + " ".join(sys.argv), echo=False)
        trainer.log.line("config: " + " ".join(f"{k}={v!r}" for k, v in trainer.cfg.to_dict().items()), echo=False)
        read = trainer.read_checkpoint(config.ckpt)  # a bad file fails before the models load
        if mode == "train":
            from dreamfusion.training.guidance_terms import GuidanceTerms

            # Before load(): building models may draw random numbers, and a resumed run must
            # continue from the generator states restored by load().
            trainer.guidance = GuidanceTerms.from_config(config, trainer.device, trainer.references, trainer.orbit)
        trainer.load(config.ckpt, read)
    except BaseException:
        trainer.close()
        raise
    return trainer


def train(config, device: torch.device) -> int:
    """Train (resuming per ``--ckpt``), then optionally export the mesh."""
    trainer = build_trainer(config, device)
    try:
        code = trainer.train()
        if code == 0 and config.save_mesh and not mesh_is_current(trainer):
            save_mesh(trainer)
        outputs.write_index_html(trainer.workspace)
        return code
    finally:
        trainer.close()


def _render_checkpoint(config, device: torch.device, render, force_mesh: bool = False) -> int:
    """Load a checkpoint, run ``render(trainer)``, export the mesh if asked (and not already
    exported from this checkpoint with these options, unless ``force_mesh``), refresh index.html."""
    trainer = build_trainer(config, device, mode="test")
    mark_started()  # the checkpoint loaded: from here on, what is written is the command's output
    outputs.remove_stale_temporaries(trainer.workspace)
    try:
        render(trainer)
        if config.save_mesh and (force_mesh or not mesh_is_current(trainer)):
            save_mesh(trainer)
        outputs.write_index_html(trainer.workspace)
        return 0
    finally:
        trainer.close()


def test(config, device: torch.device) -> int:
    """Render the turntable video of a checkpoint (``--test``), optionally export the mesh."""
    return _render_checkpoint(config, device, lambda trainer: trainer.test_video())


def six_views(config, device: torch.device) -> int:
    """Render the six fixed views of a checkpoint (``--six_views``)."""
    return _render_checkpoint(config, device, lambda trainer: trainer.six_views())


def export_workspace(config, device: torch.device) -> int:
    """``dreamfusion export <workspace>``: the mesh of a workspace's checkpoint."""
    config.save_mesh = True
    return _render_checkpoint(config, device, lambda trainer: None, force_mesh=True)


MESH_DIR = "mesh"
MESH_MANIFEST = "export.json"


def _mesh_manifest(trainer: Trainer) -> dict:
    """What a mesh is made from: the checkpoint's step and the export options."""
    c = trainer.cfg
    return {"global_step": trainer.global_step, "mcubes_resolution": c.mcubes_resolution, "mesh_surface": c.mesh_surface,
            "density_thresh": c.density_thresh, "decimate_target": c.decimate_target, "texture_size": c.texture_size}


def mesh_is_current(trainer: Trainer) -> bool:
    """``<workspace>/mesh`` is complete and was exported from this step with these options."""
    manifest = trainer.workspace / MESH_DIR / MESH_MANIFEST
    try:
        return json.loads(manifest.read_text()) == _mesh_manifest(trainer)
    except (OSError, ValueError):
        return False


def save_mesh(trainer: Trainer):
    """Export ``<workspace>/mesh/mesh.obj`` (+ .mtl, albedo.png, mesh.glb, export.json) from the
    current weights. The files are written into a temporary folder that replaces ``mesh/`` only
    when complete, so a kill during the export leaves the old mesh or none, never half of one."""
    from dreamfusion.export import export_mesh
    from dreamfusion.export.density_grid import sample_density_grid

    c = trainer.cfg
    scene = trainer.scene
    scene.eval()
    with torch.no_grad():
        grid = sample_density_grid(scene.density_fn, c.mcubes_resolution, c.bound, device=trainer.device,
                                   progress=trainer.progress_bar)
    threshold = mesh_level(trainer, grid)
    final = trainer.workspace / MESH_DIR
    partial = trainer.workspace / f".{MESH_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with torch.no_grad():
            result = export_mesh(scene.density_fn, scene.albedo_fn, partial,
                                 resolution=c.mcubes_resolution, surface=c.mesh_surface, density_thresh=threshold,
                                 bound=c.bound, decimate_target=c.decimate_target, texture_size=c.texture_size,
                                 device=trainer.device, progress=trainer.progress_bar, density_grid=grid)
        if result.obj_path is None and result.glb_path is None:
            raise UserError("mesh export wrote nothing")
        (partial / MESH_MANIFEST).write_text(json.dumps(_mesh_manifest(trainer)))
        pause_point("export")
        old = trainer.workspace / f".{MESH_DIR}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    for name in ("out_dir", "obj_path", "mtl_path", "texture_path", "glb_path"):
        path = getattr(result, name)
        if path is not None:
            setattr(result, name, final if name == "out_dir" else final / Path(path).name)
    solid = result.solidify
    trainer.log.line(f"mesh: {result.num_vertices} vertices, {result.num_faces} faces -> {result.out_dir} "
                     f"(density > {threshold:.3g}; {solid.hidden_voxels} hidden voxels made solid, "
                     f"{solid.filled_voxels} of gaps and voids filled, {solid.removed_pieces} floating pieces removed)")
    return result


def mesh_level(trainer: Trainer, grid) -> float:
    """The density level of the mesh. ``--mesh_surface density``: ``--density_thresh`` (min'd with
    the occupancy grid's mean density under -O, as stable-dreamfusion does). ``visible``: the level
    at which the mesh's silhouettes match the field's renders from 18 views spread over the
    training cameras (:mod:`dreamfusion.export.iso_level`), with the peaks along the rays read off
    ``grid`` (the density grid that marching cubes meshes: the level is then exact for the mesh
    itself, and a grid lookup is much cheaper than the field)."""
    from dreamfusion.cameras import make_batch
    from dreamfusion.export import resolve_density_threshold
    from dreamfusion.export.density_grid import grid_density_fn
    from dreamfusion.export.iso_level import silhouette_iso_level

    c, scene = trainer.cfg, trainer.scene
    fixed = resolve_density_threshold(c.density_thresh, scene.mean_density())
    if c.density_activation == "softplus":
        fixed *= 25  # stable-dreamfusion: softplus densities are ~25x smaller than exp ones
    if c.mesh_surface == "density":
        return fixed
    lo, hi = c.theta_range
    polar = torch.tensor([lo + (hi - lo) * (k + 0.5) / 3 for k in range(3) for _ in range(6)])
    azimuth = torch.tensor([60.0 * j + 20.0 * k for k in range(3) for j in range(6)])
    n = len(polar)
    cams = make_batch(trainer.orbit, polar, azimuth, torch.full((n,), c.default_radius),
                      torch.full((n,), c.default_fovy), 48, 48).to(trainer.device)
    rays_o, rays_d = cams.rays()
    with torch.no_grad():
        alpha = torch.cat([scene.render(rays_o[i:i + 1], rays_d[i:i + 1], shading="albedo", ambient_ratio=1.0,
                                        bg_color=1.0, perturb=False, training=False)["weights_sum"].reshape(-1)
                           for i in range(n)])
    try:
        level = silhouette_iso_level(grid_density_fn(grid, c.bound), rays_o.reshape(-1, 3).cpu(),
                                     rays_d.reshape(-1, 3).cpu(), alpha, bound=c.bound, reference=fixed)
    except ValueError:
        raise UserError("mesh export: no render of the field is opaque anywhere: nothing to mesh (train longer)") from None
    trainer.log.line(f"mesh level: density {level.threshold:.3g}, silhouette IoU {level.iou:.3f} against the renders "
                     f"(--density_thresh {fixed:g}: {level.reference_iou:.3f})")
    return level.threshold
