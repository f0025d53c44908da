"""Photo to the files ``--image`` trains on: ``<stem>_rgba.png`` (+ ``_depth.png``, ``_normal.png``) and
the sidecar ``<stem>_rgba.json`` that records how their pixels relate to the photo's.

    result = preprocess_image("photo.jpg")                  # writes photo_rgba.png ... next to the photo
    results = preprocess_images(["a.jpg", "b.png"], size=256, border_ratio=0.2, out_dir="refs")

Stages, one progress line each with its time: read (huge photos downscaled to 2048 px first), mask (the
photo's own alpha when it has a real one, else u2netp), "is there an object" check, depth and normals
(optional), recentring, writing. Nothing is written until every image given has passed every stage;
then each file goes to a temporary name in its folder and all are renamed together, so a refused input
leaves no file behind and never replaces an earlier result.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from dreamfusion.errors import UserError

from .depth import DEFAULT_DEPTH_MODEL
from .images import MAX_SIDE, LoadedImage, limit_size, read_image
from .recenter import ALPHA_THRESHOLD, Sidecar, object_bbox, recentre, source_bbox

DEFAULT_SIZE = 256
DEFAULT_BORDER_RATIO = 0.2
MIN_SIZE, MAX_SIZE = 32, 4096
MIN_OBJECT_FRACTION = 0.001  # fewer mask pixels than this share of the image: no object
MIN_OBJECT_SIDE = 8  # the recentred object must be at least this many pixels across
KINDS = ("rgba", "depth", "normal", "sidecar")

Log = Callable[[str], None]


def check_options(size: int, border_ratio: float) -> None:
    """Raise `UserError` for a ``--size`` / ``--border_ratio`` the pipeline cannot honour."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"--size must be an integer from {MIN_SIZE} to {MAX_SIZE} (got {size})")
    if not isinstance(border_ratio, (int, float)) or not math.isfinite(border_ratio) or not 0.0 <= border_ratio < 1.0:
        raise UserError(f"--border_ratio must be a number in [0, 1) (got {border_ratio})")
    if size * (1.0 - border_ratio) < MIN_OBJECT_SIDE:
        raise UserError(f"--size {size} with --border_ratio {border_ratio} leaves the object under "
                        f"{MIN_OBJECT_SIDE} px; lower --border_ratio")


