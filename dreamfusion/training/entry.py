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
    trainer = Trainer(config, device, build_stage_scene(config), mode=mode, progress_bar=progress_bar,
                      log_echo=log_echo)
    try:
        trainer.log.line("command: " + " ".join(sys.argv), echo=False)
        trainer.log.line("config: " + " ".join(f"{k}={v!r}" for k, v in trainer.cfg.to_dict().items()), echo=False)
        read = trainer.read_checkpoint(config.ckpt)  # a bad file fails before the models load
        _match_stage(trainer, read[1])
        if config.dmtet and read[0].path is None and mode == "train":
            from dreamfusion.dmtet.stage import initialise

            initialise(trainer.scene, config, trainer.device, trainer.log.line)
            # The averages start from the initialised weights (the grid may have been re-gridded),
            # not from the empty geometry and random field the trainer was built with.
            trainer.reset_ema()
        if mode == "train":
            from dreamfusion.training.guidance_terms import GuidanceTerms

            # Before load(): building models may draw random numbers, and a resumed run must
            # continue from the generator states restored by load().
            trainer.guidance = GuidanceTerms.from_config(config, trainer.device, trainer.references, trainer.orbit,
                                                           log=trainer.log.line)
        trainer.load(config.ckpt, read)
    except BaseException:
        trainer.close()
        raise
    return trainer


def build_stage_scene(config):
    """The scene of the run's stage: the NeRF (field + volume renderer) or, with ``--dmtet``, the
    DMTet surface over that field."""
    if config.dmtet:
        from dreamfusion.dmtet.stage import build_dmtet_scene

        return build_dmtet_scene(config)
    return build_scene(config)


def _match_stage(trainer: Trainer, state: dict | None) -> None:
    """A workspace's checkpoint says which stage it holds: rendering or exporting a DMTet workspace
    needs no ``--dmtet`` (the grid size comes from the checkpoint); training one does, since the
    stage changes the render size and the schedule."""
    from dreamfusion.dmtet.stage import checkpoint_stage

    if state is None:
        return
    stage = checkpoint_stage(state)
    c = trainer.cfg
    if stage == "dmtet" and not c.dmtet:
        if trainer.mode == "train":
            raise UserError("this workspace holds a DMTet stage checkpoint: add --dmtet to continue training it")
        saved = state.get("config") or {}
        c.dmtet = True
        c.tet_grid_size = int(saved.get("tet_grid_size", c.tet_grid_size))
        trainer.scene = build_stage_scene(c).to(trainer.device)
        trainer.log.line(f"the checkpoint holds the DMTet stage (tet_grid_size {c.tet_grid_size}): rendering its surface")
    elif stage == "nerf" and c.dmtet and trainer.mode != "train":
        raise UserError("--dmtet: this workspace's checkpoint is a NeRF stage one (drop --dmtet to render it)")
    elif stage == "nerf" and c.dmtet:
        raise UserError("--dmtet: the workspace already holds a NeRF stage checkpoint; give the DMTet stage a "
                        "workspace of its own and pass the NeRF's df.pth with --init_with")


def train(config, device: torch.device) -> int:
    """Train (resuming per ``--ckpt``), then optionally export the mesh."""
    trainer = build_trainer(config, device)
    try:
        return finish_training(trainer, trainer.train())
    finally:
        trainer.close()


