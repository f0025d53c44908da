"""Reference (known) views of image-conditioned runs: loading and their losses (spec §3.10 step 5).

A reference is a preprocessed ``<name>_rgba.png`` with optional ``<name>_depth.png`` (8-bit grey,
larger = farther or nearer: only correlation is used) and ``<name>_normal.png`` (8-bit RGB) siblings,
seen from a known camera (``--default_radius/polar/azimuth`` or a row of ``--image_config``).

    refs = ReferenceImages.load(config.references, height=96, width=96)
    terms = reference_losses(outputs, refs.select(idx), bg, weights, step, iters)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from dreamfusion import losses
from dreamfusion.errors import UserError


def _read(path: Path, channels: int) -> np.ndarray:
    flag = cv2.IMREAD_UNCHANGED
    image = cv2.imread(str(path), flag)
    if image is None:
        raise UserError(f"cannot read image {path} (missing or not an image file)")
    if image.dtype != np.uint8:
        image = (image.astype(np.float32) / np.iinfo(image.dtype).max * 255.0).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if channels == 1:
        return image[..., :1] if image.shape[-1] in (1, 2) else cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if channels == 4:
        if image.shape[-1] == 3:
            raise UserError(f"{path} has no alpha channel: preprocess the image into an RGBA *_rgba.png first")
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return out[..., None] if out.ndim == 2 else out


def sibling(path: str | Path, kind: str) -> Path:
    """``x_rgba.png`` -> ``x_depth.png`` / ``x_normal.png``."""
    path = Path(path)
    return path.with_name(path.name[: -len("_rgba.png")] + f"_{kind}.png") if path.name.endswith("_rgba.png") \
        else path.with_name(path.stem + f"_{kind}.png")


@dataclass
class ReferenceImages:
    """All reference views at the known-view render size.

    Attributes:
        rgb: ``[N, H, W, 3]`` colour composited on white.
        mask: ``[N, H, W]`` bool, alpha > 0.5.
        alpha: ``[N, H, W]`` coverage in [0, 1] (image priors read the soft silhouette).
        depth: ``[N, H, W]`` in [0, 1] or None when any reference lacks ``_depth.png``.
        normal: ``[N, H, W, 3]`` in [0, 1] or None when any reference lacks ``_normal.png``.
        polar, azimuth, radius: per-reference camera (degrees).
    """

    rgb: Tensor
    mask: Tensor
    alpha: Tensor
    depth: Tensor | None
    normal: Tensor | None
    polar: list[float]
    azimuth: list[float]
    radius: list[float]

    @classmethod
    def load(cls, references: list, height: int, width: int) -> "ReferenceImages":
        rgbs, masks, alphas, depths, normals = [], [], [], [], []
        for ref in references:
            rgba = _resize(_read(Path(ref.image), 4), height, width).astype(np.float32) / 255.0
            alpha = rgba[..., 3:4]
            rgbs.append(rgba[..., :3] * alpha + (1.0 - alpha))
            masks.append(alpha[..., 0] > 0.5)
            alphas.append(alpha[..., 0])
            d, n = sibling(ref.image, "depth"), sibling(ref.image, "normal")
            depths.append(_resize(_read(d, 1), height, width)[..., 0].astype(np.float32) / 255.0 if d.is_file() else None)
            normals.append(_resize(_read(n, 3), height, width).astype(np.float32) / 255.0 if n.is_file() else None)
        stack = lambda xs: torch.from_numpy(np.stack(xs)) if all(x is not None for x in xs) else None  # noqa: E731
        return cls(rgb=torch.from_numpy(np.stack(rgbs)), mask=torch.from_numpy(np.stack(masks)),
                   alpha=torch.from_numpy(np.stack(alphas)), depth=stack(depths), normal=stack(normals),
                   polar=[r.polar for r in references], azimuth=[r.azimuth for r in references],
                   radius=[r.radius for r in references])

    def __len__(self) -> int:
        return self.rgb.shape[0]

    def to(self, device) -> "ReferenceImages":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return ReferenceImages(move(self.rgb), move(self.mask), move(self.alpha), move(self.depth), move(self.normal),
                               self.polar, self.azimuth, self.radius)

    def select(self, index: Tensor) -> "ReferenceImages":
        pick = lambda t: None if t is None else t[index.to(t.device)]  # noqa: E731
        idx = index.tolist()
        return ReferenceImages(pick(self.rgb), pick(self.mask), pick(self.alpha), pick(self.depth), pick(self.normal),
                               [self.polar[i] for i in idx], [self.azimuth[i] for i in idx],
                               [self.radius[i] for i in idx])


def reference_losses(pred_rgb: Tensor, pred_opacity: Tensor, pred_depth: Tensor | None,
                     pred_normal: Tensor | None, refs: ReferenceImages, background: Tensor, *,
                     lambda_rgb: float, lambda_mask: float, lambda_depth: float, lambda_normal: float,
                     ramp: float) -> dict[str, Tensor]:
    """Weighted reference-view loss terms.

    Args:
        pred_rgb: ``[B, H, W, 3]`` render composited on ``background``.
        pred_opacity: ``[B, H, W]``; pred_depth ``[B, H, W]``; pred_normal ``[B, H, W, 3]`` in [0, 1].
        background: ``[B, H, W, 3]`` the per-pixel background used for the render; the reference
            colour is re-composited on it (by the binary mask) so the background carries no loss.
        ramp: ``min(1, step/iters)`` for the depth and normal terms.
    Returns:
        ``{"rgb": λ·MSE, "mask": λ·MSE, "depth": λ·ramp·(1-Pearson), "normal": ...}`` (present terms).
    """
    mask = refs.mask
    m = mask[..., None].float()
    gt_rgb = refs.rgb * m + background * (1.0 - m)
    terms = {"rgb": lambda_rgb * losses.reference_rgb_loss(pred_rgb, gt_rgb),
             "mask": lambda_mask * losses.reference_mask_loss(pred_opacity, mask)}
    if lambda_depth > 0 and refs.depth is not None and pred_depth is not None:
        terms["depth"] = lambda_depth * ramp * losses.reference_depth_loss(pred_depth, refs.depth, mask)
    if lambda_normal > 0 and refs.normal is not None and pred_normal is not None:
        terms["normal"] = lambda_normal * ramp * losses.reference_normal_loss(pred_normal, refs.normal, mask)
    return terms


IDENTIFY_SIZE = 256
"""Size at which a reference is read to estimate its camera (its silhouette box sets the scale)."""


def estimate_reference_polar(config, device, log=print) -> float:
    """Read the photo's polar angle with the offline image prior and make it the run's
    ``--default_polar`` (and the reference's), as if the user had passed it. Returns it."""
    from dreamfusion.cameras import OrbitConfig
    from dreamfusion.exemplar.image_prior import identify_reference, make_exemplar_image_prior

    refs = ReferenceImages.load(config.references[:1], IDENTIFY_SIZE, IDENTIFY_SIZE)
    alpha = refs.alpha[0][None]
    rgba = torch.cat([refs.rgb[0].permute(2, 0, 1) - (1.0 - alpha), alpha]).clamp(0.0, 1.0)
    orbit = OrbitConfig(radius_range=tuple(config.radius_range), theta_range=tuple(config.theta_range),
                        phi_range=tuple(config.phi_range), fovy_range=tuple(config.fovy_range))
    prior = make_exemplar_image_prior(resolution=config.exemplar_resolution, views_per_class=config.exemplar_views,
                                      orbit=orbit, fovy=config.fovy_range[0], reference_fovy=config.default_fovy,
                                      device=device, log=log)
    pose = identify_reference(prior.identify, rgba, ref_radius=config.default_radius, ref_fovy=config.default_fovy)
    polar = round(pose.polar, 1)
    config.default_polar = polar
    config.references[0].polar = polar
    config.estimate_polar = False
    curve = ", ".join(f"{p:.0f}°: {v:.0f}" for p, v in pose.elevation_curve[::2])
    log(f"image prior: {pose.describe()}")
    log(f"--default_polar {polar} (estimated from the image; log-likelihood by polar: {curve}; pass --default_polar to set it)")
    return polar
