"""Entry points the CLI calls: ``train``, ``test``, ``six_views``, ``export_workspace``.

Each takes a resolved :class:`dreamfusion.config.Config` and a device, and returns a process exit
code (0 = done, 130 = stopped by Ctrl-C after saving a checkpoint). The CLI has already validated
the config, created the workspace and seeded the generators.
"""

from __future__ import annotations

import sys

import torch

from dreamfusion.errors import UserError
from dreamfusion.training import outputs
from dreamfusion.training.scene import build_scene
from dreamfusion.training.trainer import Trainer


def build_trainer(config, device: torch.device, *, mode: str = "train", progress_bar: bool = True,
                  log_echo: bool = True) -> Trainer:
    """A Trainer with its scene (and, for training, its guidance models), checkpoint applied."""
    trainer = Trainer(config, device, build_scene(config), mode=mode, progress_bar=progress_bar,
                      log_echo=log_echo)
    try:
        trainer.log.line("command: " + " ".join(sys.argv), echo=False)
        trainer.log.line("config: " + " ".join(f"{k}={v!r}" for k, v in trainer.cfg.to_dict().items()), echo=False)
        if mode == "train":
            from dreamfusion.training.guidance_terms import GuidanceTerms

            # Before load(): building models may draw random numbers, and a resumed run must
            # continue from the generator states restored by load().
            trainer.guidance = GuidanceTerms.from_config(config, trainer.device, trainer.references, trainer.orbit)
        trainer.load(config.ckpt)
    except BaseException:
        trainer.close()
        raise
    return trainer


def train(config, device: torch.device) -> int:
    """Train (resuming per ``--ckpt``), then optionally export the mesh."""
    trainer = build_trainer(config, device)
    try:
        code = trainer.train()
        if code == 0 and config.save_mesh:
            save_mesh(trainer)
        outputs.write_index_html(trainer.workspace)
        return code
    finally:
        trainer.close()


def _render_checkpoint(config, device: torch.device, render) -> int:
    """Load a checkpoint, run ``render(trainer)``, export the mesh if asked, refresh index.html."""
    trainer = build_trainer(config, device, mode="test")
    try:
        render(trainer)
        if config.save_mesh:
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
    return _render_checkpoint(config, device, lambda trainer: None)


def save_mesh(trainer: Trainer):
    """Export ``<workspace>/mesh/mesh.obj`` (+ .mtl, albedo.png, mesh.glb) from the current weights."""
    from dreamfusion.export import export_mesh, resolve_density_threshold

    c = trainer.cfg
    scene = trainer.scene
    scene.eval()
    threshold = resolve_density_threshold(c.density_thresh, scene.mean_density())
    if c.density_activation == "softplus":
        threshold *= 25  # stable-dreamfusion: softplus densities are ~25x smaller than exp ones
    with torch.no_grad():
        result = export_mesh(scene.density_fn, scene.albedo_fn, trainer.workspace / "mesh",
                             resolution=c.mcubes_resolution, density_thresh=threshold, bound=c.bound,
                             decimate_target=c.decimate_target, texture_size=c.texture_size,
                             device=trainer.device, progress=trainer.progress_bar)
    if result.obj_path is None and result.glb_path is None:
        raise UserError("mesh export wrote nothing")
    trainer.log.line(f"mesh: {result.num_vertices} vertices, {result.num_faces} faces -> {result.out_dir}")
    return result
