"""The exemplar prior conditioned on a reference image: the offline analogue of Zero123.

Zero123 takes a reference photo and a relative camera (Δpolar, Δazimuth, Δradius) and denoises a
view of the photo's object from there. This prior does the same with the exemplar posterior of
:mod:`dreamfusion.exemplar.posterior` (one posterior for every mode: the text modes weight the
exemplars by view class or by camera, this one by the camera relative to the reference):

1. **Identify** (:func:`identify_reference`): the reference is compared with every built-in object's
   views after both are recentred on their silhouette's box, as preprocessing recentres a photo (its
   scale and position are unknown). The best object and view are then refined by rendering that
   object on a finer grid of cameras around the match; the match's error over candidate polar angles
   is the likelihood from which the input's elevation is read.
2. **Place**: the reference shows the object at some scale ``s`` and offset ``T`` that the recentring
   chose (:class:`Placement`): rendering the object from the estimated camera and comparing the two
   silhouette boxes gives both. The run's world (the "NeRF frame", with the reference camera at
   --default_polar/--default_azimuth) is then the object's frame rotated about the vertical axis,
   scaled by ``s`` and moved by ``T``.
3. **Denoise** (:meth:`ExemplarImagePrior.predict_noise`): a render from camera c of the NeRF frame
   is matched against the object's exemplars near c mapped into the object's frame (the camera
   window of :mod:`~dreamfusion.exemplar.camera_kernel`), each warped in 2D to the render's apparent
   size and offset, plus the reference image itself as one more exemplar at the reference camera.
   At the reference camera the posterior mean of a lightly noised reference is the reference.

It implements Zero123's prior interface (``reference_conditioning``, ``conditioning``,
``predict_noise``), so :class:`dreamfusion.guidance.zero123.Zero123Guidance` runs it with the same
multi-reference weighting, ``--zero123_grad_scale`` and reference-view losses as real Zero123.

Example::

    prior = make_exemplar_image_prior(resolution=32, orbit=orbit)
    guidance = Zero123Guidance(prior, SDSConfig(guidance_scale=5.0))
    guidance.set_references(rgb, polars=[62.0], azimuths=[0.0], radii=[3.2], alpha=alpha)
    prior.poses[0].object_name, prior.poses[0].polar      # 'a teapot', 61.4
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.cameras import OrbitConfig, look_at, make_batch, position_to_spherical, spherical_to_position, wrap_degrees
from dreamfusion.errors import UserError
from dreamfusion.exemplar.objects import OBJECT_NAMES, OBJECTS
from dreamfusion.exemplar.posterior import ExemplarStatistics, posterior_mean
from dreamfusion.exemplar.prior import ExemplarPrior, noise_from_x0
from dreamfusion.exemplar.render import render_cameras
from dreamfusion.exemplar.views import ExemplarViewConfig

IDENTIFY_VIEWS = 384
"""Views per object in the identification set (a coarse search; the match is refined by rendering)."""
RECENTRE_BORDER = 0.2
"""Border of the box-recentred images compared during identification (stable-dreamfusion's default)."""
REFINE_LEVELS = ((64, (12.0, 6.0), (10.0, 10.0)), (96, (6.0, 1.5), (8.0, 4.0)))
"""Camera grids rendered around the coarse matches: (image size, (half-width, step) in polar,
(half-width, step) in azimuth), degrees; the second level refines the first's winner."""
REFINE_CANDIDATES = 5
REFINE_SEPARATION = 25.0
"""The refinement starts from the best coarse matches at least this many degrees apart."""
SAME_VIEW = 0.5
"""Two coarse views are one hypothesis when their images differ by less than this fraction of the
chosen one's error against the reference (mean squared, recentred)."""
MATCH_SIGMA = 0.1
"""Per-pixel noise level of the identification likelihood (images in [0, 1])."""
POSE_COLUMNS = 11
"""Packed reference row: object index, object-frame polar and azimuth, reference camera (polar,
azimuth, radius, fovy) in the NeRF frame, scale s, translation T (3)."""


# ---------------------------------------------------------------------------------- 2D geometry


def silhouette_boxes(alpha: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """Silhouette boxes of [B, H, W] coverage maps in normalised image coordinates (x right, y down,
    [-1, 1] from edge to edge, the convention of ``grid_sample(align_corners=False)``).

    Returns:
        centre [B, 2] (x, y), half_extent [B] (half the longer side), found [B] bool.
    """
    b, h, w = alpha.shape
    inside = alpha > threshold
    cols, rows = inside.any(1), inside.any(2)  # [B, W], [B, H]
    found = cols.any(1)
    xs = torch.arange(w, device=alpha.device)
    ys = torch.arange(h, device=alpha.device)
    big = torch.tensor(10**9, device=alpha.device)
    x0 = torch.where(cols, xs, big).min(1).values
    x1 = torch.where(cols, xs, -big).max(1).values + 1
    y0 = torch.where(rows, ys, big).min(1).values
    y1 = torch.where(rows, ys, -big).max(1).values + 1
    nx0, nx1 = 2.0 * x0 / w - 1.0, 2.0 * x1 / w - 1.0
    ny0, ny1 = 2.0 * y0 / h - 1.0, 2.0 * y1 / h - 1.0
    centre = torch.stack([(nx0 + nx1) / 2, (ny0 + ny1) / 2], -1).float()
    half = (torch.maximum(nx1 - nx0, ny1 - ny0) / 2).float()
    return torch.where(found[:, None], centre, 0.0), torch.where(found, half, 1.0), found


def warp(images: Tensor, zoom: Tensor, shift: Tensor, size: int | None = None) -> Tensor:
    """Zoom [B] about the centre, then shift [B, 2] (normalised x, y), images [B, C, H, W] -> [B, C, size, size]:
    output(g) = input((g - shift) / zoom); outside the input is 0 (empty space, premultiplied)."""
    b = images.shape[0]
    size = size or images.shape[-1]
    theta = torch.zeros(b, 2, 3, dtype=images.dtype, device=images.device)
    inv = 1.0 / zoom.to(images)
    theta[:, 0, 0], theta[:, 1, 1] = inv, inv
    theta[:, :, 2] = -shift.to(images) * inv[:, None]
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def recentre(rgba: Tensor, size: int, border: float = RECENTRE_BORDER) -> Tensor:
    """Premultiplied RGBA [B, 4, H, W] recentred as preprocessing does: the silhouette box's longer
    side scaled to ``(1 - border)`` of the image and centred -> [B, 4, size, size]."""
    centre, half, _ = silhouette_boxes(rgba[:, 3])  # at full resolution: the box sets the scale
    zoom = (1.0 - border) / half
    if rgba.shape[-1] > size:  # box-filter first: bilinear taps alone would alias a large image
        rgba = F.interpolate(rgba, size=(size, size), mode="area")
    return warp(rgba, zoom, -centre * zoom[:, None], size)


# ---------------------------------------------------------------------------------- the pose


@dataclass
class ReferencePose:
    """What the image prior read from one reference image.

    ``polar``/``azimuth``: the reference camera in the object's frame (degrees). ``scale`` and
    ``shift``: the reference shows the object zoomed by ``scale`` and moved by ``shift`` (normalised
    image coordinates, x right, y down) relative to the object's own render from that camera at
    the reference camera's radius and fovy. ``elevation_curve``: (polar, log-likelihood) pairs.
    """

    object_name: str
    object_posterior: dict[str, float]
    polar: float
    azimuth: float
    scale: float
    shift: tuple[float, float]
    error: float
    elevation_curve: list[tuple[float, float]] = field(default_factory=list)

    def describe(self) -> str:
        p = self.object_posterior[self.object_name]
        return (f"the reference looks like {self.object_name!r} (p = {p:.2f}) seen from polar {self.polar:.1f}° "
                f"(elevation {90.0 - self.polar:.1f}°), azimuth {self.azimuth:.1f}°, at {self.scale:.2f}x its size")


@dataclass
class Placement:
    """The NeRF frame relative to the object's: x_nerf = scale · R_y(yaw) · x_object + translation.

    R_y(yaw) turns azimuth φ (atan2(x, z)) into φ + yaw.
    """

    scale: float
    yaw_deg: float
    translation: tuple[float, float, float]

    def rotation(self) -> Tensor:
        a = math.radians(self.yaw_deg)
        c, s = math.cos(a), math.sin(a)
        return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)

    def to_nerf(self, points: Tensor) -> Tensor:
        """[..., 3] object-frame points -> NeRF frame."""
        r = self.rotation().to(points)
        return self.scale * points @ r.T + torch.tensor(self.translation).to(points)

    def to_object(self, points: Tensor) -> Tensor:
        """[..., 3] NeRF-frame points -> object frame."""
        r = self.rotation().to(points)
        return ((points - torch.tensor(self.translation).to(points)) / self.scale) @ r


def camera_axes(polar: float, azimuth: float) -> tuple[Tensor, Tensor]:
    """(right, up) [3] of the camera at (polar, azimuth) looking at the origin (``cameras.look_at``)."""
    c2w = look_at(spherical_to_position(torch.tensor([polar]), torch.tensor([azimuth]), torch.tensor([1.0])))
    return c2w[0, :3, 0].double(), c2w[0, :3, 1].double()


def placement_from_view(scale: float, shift: tuple[float, float], object_azimuth: float, ref_polar: float,
                        ref_azimuth: float, ref_radius: float, ref_fovy: float) -> Placement:
    """The placement under which the object, zoomed by ``scale`` and shifted by ``shift`` in the
    reference camera's image (normalised coordinates), is what that camera sees: T lies in the
    plane through the origin facing the camera (a single view cannot tell its depth; the prior's
    other views keep the object centred on it)."""
    right, up = camera_axes(ref_polar, ref_azimuth)
    half_height = ref_radius * math.tan(math.radians(ref_fovy) / 2.0)
    t = half_height * (shift[0] * right - shift[1] * up)
    return Placement(scale=float(scale), yaw_deg=float(wrap_degrees(torch.tensor(ref_azimuth - object_azimuth))),
                     translation=tuple(float(v) for v in t))


def project(points: Tensor, polar: Tensor, azimuth: Tensor, radius: Tensor, fovy: Tensor) -> Tensor:
    """Normalised image coordinates [B, 2] (x right, y down) of points [B, 3] seen by cameras looking
    at the origin from (polar, azimuth, radius) [B] with vertical field of view ``fovy`` [B]."""
    centre = spherical_to_position(polar.double(), azimuth.double(), radius.double())
    c2w = look_at(centre.float()).double()
    local = torch.einsum("bji,bj->bi", c2w[:, :3, :3], points.double() - centre)
    tan = torch.tan(torch.deg2rad(fovy.double()) / 2.0)
    depth = (-local[:, 2]).clamp_min(1e-6)
    return torch.stack([local[:, 0] / depth / tan, -local[:, 1] / depth / tan], -1)


# ---------------------------------------------------------------------------------- identification


def _premultiplied(prior: ExemplarPrior, name: str) -> Tensor:
    views = prior.views(name)
    return torch.cat([views.colour, views.alpha], 1)  # [V, 4, r, r]


def _render_rgba(name: str, polar: Tensor, azimuth: Tensor, radius: float, fovy: float, size: int) -> Tensor:
    """Premultiplied albedo RGBA [B, 4, size, size] of a built-in object."""
    n = polar.numel()
    cams = make_batch(OrbitConfig(), polar, azimuth, torch.full((n,), radius), torch.full((n,), fovy), size, size)
    out = render_cameras(OBJECTS[name], cams, supersample=2, shading="albedo", background=0.0)
    return torch.cat([out.premultiplied.permute(0, 3, 1, 2), out.alpha[:, None]], 1)


def _match_errors(candidates: Tensor, reference: Tensor, size: int) -> Tensor:
    """Mean squared error [B] between recentred candidates [B, 4, ., .] and a recentred reference [4, size, size]."""
    rec = recentre(candidates, size)
    return (rec - reference[None]).square().mean((1, 2, 3))


def _parabola_min(xs: Tensor, ys: Tensor) -> float:
    """Sub-grid minimum of ys over evenly spaced xs (the vertex through the best point and its neighbours)."""
    i = int(torch.argmin(ys))
    if i == 0 or i == len(xs) - 1:
        return float(xs[i])
    y0, y1, y2 = (float(v) for v in ys[i - 1:i + 2])
    den = y0 - 2 * y1 + y2
    step = float(xs[1] - xs[0])
    return float(xs[i]) + (0.5 * step * (y0 - y2) / den if den > 1e-12 else 0.0)


_IDENTIFIED: dict[tuple, "ReferencePose"] = {}


@torch.no_grad()
def identify_reference(identify: ExemplarPrior, rgba: Tensor, *, ref_radius: float, ref_fovy: float,
                       polar_range: tuple[float, float] = (1.0, 179.0)) -> ReferencePose:
    """Read object, camera, scale and offset from one reference image (see the module docstring).

    Args:
        identify: an exemplar prior whose views (any count, all objects) serve the coarse search.
        rgba: [4, H, W] premultiplied colour and coverage in [0, 1].
        ref_radius, ref_fovy: the camera the run will say the reference was taken from (the scale
            is measured at it).
        polar_range: polar angles the refinement may consider.
    """
    rgba = rgba.float().cpu()
    if not bool((rgba[3] > 0.5).any()):
        raise UserError("the reference image has an empty mask: nothing to identify")
    key = (hash(rgba.numpy().tobytes()), identify.cache_key, repr(identify.config), ref_radius, ref_fovy, polar_range)
    if key not in _IDENTIFIED:  # the CLI estimates the polar angle, then training sets the references
        _IDENTIFIED[key] = _identify(identify, rgba, ref_radius, ref_fovy, polar_range)
    return _IDENTIFIED[key]


def _identify(identify: ExemplarPrior, rgba: Tensor, ref_radius: float, ref_fovy: float,
              polar_range: tuple[float, float]) -> ReferencePose:
    size = identify.resolution
    ref_small = recentre(rgba[None], size)[0]
    errors, view_errors = {}, {}
    for name in identify.object_names:
        e = _match_errors(_premultiplied(identify, name), ref_small, size)
        errors[name], view_errors[name] = float(e.min()), e
    names = list(errors)
    pixels = 4 * size * size
    logits = torch.tensor([-pixels * errors[n] / (2 * MATCH_SIGMA**2) for n in names], dtype=torch.float64)
    posterior = torch.softmax(logits, 0)
    best = names[int(torch.argmax(posterior))]

    # Refine on a grid of renders around the best few coarse matches (a silhouette seen from above
    # can resemble one from below: keep distinct candidates, not neighbours of the first). A view
    # whose image is the same as a chosen seed's (a symmetric object's ring of azimuths, an object
    # seen from behind) is the same hypothesis: it would spend a candidate on a basin already chosen.
    cams = identify.cameras
    directions = spherical_to_position(cams.polar.double(), cams.azimuth.double(), torch.ones(len(cams)).double())
    views = recentre(_premultiplied(identify, best), size)
    seeds: list[int] = []
    for i in torch.argsort(view_errors[best]).tolist():
        near = any(float(directions[i] @ directions[j]) >= math.cos(math.radians(REFINE_SEPARATION)) for j in seeds)
        same = any(float((views[i] - views[j]).square().mean()) < SAME_VIEW * float(view_errors[best][j]) for j in seeds)
        if not (near or same):
            seeds.append(i)
        if len(seeds) == REFINE_CANDIDATES:
            break
    # Level 1: a coarse grid around each candidate at the identification size; level 2: a finer
    # grid around the winner at REFINE_RESOLUTION.
    candidates = [(float(cams.polar[i]), float(cams.azimuth[i])) for i in seeds]
    for level, (resolution, (hp, sp), (ha, sa)) in enumerate(REFINE_LEVELS):
        reference = recentre(rgba[None], resolution)[0]
        best_fit = None
        for polar0, azimuth0 in candidates:
            polars = torch.arange(polar0 - hp, polar0 + hp + 1e-6, sp).clamp(*polar_range).unique()
            azimuths = torch.arange(azimuth0 - ha, azimuth0 + ha + 1e-6, sa)
            pp, aa = torch.meshgrid(polars, azimuths, indexing="ij")
            fine = _match_errors(_render_rgba(best, pp.reshape(-1), aa.reshape(-1), ref_radius, ref_fovy, resolution),
                                 reference, resolution).reshape(pp.shape)
            if best_fit is None or float(fine.min()) < float(best_fit[2].min()):
                best_fit = (polars, azimuths, fine)
        polars, azimuths, fine = best_fit
        i, j = divmod(int(torch.argmin(fine)), fine.shape[1])
        candidates = [(float(polars[i]), float(azimuths[j]))]
    per_polar = fine.min(1).values
    polar = _parabola_min(polars, per_polar)
    azimuth = _parabola_min(azimuths, fine[int(torch.argmin(per_polar))])
    log_lik = -4 * resolution**2 * per_polar / (2 * MATCH_SIGMA**2)
    curve = [(float(p), float(v - log_lik.max())) for p, v in zip(polars, log_lik)]

    # Scale and offset: the object's own render from that camera against the reference's box.
    view = _render_rgba(best, torch.tensor([polar]), torch.tensor([azimuth]), ref_radius, ref_fovy,
                        max(rgba.shape[-1], 128))
    c_true, h_true, _ = silhouette_boxes(view[:, 3])
    c_ref, h_ref, _ = silhouette_boxes(rgba[None, 3])
    scale = float(h_ref[0] / h_true[0])
    shift = c_ref[0] - scale * c_true[0]
    return ReferencePose(object_name=best, object_posterior={n: float(p) for n, p in zip(names, posterior)},
                         polar=float(polar), azimuth=float(wrap_degrees(torch.tensor(azimuth))), scale=scale,
                         shift=(float(shift[0]), float(shift[1])), error=float(fine.min()), elevation_curve=curve)


# ---------------------------------------------------------------------------------- the prior


@dataclass
class Window:
    """What one conditioned row draws on: the object's exemplars ``used`` [k] with prior weights
    [k], each warped by ``zoom`` [k] about the centre and then moved by ``shift`` [2] (the object
    origin's image in the render), and the reference image with weight ``reference_weight`` and
    zoom ``reference_zoom`` (weights sum to 1 over both)."""

    object_name: str
    used: Tensor
    weights: Tensor
    zoom: Tensor
    shift: Tensor
    reference_weight: float
    reference_zoom: float


@dataclass
class ExemplarImageConditioning:
    """Conditioning rows (unconditional block first, as Zero123's):

    flag [N] (1 = conditioned on a reference), pose [N, POSE_COLUMNS] (the reference's packed row),
    camera [N, 3] (the render's polar, azimuth, radius in the NeRF frame), reference [N, 4, r, r]
    (the reference image, premultiplied RGBA, zeros for unconditional rows).
    """

    flag: Tensor
    pose: Tensor
    camera: Tensor
    reference: Tensor

    def __len__(self) -> int:
        return int(self.flag.shape[0])


class ExemplarImagePrior:
    """The exemplar posterior conditioned on reference images (see the module docstring).

    Args:
        base: the camera-conditioned exemplar prior holding every object's views (the same posterior
            the text modes use); its resolution is the prior's.
        identify: a coarser exemplar prior over the same objects for identification (default: base).
        fovy: the field of view of the run's training cameras (fixed in image runs).
        reference_fovy: the reference camera's (--default_fovy; default ``fovy``).
    """

    accepts_opacity = True

    def __init__(self, base: ExemplarPrior, identify: ExemplarPrior | None = None, *, fovy: float = 20.0,
                 reference_fovy: float | None = None, log=print):
        if base.condition != "camera":
            raise ValueError("the image prior needs a camera-conditioned exemplar prior")
        self.base = base
        self.identify = identify or base
        self.fovy = float(fovy)
        self.reference_fovy = float(fovy if reference_fovy is None else reference_fovy)
        self.log = log
        self.device = base.device
        self.num_train_timesteps = base.num_train_timesteps
        self.alphas_cumprod = base.alphas_cumprod
        self.resolution = base.resolution
        self.poses: list[ReferencePose] = []
        self.placements: list[Placement] = []

    # ---- Zero123's prior interface
    def encode_images(self, rgb: Tensor) -> Tensor:
        return self.base.encode_images(rgb)

    def decode_latents(self, latents: Tensor) -> Tensor:
        return self.base.decode_latents(latents)

    @torch.no_grad()
    def reference_conditioning(self, rgb: Tensor, polars: Tensor, azimuths: Tensor, radii: Tensor,
                               alpha: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Identify each reference and pack what conditioning needs.

        Args:
            rgb: [N, 3, H, W] references composited on white; alpha: [N, 1, H, W] their coverage
                (required: the image prior needs the silhouette).
            polars, azimuths, radii: [N] the references' cameras in the NeRF frame.
        Returns:
            poses [N, 1, POSE_COLUMNS] and reference images [N, 4, r, r] (premultiplied RGBA).
        """
        if alpha is None:
            raise UserError("the exemplar image prior needs the reference's alpha channel (an RGBA *_rgba.png)")
        rgb, alpha = rgb.float().cpu(), alpha.float().cpu()
        premultiplied = torch.cat([rgb - (1.0 - alpha), alpha], 1).clamp(0.0, 1.0)
        rows, self.poses, self.placements = [], [], []
        for k in range(rgb.shape[0]):
            pose = identify_reference(self.identify, premultiplied[k], ref_radius=float(radii[k]),
                                      ref_fovy=self.reference_fovy)
            placement = placement_from_view(pose.scale, pose.shift, pose.azimuth, float(polars[k]), float(azimuths[k]),
                                            float(radii[k]), self.reference_fovy)
            self.log(f"image prior: reference {k}: {pose.describe()}")
            self.poses.append(pose)
            self.placements.append(placement)
            rows.append([float(OBJECT_NAMES.index(pose.object_name)) if pose.object_name in OBJECT_NAMES else -1.0,
                         pose.polar, pose.azimuth, float(polars[k]), float(azimuths[k]), float(radii[k]), self.reference_fovy,
                         placement.scale, *placement.translation])
        self.base.views(self.poses[0].object_name)
        r = self.resolution
        small = F.interpolate(premultiplied, size=(r, r), mode="bilinear", antialias=True, align_corners=False)
        return torch.tensor(rows, dtype=torch.float32)[:, None], small.to(self.device)

    def conditioning(self, poses: Tensor, references: Tensor, d_polar: Tensor, d_azimuth: Tensor,
                     d_radius: Tensor) -> ExemplarImageConditioning:
        """Rows ``[uncond × B ; ref_1 × B ; … ; ref_N × B]`` for B renders whose cameras are the deltas
        [B, N] (or [B]) from each reference (``cameras.zero123_deltas``)."""
        n = poses.shape[0]
        deltas = [d.float().cpu().reshape(d.shape[0], -1).expand(-1, n) for d in (d_polar, d_azimuth, d_radius)]
        b = deltas[0].shape[0]
        pose = poses[:, 0].float().cpu()  # [N, P]
        ref_cam = pose[:, 3:6]  # [N, 3] polar, azimuth, radius
        camera = torch.stack([ref_cam[None, :, 0] + deltas[0], wrap_degrees(ref_cam[None, :, 1] + deltas[1]),
                              ref_cam[None, :, 2] + deltas[2]], -1)  # [B, N, 3]
        camera = camera.transpose(0, 1).reshape(n * b, 3)
        pose_rows = pose.repeat_interleave(b, 0)
        refs = references.repeat_interleave(b, 0)
        zeros = lambda t: torch.zeros_like(t[:b])  # noqa: E731
        return ExemplarImageConditioning(flag=torch.cat([torch.zeros(b), torch.ones(n * b)]),
                                         pose=torch.cat([zeros(pose_rows), pose_rows]),
                                         camera=torch.cat([zeros(camera), camera]),
                                         reference=torch.cat([zeros(refs), refs]))

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: Tensor, cond: ExemplarImageConditioning) -> Tensor:
        return noise_from_x0(x_t, t, self.predict_x0(x_t, t, cond), self.alphas_cumprod)

    @torch.no_grad()
    def predict_x0(self, x_t: Tensor, t: Tensor, cond: ExemplarImageConditioning) -> Tensor:
        """Posterior mean [N, C, r, r]: unconditional rows over the object's views; conditioned rows
        over its views near the render camera (in the object's frame), plus the reference itself."""
        rows = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device).long().reshape(-1).expand(rows)
        out = torch.empty(x_t.shape, dtype=torch.float32, device=x_t.device)
        uncond = (cond.flag <= 0).nonzero().squeeze(-1).to(x_t.device)
        if uncond.numel():
            # Classifier-free guidance's unconditional branch: the object without the view (its
            # views uniformly; Zero123's zeroed image and camera). Not every object: the other
            # objects' sets would cost a cold start a minute and change nothing at guidance 1.
            name = self.poses[0].object_name if self.poses else ""
            emb = self.base.encode_text([name] * uncond.numel())
            out[uncond] = self.base.predict_x0(x_t[uncond], t[uncond], emb)
        for row in (cond.flag > 0).nonzero().squeeze(-1).tolist():
            out[row] = self._conditioned_x0(x_t[row:row + 1], t[row:row + 1], cond.pose[row], cond.camera[row],
                                            cond.reference[row])[0]
        return out

    def window(self, pose: Tensor, camera: Tensor) -> "Window":
        """The exemplars one conditioned row (a reference ``pose`` row, a render ``camera``) draws on."""
        name = OBJECT_NAMES[int(pose[0])]
        polar_o, azimuth_o, ref_polar, ref_azimuth, ref_radius, ref_fovy, scale = (float(v) for v in pose[1:8])
        fovy = self.fovy  # the render's
        translation = pose[8:11].double()
        polar, azimuth, radius = (camera[i:i + 1].double() for i in range(3))
        placement = Placement(scale, wrap_degrees(torch.tensor(ref_azimuth - azimuth_o)).item(), tuple(translation.tolist()))
        position = spherical_to_position(polar, azimuth, radius)  # [1, 3] NeRF frame
        obj_position = placement.to_object(position)
        p_o, a_o, r_o = position_to_spherical(obj_position)
        p_o = p_o + (polar_o - ref_polar)  # Zero123's relative polar when --default_polar differs from the estimate
        kernel = self.base.camera_kernel
        cams = self.base.cameras
        directions = spherical_to_position(cams.polar.double(), cams.azimuth.double(), torch.ones(len(cams)).double())
        to = spherical_to_position(p_o.clamp(0.0, 180.0), a_o, torch.ones(1).double())
        angle = torch.rad2deg(torch.acos((directions @ to[0]).clamp(-1.0, 1.0)))
        ref_dir = spherical_to_position(torch.tensor([ref_polar]).double(), torch.tensor([ref_azimuth]).double(), torch.ones(1).double())
        here = spherical_to_position(polar, azimuth, torch.ones(1).double())
        ref_angle = torch.rad2deg(torch.acos((ref_dir[0] @ here[0]).clamp(-1.0, 1.0))).reshape(1)
        d = torch.cat([angle, ref_angle]) / kernel.angle_deg
        d = d - (d.min() - 1.0).clamp_min(0.0)
        w = torch.exp(-0.5 * d**2) * (d <= kernel.cutoff)
        w = w / w.sum()
        used = (w[:-1] > 0).nonzero().squeeze(-1)
        tan = math.tan(math.radians(fovy) / 2.0)
        zoom = (cams.radius[used].double() * torch.tan(torch.deg2rad(cams.fovy[used].double()) / 2)) / (float(r_o) * tan)
        shift = project(translation[None], polar, azimuth, radius, torch.tensor([fovy]))[0]
        ref_zoom = ref_radius * math.tan(math.radians(ref_fovy) / 2.0) / (float(radius) * tan)
        return Window(name, used, w[:-1][used].float(), zoom.float(), shift.float(), float(w[-1]), ref_zoom)

    def _conditioned_x0(self, x_t: Tensor, t: Tensor, pose: Tensor, camera: Tensor, reference: Tensor) -> Tensor:
        win = self.window(pose, camera)
        views = self.base.views(win.object_name)
        index = win.used.to(views.colour.device)
        rgba = torch.cat([views.colour[index], views.alpha[index]], 1).float()
        device = rgba.device
        images = [warp(rgba, win.zoom.to(device), win.shift.to(device).expand(len(index), 2))]
        pi = [win.weights]
        if win.reference_weight > 0:  # the reference image itself, zoomed to the render's distance
            images.append(warp(reference[None].float().to(device), torch.tensor([win.reference_zoom], device=device),
                               torch.zeros(1, 2, device=device)))
            pi.append(torch.tensor([win.reference_weight]))
        images = torch.cat(images).to(self.base.dtype)
        pi = torch.cat(pi).to(device=x_t.device, dtype=self.base.dtype)
        stats = ExemplarStatistics.build(images[:, :3], images[:, 3:], self.base.background_mean, self.base.dtype).to(x_t.device)
        abar = self.alphas_cumprod.to(x_t.device)[t].to(self.base.dtype)
        x = x_t.to(self.base.dtype).reshape(1, x_t.shape[1], -1)
        tau2 = 4.0 * self.base.background_std**2
        x0 = posterior_mean(x, abar.sqrt(), 1.0 - abar, (pi / pi.sum())[None, None], lambda _: stats, tau2,
                            self.base.chunk_views)
        return x0.reshape(x_t.shape).float()


def make_exemplar_image_prior(*, resolution: int = 32, views_per_class: int | None = 64, orbit: OrbitConfig | None = None,
                              fovy: float = 20.0, reference_fovy: float | None = None, objects: Sequence[str] | None = None, device: torch.device | str = "cpu",
                              cache_dir=None, use_cache: bool = True, log=print) -> ExemplarImagePrior:
    """The image prior of ``--zero123_ckpt exemplar``: a camera-conditioned exemplar prior over the
    built-in objects (views rendered lazily, the identified object's first) and a coarse set of
    every object's views for identification."""
    if resolution < 8:
        raise UserError(f"--exemplar_resolution must be at least 8, got {resolution}")
    orbit = orbit or OrbitConfig()
    names = tuple(objects) if objects is not None else OBJECT_NAMES
    config = ExemplarViewConfig.from_orbit(orbit, count=6 * int(views_per_class or 64), resolution=resolution)
    base = ExemplarPrior(config=config, objects=names, cache_dir=cache_dir, use_cache=use_cache, device=device,
                         condition="camera")
    coarse = ExemplarViewConfig.from_orbit(orbit, count=IDENTIFY_VIEWS, resolution=32,
                                           polar_range=(min(orbit.theta_range[0], 30.0), max(orbit.theta_range[1], 120.0)))
    identify = ExemplarPrior(config=coarse, objects=names, cache_dir=cache_dir, use_cache=use_cache, condition="camera")
    return ExemplarImagePrior(base, identify, fovy=fovy, reference_fovy=reference_fovy, log=log)
