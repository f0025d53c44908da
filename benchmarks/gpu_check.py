"""The Python half of benchmarks/gpu_check.sh: environment, timings and the closing summary.

    python benchmarks/gpu_check.py env    --out DIR [--carried SITE]      # DIR/env.json
    python benchmarks/gpu_check.py time   --device cuda --cpu-column --size full --out DIR
    python benchmarks/gpu_check.py report --out DIR --status pytest=ok --status timing=failed ...
    python benchmarks/gpu_check.py        # timings alone (as `make benchmarks` runs it), into workspace/gpu_check

``time`` measures, per device column (the device, then with ``--cpu-column`` the CPU beside it):
  * the default field's forward+backward and forward-only samples/s on camera-ray samples (the
    field section of benchmarks/renderer.py, whose helpers it reuses, without its naive and
    ``torch.compile`` variants: ``python benchmarks/renderer.py --sections field --device cuda``);
  * it/s of the real Trainer's training step (``trainer.optimize``) at stable-dreamfusion's ``-O``
    (fp16 + occupancy-grid marching, 64x64 renders, 2^19 tables) with the tiny random Stable
    Diffusion (``--hf_key`` a folder written by ``save_tiny_stable_diffusion``), the same with
    ``--vram_O`` (sequential CPU offload), and with the exemplar prior (``configs/exemplar-demo.txt``);
  * on CUDA, the peak allocated GPU memory of each (``torch.cuda.max_memory_allocated``, reset
    before each measurement).
Every timed call is bracketed by ``torch.cuda.synchronize()``. ``--size small`` / ``tiny`` shrink
everything for the CPU fallback and for CI. Results are written to DIR/timing.json after every
measurement, so a run cut short keeps what it measured; a failed measurement is recorded with its
error and the others go on (exit code 1 at the end).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _quiet in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):  # no progress bars in the logs
    os.environ.setdefault(_quiet, "1")
for _quiet in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
    os.environ.setdefault(_quiet, "error")

# Distributions reported by `env` (import name in brackets where it differs).
PACKAGES = {"torch": "torch", "diffusers": "diffusers", "transformers": "transformers",
            "accelerate": "accelerate", "huggingface_hub": "huggingface_hub", "safetensors": "safetensors",
            "numpy": "numpy", "trimesh": "trimesh", "xatlas": "xatlas", "PyMCubes": "mcubes",
            "pymeshlab": "pymeshlab", "importlib_metadata": "importlib_metadata", "pytest": "pytest"}

# What each size runs. Training steps: `warm` untimed steps (1, 2, ...: the first occupancy-grid
# update, cuDNN's algorithm search, allocator growth), then `timed` steps from step 34, past the
# latent warm-up (the first 20 % of 100 iterations). On CUDA 32 steps hold two occupancy updates
# (steps 49 and 65 of every 16th), the rate of a real run; the CPU's few steps fall between updates.
SIZES = {
    "full": dict(rays=64, samples=64, field={}, repeats={"cuda": 10, "cpu": 2},
                 steps={"cuda": (2, 32), "cpu": (1, 3)},
                 sd=[], exemplar=[]),
    "small": dict(rays=32, samples=32, field={}, repeats={"cuda": 5, "cpu": 3},
                  steps={"cuda": (2, 16), "cpu": (1, 3)},
                  sd=["--w", "32", "--h", "32", "--log2_hashmap_size", "14", "--grid_size", "64", "--max_steps", "512"],
                  exemplar=["--exemplar_views", "16"]),
    "tiny": dict(rays=16, samples=16, field={"log2_hashmap_size": 14}, repeats={"cuda": 2, "cpu": 2},
                 steps={"cuda": (1, 2), "cpu": (1, 2)},
                 sd=["--w", "16", "--h", "16", "--log2_hashmap_size", "12", "--grid_size", "16", "--max_steps", "128"],
                 exemplar=["--exemplar_views", "4", "--exemplar_resolution", "16", "--w", "16", "--h", "16",
                           "--num_steps", "8", "--upsample_steps", "0", "--log2_hashmap_size", "12"]),
}
FIRST_TIMED_STEP = 34

# Rows of the table, in order: key -> (label, unit).
ROWS = {
    "field_fwd_bwd": ("field forward+backward (hash-grid field)", "M samples/s"),
    "field_fwd": ("field forward (no grad)", "M samples/s"),
    "train_O_tiny_sd": ("training step -O, tiny SD", "it/s"),
    "train_O_vram_O_tiny_sd": ("training step -O --vram_O, tiny SD", "it/s"),
    "train_exemplar_demo": ("training step, exemplar prior (configs/exemplar-demo.txt)", "it/s"),
}


# --------------------------------------------------------------------------------------------------
# env
# --------------------------------------------------------------------------------------------------


def environment(carried: str | None) -> dict:
    """Python, torch, the GPU and the versions of the packages that matter (None: not importable)."""
    import importlib.metadata
    import importlib.util

    import torch

    info = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "packages": {}, "carried": []}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count())
    carried_dir = str(Path(carried).resolve()) if carried else None
    for dist, module in PACKAGES.items():
        try:
            info["packages"][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info["packages"][dist] = None
            continue
        spec = importlib.util.find_spec(module)
        if spec is None:
            info["packages"][dist] = None
        elif carried_dir and spec.origin and str(Path(spec.origin).resolve()).startswith(carried_dir):
            info["carried"].append(dist)
    return info


def cmd_env(args) -> int:
    info = environment(args.carried)
    write_json(Path(args.out) / "env.json", info)
    gpu = f"{info['gpu']} ({info['gpu_memory_gib']} GiB, sm {info['compute_capability']})" if info.get("gpu") else "no CUDA device"
    print(f"python {info['python']} ({info['executable']}), torch {info['torch']} (CUDA {info['torch_cuda']}), "
          f"{gpu}, {info['cpu_count']} CPUs")
    print("packages: " + ", ".join(f"{k} {v or 'missing'}" + (" (carried)" if k in info["carried"] else "")
                                   for k, v in info["packages"].items()))
    return 0


# --------------------------------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------------------------------


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    synchronize(device)
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def measure_field(device, size: dict, forward_only: bool) -> dict:
    """Best wall time of a forward(+backward) of the default grid field on rays x samples points."""
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from renderer import ray_samples, timed  # the field section's helpers (timed() synchronizes CUDA)

    from dreamfusion.fields import FieldConfig, NeRFField

    reset_peak(device)
    torch.manual_seed(0)
    field = NeRFField(FieldConfig(**size["field"])).to(device)
    x = ray_samples(size["rays"], size["samples"], device)

    def step():
        if forward_only:
            with torch.no_grad():
                field.density(x)
        else:
            out = field.density(x)
            (out["sigma"].mean() + out["albedo"].mean()).backward()

    step()  # warm-up: allocations, kernel selection
    repeats = size["repeats"][device.type]
    best = min(timed(step, device)[0] for _ in range(repeats))
    n = x.shape[0]
    return {"value": round(n / best / 1e6, 4), "samples": n, "rays": size["rays"] ** 2, "best_s": round(best, 5),
            "repeats": repeats, "log2_hashmap_size": field.config.log2_hashmap_size, "peak_mib": peak_mib(device)}


def trainer_args(key: str, size: dict, sd_folder: Path | None, workspace: Path, device) -> list[str]:
    common = ["--text", "a hamburger", "--workspace", str(workspace), "--device", str(device), "--ckpt", "scratch",
              "--seed", "0", "--W", "32", "--H", "32", "--dataset_size_valid", "2", "--dataset_size_test", "4"]
    if key == "train_exemplar_demo":
        return ["--file", str(REPO / "configs" / "exemplar-demo.txt"), *common, *size["exemplar"]]
    sd = ["-O", "--hf_key", str(sd_folder), "--iters", "100", *common, *size["sd"]]
    return sd + (["--vram_O"] if key == "train_O_vram_O_tiny_sd" else [])


def measure_training(key: str, device, size: dict, sd_folder: Path | None, scratch: Path) -> dict:
    """it/s of Trainer.optimize over the timed window, after `warm` steps; build time; peak memory."""
    import torch

    from dreamfusion.cli import parse_config
    from dreamfusion.devices import seed_everything
    from dreamfusion.training.entry import build_trainer

    warm, timed_steps = size["steps"][device.type]
    workspace = Path(tempfile.mkdtemp(prefix=f"{key}-{device.type}-", dir=scratch))
    argv = trainer_args(key, size, sd_folder, workspace, device)
    reset_peak(device)
    seed_everything(0)
    config = parse_config(argv)
    t0 = time.perf_counter()
    trainer = build_trainer(config, device, progress_bar=False, log_echo=False)
    synchronize(device)
    build_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        for step in range(1, warm + 1):
            trainer.optimize(step)
        synchronize(device)
        warm_s = time.perf_counter() - t0
        before = [p.detach().to("cpu", copy=True) for p in trainer.scene.parameters()]  # no GPU memory
        times = []
        for step in range(FIRST_TIMED_STEP, FIRST_TIMED_STEP + timed_steps):
            synchronize(device)
            t0 = time.perf_counter()
            terms = trainer.optimize(step)
            synchronize(device)
            times.append(time.perf_counter() - t0)
        moved = any(not torch.equal(p.detach().cpu(), b) for p, b in zip(trainer.scene.parameters(), before))
        result = {"value": round(len(times) / sum(times), 3), "steps": len(times),
                  "first_step": FIRST_TIMED_STEP, "median_step_ms": round(1e3 * sorted(times)[len(times) // 2], 2),
                  "build_s": round(build_s, 2), "warm_steps": warm, "warm_s": round(warm_s, 2),
                  "peak_mib": peak_mib(device), "loss": round(terms.get("loss", math.nan), 6),
                  "amp": bool(trainer.amp), "weights_moved": moved,
                  "render": f"{config.w}x{config.h}", "cuda_ray": bool(config.cuda_ray),
                  "log2_hashmap_size": config.log2_hashmap_size}
        if trainer.amp:
            result["grad_scale"] = float(trainer.scaler.get_scale())
        if not math.isfinite(result["loss"]):
            raise RuntimeError(f"the loss is {result['loss']} at step {step}")
        return result
    finally:
        trainer.close()
        del trainer
        reset_peak(device)


def cmd_time(args) -> int:
    import torch

    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device} but torch {torch.__version__} sees no CUDA device", file=sys.stderr)
        return 1
    columns = [device] + ([torch.device("cpu")] if args.cpu_column and device.type != "cpu" else [])
    size = SIZES[args.size if args.size != "auto" else ("full" if device.type == "cuda" else "small")]
    scratch = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    report = {"size": next(k for k, v in SIZES.items() if v is size), "device": str(device), "columns": [c.type for c in columns],
              "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "budget_s": args.budget_s,
              "rows": [], "failed": []}
    path = out / "timing.json"

    def keep() -> None:
        report["elapsed_s"] = round(time.perf_counter() - start, 1)
        write_json(path, report)

    try:
        measure_rows(args, columns, size, scratch, report, keep, start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    keep()
    return 1 if report["failed"] else 0


def measure_rows(args, columns, size, scratch, report, keep, start) -> None:
    """Every row on the first column (the device), then every row on the CPU beside it: if the
    budget runs out, what is lost is CPU figures."""
    rows = [{"key": key, "name": label, "unit": unit, "results": {}, "errors": {}}
            for key, (label, unit) in ROWS.items() if not args.only or key in args.only]
    report["rows"] = rows
    sd_folder = None
    for column in columns:
        name = column.type
        for row in rows:
            key, unit = row["key"], row["unit"]
            elapsed = time.perf_counter() - start
            if elapsed > args.budget_s:
                row["errors"][name] = f"not measured: {elapsed:.0f} s spent of the {args.budget_s:.0f} s budget"
                report["failed"].append(f"{key}/{name}")
                print(f"{key} on {name}: {row['errors'][name]}", flush=True)
                keep()
                continue
            t0 = time.perf_counter()
            try:
                if key.startswith("field"):
                    result = measure_field(column, size, forward_only=key == "field_fwd")
                else:
                    if sd_folder is None and key != "train_exemplar_demo":
                        from dreamfusion.guidance.tiny_models import save_tiny_stable_diffusion

                        sd_folder = save_tiny_stable_diffusion(scratch / "tiny-sd", seed=0)
                    result = measure_training(key, column, size, sd_folder, scratch)
                row["results"][name] = result
                extra = f", peak {result['peak_mib']:.0f} MiB" if result.get("peak_mib") is not None else ""
                print(f"{key} on {name}: {result['value']} {unit}{extra} ({time.perf_counter() - t0:.1f} s)", flush=True)
            except Exception as error:  # noqa: BLE001 - one failed measurement must not stop the others
                traceback.print_exc()
                row["errors"][name] = first_line(error)
                report["failed"].append(f"{key}/{name}")
                print(f"{key} on {name}: FAILED: {row['errors'][name]}", flush=True)
            keep()


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def pytest_summary(xml_path: Path) -> dict | None:
    """Counts, time and failed test ids from pytest's JUnit XML (None when it is missing/unreadable)."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    total["time_s"] = round(sum(float(s.get("time", 0)) for s in suites), 1)
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    total["failed_tests"] = failed
    return total


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def summary_markdown(data: dict) -> str:
    env, timing, steps = data.get("env") or {}, data.get("timing") or {}, data["steps"]
    columns = timing.get("columns") or [data["device"]]
    lines = []
    where = env.get("gpu") or f"CPU only ({env.get('cpu_count', '?')} CPUs)"
    lines.append(f"## GPU check: {where}; mode {data['mode']}")
    lines.append(f"python {env.get('python', '?')}, torch {env.get('torch', '?')} (CUDA {env.get('torch_cuda')}), "
                 f"{env.get('cpu_count', '?')} CPUs, CPU column on {timing.get('cpu_threads', '?')} torch threads, "
                 f"size {timing.get('size', '?')}")
    lines.append("")
    lines.append("| part | result | detail |")
    lines.append("| --- | --- | --- |")
    for name, state in steps.items():
        detail = data.get("details", {}).get(name, "")
        lines.append(f"| {name} | {state} | {detail} |")
    lines.append("")
    if timing.get("rows"):
        header = ["measurement", "unit", *columns]
        if "cuda" in columns and "cpu" in columns:
            header.append("cuda / cpu")
        if "cuda" in columns:
            header.append("peak cuda MiB")
        header.append("settings")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(" --- " for _ in header) + "|")
        for row in timing["rows"]:
            res, err = row.get("results", {}), row.get("errors", {})
            cells = [row["name"], row["unit"]]
            for c in columns:
                cells.append(number(res[c]["value"]) if c in res else ("FAILED" if c in err else "-"))
            if "cuda" in columns and "cpu" in columns:
                cells.append(f"{res['cuda']['value'] / res['cpu']['value']:.1f}x"
                             if "cuda" in res and "cpu" in res and res["cpu"]["value"] else "-")
            if "cuda" in columns:
                cells.append(number(res.get("cuda", {}).get("peak_mib")))
            cells.append(row_settings(row))
            lines.append("| " + " | ".join(cells) + " |")
        errors = [f"{row['key']} on {c}: {e}" for row in timing["rows"] for c, e in row.get("errors", {}).items()]
        if errors:
            lines.append("")
            lines += [f"- {e}" for e in errors]
        lines.append("")
    failed = [name for name, state in steps.items() if state != "ok"]
    lines.append("result: " + ("all parts passed" if not failed else "FAILED: " + ", ".join(failed)))
    return "\n".join(lines) + "\n"


