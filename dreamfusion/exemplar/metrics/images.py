"""Per-image scores of a render against the analytic ground truth: silhouette IoU, PSNR, normal error.

Example::

    iou = silhouette_iou(pred_alpha, gt_alpha)            # [B]
    db = psnr(pred_rgb, gt_rgb)                           # [B], both over the same background
    deg = normal_error_deg(pred_normal, gt_normal, pred_alpha > .5, gt_alpha > .5)   # [B] degrees
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PSNR_CAP_DB = 99.0
"""PSNR of an exact match is +inf; summaries cap it here so means stay finite."""


def silhouette_iou(pred_alpha: Tensor, gt_alpha: Tensor, threshold: float = 0.5) -> Tensor:
    """Per-image IoU [B] of the masks alpha > threshold.

    Args:
        pred_alpha, gt_alpha: [B, H, W] (or [B, H, W, 1]) coverage in [0, 1].
    Two empty masks give IoU 1.
    """
    pred = pred_alpha.reshape(pred_alpha.shape[0], -1) > threshold
    gt = gt_alpha.reshape(gt_alpha.shape[0], -1) > threshold
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


def normal_error_deg(pred_normal: Tensor, gt_normal: Tensor, pred_mask: Tensor, gt_mask: Tensor) -> Tensor:
    """Mean angle [B] in degrees between unit normal images [B, H, W, 3] over pixels both masks cover.

    Images with no common pixel give NaN (``summarise`` skips them).
    """
    both = (pred_mask & gt_mask).reshape(pred_mask.shape[0], -1).float()
    a = torch.nn.functional.normalize(pred_normal.float(), dim=-1).reshape(both.shape[0], -1, 3)
    b = torch.nn.functional.normalize(gt_normal.float(), dim=-1).reshape(both.shape[0], -1, 3)
    # atan2(|a×b|, a·b) stays accurate near 0 and 180 degrees, where acos loses precision.
    angle = torch.rad2deg(torch.atan2(torch.linalg.cross(a, b, dim=-1).norm(dim=-1), (a * b).sum(-1)))
    count = both.sum(-1)
    return torch.where(count > 0, (angle * both).sum(-1) / count.clamp_min(1.0), torch.full_like(count, math.nan))


def summarise(values: Tensor) -> dict[str, float]:
    """Mean, min and max of a per-view metric; NaNs are skipped and PSNR is capped at 99 dB."""
    v = values.detach().float().reshape(-1)
    v = v[~torch.isnan(v)].clamp(max=PSNR_CAP_DB)
    if v.numel() == 0:
        return {"mean": math.nan, "min": math.nan, "max": math.nan}
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
