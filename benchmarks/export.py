"""Benchmark the mesh export: seconds per stage for a ~50k-face export, and rasterizer throughput.

    .venv/bin/python benchmarks/export.py                 # 256^3 grid, 50k faces, 2048^2 texture
    .venv/bin/python benchmarks/export.py --resolution 128 --texture-size 1024 --threads 4

The field is analytic (a bumpy blob with a colour pattern), so the figures measure the export
itself; with a trained field the density-grid and texture-bake stages also pay for field queries.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from dreamfusion.cameras import intrinsics_from_fovy, look_at
from dreamfusion.export import export_mesh
from dreamfusion.renderers.mesh import mvp_from_c2w
from dreamfusion.renderers.rasterizer import rasterize
from dreamfusion.export.uv_unwrap import unwrap_uv


def bumpy_density(x: torch.Tensor) -> torch.Tensor:
    """A sphere of radius ~0.6 with bumps: enough detail that 256^3 gives well over 50k faces."""
    radius = 0.6 + 0.06 * torch.sin(7 * x[:, 0]) * torch.sin(6 * x[:, 1]) * torch.sin(5 * x[:, 2])
    return 10.0 + 40.0 * (radius - x.norm(dim=-1))


def pattern_albedo(x: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.5 * torch.sin(torch.stack([9 * x[:, 0], 7 * x[:, 1] + 1, 5 * x[:, 2] + 2], -1))


def time_rasterizer(vertices, faces, layout, texture_size, render_size, repeats):
    """(name, seconds, triangles, pixels) rows for a UV-space bake and a camera view."""
    rows = []
    uvs = torch.tensor(layout.uvs)
    clip_uv = torch.cat([uvs * 2 - 1, torch.zeros_like(uvs[:, :1]), torch.ones_like(uvs[:, :1])], 1)
    uv_faces = torch.tensor(layout.uv_faces)
    rows.append(("uv space", _best_of(lambda: rasterize(clip_uv, uv_faces, texture_size, texture_size,
                                                        backend="torch"), repeats),
                 len(uv_faces), texture_size**2))
    v = torch.tensor(vertices)
    mvp = mvp_from_c2w(look_at(torch.tensor([[1.2, 0.8, 2.6]])),
                       intrinsics_from_fovy(40.0, render_size, render_size), render_size, render_size)
    clip = torch.cat([v, torch.ones_like(v[:, :1])], 1) @ mvp[0].T
    f = torch.tensor(faces)
    rows.append(("camera view", _best_of(lambda: rasterize(clip, f, render_size, render_size,
                                                           backend="torch"), repeats),
                 len(f), render_size**2))
    return rows


def _best_of(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--decimate-target", type=int, default=50_000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--xatlas-iterations", type=int, default=4)
    parser.add_argument("--render-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as out_dir:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = export_mesh(
            bumpy_density, pattern_albedo, out_dir, resolution=args.resolution,
            decimate_target=args.decimate_target, texture_size=args.texture_size,
            xatlas_iterations=args.xatlas_iterations, progress=False,
        )
        total, cpu_total = time.perf_counter() - start, time.process_time() - cpu_start
        import trimesh

        mesh = trimesh.load(result.obj_path, process=False)
        vertices, faces = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces)
        welded = trimesh.Trimesh(vertices, faces, process=True)
        vertices, faces = np.asarray(welded.vertices, np.float32), np.asarray(welded.faces)

    print(f"mesh export: {args.resolution}^3 grid -> {result.num_faces} faces, "
          f"{result.num_vertices} vertices, {args.texture_size}^2 texture, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'stage':<16}{'seconds':>10}")
    for name, seconds in result.timings.items():
        print(f"{name:<16}{seconds:>10.2f}")
    print(f"{'total':<16}{total:>10.2f}")
    print(f"{'(CPU time)':<16}{cpu_total:>10.2f}   all threads; compare with wall time on a busy machine")

    layout = unwrap_uv(vertices, faces, texture_size=args.texture_size, max_iterations=1)
    print()
    print(f"{'rasterizer':<14}{'size':>11}{'seconds':>10}{'Mtri/s':>9}{'Mpix/s':>9}")
    for name, seconds, triangles, pixels in time_rasterizer(
        vertices, faces, layout, args.texture_size, args.render_size, args.repeats
    ):
        size = int(round(pixels**0.5))
        print(f"{name:<14}{f'{size}x{size}':>11}{seconds:>10.3f}"
              f"{triangles / seconds / 1e6:>9.2f}{pixels / seconds / 1e6:>9.1f}")


if __name__ == "__main__":
    main()