def finish_training(trainer: Trainer, code: int) -> int:
    """After ``trainer.train()`` returned ``code``: the mesh (``--save_mesh``, when training ended)
    and the run page."""
    if code == 0 and trainer.cfg.save_mesh and not mesh_is_current(trainer):
        save_mesh(trainer)
    outputs.write_index_html(trainer.workspace)
    return code


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
    return {"stage": getattr(trainer.scene, "stage", "nerf"), "global_step": trainer.global_step,
            "mcubes_resolution": c.mcubes_resolution, "mesh_surface": c.mesh_surface,
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
    when complete, so a kill during the export leaves the old mesh or none, never half of one.
    The NeRF stage exports marching cubes of its density; the DMTet stage its own surface."""
    scene = trainer.scene
    scene.eval()
    final = trainer.workspace / MESH_DIR
    partial = trainer.workspace / f".{MESH_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        if getattr(scene, "stage", "nerf") == "dmtet":
            result, summary = _export_dmtet_surface(trainer, partial)
        else:
            result, summary = _export_nerf_surface(trainer, partial)
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
    trainer.log.line(f"mesh: {result.num_vertices} vertices, {result.num_faces} faces -> {result.out_dir} ({summary})")
    return result


def _export_nerf_surface(trainer: Trainer, out_dir: Path):
    """Marching cubes of the field's density at the mesh level, cleaned, unwrapped and textured."""
    from dreamfusion.export import export_mesh
    from dreamfusion.export.density_grid import sample_density_grid

    c, scene = trainer.cfg, trainer.scene
    with torch.no_grad():
        grid = sample_density_grid(scene.density_fn, c.mcubes_resolution, c.bound, device=trainer.device,
                                   progress=trainer.progress_bar)
    threshold = mesh_level(scene, c, grid, trainer.device, trainer.log.line)
    with torch.no_grad():
        result = export_mesh(scene.density_fn, scene.albedo_fn, out_dir,
                             resolution=c.mcubes_resolution, surface=c.mesh_surface, density_thresh=threshold,
                             bound=c.bound, decimate_target=c.decimate_target, texture_size=c.texture_size,
                             device=trainer.device, progress=trainer.progress_bar, density_grid=grid)
    solid = result.solidify
    return result, (f"density > {threshold:.3g}; {solid.hidden_voxels} hidden voxels made solid, "
                    f"{solid.filled_voxels} of gaps and voids filled, {solid.removed_pieces} floating pieces removed")


def _export_dmtet_surface(trainer: Trainer, out_dir: Path):
    """The DMTet stage's marching-tetrahedra surface as it is (no remeshing), cleaned of tiny
    pieces, decimated to --decimate_target, unwrapped and textured with the colour network."""
    from dreamfusion.export import MeshExportConfig, export_textured_mesh

    c, scene = trainer.cfg, trainer.scene
    vertices, faces = scene.surface_numpy()
    if len(faces) == 0:
        raise UserError("mesh export: the DMTet surface is empty")
    with torch.no_grad():
        result = export_textured_mesh(vertices, faces, scene.albedo_fn, out_dir,
                                      config=MeshExportConfig(decimate_target=c.decimate_target,
                                                              texture_size=c.texture_size),
                                      device=trainer.device, progress=trainer.progress_bar)
    return result, f"DMTet surface of {len(faces)} faces on the {'x'.join(map(str, scene.geometry.shape))}-cell tet grid"


def mesh_level(scene, c, grid, device: torch.device, log, raw_output: bool = False) -> float:
    """The density level of the mesh. ``--mesh_surface density``: ``--density_thresh`` (min'd with
    the occupancy grid's mean density under -O, as stable-dreamfusion does). ``visible``: the level
    at which the mesh's silhouettes match the field's renders from 18 views spread over the
    training cameras (:mod:`dreamfusion.export.iso_level`), with the peaks along the rays read off
    ``grid`` (the density grid that marching cubes meshes: the level is then exact for the mesh
    itself, and a grid lookup is much cheaper than the field).

    ``raw_output``: for a surface interpolated in the field's raw output rather than in σ (the
    DMTet stage's start): the grid is interpolated in the raw output too, so the level matches the
    silhouettes of that surface. The level is returned as a density either way."""
    from dreamfusion.activations import density_activation, inverse_density_activation
    from dreamfusion.cameras import make_batch
    from dreamfusion.export import resolve_density_threshold
    from dreamfusion.export.density_grid import grid_density_fn
    from dreamfusion.export.iso_level import silhouette_iso_level

    from dreamfusion.training.trainer import orbit_from_config

    fixed = resolve_density_threshold(c.density_thresh, scene.mean_density())
    if c.density_activation == "softplus":
        fixed *= 25  # stable-dreamfusion: softplus densities are ~25x smaller than exp ones
    if c.mesh_surface == "density":
        return fixed
    lo, hi = c.theta_range
    polar = torch.tensor([lo + (hi - lo) * (k + 0.5) / 3 for k in range(3) for _ in range(6)])
    azimuth = torch.tensor([60.0 * j + 20.0 * k for k in range(3) for j in range(6)])
    n = len(polar)
    cams = make_batch(orbit_from_config(c), polar, azimuth, torch.full((n,), c.default_radius),
                      torch.full((n,), c.default_fovy), 48, 48).to(device)
    rays_o, rays_d = cams.rays()
    with torch.no_grad():
        alpha = torch.cat([scene.render(rays_o[i:i + 1], rays_d[i:i + 1], shading="albedo", ambient_ratio=1.0,
                                        bg_color=1.0, perturb=False, training=False)["weights_sum"].reshape(-1)
                           for i in range(n)])
    reference = fixed
    if raw_output:  # the ray peaks (and so the level) in raw-output units
        to_raw = inverse_density_activation(c.density_activation)
        grid, reference = to_raw(torch.from_numpy(grid)).numpy(), float(to_raw(torch.tensor([float(fixed)])))
    try:
        level = silhouette_iso_level(grid_density_fn(grid, c.bound), rays_o.reshape(-1, 3).cpu(),
                                     rays_d.reshape(-1, 3).cpu(), alpha, bound=c.bound, reference=reference)
    except ValueError:
        raise UserError("mesh export: no render of the field is opaque anywhere: nothing to mesh (train longer)") from None
    threshold = level.threshold
    if raw_output:
        threshold = float(density_activation(c.density_activation)(torch.tensor([threshold])))
    log(f"mesh level{' (interpolated in the raw output)' if raw_output else ''}: density {threshold:.3g}, "
        f"silhouette IoU {level.iou:.3f} against the renders (--density_thresh {fixed:g}: {level.reference_iou:.3f})")
    return threshold
