"""Reference views of the built-in objects over the training camera distribution, cached on disk.

Every object is rendered from the same set of cameras: ``count`` quasi-random (scrambled Sobol)
draws of (azimuth, polar, radius, fovy) from the training ranges, directions uniform by solid angle,
sorted by view group (front, side, back, overhead, bottom; see ``objects.VIEW_GROUPS``). A view
stores premultiplied colour and coverage at the prior's resolution, so the prior can composite it
over any background colour.

The set is cached as ``{cache_dir}/{object}-{key}.pt`` where ``key`` hashes the settings and the
source of the object library and tracer, so changing either re-renders. Camera parameters need
no rendering, so group sizes are known before any image exists.

Example::

    config = ExemplarViewConfig(count=256, resolution=32)
    cams = exemplar_cameras(config)                      # ExemplarCameras, sorted by group
    views = load_exemplar_views(get_object("a snowman"), config, cache_dir="/tmp/ex")
    views.colour.shape                                   # [256, 3, 32, 32] premultiplied albedo
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from dreamfusion.cameras import OrbitConfig, camera_light, make_batch
from dreamfusion.exemplar import objects as objects_module
from dreamfusion.exemplar import render as render_module
from dreamfusion.exemplar import sdf as sdf_module
from dreamfusion.exemplar.objects import VIEW_GROUPS, AnalyticObject
from dreamfusion.exemplar.render import render_cameras

CACHE_FORMAT = 3  # 2: polar angles uniform by solid angle; 3: key-light lambert terms
CLASS_TO_GROUP = (0, 1, 2, 1, 3, 4)
"""6-way view class of ``cameras.view_direction_class`` -> index into VIEW_GROUPS."""


def default_cache_dir() -> Path:
    """``$DREAMFUSION_CACHE/exemplar`` if set, else ``~/.cache/dreamfusion/exemplar``."""
    root = os.environ.get("DREAMFUSION_CACHE")
    return Path(root) / "exemplar" if root else Path.home() / ".cache" / "dreamfusion" / "exemplar"


@dataclass(frozen=True)
class ExemplarViewConfig:
    """Which views make up an exemplar set and how they are rendered.

    The ranges should match the trainer's camera ranges (``OrbitConfig``; see
    :meth:`from_orbit`): the prior can only recognise views like the ones it holds. Every view is
    lit by its camera's key light (``cameras.camera_light``) and stores, besides the albedo image,
    the terms from which its lambertian or textureless image for any ambient is a linear mix.
    """

    count: int = 384
    resolution: int = 32
    supersample: int = 2
    radius_range: tuple[float, float] = (3.0, 3.5)
    polar_range: tuple[float, float] = (45.0, 105.0)
    azimuth_range: tuple[float, float] = (-180.0, 180.0)
    fovy_range: tuple[float, float] = (10.0, 30.0)
    angle_overhead: float = 30.0
    angle_front: float = 60.0
    seed: int = 0

    @classmethod
    def from_orbit(cls, orbit: OrbitConfig, **overrides) -> "ExemplarViewConfig":
        """Settings whose camera ranges equal the trainer's ``OrbitConfig``."""
        ranges = dict(radius_range=tuple(orbit.radius_range), polar_range=tuple(orbit.theta_range),
                      azimuth_range=tuple(orbit.phi_range), fovy_range=tuple(orbit.fovy_range),
                      angle_overhead=orbit.angle_overhead, angle_front=orbit.angle_front)
        return cls(**{**ranges, **overrides})