def output_paths(source: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{"rgba": <stem>_rgba.png, "depth": <stem>_depth.png, "normal": <stem>_normal.png,
    "sidecar": <stem>_rgba.json}`` next to the source, or in ``out_dir``."""
    source = Path(source)
    folder = source.parent if out_dir is None else Path(out_dir)
    stem = source.stem
    return {"rgba": folder / f"{stem}_rgba.png", "depth": folder / f"{stem}_depth.png",
            "normal": folder / f"{stem}_normal.png", "sidecar": folder / f"{stem}_rgba.json"}


@dataclass
class PreprocessResult:
    """One preprocessed photo (written by `preprocess_images`, held in memory by `prepare`).

    Attributes:
        source: the photo.
        paths: the output files by kind (see `output_paths`); depth/normal only when computed.
        rgba: ``[h, w, 4]`` uint8, straight (not premultiplied) colour, alpha = the mask.
        depth: ``[h, w]`` uint8 (larger = farther, 0 outside the object) or None.
        normal: ``[h, w, 3]`` uint8, RGB order (see `dreamfusion.preprocess.depth`) or None.
        sidecar: the transform from photo pixels to output pixels.
        seconds: time per stage.
    """

    source: Path
    paths: dict[str, Path]
    rgba: np.ndarray
    depth: np.ndarray | None
    normal: np.ndarray | None
    sidecar: Sidecar
    seconds: dict[str, float] = field(default_factory=dict)


class _Stages:
    """Times stages and prints one line per stage: ``photo.jpg: <what> (0.12 s)``."""

    def __init__(self, name: str, log: Log):
        self.name, self.log, self.seconds = name, log, {}
        self._start = time.perf_counter()

    def done(self, stage: str, what: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._start
        self.log(f"{self.name}: {what} ({self.seconds[stage]:.2f} s)")
        self._start = now

    def restart(self) -> None:
        """Do not count the time since the last stage (a model load, timed on its own)."""
        self._start = time.perf_counter()

    def note(self, text: str) -> None:
        self.log(f"{self.name}: note: {text}")


def _mask(image: LoadedImage, path: Path, stages: _Stages, holes: bool = True) -> np.ndarray:
    """The object's alpha ``[H, W]`` uint8; raises `UserError` when there is no object. With ``holes``,
    background seen through the object is cut out of a background remover's mask (`holes.py`)."""
    height, width = image.size
    if image.alpha is not None:
        alpha, how, why = image.alpha, "mask from the image's alpha channel", "its alpha is below 128 almost everywhere"
        peak = 1.0
    else:
        from .background import MIN_SALIENCY, remove_background

        alpha, peak = remove_background(image.rgb)
        how, why = "background removed (u2netp)", "u2netp sees nothing salient in it"
        if peak < MIN_SALIENCY:
            raise UserError(f"no object found in {path} ({why}: peak saliency {peak:.3f})")
        if holes:
            from .holes import open_see_through_holes

            alpha, opened = open_see_through_holes(image.rgb, alpha)
            if opened:
                how += f", {opened} px of background seen through the object opened"
    count = int((alpha > ALPHA_THRESHOLD).sum())
    if count == 0 or count < MIN_OBJECT_FRACTION * height * width:
        raise UserError(f"no object found in {path} ({why}: {count} of {height * width} pixels)")
    stages.done("mask", f"{how}: the object covers {100.0 * count / (height * width):.1f} % of the image")
    return alpha


def prepare(path: str | os.PathLike, *, size: int = DEFAULT_SIZE, border_ratio: float = DEFAULT_BORDER_RATIO,
            recenter: bool = True, holes: bool = True, depth_estimator: Callable[[], object | None] = lambda: None,
            out_dir: str | os.PathLike | None = None, log: Log = print) -> PreprocessResult:
    """Every stage but writing. ``depth_estimator()`` returns a `DepthEstimator` or None (no depth);
    it is called only once the image is known to hold an object."""
    from .depth import depth_from_disparity, encode_normals, normals_from_depth

    path = Path(path)
    stages = _Stages(path.name, log)
    image = read_image(path)
    height, width = image.size
    image, factor = limit_size(image, MAX_SIDE)
    stages.done("read", f"read {width}x{height}")
    for note in image.notes:
        stages.note(note)
    alpha = _mask(image, path, stages, holes)
    mask = alpha > ALPHA_THRESHOLD

    layers: dict[str, np.ndarray] = {"rgba": np.dstack([image.rgb, alpha])}
    estimator = depth_estimator()
    stages.restart()
    if estimator is not None:
        depth = depth_from_disparity(estimator.disparity(image.rgb), mask)
        # depth and normals are resampled weighted by the mask (premultiplied), so that the object's edge
        # pixels are not blended with the 0 written outside it; normals stay vectors until encoded
        layers["depth"] = depth
        layers["coverage"] = mask.astype(np.float32)
        layers["normal"] = normals_from_depth(depth, mask)
        stages.done("depth", f"depth ({estimator.name}) and normals from it")

    box = object_bbox(alpha)
    if recenter:
        placed = recentre(layers, box, size, border_ratio)
        layers, scale, offset = placed.images, placed.scale * factor, placed.offset
        x0, y0, x1, y1 = box
        stages.done("recentre", f"recentred: object box {x1 - x0}x{y1 - y0} px -> {size * (1 - border_ratio):.1f} px "
                                f"across in {size}x{size}")
    else:
        scale, offset = factor, (0.0, 0.0)

    paths = output_paths(path, out_dir)
    if "depth" not in layers:
        paths = {k: v for k, v in paths.items() if k not in ("depth", "normal")}
    out_height, out_width = layers["rgba"].shape[:2]
    sidecar_folder = paths["sidecar"].parent.absolute()
    try:
        source_name = os.path.relpath(path.absolute(), sidecar_folder)
    except ValueError:  # another drive (Windows)
        source_name = str(path.absolute())
    sidecar = Sidecar(source=source_name, source_size=list(image.source_size), recentred=bool(recenter),
                      size=int(size), border_ratio=float(border_ratio), output_size=[out_height, out_width],
                      bbox=source_bbox(box, factor, image.source_size), scale=float(scale),
                      offset=[float(offset[0]), float(offset[1])])
    depth_png = normal_png = None
    if "depth" in layers:
        coverage = layers["coverage"]
        valid = (coverage > 1e-3) & (layers["rgba"][..., 3] > 0)  # 0 wherever the written alpha is 0
        depth = np.where(valid, layers["depth"] / np.maximum(coverage, 1e-3), 0.0)
        depth_png = np.round(np.clip(depth, 0.0, 1.0) * 255.0).astype(np.uint8)
        normal_png = encode_normals(layers["normal"], valid)
    return PreprocessResult(source=path, paths=paths, rgba=layers["rgba"], depth=depth_png,
                            normal=normal_png, sidecar=sidecar, seconds=stages.seconds)


def _encoded(result: PreprocessResult) -> dict[Path, bytes]:
    """Every output file of one result as bytes (PNG encoding done before anything is written)."""
    def png(pixels: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".png", pixels)
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 array as PNG
            raise RuntimeError("PNG encoding failed")
        return data.tobytes()

    files = {result.paths["rgba"]: png(cv2.cvtColor(result.rgba, cv2.COLOR_RGBA2BGRA)),
             result.paths["sidecar"]: result.sidecar.to_json().encode()}
    if result.depth is not None:
        files[result.paths["depth"]] = png(result.depth)
        files[result.paths["normal"]] = png(cv2.cvtColor(result.normal, cv2.COLOR_RGB2BGR))
    return files


def write_results(results: list[PreprocessResult], log: Log = print) -> None:
    """Write all outputs, all or nothing: temporary files in the target folders, then renames.

    A ``_depth.png`` / ``_normal.png`` left by an earlier run beside a new ``_rgba.png`` written without
    depth would be read by training as this photo's, so it is removed (and said so).
    """
    start = time.perf_counter()
    files: dict[Path, bytes] = {}
    for result in results:
        files.update(_encoded(result))
    temporaries: dict[Path, Path] = {}
    try:
        for target, data in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            temporaries[target] = temporary
            temporary.write_bytes(data)
    except OSError as error:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        raise UserError(f"cannot write {target} ({error.strerror or error}); nothing was written") from None
    for target, temporary in temporaries.items():
        os.replace(temporary, target)
    for result in results:
        stale = [p for kind, p in output_paths(result.source, result.paths["rgba"].parent).items()
                 if kind not in result.paths and p.exists()]
        for path in stale:
            path.unlink()
            log(f"{result.source.name}: removed {path} (from an earlier run; this one wrote no {path.stem.rsplit('_', 1)[-1]})")
        names = ", ".join(p.name for p in result.paths.values())
        log(f"{result.source.name}: wrote {names} in {result.paths['rgba'].parent} "
            f"({time.perf_counter() - start:.2f} s)")


def _check_targets(paths: list[Path], out_dir: Path | None) -> None:
    """Refuse before any work: an out_dir that is a file, an unwritable folder, two inputs with one output."""
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out_dir {out_dir}: exists and is not a directory")
    seen: dict[Path, Path] = {}
    for path in paths:
        rgba = output_paths(path, out_dir)["rgba"]
        key = rgba.absolute()
        if key in seen:
            raise UserError(f"{seen[key]} and {path} would both write {rgba}; preprocess them separately or rename one")
        seen[key] = path
        folder = rgba.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"cannot write in {folder} (not writable); choose another folder with --out_dir")


