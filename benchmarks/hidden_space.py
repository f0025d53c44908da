"""Benchmark the export's hidden-space stage (``dreamfusion.export.hidden_space``): the enclosed
space of each built-in object's analytic solid, computed over the whole grid (the baseline: every
node, as the export did before) and over the solid's bounding box only (what the export does), in
the same run. The two must agree node for node; the table says so.

    .venv/bin/python benchmarks/hidden_space.py                       # 128^3, every object, 2 threads
    .venv/bin/python benchmarks/hidden_space.py --resolution 256 --objects "a teapot"
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dreamfusion.exemplar.objects import OBJECT_NAMES, get_object
from dreamfusion.export.hidden_space import enclosed_space, open_fraction


def analytic_solid(prompt: str, resolution: int) -> np.ndarray:
    """bool [R, R, R]: the object's SDF < 0 at the nodes of a grid over [-1, 1]^3."""
    axis = torch.linspace(-1.0, 1.0, resolution)
    nodes = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    sdf = torch.cat([get_object(prompt).sdf(chunk) for chunk in nodes.split(1 << 20)])
    return (sdf.reshape(resolution, resolution, resolution) < 0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--objects", nargs="+", default=list(OBJECT_NAMES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"hidden space at {args.resolution}^3, {torch.get_num_threads()} threads\n")
    print("| object | whole grid s | bounding box s | speed-up | enclosed nodes (whole / box) | same |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for prompt in args.objects:
        solid = analytic_solid(prompt, args.resolution)
        start = time.perf_counter()
        whole = ~solid & (open_fraction(solid) <= 0.1)
        t_whole = time.perf_counter() - start
        start = time.perf_counter()
        boxed = enclosed_space(solid, max_open=0.1)
        t_box = time.perf_counter() - start
        print(f"| {prompt} | {t_whole:.1f} | {t_box:.1f} | {t_whole / t_box:.1f}x | {int(whole.sum())} / {int(boxed.sum())} "
              f"| {'yes' if np.array_equal(whole, boxed) else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
