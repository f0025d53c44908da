"""Time full training steps, say where the time goes, and how much memory a step takes.

    .venv/bin/python benchmarks/training_step.py                    # every setting: s/it, peak memory
    .venv/bin/python benchmarks/training_step.py --profile          # + a per-section profile per setting
    .venv/bin/python benchmarks/training_step.py --settings demo sdf --profile --device cuda
    .venv/bin/python benchmarks/training_step.py --baseline 6151d3e   # + the code before the speed work

Settings (each in its own process, so its peak memory is its own):

* ``tests``: 16x16 renders, 8 samples, 2^12 table, tiny random Stable Diffusion (the test suite's size);
* ``demo``: ``configs/exemplar-demo.txt`` (`make demo`: 32x32, 32+16 samples, 2^16 table, exemplar prior);
* ``sdf``: stable-dreamfusion's default sizes (64x64, 64+32 samples, 2^19 table) with the tiny random
  Stable Diffusion; shaded steps take finite-difference normals where a sample's weight exceeds
  ``--normal_skip_weight`` (the default);
* ``sdf-dense``: the same with normals at every sample (``--normal_skip_weight 0``, stable-dreamfusion's
  way and this code's before the option existed): the baseline of the ratio printed for ``sdf``;
* ``dmtet``: the DMTet stage of `make demo` (configs/exemplar-demo-dmtet.txt: 48x48 renders, the 64-cell
  grid, exemplar prior), started from a sphere mesh (``--init_with``), so no NeRF run is needed; with
  ``--baseline`` the tree before the marching-tets band shows what the band saves.

Each setting builds a Trainer in a temporary workspace, runs 2 warm-up steps past the latent
warm-up, then times ``--steps`` steps under :class:`dreamfusion.profiling.StepProfile`. Memory: the
process's peak resident set (CPU) over the steps, above what it held once set up, beside the
estimate that ``dreamfusion.memory`` makes before a run starts; on CUDA ``max_memory_allocated``.
Settings run one after the other, so ratios between them compare like with like on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a child process measuring another tree (--baseline) imports that tree's dreamfusion
sys.path.insert(0, os.environ.get("DF_STEP_CODE", str(ROOT)))

SETTINGS = {
    "tests": ("tests (16x16, 8 samples, 2^12 table, tiny SD)",
              ["--w", "16", "--h", "16", "--num_steps", "8", "--upsample_steps", "0", "--log2_hashmap_size", "12"]),
    "demo": ("demo (configs/exemplar-demo.txt: 32x32, 32+16 samples, 2^16 table, exemplar prior)",
             ["--file", str(ROOT / "configs" / "exemplar-demo.txt")]),
    "sdf": ("stable-dreamfusion sizes (64x64, 64+32 samples, 2^19 table, tiny SD)", []),
    "sdf-dense": ("stable-dreamfusion sizes, normals at every sample (--normal_skip_weight 0)",
                  ["--normal_skip_weight", "0"]),
    "dmtet": ("DMTet stage (configs/exemplar-demo-dmtet.txt: 48x48, 64-cell grid, exemplar prior, from a sphere)",
              ["--file", str(ROOT / "configs" / "exemplar-demo.txt"), "--file",
               str(ROOT / "configs" / "exemplar-demo-dmtet.txt")]),
}
STEPS = {"tests": 10, "demo": 20, "sdf": 3, "sdf-dense": 2, "dmtet": 10}
BASELINES = {"sdf": "sdf-dense"}  # setting -> the setting its speed-up is measured against


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name: str, steps: int, device_name: str, threads: int) -> dict:
    """Run one setting in this process; returns its figures (and the profile table)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from dreamfusion.cli import parse_config
    from dreamfusion.devices import seed_everything
    from dreamfusion.guidance.tiny_models import save_tiny_stable_diffusion
    from dreamfusion.memory import estimate_memory
    from dreamfusion.training.entry import build_trainer

    try:
        from dreamfusion.profiling import StepProfile
    except ImportError:  # a baseline tree from before the profiler: wall time only
        StepProfile = None

    device = torch.device(device_name)
    root = Path(tempfile.mkdtemp(prefix="df-step-"))
    extra = SETTINGS[name][1]
    args = ["--text", "a hamburger", "--workspace", str(root / "ws"), "--device", device_name, "--ckpt", "scratch",
            "--dataset_size_valid", "2", "--dataset_size_test", "4", "--W", "32", "--H", "32"]
    if name == "demo":
        first = 300  # albedo steps with the exemplar prior throughout
        args += extra
    elif name == "dmtet":
        import trimesh

        first = 30  # shaded steps throughout (no albedo warm-up in the DMTet stage)
        sphere = root / "sphere.obj"
        trimesh.creation.icosphere(subdivisions=4, radius=0.5).export(sphere)
        args += [*extra, "--init_with", str(sphere)]
    else:
        first = 30  # past the latent warm-up (20 % of 100): lambertian / textureless steps
        args += ["--hf_key", str(save_tiny_stable_diffusion(root / "tiny-sd")), "--iters", "100", *extra]
    seed_everything(0)
    config = parse_config(args)
    estimate = estimate_memory(config)
    trainer = build_trainer(config, device, progress_bar=False, log_echo=False)
    before = rss_bytes()  # set up: model, prior, data; the steps' graphs come on top
    for step in (first - 2, first - 1):
        trainer.optimize(step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    profile = StepProfile(device) if StepProfile is not None else contextlib.nullcontext()
    with profile:
        for step in range(first, first + steps):
            trainer.optimize(step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    result = {
        "name": name, "label": SETTINGS[name][0], "steps": steps, "s_per_it": wall / steps,
        "rss_before": before, "peak_rss": peak_rss_bytes(), "estimate_step": estimate.training_step,
        "estimate_peak": estimate.base + estimate.training_step, "device": device_name,
        "profile": profile.table(steps) if StepProfile is not None else "(no profiler in this tree)",
    }
    if device.type == "cuda":
        result["cuda_peak"] = torch.cuda.max_memory_allocated(device)
    trainer.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--profile", action="store_true", help="print each setting's per-section profile")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per setting (0: the setting's default)")
    parser.add_argument("--baseline", help="also run the settings with this git revision's code (e.g. 6151d3e, "
                        "the tree before the speed work); settings using options it lacks are skipped")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: run one setting, print JSON
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(args.one, args.steps or STEPS[args.one], args.device, args.threads)))
        return

    import torch

    print(f"torch {torch.__version__}, device {args.device}, threads {args.threads or torch.get_num_threads()}, "
          f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    codes = {"": str(ROOT)}
    if args.baseline:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from demo_speed import unpack

        codes[f" @ {args.baseline}"] = str(unpack(args.baseline, Path(tempfile.mkdtemp(prefix="df-baseline-"))))
    results = {}
    for name in args.settings:
        for suffix, code in codes.items():
            if suffix and "--normal_skip_weight" in SETTINGS[name][1]:
                continue  # an option the baseline does not have
            started = time.time()
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--device", args.device, "--threads",
                                   str(args.threads), "--steps", str(args.steps)], capture_output=True, text=True,
                                  env={**os.environ, "DF_STEP_CODE": code}, cwd=code)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(f"{name}{suffix}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}", flush=True)
                continue
            result = json.loads(line[len("RESULT "):])
            result["label"] += suffix
            results[name + suffix] = result
            print(f"{name}{suffix}: {result['s_per_it']:.3f} s/it ({time.time() - started:.0f} s with setup)", flush=True)

    gb = 1 << 30
    print("\n| setting | s / it | it / s | vs baseline | step memory (measured) | step memory (estimate) | process peak |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        bases = [b for b in (BASELINES.get(name), *(name + s for s in codes if s)) if b in results and b != name]
        ratio = "; ".join(f"{results[b]['s_per_it'] / r['s_per_it']:.2f}x vs {b}" for b in bases)
        step_mem = r["cuda_peak"] if "cuda_peak" in r else max(r["peak_rss"] - r["rss_before"], 0)
        where = "GPU" if "cuda_peak" in r else "RSS above setup"
        print(f"| {r['label']} | {r['s_per_it']:.3f} | {1 / r['s_per_it']:.2f} | {ratio} | "
              f"{step_mem / gb:.2f} GB ({where}) | {r['estimate_step'] / gb:.2f} GB | {r['peak_rss'] / gb:.2f} GB |")
    if args.profile:
        for name, r in results.items():
            if "@" in name:
                continue
            print(f"\n### {r['label']}: {r['steps']} steps, {r['s_per_it'] * 1e3:.0f} ms per step\n\n{r['profile']}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f} (compare ratios within a run)")


if __name__ == "__main__":
    main()