def preprocess_images(paths: list[str | os.PathLike], *, size: int = DEFAULT_SIZE,
                      border_ratio: float = DEFAULT_BORDER_RATIO, recenter: bool = True, holes: bool = True,
                      depth_model: str | None = DEFAULT_DEPTH_MODEL, out_dir: str | os.PathLike | None = None,
                      log: Log = print) -> list[PreprocessResult]:
    """Preprocess photos and write their outputs (all of them, or nothing when one is refused).

    Args:
        paths: the photos.
        size: output side when recentring (32 .. 4096).
        border_ratio: share of ``size`` left around the object's longer side, in [0, 1).
        recenter: crop and centre the object (False: the photo's own framing and resolution).
        holes: cut background seen through the object out of the background remover's mask
            (`holes.open_see_through_holes`); an alpha channel in the image is used as it is.
        depth_model: hub id or folder of a ``transformers`` depth model, or None / "none" for no depth.
            A hub id that is not available offline is skipped with one line (RGBA only).
        out_dir: where to write; default next to each photo.
        log: receives the progress lines.
    Raises:
        UserError: one line, for anything wrong with the options or any input.
    """
    check_options(size, border_ratio)
    if not paths:
        raise UserError("give at least one image to preprocess")
    paths = [Path(p) for p in paths]
    _check_targets(paths, None if out_dir is None else Path(out_dir))
    use_depth = depth_model is not None and str(depth_model).strip().lower() not in ("", "none")
    estimator: list = []  # loaded once, on first use

    def depth_estimator():
        if not use_depth:
            return None
        if not estimator:
            from .depth import DepthModelUnavailable, load_depth_estimator

            start = time.perf_counter()
            try:
                estimator.append(load_depth_estimator(str(depth_model)))
                log(f"depth model {depth_model} loaded ({time.perf_counter() - start:.2f} s)")
            except DepthModelUnavailable as error:
                log(f"note: depth model {depth_model} is not available offline ({error}); writing the RGBA only "
                    f"— training then runs without depth/normal losses")
                estimator.append(None)
        return estimator[0]

    results = [prepare(p, size=size, border_ratio=border_ratio, recenter=recenter, holes=holes,
                       depth_estimator=depth_estimator, out_dir=out_dir, log=log) for p in paths]
    write_results(results, log)
    return results


def preprocess_image(path: str | os.PathLike, size: int = DEFAULT_SIZE, border_ratio: float = DEFAULT_BORDER_RATIO,
                     recenter: bool = True, holes: bool = True, depth_model: str | None = DEFAULT_DEPTH_MODEL,
                     out_dir: str | os.PathLike | None = None, log: Log = print) -> PreprocessResult:
    """One photo; see `preprocess_images`."""
    return preprocess_images([path], size=size, border_ratio=border_ratio, recenter=recenter, holes=holes,
                             depth_model=depth_model, out_dir=out_dir, log=log)[0]