@dataclass
class ExemplarCameras:
    """The cameras of an exemplar set, sorted by view group. All tensors [V] (float32 or long)."""

    polar: Tensor
    azimuth: Tensor
    radius: Tensor
    fovy: Tensor
    group: Tensor  # index into VIEW_GROUPS
    light: Tensor  # [V, 3] the camera's key light (cameras.camera_light)

    def __len__(self) -> int:
        return int(self.polar.shape[0])

    def group_slices(self) -> list[slice]:
        """Contiguous index range of every group in VIEW_GROUPS order (empty slices allowed)."""
        counts = torch.bincount(self.group, minlength=len(VIEW_GROUPS)).tolist()
        starts = [sum(counts[:g]) for g in range(len(counts))]
        return [slice(a, a + c) for a, c in zip(starts, counts)]

    def group_counts(self) -> Tensor:
        """Number of views per group, [len(VIEW_GROUPS)] long."""
        return torch.bincount(self.group, minlength=len(VIEW_GROUPS))


SHADINGS = ("albedo", "lambertian", "textureless")
"""Shadings an exemplar set can show: lambertian = albedo·(a + (1-a)·max(0, n·l)), textureless =
the same factor in grey, for the camera's key light l and any ambient a (spec §3.9)."""


@dataclass
class ExemplarViews:
    """An object's exemplar images, float32 in [0, 1], with their cameras: colour [V, 3, r, r] (the
    albedo image, premultiplied: over black), alpha [V, 1, r, r], and for the key light lambert
    [V, 1, r, r] = max(0, n·l) and lambert_albedo [V, 3, r, r] = albedo·max(0, n·l), premultiplied."""

    object_name: str
    colour: Tensor
    alpha: Tensor
    cameras: ExemplarCameras
    lambert: Tensor
    lambert_albedo: Tensor

    def shaded(self, shading: str = "albedo", ambient: float = 1.0) -> Tensor:
        """Premultiplied images [V, 3, r, r] in a shading (SHADINGS) with ambient ``ambient``."""
        if shading == "albedo":
            return self.colour
        if shading == "lambertian":
            return ambient * self.colour + (1.0 - ambient) * self.lambert_albedo
        if shading == "textureless":
            return (ambient * self.alpha + (1.0 - ambient) * self.lambert).expand_as(self.colour)
        raise ValueError(f"unknown exemplar shading {shading!r}; expected one of {SHADINGS}")

    def over(self, background: float | Tensor = 1.0, shading: str = "albedo", ambient: float = 1.0) -> Tensor:
        """Images composited over a background colour, [V, 3, r, r]."""
        colour = self.shaded(shading, ambient)
        bg = torch.as_tensor(background, dtype=colour.dtype, device=colour.device).reshape(1, -1, 1, 1)
        return colour + (1.0 - self.alpha) * bg

    def to(self, device: torch.device | str) -> "ExemplarViews":
        return ExemplarViews(self.object_name, self.colour.to(device), self.alpha.to(device), self.cameras,
                             self.lambert.to(device), self.lambert_albedo.to(device))


def exemplar_cameras(config: ExemplarViewConfig) -> ExemplarCameras:
    """Sample the exemplar cameras (deterministic given ``config``), sorted by view group."""
    n = config.count
    sobol = torch.quasirandom.SobolEngine(4, scramble=True, seed=config.seed)
    u = sobol.draw(n, dtype=torch.float64).float()  # [n, 4] well spread in (az, polar, radius, fovy)

    def span(col: int, bounds: tuple[float, float]) -> Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * u[:, col]

    azimuth = span(0, config.azimuth_range)
    # Uniform by solid angle (cos polar uniform), so exemplar directions are evenly spaced on the
    # sphere: the camera-conditioned kernel's width is one spacing everywhere.
    lo, hi = (torch.cos(torch.deg2rad(torch.tensor(v, dtype=torch.float64))) for v in config.polar_range)
    polar = torch.rad2deg(torch.acos((lo + (hi - lo) * u[:, 1].double()).clamp(-1, 1))).float()
    radius, fovy = span(2, config.radius_range), span(3, config.fovy_range)
    orbit = OrbitConfig(angle_overhead=config.angle_overhead, angle_front=config.angle_front)
    batch = make_batch(orbit, polar, azimuth, radius, fovy, 1, 1)
    group = torch.tensor(CLASS_TO_GROUP)[batch.direction]
    light = camera_light(batch.c2w)
    order = torch.argsort(group, stable=True)
    return ExemplarCameras(polar=polar[order], azimuth=azimuth[order], radius=radius[order], fovy=fovy[order],
                           group=group[order], light=light[order])


