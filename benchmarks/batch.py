"""What a batch costs beyond its runs: the 7 exemplar prompts at reduced size, in-process and on a
local Ray, and what a GPU cluster would do (on paper, with the arithmetic shown).

    python benchmarks/batch.py [--iters 20] [--gpu_minutes 90]

Passes (each into a fresh farm; a first, unmeasured pass fills the exemplar image cache):
  1. in-process: the runs one after another (`--no_ray`);
  2. Ray, one CPU: the same runs as Ray tasks one at a time, so that the difference to pass 1 is
     Ray's start-up plus its per-task overhead;
  3. Ray, two CPUs: two runs at a time on this machine's two cores (not a scaling figure: two runs
     share two cores).
Then the cluster arithmetic: N prompts on 2 nodes x 8 GPUs at `--gpu_minutes` per prompt per GPU
(default 90: a stable-dreamfusion user's figure for one run at default settings, spec §"Known
results"), plus the per-task overhead measured here.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamfusion.exemplar.objects import OBJECTS  # noqa: E402
from dreamfusion.farm.prompts import BatchItem, slugify  # noqa: E402
from dreamfusion.farm.runner import BatchOptions, run_batch  # noqa: E402

SMALL = ["--guidance", "exemplar", "--w", "16", "--h", "16", "--W", "16", "--H", "16", "--num_steps", "8",
         "--upsample_steps", "0", "--log2_hashmap_size", "12", "--dataset_size_train", "10", "--dataset_size_valid", "1",
         "--dataset_size_test", "2", "--exemplar_views", "8", "--exemplar_resolution", "16", "--device", "cpu",
         "--seed", "0"]


def one_pass(items, folder: Path, common: list[str], *, use_ray: bool, cpus: int) -> tuple[float, list, float]:
    """(wall seconds, outcomes, seconds of ray.init) of one batch."""
    init = 0.0
    if use_ray:
        import ray

        started = time.perf_counter()
        ray.init(_node_ip_address="127.0.0.1", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        init = time.perf_counter() - started
    started = time.perf_counter()
    try:
        outcomes = run_batch(items, BatchOptions(farm=folder, common=common, evaluate=False, use_ray=use_ray,
                                                 num_cpus=cpus), report=lambda line: None, progress=False)
    finally:
        if use_ray:
            import ray

            ray.shutdown()
    return time.perf_counter() - started + init, outcomes, init


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--gpu_minutes", type=float, default=90.0, help="minutes per prompt on one GPU")
    parser.add_argument("--prompts", type=int, default=100, help="batch size for the cluster arithmetic")
    args = parser.parse_args()
    items = [BatchItem(slugify(name), name) for name in OBJECTS]
    common = [*SMALL, "--iters", str(args.iters)]
    root = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    one_pass(items, root / "warm", common, use_ray=False, cpus=1)  # fills the exemplar cache
    here_wall, here, _ = one_pass(items, root / "here", common, use_ray=False, cpus=1)
    ray1_wall, ray1, init1 = one_pass(items, root / "ray1", common, use_ray=True, cpus=1)
    ray2_wall, ray2, init2 = one_pass(items, root / "ray2", common, use_ray=True, cpus=2)
    failed = [o.slug for o in (*here, *ray1, *ray2) if o.state != "done"]
    if failed:
        print(f"runs failed: {failed}")
        return 1
    per_run = statistics.fmean(o.seconds for o in here)
    n = len(items)
    overhead = (ray1_wall - init1 - sum(o.seconds for o in ray1)) / n
    print(f"batch benchmark: {n} exemplar prompts, {args.iters} steps at 16x16 (a run is a `dreamfusion` subprocess)")
    rows = [
        ("in-process, one after another", f"{here_wall:.1f} s", f"{per_run:.1f} s per run (process start included)"),
        ("Ray, 1 CPU (one run at a time)", f"{ray1_wall:.1f} s",
         f"ray.init {init1:.1f} s; per-task overhead {overhead:.2f} s = {overhead / per_run:.1%} of a run"),
        ("Ray, 2 CPUs (two runs share two cores)", f"{ray2_wall:.1f} s", f"ray.init {init2:.1f} s; "
         f"{here_wall / ray2_wall:.2f}x the in-process wall (two cores, not a scaling figure)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, wall, detail in rows:
        print(f"{name:<{width}}  {wall:>9}  {detail}")
    gpus, minutes = 16, args.gpu_minutes
    waves = math.ceil(args.prompts / gpus)
    hours = waves * minutes / 60
    share = overhead / (minutes * 60)
    print(f"\ncluster on paper: {args.prompts} prompts on 2 nodes x 8 GPUs at {minutes:g} min per prompt per GPU:")
    print(f"  ceil({args.prompts} / {gpus}) = {waves} waves x {minutes:g} min = {hours:.1f} h "
          f"(one GPU: {args.prompts} x {minutes:g} min = {args.prompts * minutes / 60:.1f} h; {gpus}x fewer hours "
          f"when the count divides evenly, {args.prompts * minutes / 60 / hours:.1f}x here)")
    print(f"  Ray's per-task overhead measured here ({overhead:.2f} s) is {share:.4%} of a {minutes:g}-minute run; "
          f"start-up ({init1:.0f} s) once per batch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