def row_settings(row: dict) -> str:
    """What was measured, from the first column's result."""
    res = next(iter(row.get("results", {}).values()), None)
    if res is None:
        return ""
    if "samples" in res:
        return (f"{res['samples']:,} samples ({res['rays']:,} rays), 2^{res['log2_hashmap_size']} table, "
                f"best of {res['repeats']}")
    text = f"{res['render']}, 2^{res['log2_hashmap_size']} table"
    text += ", occupancy grid" if res.get("cuda_ray") else ""
    text += ", fp16 on cuda" if any(r.get("amp") for r in row["results"].values()) else ""
    steps = ", ".join(f"{c}: {r['steps']} steps" for c, r in row["results"].items())
    moved = all(r.get("weights_moved") for r in row["results"].values())
    return f"{text}; {steps} from step {res['first_step']}" + ("" if moved else "; weights did not move")


def cmd_report(args) -> int:
    out = Path(args.out)
    steps = dict(item.split("=", 1) for item in args.status)
    data = {"mode": args.mode, "device": args.device, "steps": steps, "details": {},
            "env": read_json(out / "env.json"), "timing": read_json(out / "timing.json"),
            "pytest": pytest_summary(out / "pytest.xml")}
    for item in args.detail:
        name, text = item.split("=", 1)
        data["details"][name] = text
    env = data["env"]
    if env is not None:
        shown = ("diffusers", "transformers", "accelerate", "trimesh")
        text = ", ".join(f"{k} {env['packages'].get(k) or 'missing'}" + (" (carried)" if k in env["carried"] else "")
                         for k in shown)
        given = data["details"].get("packages")
        data["details"]["packages"] = text + (f"; {given}" if given else "")
    py = data["pytest"]
    if py is not None:
        text = f"{py['passed']} passed, {py['failures'] + py['errors']} failed, {py['skipped']} skipped in {py['time_s']} s"
        if py["failed_tests"]:
            text += "; failed: " + ", ".join(py["failed_tests"][:6]) + (" ..." if len(py["failed_tests"]) > 6 else "")
        data["details"]["pytest"] = (data["details"].get("pytest", "") + "; " if data["details"].get("pytest") else "") + text
    timing = data["timing"]
    if timing is not None and "timing" in steps:
        measured = sum(len(r.get("results", {})) for r in timing.get("rows", []))
        data["details"]["timing"] = (f"{measured} measurements in {timing.get('elapsed_s', '?')} s"
                                     + (f"; failed: {', '.join(timing['failed'])}" if timing.get("failed") else ""))
    data["failed"] = [name for name, state in steps.items() if state != "ok"]
    markdown = summary_markdown(data)
    write_json(out / "gpu_check.json", data)
    (out / "gpu_check.md").write_text(markdown)
    print(markdown, end="")
    return 0


