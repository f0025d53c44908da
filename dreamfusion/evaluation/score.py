"""Score one trained workspace: CLIP score and CLIP R-precision of its turntable views, plus the
ground-truth 3D scores of exemplar runs, written to ``<workspace>/eval.json``.

    report = score_workspace(Path("workspace/demo-hamburger"), device=torch.device("cpu"))
    report["clip_score"], report["r_precision"], report.get("exemplar_3d")

Scoring many workspaces, load CLIP once and pass it (its caption embeddings are cached too):

    clip = ClipEmbedder.from_pretrained(DEFAULT_CLIP, device)
    for ws in workspaces:
        score_workspace(ws, device=device, embedder=clip)

See docs/evaluation.md for what is measured and what it costs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import torch

from dreamfusion.errors import UserError
from dreamfusion.evaluation.caption_pool import pool_fingerprint, ranking_candidates
from dreamfusion.evaluation.clip_embedder import DEFAULT_CLIP, ClipEmbedder
from dreamfusion.evaluation.clip_metrics import ranking_report
from dreamfusion.evaluation.exemplar_3d import (EXEMPLAR_SIZE, EXEMPLAR_VOLUME_RESOLUTION, exemplar_3d_scores,
                                                is_exemplar_run, plain)
from dreamfusion.evaluation.turntable import find_checkpoint, render_turntable

EVAL_FILE = "eval.json"
FORMAT = 1


def score_workspace(workspace: str | Path, *, clip_model: str | None = DEFAULT_CLIP, views: int = 8,
                    device: torch.device | str, log: Callable[[str], object] = print, ckpt: str = "latest",
                    embedder: ClipEmbedder | None = None, exemplar_3d: bool = True,
                    exemplar_size: int = EXEMPLAR_SIZE,
                    exemplar_volume_resolution: int = EXEMPLAR_VOLUME_RESOLUTION) -> dict:
    """Score a workspace's checkpoint and write ``<workspace>/eval.json`` (atomically).

    Args:
        workspace: a dreamfusion workspace (config.yaml and a checkpoint).
        clip_model: hub id or folder of a transformers CLIP; None scores without CLIP (exemplar 3D
            scores only). Ignored when ``embedder`` is given.
        views: turntable views, evenly spaced in azimuth at the run's default polar angle, radius
            and field of view, rendered at the CLIP model's input size (224² for ViT-B/32).
        device: where the field and CLIP run.
        log: receives a few progress lines.
        ckpt: latest | best | a checkpoint path.
        embedder: an already loaded :class:`ClipEmbedder` (scoring many workspaces).
        exemplar_3d: add the ground-truth scores for ``--guidance exemplar`` runs.
        exemplar_size, exemplar_volume_resolution: their image size and volume grid (cost).
    Returns:
        the report written to eval.json (see docs/evaluation.md for every field).
    Raises:
        UserError: not a workspace, no checkpoint, no prompt, CLIP weights missing.
    """
    from dreamfusion.cli import load_saved_config

    started = time.perf_counter()
    workspace = Path(workspace)
    checkpoint = find_checkpoint(workspace, ckpt)
    saved = load_saved_config(workspace)
    prompt = str(saved.get("text") or "").strip()
    if views < 1:
        raise UserError(f"--views {views}: at least one view is needed")
    use_clip = embedder is not None or clip_model is not None
    use_exemplar = exemplar_3d and is_exemplar_run(saved)
    if not use_clip and not use_exemplar:
        raise UserError(f"{workspace}: nothing to score (no CLIP model, and no exemplar 3D scores for this run)")
    if use_clip and not prompt:
        raise UserError(f"{workspace}: the run has no --text prompt for CLIP to score against")
    if embedder is None and clip_model is not None:
        embedder = ClipEmbedder.from_pretrained(clip_model, device)
    report: dict = {"format": FORMAT, "workspace": str(workspace), "prompt": prompt, "checkpoint": str(checkpoint),
                    "step": None, "clip_model": embedder.name if embedder is not None else None,
                    "views": views if embedder is not None else None}
    seconds: dict[str, float] = {}
    if embedder is not None:
        tick = time.perf_counter()
        report.update(clip_report(workspace, checkpoint, prompt, embedder, views, device))
        seconds["render_and_clip"] = time.perf_counter() - tick
        log(f"{workspace}: CLIP score {report['clip_score']:.2f}, R@1 {report['r_precision']:.3f}, "
            f"mean rank {report['mean_rank']:.1f} of {report['pool_size']}")
    else:
        report["step"] = _checkpoint_step(checkpoint)
    if use_exemplar:
        tick = time.perf_counter()
        report["exemplar_3d"] = exemplar_3d_scores(workspace, device=device, ckpt=str(checkpoint), size=exemplar_size,
                                                   volume_resolution=exemplar_volume_resolution)
        seconds["exemplar_3d"] = time.perf_counter() - tick
        field = report["exemplar_3d"]["field"]
        log(f"{workspace}: exemplar 3D: views IoU {field['views']['all']['iou']:.3f}, "
            f"volume IoU {field['volume_iou']:.3f}")
    report["seconds"] = {**seconds, "total": time.perf_counter() - started}
    report = plain(report)
    write_json_atomically(workspace / EVAL_FILE, report)
    return report


def clip_report(workspace: Path, checkpoint: Path, prompt: str, embedder: ClipEmbedder, views: int,
                device: torch.device | str) -> dict:
    """The CLIP part of eval.json: the checkpoint's turntable at CLIP's input size, ranked against
    the prompt and the caption pool."""
    turntable = render_turntable(workspace, views=views, size=embedder.image_size, device=device,
                                 ckpt=str(checkpoint))
    candidates = ranking_candidates(prompt)
    ranking = ranking_report(embedder.encode_images(turntable.rgb), embedder.encode_texts(candidates), candidates)
    for view, azimuth in zip(ranking["per_view"], turntable.azimuth.tolist()):
        view["azimuth"] = azimuth
    return {"step": turntable.step, "image_size": embedder.image_size,
            "camera": {"polar": turntable.polar, "radius": turntable.radius, "fovy": turntable.fovy},
            "clip_score": ranking["clip_score"], "clip_cosine": ranking["clip_cosine"],
            "r_precision": ranking["r_precision"], "recall_at": ranking["recall_at"],
            "mean_rank": ranking["mean_rank"], "median_rank": ranking["median_rank"],
            "pool_size": ranking["candidates"], "distractors": ranking["candidates"] - 1,
            "pool_fingerprint": pool_fingerprint(), "per_view": ranking["per_view"]}


def _checkpoint_step(path: Path) -> int | None:
    from dreamfusion.checkpoints import load_checkpoint

    step = load_checkpoint(path, map_location="cpu", rewrite=False).get("global_step")
    return None if step is None else int(step)


def write_json_atomically(path: Path, data: dict) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``: a reader
    sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(json.dumps(data, indent=1, allow_nan=True) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
