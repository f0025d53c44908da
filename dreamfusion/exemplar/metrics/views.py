"""Views all around: evaluation cameras on rings of constant polar angle, their ground truth, and
the per-ring scores of any renderer (the trained field, or the exported mesh reloaded from disk).

The rings sit at polar 30, 60, 90, 120 and 150 degrees (from above to below the object), 8 azimuths
each, every ring turned by 9 degrees against the previous one and half a step (22.5 degrees) off the
test video's circle, so no evaluation camera is a training camera, an exemplar camera or a video
frame. The camera distance is the default 3.2 and the field of view frames the renderer's whole
bounding sphere (radius 1): whatever the field grows anywhere can be seen, and no object is cut by
the image border (:func:`check_framed` proves it on the ground truth).

Example::

    cams = evaluation_cameras(64)                       # 40 cameras, ring by ring
    truth = ground_truth(get_object("a teapot"), cams)  # ObjectRender over white, cached on disk
    report = score_views(render_fn, truth, cams)        # per-ring and overall IoU, PSNR, normal error
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from dreamfusion.cameras import CameraBatch, OrbitConfig, framed_extent, make_batch
from dreamfusion.errors import UserError
from dreamfusion.exemplar.metrics.images import normal_error_deg, psnr, silhouette_iou, summarise
from dreamfusion.exemplar.objects import AnalyticObject
from dreamfusion.exemplar.render import ObjectRender, render_cameras

EVAL_POLARS = (30.0, 60.0, 90.0, 120.0, 150.0)
EVAL_AZIMUTHS = 8
EVAL_RADIUS = 3.2
EVAL_FOVY = 40.0
"""Frames a sphere of radius 3.2·sin(20°) = 1.09 from distance 3.2: the whole renderable volume."""
# Sub-samples per pixel side of the ground truth and of rasterised meshes (box-filtered coverage,
# thresholded at 0.5). At 2x2 coverage takes 5 values and a boundary pixel lands on exactly 0.5
# often enough that "> 0.5" and ">= 0.5" differ by 0.010 in the teapot mesh's IoU, more than the
# margins judged; at 4x4 they differ by 0.001. (Field renders have continuous opacity.)
EVAL_SUPERSAMPLE = 4


@dataclass(frozen=True)
class RingSpec:
    """Where the evaluation cameras are: ``polars`` rings of ``azimuths`` cameras each."""

    size: int = 64
    polars: tuple[float, ...] = EVAL_POLARS
    azimuths: int = EVAL_AZIMUTHS
    radius: float = EVAL_RADIUS
    fovy: float = EVAL_FOVY
    ring_turn: float = 9.0  # each ring's azimuths turned by this much more than the previous ring's

    def azimuth_offset(self, ring: int) -> float:
        return 180.0 / self.azimuths + self.ring_turn * ring


@dataclass
class ViewRender:
    """What a renderer returns for a batch of cameras (all over a white background).

    rgb [B, H, W, 3]; alpha [B, H, W] coverage; normal [B, H, W, 3] unit world normals, or None.
    """

    rgb: Tensor
    alpha: Tensor
    normal: Tensor | None = None


Renderer = Callable[[CameraBatch], ViewRender]


def rings_covered(theta_range, spec: RingSpec = RingSpec()) -> RingSpec:
    """``spec`` with only the rings inside the training polar band ``theta_range`` (all five for
    polar 30-150; all of them, too, when none is inside): a run is not scored on views it never
    trained on."""
    lo, hi = theta_range
    polars = tuple(p for p in spec.polars if lo <= p <= hi)
    return replace(spec, polars=polars or spec.polars)


def evaluation_cameras(spec: RingSpec | int = RingSpec()) -> CameraBatch:
    """All evaluation cameras, ring by ring (``len(polars) · azimuths``), square ``spec.size`` images."""
    spec = RingSpec(size=spec) if isinstance(spec, int) else spec
    polar, azimuth = [], []
    for ring, p in enumerate(spec.polars):
        polar += [p] * spec.azimuths
        azimuth += [spec.azimuth_offset(ring) + 360.0 * k / spec.azimuths for k in range(spec.azimuths)]
    n = len(polar)
    return make_batch(OrbitConfig(), torch.tensor(polar), torch.tensor(azimuth), torch.full((n,), spec.radius),
                      torch.full((n,), spec.fovy), spec.size, spec.size)


def border_coverage(alpha: Tensor) -> Tensor:
    """Largest coverage [B] on the outermost pixel ring of each image [B, H, W]."""
    edge = torch.cat([alpha[:, 0], alpha[:, -1], alpha[:, :, 0], alpha[:, :, -1]], dim=1)
    return edge.amax(dim=1)


def check_framed(alpha: Tensor, what: str, tolerance: float = 1e-3) -> None:
    """Raise UserError when any image [B, H, W] of ``what`` has the object on its border (cropped)."""
    touching = border_coverage(alpha) > tolerance
    if bool(touching.any()):
        raise UserError(f"{what}: the object touches the image border in {int(touching.sum())} of "
                        f"{alpha.shape[0]} views (it is cropped; frame it by camera distance or field of view)")


def check_orbit_frames(radius_min: float, fovy_min: float, extent: float, what: str) -> None:
    """Raise UserError when cameras at ``radius_min`` with ``fovy_min`` cannot see a sphere of
    radius ``extent`` whole (the training cameras of a run, say)."""
    seen = framed_extent(radius_min, fovy_min)
    if seen < extent:
        raise UserError(f"{what}: cameras at radius {radius_min:g} with fovy {fovy_min:g} see only a sphere of "
                        f"radius {seen:.3f}, the object reaches {extent:.3f}: it leaves the frame")


# ------------------------------------------------------------------------------ ground truth


def _ground_truth_key(obj: AnalyticObject, cameras: CameraBatch, supersample: int) -> str:
    from dreamfusion.exemplar.views import _library_fingerprint

    payload = json.dumps({"object": obj.name, "c2w": cameras.c2w.flatten().tolist(),
                          "intrinsics": cameras.intrinsics.flatten().tolist(), "size": [cameras.height, cameras.width],
                          "supersample": supersample, "library": _library_fingerprint()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def ground_truth(obj: AnalyticObject, cameras: CameraBatch, *, supersample: int = EVAL_SUPERSAMPLE,
                 cache_dir: str | Path | None = None, use_cache: bool = True) -> ObjectRender:
    """Albedo renders of the analytic object over white (with normals), cached on disk like the
    exemplar sets (``<cache>/eval/{object}-{key}.pt``; the key hashes cameras and library code)."""
    from dreamfusion.exemplar.views import default_cache_dir

    folder = Path(cache_dir or default_cache_dir()) / "eval"
    path = folder / f"{obj.key}-{_ground_truth_key(obj, cameras, supersample)}.pt"
    if use_cache and path.is_file():
        try:
            return ObjectRender(**torch.load(path, map_location="cpu", weights_only=True))
        except Exception:  # truncated or stale: render again and overwrite
            pass
    truth = render_cameras(obj, cameras.to("cpu"), supersample=supersample, background=1.0)
    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        os.close(fd)
        torch.save(asdict(truth), tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return truth


# ------------------------------------------------------------------------------ scores


def score_views(render: Renderer, truth: ObjectRender, cameras: CameraBatch) -> dict:
    """Score a renderer against the ground truth at every evaluation camera.

    Returns ``{"per_view": {metric: [B] list}, "rings": [{"polar", metric: mean}...], "all": {metric:
    mean}, "min": {metric: min}}`` for the metrics ``iou``, ``psnr`` (whole image over white),
    ``psnr_object`` (over the union of both silhouettes) and ``normal_deg`` (mean angle where both
    cover the pixel; absent when the renderer gives no normals).
    """
    with torch.no_grad():
        out = render(cameras)
    rgb, alpha = out.rgb.detach().float().cpu().clamp(0, 1), out.alpha.detach().float().cpu()
    pred_mask, gt_mask = alpha > 0.5, truth.alpha > 0.5
    per_view = {
        "iou": silhouette_iou(alpha, truth.alpha),
        "psnr": psnr(rgb, truth.rgb),
        "psnr_object": psnr(rgb, truth.rgb, mask=pred_mask | gt_mask),
    }
    if out.normal is not None:
        per_view["normal_deg"] = normal_error_deg(out.normal.detach().float().cpu(), truth.normal, pred_mask, gt_mask)
    polars = cameras.polar.cpu()
    rings = []
    for p in sorted(set(polars.tolist())):
        sel = polars == p
        rings.append({"polar": p, **{k: summarise(v[sel])["mean"] for k, v in per_view.items()}})
    return {
        "per_view": {k: v.tolist() for k, v in per_view.items()},
        "rings": rings,
        "all": {k: summarise(v)["mean"] for k, v in per_view.items()},
        "min": {k: summarise(v)["min"] for k, v in per_view.items()},
        "images": {"rgb": rgb, "alpha": alpha},
    }