# --------------------------------------------------------------------------------------------------
# helpers, CLI
# --------------------------------------------------------------------------------------------------


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("env", help="write DIR/env.json: python, torch, GPU, package versions")
    p.add_argument("--out", required=True)
    p.add_argument("--carried", default=None, help="folder of the packages installed from carried wheels")
    p = sub.add_parser("time", help="timings into DIR/timing.json")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cuda, cuda:N or cpu")
    p.add_argument("--cpu-column", action="store_true", help="also measure each row on the CPU")
    p.add_argument("--size", choices=["auto", *SIZES], default="auto", help="auto: full on CUDA, small on the CPU")
    p.add_argument("--budget-s", type=float, default=150.0, help="start no measurement after this many seconds")
    p.add_argument("--only", nargs="*", choices=list(ROWS), help="measure these rows only")
    p = sub.add_parser("report", help="merge env/pytest/timing into DIR/gpu_check.{json,md} and print it")
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="gpu")
    p.add_argument("--device", default="cuda")
    p.add_argument("--status", action="append", default=[], help="PART=ok|failed|... (repeatable)")
    p.add_argument("--detail", action="append", default=[], help="PART=text shown beside its status")
    args = parser.parse_args(argv)
    if args.command is None:  # the timings alone, with their table (`make benchmarks` runs every script bare)
        out = str(REPO / "workspace" / "gpu_check")
        Path(out).mkdir(parents=True, exist_ok=True)
        for stale in ("pytest.xml", "pytest.log", "timing.log"):  # of an earlier gpu_check.sh run
            (Path(out) / stale).unlink(missing_ok=True)
        cmd_env(parser.parse_args(["env", "--out", out]))
        code = cmd_time(parser.parse_args(["time", "--out", out, "--cpu-column"]))
        cmd_report(parser.parse_args(["report", "--out", out, "--mode", "timings only", "--device", "auto",
                                      "--status", f"timing={'ok' if code == 0 else 'failed'}"]))
        return code
    return {"env": cmd_env, "time": cmd_time, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
