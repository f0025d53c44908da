"""Benchmark metrics: how close a distilled object is to the analytic object it was asked for.

The benchmark renders the trained field and the analytic object (``render.render_cameras``) from
the same held-out cameras and compares silhouettes (IoU of alpha > 0.5) and colours (PSNR).

Example::

    cams = held_out_cameras(8, 64)
    gt = render_cameras(get_object("a red cube"), cams, supersample=2)
    iou = silhouette_iou(pred_alpha, gt.alpha)          # [B]
    db = psnr(pred_rgb, gt.rgb)                          # [B], both over the same background
"""

from __future__ import annotations

import torch
from torch import Tensor

from typing import Callable

from dreamfusion.cameras import CameraBatch, OrbitConfig, make_batch


def silhouette_iou(pred_alpha: Tensor, gt_alpha: Tensor, threshold: float = 0.5) -> Tensor:
    """Per-image IoU [B] of the masks alpha > threshold.

    Args:
        pred_alpha, gt_alpha: [B, H, W] (or [B, H, W, 1]) coverage in [0, 1].
    Two empty masks give IoU 1.
    """
    pred = (pred_alpha.reshape(pred_alpha.shape[0], -1) > threshold)
    gt = (gt_alpha.reshape(gt_alpha.shape[0], -1) > threshold)
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def psnr(pred_rgb: Tensor, gt_rgb: Tensor, mask: Tensor | None = None, max_value: float = 1.0) -> Tensor:
    """Per-image PSNR [B] in dB of images [B, H, W, 3] (or [B, 3, H, W]) in [0, max_value].

    ``mask`` [B, H, W] restricts the mean squared error to selected pixels. An exact match gives
    +inf.
    """
    err = (pred_rgb.float() - gt_rgb.float()).square()
    if err.shape[-1] == 3:
        err = err.mean(-1)
    elif err.ndim == 4 and err.shape[1] == 3:
        err = err.mean(1)
    err = err.reshape(err.shape[0], -1)
    if mask is None:
        mse = err.mean(-1)
    else:
        m = mask.reshape(mask.shape[0], -1).float()
        mse = (err * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    return 10.0 * torch.log10(max_value**2 / mse)


def held_out_cameras(count: int, size: int, *, polar: float = 75.0, radius: float = 3.2, fovy: float = 20.0,
                     azimuth_offset: float | None = None, config: OrbitConfig | None = None) -> CameraBatch:
    """``count`` evaluation cameras on a circle (default polar 75°, radius 3.2, fovy 20°).

    Azimuths are 360·(i + ½)/count + offset: half a step off the circle of the test video, and an
    exemplar set (quasi-random cameras) almost surely holds none of them exactly.
    """
    offset = 180.0 / count if azimuth_offset is None else azimuth_offset
    azimuth = offset + 360.0 * torch.arange(count, dtype=torch.float32) / count
    full = lambda v: torch.full((count,), float(v))  # noqa: E731
    return make_batch(config or OrbitConfig(), full(polar), azimuth, full(radius), full(fovy), size, size)


def evaluate_against_object(render: Callable[[CameraBatch], tuple[Tensor, Tensor]], prompt: str,
                            cameras: CameraBatch | None = None, *, count: int = 8, size: int = 64,
                            supersample: int = 2) -> dict[str, object]:
    """Score a distilled object against the analytic object its prompt names.

    Args:
        render: cameras -> (rgb [B, H, W, 3] over a white background, alpha [B, H, W]), e.g. the
            trained field rendered in albedo shading.
        prompt: names a built-in object.
        cameras: evaluation cameras (default :func:`held_out_cameras` (count, size)).
    Returns:
        {"iou": [B] tensor, "psnr": [B] tensor, "iou_mean": float, "psnr_mean": float,
         "ground_truth": ObjectRender, "cameras": CameraBatch} with PSNR on white-background images.
    """
    from dreamfusion.exemplar.objects import get_object
    from dreamfusion.exemplar.render import render_cameras

    cams = cameras if cameras is not None else held_out_cameras(count, size)
    gt = render_cameras(get_object(prompt), cams, supersample=supersample, background=1.0)
    with torch.no_grad():
        rgb, alpha = render(cams)
    iou = silhouette_iou(alpha.cpu(), gt.alpha)
    db = psnr(rgb.cpu().clamp(0, 1), gt.rgb)
    return {"iou": iou, "psnr": db, "iou_mean": summarise(iou)["mean"], "psnr_mean": summarise(db)["mean"],
            "ground_truth": gt, "cameras": cams}


def summarise(values: Tensor) -> dict[str, float]:
    """Mean, min and max of a per-view metric (inf-safe: PSNR of exact matches is capped at 99 dB)."""
    v = values.float().clamp(max=99.0)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
