"""Files a run writes besides checkpoints: images, turntable videos and an index.html (spec §5).

Names follow stable-dreamfusion (trainer name ``df``)::

    validation/df_ep0003_0000_rgb.png   _depth.png   _normal.png     every eval_interval epochs
    results/df_ep0100_rgb.mp4           _depth.mp4                   test video (turntable)
    results/df_ep0100_0000_rgb.png      _depth.png   _normal.png     --six_views
    index.html                                                       links everything above, with
                                                                     the mesh viewer and loss curves

Images are ``[H, W, 3]`` float in [0, 1] (depth ``[H, W]``, min-max normalised per image).
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Sequence

import imageio.v2 as imageio
import numpy as np
from torch import Tensor

from dreamfusion.export.mesh_io import GLB_NAME
from dreamfusion.report import loss_curves, mesh_page
from dreamfusion.report.scalars import read_scalars, scalars_path


def to_uint8(image: Tensor | np.ndarray) -> np.ndarray:
    """``[H, W, C]`` or ``[H, W]`` in [0, 1] -> uint8 (rounded, clamped)."""
    if isinstance(image, Tensor):
        image = image.detach().float().cpu().numpy()
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def normalize_depth(depth: Tensor) -> Tensor:
    """Min-max normalise one depth map ``[H, W]`` to [0, 1] (stable-dreamfusion's visualisation)."""
    depth = depth.detach().float()
    lo, hi = depth.min(), depth.max()
    return (depth - lo) / (hi - lo + 1e-6)


def save_png(path: Path, image: Tensor | np.ndarray) -> None:
    """Write an 8-bit PNG atomically (temp + rename) so index.html never links half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_uint8(image) if not (isinstance(image, np.ndarray) and image.dtype == np.uint8) else image
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    imageio.imwrite(tmp, data, format="png")
    os.replace(tmp, path)


def remove_stale_temporaries(workspace: Path) -> None:
    """Delete what a killed write left behind: ``.<name>.tmp-<pid>`` files (PNGs, videos, pages) and
    the temporary folders of a mesh export (checkpoints: ``CheckpointManager.remove_stale_temporaries``)."""
    import shutil

    workspace = Path(workspace)
    for folder in (workspace, workspace / "validation", workspace / "results", workspace / "mesh"):
        if not folder.is_dir():
            continue
        for entry in [*folder.glob(".*.tmp-*"), *folder.glob(".*.old-*")]:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int = 25) -> None:
    """Write uint8 frames ``[H, W, 3]`` (or ``[H, W]``) as an h264 mp4 via imageio-ffmpeg.

    h264/yuv420p needs even sizes; odd sizes are padded by one edge pixel instead of resampled.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prepared = []
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=-1)
        pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        prepared.append(np.ascontiguousarray(frame))
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    # macro_block_size=1: keep the exact size (imageio would otherwise resample to multiples of 16).
    imageio.mimwrite(tmp, prepared, fps=fps, quality=8, macro_block_size=1, format="FFMPEG")
    os.replace(tmp, path)


def count_video_frames(path: Path) -> int:
    """Number of frames in a video file (decodes it; used by tests and the index)."""
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        return sum(1 for _ in reader)
    finally:
        reader.close()


# ------------------------------------------------------------------------------------ index.html

_EPOCH = re.compile(r"_ep(\d{4,})")


def _gallery(parts: list[str], files: list[Path], workspace: Path, element: str) -> None:
    """Append ``files`` as captioned figures grouped by epoch (newest first); ``element`` is an HTML
    template with ``{src}`` and ``{name}``."""
    for epoch, group in sorted(_group_by_epoch(files).items(), reverse=True):
        parts.append(f"<h3>epoch {epoch}</h3>" if epoch >= 0 else "")
        for path in group:
            src, name = html.escape(path.relative_to(workspace).as_posix()), html.escape(path.name)
            parts.append(f"<figure>{element.format(src=src, name=name)}<figcaption>{name}</figcaption></figure>")


def _group_by_epoch(files: list[Path]) -> dict[int, list[Path]]:
    groups: dict[int, list[Path]] = {}
    for f in files:
        match = _EPOCH.search(f.name)
        groups.setdefault(int(match.group(1)) if match else -1, []).append(f)
    return groups


def write_index_html(workspace: Path, title: str = "dreamfusion run") -> Path:
    """(Re)write ``<workspace>/index.html``: the mesh in an interactive viewer (and
    ``mesh/viewer.html``, its page of its own), the loss curves, then every video and image of the
    run, newest first. Called at the end of every epoch: it reads the scalars CSV and the GLB once."""
    workspace = Path(workspace)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}img,video{image-rendering:pixelated;"
             "width:192px;margin:2px;border:1px solid #ccc}figure{display:inline-block;margin:2px}"
             "figcaption{font-size:11px;text-align:center}iframe.mesh-viewer{border:1px solid #ccc;max-width:100%}"
             "svg.plot{display:block;max-width:100%;height:auto;margin:4px 0}.note{font-size:12px;color:#555}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    mesh, viewer = workspace / "mesh", ""
    if (mesh / GLB_NAME).is_file():
        page = mesh_page.write_viewer_page(mesh / GLB_NAME)  # only rewritten when the mesh changed
        viewer = mesh_page.viewer_embed(page, (mesh / GLB_NAME).stat().st_size, f"mesh/{mesh_page.VIEWER_NAME}")
    files = sorted(p for p in mesh.iterdir() if p.is_file() and not p.name.startswith(".")) if mesh.is_dir() else []
    if files:
        parts += ["<h2>Mesh</h2>", viewer, "<ul>"]
        parts += [f"<li><a href='{html.escape(p.relative_to(workspace).as_posix())}'>{html.escape(p.name)}</a></li>"
                  for p in files]
        parts.append("</ul>")
    loss = loss_curves.loss_section(read_scalars(workspace),
                                    scalars_path(workspace).relative_to(workspace).as_posix())
    if loss:
        parts += ["<h2>Loss</h2>", loss]
    results = workspace / "results"
    videos = sorted(results.glob("*.mp4")) if results.is_dir() else []
    if videos:
        parts.append("<h2>Test videos</h2>")
        _gallery(parts, videos, workspace, "<video src='{src}' controls loop autoplay muted></video>")
    for heading, folder in (("Six views / test images", results), ("Validation", workspace / "validation")):
        images = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not images:
            continue
        parts.append(f"<h2>{heading}</h2>")
        _gallery(parts, images, workspace, "<img src='{src}' alt='{name}'>")
    target = workspace / "index.html"
    tmp = workspace / f".index.html.tmp-{os.getpid()}"
    tmp.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    os.replace(tmp, target)
    return target
