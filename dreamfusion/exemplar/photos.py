"""Photo-like inputs of the built-in objects, and how to score image-to-3D runs made from them.

A "photo" is an object rendered at 256² from a known camera and composited, without alpha, over a
cluttered procedural background (one of :data:`BACKGROUNDS`, fixed by a seed), so that
preprocessing has to find the object as it would in a real photo. The camera is saved beside it
(:class:`PhotoTruth`, ``<stem>.truth.json``) and is never given to the run.

Scoring: preprocessing recentres the photo (its sidecar records how), so the run's object is the
true one rotated about the vertical, scaled and moved. :func:`placement_from_recentring` undoes that
through the reference camera: the photo's camera and the sidecar give where the object's origin and
size landed in the reference image, and the run's reference camera (``--default_polar`` as estimated,
``--default_azimuth``, ``--default_radius``, ``--default_fovy``) lifts that back to 3D. An error in
the estimated elevation is not corrected: it shows in the scores.

Example::

    photo = render_photo("a teapot", PhotoCamera(62.0, 30.0), background="blobs", seed=0)
    photo.save("/tmp/teapot.png")          # also writes /tmp/teapot.truth.json
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dreamfusion.cameras import OrbitConfig, make_batch
from dreamfusion.exemplar.image_prior import Placement, placement_from_view
from dreamfusion.exemplar.objects import get_object
from dreamfusion.exemplar.render import render_cameras

BACKGROUNDS = ("blobs", "checker", "stripes", "noise")
"""Procedural clutter: soft coloured blobs, a tilted checkerboard, wavy stripes, multi-scale noise."""


@dataclass(frozen=True)
class PhotoCamera:
    """Where a photo was taken from: degrees, scene units."""

    polar: float
    azimuth: float
    radius: float = 3.2
    fovy: float = 40.0


@dataclass
class PhotoTruth:
    """What the run is not told: the object and the camera (and background) of a photo."""

    object: str
    camera: PhotoCamera
    size: int
    background: str
    seed: int

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({**asdict(self), "camera": asdict(self.camera)}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "PhotoTruth":
        data = json.loads(Path(path).read_text())
        return cls(data["object"], PhotoCamera(**data["camera"]), int(data["size"]), data["background"], int(data["seed"]))


@dataclass
class Photo:
    """rgb [H, W, 3] uint8 (no alpha), the true coverage alpha [H, W] in [0, 1], and the truth."""

    rgb: np.ndarray
    alpha: np.ndarray
    truth: PhotoTruth

    def save(self, path: str | Path) -> Path:
        """Write the photo (PNG or JPEG by suffix) and ``<stem>.truth.json`` beside it."""
        import cv2

        path = Path(path)
        if not cv2.imwrite(str(path), cv2.cvtColor(self.rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")
        self.truth.save(truth_path(path))
        return path


def truth_path(photo: str | Path) -> Path:
    photo = Path(photo)
    return photo.with_name(photo.stem + ".truth.json")


def background_image(kind: str, size: int, seed: int) -> np.ndarray:
    """[size, size, 3] float in [0, 1]: a cluttered background of ``kind`` (BACKGROUNDS)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.rand(3, generator=g) * 0.5 + 0.3
    img = base[:, None, None] * (0.8 + 0.4 * y)[None]  # a lit gradient, like a wall or a table
    if kind == "blobs":
        for _ in range(24):
            cx, cy, r = torch.rand(3, generator=g)
            colour = torch.rand(3, generator=g)
            w = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (0.03 + 0.12 * r) ** 2))
            img = img * (1 - 0.8 * w) + 0.8 * w * colour[:, None, None]
    elif kind == "checker":
        a = float(torch.rand((), generator=g)) * math.pi
        u, v = x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)
        n = 6 + int(torch.randint(0, 6, (), generator=g))
        cells = ((torch.floor(u * n) + torch.floor(v * n)) % 2)[None]
        other = torch.rand(3, generator=g)[:, None, None]
        img = img * (1 - 0.6 * cells) + 0.6 * cells * other
    elif kind == "stripes":
        f = 8 + 10 * float(torch.rand((), generator=g))
        wave = 0.5 + 0.5 * torch.sin(2 * math.pi * (f * x + 0.3 * torch.sin(2 * math.pi * 3 * y)))
        other = torch.rand(3, generator=g)[:, None, None]
        img = img * (1 - 0.5 * wave[None]) + 0.5 * wave[None] * other
    elif kind == "noise":
        for octave in (4, 8, 16, 32):
            coarse = torch.rand(1, 3, octave, octave, generator=g)
            img = img + 0.25 * (F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0] - 0.5)
    else:
        raise ValueError(f"unknown background {kind!r}; choose from {', '.join(BACKGROUNDS)}")
    return img.clamp(0, 1).permute(1, 2, 0).numpy()


def render_photo(prompt: str, camera: PhotoCamera, *, size: int = 256, background: str = "blobs", seed: int = 0,
                 supersample: int = 3) -> Photo:
    """A built-in object seen from ``camera`` over a cluttered background (albedo colours, the
    shading the exemplar prior knows), as 8-bit RGB without alpha."""
    obj = get_object(prompt)
    cams = make_batch(OrbitConfig(), torch.tensor([camera.polar]), torch.tensor([camera.azimuth]),
                      torch.tensor([camera.radius]), torch.tensor([camera.fovy]), size, size)
    out = render_cameras(obj, cams, supersample=supersample, shading="albedo", background=0.0)
    alpha = out.alpha[0].numpy()
    rgb = out.premultiplied[0].numpy() + (1 - alpha[..., None]) * background_image(background, size, seed)
    rgb8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    return Photo(rgb8, alpha, PhotoTruth(obj.name, camera, size, background, seed))


def placement_from_recentring(truth: PhotoTruth, sidecar: dict, ref_polar: float, ref_azimuth: float,
                              ref_radius: float, ref_fovy: float) -> Placement:
    """Where the run put the photo's object (see the module docstring): the sidecar's
    ``output = scale·source + offset`` carries the photo's centre (the image of the object's origin)
    and its pixel size into the reference image; the two cameras turn pixels into scene units."""
    h, w = (float(v) for v in sidecar.get("source_size", (truth.size, truth.size)))
    out_h, out_w = (float(v) for v in sidecar.get("output_size", (sidecar["size"], sidecar["size"])))
    k, (ox, oy) = float(sidecar["scale"]), (float(v) for v in sidecar["offset"])
    # Normalised coordinates: half the image height is 1, so half-height = radius·tan(fovy/2).
    zoom = k * h / out_h
    scale = zoom * (ref_radius * math.tan(math.radians(ref_fovy) / 2)) / \
        (truth.camera.radius * math.tan(math.radians(truth.camera.fovy) / 2))
    shift = ((k * w / 2 + ox - out_w / 2) / (out_h / 2), (k * h / 2 + oy - out_h / 2) / (out_h / 2))
    return placement_from_view(scale, shift, truth.camera.azimuth, ref_polar, ref_azimuth, ref_radius, ref_fovy)
