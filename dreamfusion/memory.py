"""How much memory a run needs, estimated before it starts, and the check that refuses what cannot fit.

The estimate is the sum of the parts that grow with the user's sizes (measured on CPU, torch 2.13,
the hash-grid field; ``benchmarks/training_step.py`` prints peak memory per step to compare):

* a training step keeps the autograd graph of every ray sample: ~4 KB per sample with normals
  (lambertian/textureless shading differentiates the density's gradient; the hash grid keeps its
  corner rows and weights for backward), over batch × h × w rays × (num_steps + upsample_steps)
  samples (reference views: known_view_scale² times more rays); plus the hash table's gradient and
  Adan's four buffers, 6 × 4 bytes per table entry (measured with ``benchmarks/training_step.py``:
  1.63 GB at stable-dreamfusion's sizes against 1.77 GB estimated, 0.24 GB for the demo against 0.23);
* a validation/test render goes in chunks of ``max_ray_batch`` rays (~1 KB per sample, no graph)
  and holds each frame in float32 (colour, depth, opacity, normals: 32 bytes per pixel); the test
  video keeps all ``dataset_size_test`` frames until it is encoded (12 bytes per pixel as kept);
* the mesh export samples a ``mcubes_resolution``³ density grid (float32 plus masks: ~16 bytes per
  node) and bakes a ``texture_size``² texture (~64 bytes per texel);
* a fixed ~1 GB for the process, the field's tables and a prior.

The DMTet stage rasterizes instead of marching rays: its step holds per pixel the raster buffers,
interpolated attributes and one colour query with its graph (~3 KB), and per tetrahedron the grid
and the marching temporaries (~64 bytes); its renders ~1 KB per pixel.

The check refuses a run whose estimate exceeds the memory available now (device memory for the
training step on CUDA, host memory otherwise), with one line that names the part that does not fit.
What is merely large (stable-dreamfusion's own sizes) passes: 1 × 64 × 64 rays × 96 samples is
about 1 GB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from dreamfusion.errors import UserError

GB = 1 << 30
TRAIN_BYTES_PER_SAMPLE = 4096
TRAIN_BYTES_PER_TABLE_ENTRY = 24  # the entry, its gradient, Adan's 3 moments and previous gradient
RENDER_BYTES_PER_SAMPLE = 1024
FRAME_BYTES_PER_PIXEL = 32
VIDEO_BYTES_PER_PIXEL = 12
GRID_BYTES_PER_NODE = 16
TEXTURE_BYTES_PER_TEXEL = 64
DMTET_TRAIN_BYTES_PER_PIXEL = 3072
DMTET_RENDER_BYTES_PER_PIXEL = 1024
DMTET_BYTES_PER_TET = 64
BASE_BYTES = 1 * GB


@dataclass
class MemoryEstimate:
    """Bytes per part of a run (see the module docstring)."""

    training_step: int
    render: int
    video: int
    mesh: int
    base: int = BASE_BYTES

    @property
    def peak(self) -> int:
        """The largest moment: a training step, or a render/video/export after it (they do not overlap)."""
        return self.base + max(self.training_step, self.render + self.video, self.mesh)

    def largest_part(self) -> str:
        parts = {"a training step": self.training_step, "the test video": self.render + self.video,
                 "the mesh export": self.mesh}
        return max(parts, key=parts.get)


def hash_table_entries(c) -> int:
    """Floats in the field's hash table (16 levels × 2 features, stable-dreamfusion's layout); 0 for
    the vanilla backbone."""
    if c.backbone == "vanilla":
        return 0
    from dreamfusion.encoders import grid_levels

    levels = grid_levels(16, 16, 2048 * c.bound, c.log2_hashmap_size)
    return 2 * (levels[-1].offset + levels[-1].size)


def estimate_memory(c) -> MemoryEstimate:
    """The estimate for a resolved :class:`dreamfusion.config.Config`."""
    samples = c.num_steps + c.upsample_steps
    rays = c.batch_size * c.h * c.w
    if c.references:
        rays = max(rays, int(c.batch_size * (c.h * c.known_view_scale) * (c.w * c.known_view_scale)))
    training = 0 if (c.test or c.six_views) else (rays * samples * TRAIN_BYTES_PER_SAMPLE
                                                   + hash_table_entries(c) * TRAIN_BYTES_PER_TABLE_ENTRY)
    pixels = c.H * c.W
    render = min(pixels, c.max_ray_batch) * samples * RENDER_BYTES_PER_SAMPLE + pixels * FRAME_BYTES_PER_PIXEL
    if getattr(c, "dmtet", False):
        tets = 6 * (c.tet_grid_size // 2) ** 3
        training = 0 if (c.test or c.six_views) else rays * DMTET_TRAIN_BYTES_PER_PIXEL + tets * DMTET_BYTES_PER_TET
        render = pixels * (DMTET_RENDER_BYTES_PER_PIXEL + FRAME_BYTES_PER_PIXEL) + tets * DMTET_BYTES_PER_TET
    video = c.dataset_size_test * pixels * VIDEO_BYTES_PER_PIXEL
    mesh = (c.mcubes_resolution ** 3 * GRID_BYTES_PER_NODE + c.texture_size ** 2 * TEXTURE_BYTES_PER_TEXEL
            if c.save_mesh else 0)
    return MemoryEstimate(training_step=training, render=render, video=video, mesh=mesh)


def available_memory(device: torch.device) -> int | None:
    """Bytes free now on ``device`` (host RAM for CPU and MPS), or None when unknown."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except RuntimeError:
            return None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(c, device: torch.device, available: int | None = None) -> MemoryEstimate:
    """Raise UserError (one line) when the run cannot fit in the memory available; else the estimate."""
    estimate = estimate_memory(c)
    if available is None:
        available = available_memory(device)
    host = available_memory(torch.device("cpu")) if device.type == "cuda" else available
    if available is None:
        return estimate
    on_device = estimate.base + estimate.training_step if device.type == "cuda" else estimate.peak
    on_host = estimate.base + max(estimate.render + estimate.video, estimate.mesh)
    for need, have, where in ((on_device, available, f"{device.type} memory"), (on_host, host, "memory")):
        if have is not None and need > have:
            part = estimate.largest_part()
            raise UserError(
                f"this run needs about {need / GB:.1f} GB of {where} ({part} is the largest part; sizes: "
                f"--h {c.h} --w {c.w} --batch_size {c.batch_size}, --H {c.H} --W {c.W} x {c.dataset_size_test} "
                f"frames, --mcubes_resolution {c.mcubes_resolution}), but {have / GB:.1f} GB is available; "
                f"lower those sizes")
    return estimate
