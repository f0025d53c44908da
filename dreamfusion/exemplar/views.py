"""Reference views of the built-in objects over the training camera distribution, cached on disk.

Every object is rendered from the same set of cameras: ``count`` quasi-random (scrambled Sobol)
draws of (azimuth, polar, radius, fovy) from the training ranges, sorted by view group (front,
side, back, overhead, bottom; see ``objects.VIEW_GROUPS``). A view stores premultiplied colour and
coverage at the prior's resolution, so the prior can composite it over any background colour.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dreamfusion.cameras import OrbitConfig, make_batch, spherical_to_position
from dreamfusion.exemplar import objects as objects_module
from dreamfusion.exemplar import render as render_module
from dreamfusion.exemplar import sdf as sdf_module
from dreamfusion.exemplar.objects import VIEW_GROUPS, AnalyticObject
from dreamfusion.exemplar.render import render_cameras

CACHE_FORMAT = 1
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
    :meth:`from_orbit`): the prior can only recognise views like the ones it holds.
    ``shadings`` lists the shading modes; each mode renders every camera once ("lambertian" and
    "textureless" draw one light per view as the trainer does: normalize(camera + N(0, I)),
    ambient ~ U(0.1, 1)).
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
    shadings: tuple[str, ...] = ("albedo",)
    min_ambient: float = 0.1
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
    light: Tensor  # [V, 3] light direction (used by lambertian/textureless only)
    ambient: Tensor  # [V]
    shading: list[str] = field(default_factory=list)  # per view

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


@dataclass
class ExemplarViews:
    """An object's exemplar images: colour [V, 3, r, r] premultiplied (image over black) and alpha
    [V, 1, r, r], float32 in [0, 1], with their cameras."""

    object_name: str
    colour: Tensor
    alpha: Tensor
    cameras: ExemplarCameras

    def over(self, background: float | Tensor = 1.0) -> Tensor:
        """Images composited over a background colour, [V, 3, r, r]."""
        bg = torch.as_tensor(background, dtype=self.colour.dtype, device=self.colour.device).reshape(1, -1, 1, 1)
        return self.colour + (1.0 - self.alpha) * bg

    def to(self, device: torch.device | str) -> "ExemplarViews":
        return ExemplarViews(self.object_name, self.colour.to(device), self.alpha.to(device), self.cameras)


def exemplar_cameras(config: ExemplarViewConfig) -> ExemplarCameras:
    """Sample the exemplar cameras (deterministic given ``config``), sorted by view group."""
    n = config.count
    sobol = torch.quasirandom.SobolEngine(4, scramble=True, seed=config.seed)
    u = sobol.draw(n, dtype=torch.float64).float()  # [n, 4] well spread in (az, polar, radius, fovy)

    def span(col: int, bounds: tuple[float, float]) -> Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * u[:, col]

    azimuth, polar = span(0, config.azimuth_range), span(1, config.polar_range)
    radius, fovy = span(2, config.radius_range), span(3, config.fovy_range)
    orbit = OrbitConfig(angle_overhead=config.angle_overhead, angle_front=config.angle_front)
    cls = make_batch(orbit, polar, azimuth, radius, fovy, 1, 1).direction
    group = torch.tensor(CLASS_TO_GROUP)[cls]
    # Lights as the trainer draws them: roughly from the camera side.
    g = torch.Generator().manual_seed(config.seed + 1)
    centre = spherical_to_position(polar, azimuth, radius)
    light = torch.nn.functional.normalize(centre + torch.randn(n, 3, generator=g), dim=-1)
    ambient = config.min_ambient + (1.0 - config.min_ambient) * torch.rand(n, generator=g)
    # One copy of the cameras per shading mode.
    reps = len(config.shadings)
    cat = lambda x: torch.cat([x] * reps)  # noqa: E731
    polar, azimuth, radius, fovy, group, light, ambient = map(cat, (polar, azimuth, radius, fovy, group, light, ambient))
    shading = [s for s in config.shadings for _ in range(n)]
    order = torch.argsort(group, stable=True)
    return ExemplarCameras(polar=polar[order], azimuth=azimuth[order], radius=radius[order], fovy=fovy[order],
                           group=group[order], light=light[order], ambient=ambient[order],
                           shading=[shading[i] for i in order.tolist()])


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


def render_exemplar_views(obj: AnalyticObject, config: ExemplarViewConfig, batch_views: int = 64) -> ExemplarViews:
    """Render ``obj`` from every exemplar camera (no cache)."""
    cams = exemplar_cameras(config)
    orbit = OrbitConfig(angle_overhead=config.angle_overhead, angle_front=config.angle_front)
    r = config.resolution
    colour, alpha = torch.empty(len(cams), 3, r, r), torch.empty(len(cams), 1, r, r)
    for shading in config.shadings:
        idx = torch.tensor([i for i, s in enumerate(cams.shading) if s == shading], dtype=torch.long)
        for a in range(0, idx.numel(), batch_views):
            sel = idx[a:a + batch_views]
            batch = make_batch(orbit, cams.polar[sel], cams.azimuth[sel], cams.radius[sel], cams.fovy[sel], r, r)
            out = render_cameras(obj, batch, supersample=config.supersample, shading=shading,
                                 light_dirs=cams.light[sel], ambient=cams.ambient[sel], background=0.0)
            colour[sel] = out.premultiplied.permute(0, 3, 1, 2)
            alpha[sel] = out.alpha[:, None]
    return ExemplarViews(obj.name, colour, alpha, cams)


def load_exemplar_views(obj: AnalyticObject, config: ExemplarViewConfig, cache_dir: str | Path | None = None,
                        use_cache: bool = True) -> ExemplarViews:
    """The exemplar views of ``obj``: read from the cache, or rendered and written there.

    Images are stored as float16 (a 384-view 32² set is ~3 MB) and returned as float32 on CPU.
    """
    path = cache_path(obj, config, cache_dir)
    if use_cache and path.is_file():
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            return ExemplarViews(obj.name, data["colour"].float(), data["alpha"].float(), exemplar_cameras(config))
        except Exception:  # a truncated or stale file: render again below and overwrite it
            pass
    views = render_exemplar_views(obj, config)
    # Round through float16 now so a fresh set equals the one later read back from the cache.
    views.colour, views.alpha = views.colour.half().float(), views.alpha.half().float()
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file and rename, so a concurrent reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save({"colour": views.colour.half(), "alpha": views.alpha.half(), "object": obj.name,
                    "config": json.dumps(asdict(config))}, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any other
        os.replace(tmp, path)
    return views