def _library_fingerprint() -> str:
    """Hash of the object/SDF/tracer source: editing any of them invalidates cached renders."""
    src = "".join(inspect.getsource(m) for m in (objects_module, sdf_module, render_module))
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def cache_path(obj: AnalyticObject, config: ExemplarViewConfig, cache_dir: str | Path | None = None) -> Path:
    """Where the exemplar views of ``obj`` under ``config`` are cached."""
    payload = json.dumps({"object": obj.name, "config": asdict(config), "library": _library_fingerprint(),
                          "format": CACHE_FORMAT}, sort_keys=True)
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return Path(cache_dir or default_cache_dir()) / f"{obj.key}-{key}.pt"


def render_exemplar_views(obj: AnalyticObject, config: ExemplarViewConfig, batch_views: int = 64,
                          progress: bool = True) -> ExemplarViews:
    """Render ``obj`` from every exemplar camera (no cache): albedo, coverage and the key light's
    lambert terms, from one sphere trace per view. ``progress``: a tqdm bar (seconds per object)."""
    from tqdm.auto import tqdm

    cams = exemplar_cameras(config)
    orbit = OrbitConfig(angle_overhead=config.angle_overhead, angle_front=config.angle_front)
    r, n = config.resolution, len(cams)
    colour, alpha = torch.empty(n, 3, r, r), torch.empty(n, 1, r, r)
    lambert, lambert_albedo = torch.empty(n, 1, r, r), torch.empty(n, 3, r, r)
    bar = tqdm(total=n, desc=f"exemplar views of {obj.name} (once, then cached)", unit="view", leave=False,
               disable=not progress)
    for a in range(0, n, batch_views):
        sel = slice(a, a + batch_views)
        batch = make_batch(orbit, cams.polar[sel], cams.azimuth[sel], cams.radius[sel], cams.fovy[sel], r, r)
        out = render_cameras(obj, batch, supersample=config.supersample, shading="albedo",
                             light_dirs=cams.light[sel], background=0.0)
        colour[sel] = out.premultiplied.permute(0, 3, 1, 2)
        alpha[sel] = out.alpha[:, None]
        lambert[sel] = out.lambert[:, None]
        lambert_albedo[sel] = out.lambert_albedo.permute(0, 3, 1, 2)
        bar.update(len(cams.polar[sel]))
    bar.close()
    return ExemplarViews(obj.name, colour, alpha, cams, lambert, lambert_albedo)


def load_exemplar_views(obj: AnalyticObject, config: ExemplarViewConfig, cache_dir: str | Path | None = None,
                        use_cache: bool = True) -> ExemplarViews:
    """The exemplar views of ``obj``: read from the cache, or rendered and written there.

    Images are stored as float16 (a 384-view 32² set is ~3 MB) and returned as float32 on CPU.
    """
    path = cache_path(obj, config, cache_dir)
    fields = ("colour", "alpha", "lambert", "lambert_albedo")
    if use_cache and path.is_file():
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            return ExemplarViews(obj.name, data["colour"].float(), data["alpha"].float(), exemplar_cameras(config),
                                 data["lambert"].float(), data["lambert_albedo"].float())
        except Exception:  # a truncated or stale file: render again below and overwrite it
            pass
    views = render_exemplar_views(obj, config)
    # Round through float16 now so a fresh set equals the one later read back from the cache.
    for name in fields:
        setattr(views, name, getattr(views, name).half().float())
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a concurrent reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save({**{name: getattr(views, name).half() for name in fields}, "object": obj.name,
                    "config": json.dumps(asdict(config))}, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any other
        os.replace(tmp, path)
    return views
