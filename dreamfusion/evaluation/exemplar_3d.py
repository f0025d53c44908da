"""Ground-truth 3D scores for exemplar runs (``--guidance exemplar``): the prompt names a built-in
analytic object, so the result can be compared with the truth, not only judged by CLIP.

This is :func:`dreamfusion.exemplar.metrics.evaluate_workspace` at a bounded cost: the evaluation
rings inside the run's training polar band (8 azimuths each, ``size``² images), the volume IoU on a
``volume_resolution``³ grid, and the exported mesh only when ``<workspace>/mesh/mesh.obj`` exists.
On a 2-core CPU the 20-step test run costs 6-8 s at the defaults (64², 128³, two rings), ~2 s at
32², 64³; a bigger field costs more, an exported mesh adds its rasterised views and surface sampling.

    if is_exemplar_run(saved_config):
        report["exemplar_3d"] = exemplar_3d_scores(workspace, device=device)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

EXEMPLAR_SIZE = 64
EXEMPLAR_VOLUME_RESOLUTION = 128


def is_exemplar_run(saved: dict) -> bool:
    """Whether a workspace's saved config trained with the exemplar prior."""
    guidance = saved.get("guidance") or []
    return "exemplar" in ([guidance] if isinstance(guidance, str) else list(guidance))


def exemplar_3d_scores(workspace: str | Path, *, device: torch.device | str, ckpt: str = "latest",
                       size: int = EXEMPLAR_SIZE, volume_resolution: int = EXEMPLAR_VOLUME_RESOLUTION) -> dict:
    """The field's (and, when exported, the mesh's) scores against the prompt's analytic object.

    Returns:
        ``evaluate_workspace``'s report without images, numbers as plain Python values:
        {"object", "workspace", "field": {"views": {"all", "min", "rings", "per_view"}, "volume_iou",
        "threshold"}, "mesh": {...} or None, "seconds", "rings" (the polar angles scored),
        "size", "volume_resolution"}.
    """
    from dreamfusion.cli import load_saved_config
    from dreamfusion.exemplar.metrics import RingSpec, evaluate_workspace, json_report, rings_covered

    workspace = Path(workspace)
    saved = load_saved_config(workspace)
    spec = rings_covered(saved.get("theta_range") or (0.0, 180.0), RingSpec(size=size))
    mesh_path = workspace / "mesh" / "mesh.obj"
    report = evaluate_workspace(workspace, device=device, ckpt=ckpt, spec=spec, volume_resolution=volume_resolution,
                                mesh=mesh_path.is_file())
    return {**plain(json_report(report)), "rings": list(spec.polars), "size": size,
            "volume_resolution": volume_resolution}


def plain(value):
    """A report with numpy and torch scalars (and tuples) turned into JSON's types."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value
