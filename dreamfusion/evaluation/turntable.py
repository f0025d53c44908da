"""The views a workspace is scored on: its checkpoint rendered around the test video's circle.

The cameras are ``circle_poses``: ``views`` azimuths evenly spaced from the run's default azimuth,
at its default polar angle, radius and field of view (the test turntable), square images of the
scoring model's input size. Shading is albedo over the scene's own background, exactly what
``Trainer.render_views`` draws for the test video.

    checkpoint = find_checkpoint(workspace)          # UserError: not a workspace / nothing trained
    frames = render_turntable(workspace, views=8, size=224, device=device)
    frames.rgb  # [8, 3, 224, 224] in [0, 1]; frames.azimuth, frames.step
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dreamfusion.errors import UserError


@dataclass
class Turntable:
    """Rendered views of one checkpoint.

    rgb [V, 3, S, S] in [0, 1]; azimuth [V] degrees; polar, radius, fovy of the circle; the
    checkpoint's path and training step.
    """

    rgb: Tensor
    azimuth: Tensor
    polar: float
    radius: float
    fovy: float
    checkpoint: Path
    step: int


def find_checkpoint(workspace: str | Path, ckpt: str = "latest") -> Path:
    """The checkpoint file ``ckpt`` (latest | best | path) of a workspace; UserError when the folder
    is not a dreamfusion workspace or holds no checkpoint."""
    from dreamfusion.checkpoints import CheckpointManager
    from dreamfusion.cli import load_saved_config

    workspace = Path(workspace)
    if not workspace.is_dir():
        raise UserError(f"{workspace}: workspace not found")
    load_saved_config(workspace)  # UserError unless it holds a config.yaml
    resolved = CheckpointManager(workspace, "df", log=lambda *_: None).resolve(ckpt)
    if resolved.path is None:
        raise UserError(f"{workspace}: no checkpoint to evaluate (train it first)")
    return Path(resolved.path)


def render_turntable(workspace: str | Path, *, views: int, size: int, device: torch.device,
                     ckpt: str = "latest") -> Turntable:
    """Load the workspace's checkpoint and render ``views`` turntable views at ``size``²."""
    from dreamfusion.cameras import circle_poses
    from dreamfusion.cli import workspace_config
    from dreamfusion.training.entry import build_trainer

    if views < 1:
        raise UserError(f"--views {views}: at least one view is needed")
    checkpoint = find_checkpoint(workspace, ckpt)
    _, config = workspace_config(str(workspace), {"ckpt": str(checkpoint)})
    trainer = build_trainer(config, torch.device(device), mode="test", progress_bar=False, log_echo=False)
    try:
        cameras = circle_poses(trainer.orbit, views, size, size)
        frames = trainer.render_views(cameras, normals=False, desc="evaluation views")
        rgb = torch.stack([f["rgb"] for f in frames]).permute(0, 3, 1, 2).cpu()
        return Turntable(rgb=rgb, azimuth=cameras.azimuth.clone(), polar=trainer.orbit.default_polar,
                         radius=trainer.orbit.default_radius, fovy=trainer.orbit.default_fovy,
                         checkpoint=checkpoint, step=int(trainer.global_step))
    finally:
        trainer.close()
