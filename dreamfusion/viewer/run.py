"""What the CLI calls: ``--gui`` (train with the viewer, or ``--test --gui`` a checkpoint) and
``dreamfusion view <workspace>``. Each returns a process exit code.

    serve_training(config, device)    # trains; the viewer stays up afterwards until Ctrl-C
    serve_checkpoint(config, device)  # a finished workspace: field + exported mesh, until Ctrl-C
"""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path

import torch

from dreamfusion.errors import UserError
from dreamfusion.viewer.link import TrainingLink, viewer_copy
from dreamfusion.viewer.server import MESH_OFFSET, Viewer, ViewerContext, ViewerOptions


def require_viser() -> None:
    """One line, not a traceback, when the viewer's extra is missing."""
    try:
        import viser  # noqa: F401
    except ImportError:
        raise UserError("--gui needs the viewer extra: pip install 'dreamfusion[viewer]' (viser)") from None


def viewer_context(config, trainer, *, training: bool) -> ViewerContext:
    from dreamfusion.training import outputs
    from dreamfusion.training.entry import MESH_DIR, save_mesh

    def save_checkpoint(t) -> str:
        epoch = max(1, math.ceil(t.global_step / t.iters_per_epoch))
        path = t.ckpt.save_full(t.full_state(), epoch)
        return f"saved {path.name} (step {t.global_step})"

    def export_mesh(t) -> Path | None:
        result = save_mesh(t)
        outputs.write_index_html(t.workspace)
        return result.glb_path

    glb = Path(config.workspace) / MESH_DIR / "mesh.glb"
    polar = config.default_polar if config.default_polar is not None else 90.0
    home, target = (polar, config.default_azimuth, config.radius), (0.0, 0.0, 0.0)
    if glb.is_file() and not training:  # field and mesh side by side: frame both
        target = (MESH_OFFSET * config.bound / 2, 0.0, 0.0)
        home = (polar, config.default_azimuth, config.radius * 2.0)
    return ViewerContext(
        orbit=trainer.orbit, device=trainer.device, amp=trainer.amp, home=home, target=target, fovy=config.fovy,
        light=(config.light_theta, config.light_phi), bound=config.bound,
        title=f"dreamfusion: {config.text or config.image or Path(config.workspace).name}",
        mesh_path=glb if glb.is_file() else None,
        save_checkpoint=save_checkpoint if training else None, export_mesh=export_mesh)


def start_viewer(link: TrainingLink, context: ViewerContext, config) -> Viewer:
    viewer = Viewer(link, context, ViewerOptions(host=config.gui_host, port=config.gui_port,
                                                  max_side=max(32, min(max(config.W, config.H), 2048))))
    url = viewer.start()
    print(f"viewer: {url}  (open it in a browser; Ctrl-C to quit)", flush=True)
    return viewer


def serve_training(config, device: torch.device) -> int:
    """Train with the viewer attached; when training ends the viewer stays until Ctrl-C."""
    from dreamfusion.training.entry import build_trainer, finish_training

    require_viser()
    trainer = build_trainer(config, device)
    viewer = None
    try:
        link = TrainingLink(viewer_copy(trainer.scene), iters=config.iters, text=config.text, training=True)
        link.attach_trainer(trainer)
        link.step = trainer.global_step
        load_history(link, config.workspace)
        trainer.observer = link
        viewer = start_viewer(link, viewer_context(config, trainer, training=True), config)
        code = finish_training(trainer, trainer.train())
        link.request_sync()
        link.sync_now(trainer)
        link.finished("finished" if code == 0 else "stopped")
        if code != 0:
            return code
        if viewer.context.mesh_path is None and (Path(config.workspace) / "mesh" / "mesh.glb").is_file():
            viewer.show_mesh(Path(config.workspace) / "mesh" / "mesh.glb")
        print(f"training finished; the viewer is still at {viewer.url} (Ctrl-C to quit)", flush=True)
        return wait_for_interrupt()
    finally:
        if viewer is not None:
            viewer.close()
        trainer.close()


def serve_checkpoint(config, device: torch.device) -> int:
    """The viewer over a workspace's checkpoint (``--test --gui``, ``dreamfusion view``)."""
    from dreamfusion.training.entry import build_trainer

    require_viser()
    trainer = build_trainer(config, device, mode="test")
    viewer = None
    try:
        link = TrainingLink(trainer.scene, text=config.text, training=False)
        link.attach_trainer(trainer)
        link.step = trainer.global_step
        link.status = f"checkpoint of step {trainer.global_step}"
        load_history(link, config.workspace)
        viewer = start_viewer(link, viewer_context(config, trainer, training=False), config)
        return wait_for_interrupt()
    finally:
        if viewer is not None:
            viewer.close()
        trainer.close()


def load_history(link: TrainingLink, workspace) -> None:
    """The loss curve so far, from the run's scalars log (a resumed run or a finished one)."""
    try:
        from dreamfusion.report.scalars import read_scalars
    except ImportError:
        return
    series = read_scalars(Path(workspace))
    total = series.get("train/loss")
    if total is None:
        return
    steps, _ = total
    columns = {("total" if tag == "train/loss" else tag.split("/", 1)[1]): dict(zip(s.tolist(), v.tolist()))
               for tag, (s, v) in series.items() if tag.startswith("train/") and tag != "train/lr"}
    for step in steps.tolist():
        link.history.add(int(step), {name: values[step] for name, values in columns.items() if step in values})


def wait_for_interrupt() -> int:
    """Block until Ctrl-C (the viewer's threads keep serving meanwhile)."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("viewer closed", file=sys.stderr)
    return 0
