"""Distil the built-in objects with the exemplar prior and score what a user takes home: the field and
the exported textured mesh, from views all around (polar 30-150) and in 3D, against the analytic
object (``dreamfusion.exemplar.metrics``).

Every run goes through the real CLI configuration (configs/exemplar-demo.txt, the `make demo`
settings, plus any dreamfusion option given here), is seeded, trains, exports the mesh and is then
scored from its workspace. The table gives each setting's mean and spread over seeds; the last
lines check the targets of the 3D-fidelity issue for the runs at the demo settings.

    python benchmarks/exemplar.py                                    # every object, seeds 0 1 2, camera mode
    python benchmarks/exemplar.py --conditions camera view --janus   # also the view-prompt mode, and Janus runs
    python benchmarks/exemplar.py --objects "a hamburger" --seeds 0 --theta_range 45 105   # stable-dreamfusion's band
    python benchmarks/exemplar.py --evaluate ws1 ws2 [--reexport]    # score finished workspaces only
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dreamfusion.cli import export_main, load_saved_config, parse_config, run
from dreamfusion.devices import select_device
from dreamfusion.errors import UserError
from dreamfusion.exemplar.metrics import RingSpec, evaluate_workspace, json_report
from dreamfusion.exemplar.metrics.geometry import object_surface_points
from dreamfusion.exemplar.metrics.views import border_coverage, check_orbit_frames, rings_covered
from dreamfusion.exemplar.objects import OBJECT_NAMES, get_object

ROOT = Path(__file__).resolve().parents[1]
DEMO_ARGS = ROOT / "configs" / "exemplar-demo.txt"

TARGETS = (  # (label, key, test on the list of per-object means over seeds)
    ("all-around silhouette IoU >= 0.95 (field and mesh, every object)",
     lambda r: min(r["field_iou"], r["mesh_iou"]), lambda v: min(v) >= 0.95),
    ("PSNR all around, field: mean >= 24 dB, worst object >= 20 dB", lambda r: r["field_psnr"],
     lambda v: statistics.mean(v) >= 24 and min(v) >= 20),
    ("PSNR all around, textured mesh: mean >= 24 dB, worst object >= 20 dB", lambda r: r["mesh_psnr"],
     lambda v: statistics.mean(v) >= 24 and min(v) >= 20),
    ("mesh volume IoU: mean >= 0.85, worst >= 0.75", lambda r: r["mesh_volume_iou"],
     lambda v: statistics.mean(v) >= 0.85 and min(v) >= 0.75),
    (">= 90 % of mesh area within 0.03 of the surface", lambda r: r["within"], lambda v: min(v) >= 0.90),
    ("p95 distance <= 0.06, mesh -> object", lambda r: r["p95_mesh"], lambda v: max(v) <= 0.06),
    ("p95 distance <= 0.06, object -> mesh", lambda r: r["p95_object"], lambda v: max(v) <= 0.06),
    ("watertight, every run", lambda r: r["watertight"], lambda v: min(v) == 1.0),
    ("no inner shells (hidden area < 1 % of the mesh), every run", lambda r: r["inner_shell_fraction"],
     lambda v: max(v) < 0.01),
)


def check_framing(config, prompt: str) -> None:
    """Fail (UserError) when the object can leave a training view or an exemplar view."""
    from dreamfusion.exemplar.views import ExemplarViewConfig, load_exemplar_views
    from dreamfusion.training.trainer import orbit_from_config

    obj = get_object(prompt)
    extent = float(torch.from_numpy(object_surface_points(obj)).norm(dim=-1).max())
    check_orbit_frames(config.radius_range[0], config.fovy_range[0], extent, f"training views of {obj.name!r}")
    views = load_exemplar_views(obj, ExemplarViewConfig.from_orbit(
        orbit_from_config(config), count=6 * config.exemplar_views, resolution=config.exemplar_resolution))
    edge = border_coverage(views.alpha[:, 0])
    if bool((edge > 1e-3).any()):
        raise UserError(f"exemplar views of {obj.name!r}: the object touches the border in {int((edge > 1e-3).sum())} views")


def distil(prompt: str, workspace: Path, device: torch.device, extra: list[str], seed: int = 0) -> tuple[dict, float]:
    """Train one object through the real CLI code path (seeded), export its mesh and score it.
    Training seconds include the validation renders, the test video and the mesh export.

    Returns the workspace report (``metrics.evaluate_workspace``, on the rings the training
    cameras cover) and the training seconds.
    """
    config = parse_config(["--file", str(DEMO_ARGS), "--text", prompt, "--workspace", str(workspace),
                           "--ckpt", "scratch", "--save_mesh", "--seed", str(seed), "--device", device.type, *extra])
    check_framing(config, prompt)
    start = time.perf_counter()
    code = run(config)  # what `dreamfusion ...` does: workspace, config.yaml, seeding, training, export
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit(f"{prompt}: dreamfusion exited with code {code}")
    return evaluate_workspace(workspace, device=device, spec=rings_covered(config.theta_range)), seconds


def logged_seconds(workspace: str | Path) -> float:
    """The training seconds a finished workspace logged (its last run), NaN if it logged none."""
    log = Path(workspace) / "log_df.txt"
    found = re.findall(r"training finished at step \d+ in ([0-9.]+) s", log.read_text()) if log.is_file() else []
    return float(found[-1]) if found else float("nan")


def summary_row(report: dict) -> dict:
    """The numbers one table row shows, from a workspace report."""
    f, m = report["field"], report["mesh"]
    return {
        "field_iou": f["views"]["all"]["iou"], "field_psnr": f["views"]["all"]["psnr"],
        "mesh_iou": m["views"]["all"]["iou"], "mesh_psnr": m["views"]["all"]["psnr"],
        "mesh_normal": m["views"]["all"].get("normal_deg", float("nan")),
        "field_volume_iou": f["volume_iou"], "mesh_volume_iou": m["volume_iou"],
        "within": m["mesh_to_object"]["within"], "p95_mesh": m["mesh_to_object"]["p95"],
        "p95_object": m["object_to_mesh"]["p95"], "watertight": float(m["watertight"]),
        "pieces": m["pieces"], "object_pieces": m["object_pieces"], "inner_shell_fraction": m["inner_shell_fraction"],
        "worst_ring_iou": min(r["iou"] for r in m["views"]["rings"]),
        "worst_ring_psnr": min(r["psnr"] for r in m["views"]["rings"]),
    }


COLUMNS = (("field_iou", "field IoU", 3), ("field_psnr", "field dB", 2), ("mesh_iou", "mesh IoU", 3),
           ("mesh_psnr", "mesh dB", 2), ("worst_ring_psnr", "worst ring dB", 1), ("field_volume_iou", "field vol", 3),
           ("mesh_volume_iou", "mesh vol", 3), ("within", "area ≤.03", 3), ("p95_mesh", "p95 m→o", 3),
           ("p95_object", "p95 o→m", 3), ("pieces", "pieces", 1), ("inner_shell_fraction", "hidden", 3),
           ("watertight", "watertight", 2), ("seconds", "train s", 0))


def print_table(rows: list[dict]) -> None:
    """Markdown table: one line per (object, setting), mean ± sample std over its seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["object"], row["setting"]), []).append(row)
    print("| object | setting | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("| --- | --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " |")
    for (obj, setting), runs in groups.items():
        cells = []
        for key, _, digits in COLUMNS:
            values = [r[key] for r in runs if r[key] == r[key]]  # NaN: not logged (an evaluated workspace)
            if not values:
                cells.append("—")
                continue
            mean = statistics.mean(values)
            spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
            cells.append(f"{mean:.{digits}f}{spread}")
        print(f"| {obj} | {setting} | {len(runs)} | " + " | ".join(cells) + " |")


def check_targets(rows: list[dict], setting: str) -> bool:
    """Print PASS/FAIL for every target over the per-object means of ``setting``'s runs."""
    per_object: dict[str, list[dict]] = {}
    for row in rows:
        if row["setting"] == setting:
            per_object.setdefault(row["object"], []).append(row)
    if not per_object:
        return True
    means = {obj: {k: statistics.mean(float(r[k]) for r in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}
             for obj, runs in per_object.items()}
    ok = True
    print(f"\nTargets (issue 11), setting '{setting}', {len(means)} objects:")
    for label, key, test in TARGETS:
        values = [key(m) for m in means.values()]
        passed = test(values)
        ok &= passed
        print(f"  {'PASS' if passed else 'FAIL'}  {label}  (per object: {', '.join(f'{v:.3g}' for v in values)})")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", nargs="+", default=list(OBJECT_NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--conditions", nargs="+", default=["camera"], choices=["camera", "view"])
    parser.add_argument("--janus", action="store_true", help="also run the asymmetric objects in view mode "
                        "with view prompts off (first seed)")
    parser.add_argument("--iters", type=int, default=None, help="override the demo's iterations")
    parser.add_argument("--video_frames", type=int, default=8, help="frames of each run's test video")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workspace", default=None, help="keep the workspaces here (default: a temp dir)")
    parser.add_argument("--evaluate", nargs="+", default=None, metavar="WS", help="only score these workspaces")
    parser.add_argument("--reexport", action="store_true", help="with --evaluate: export each mesh again first "
                        "(`dreamfusion export WS`), e.g. after a change to the export")
    parser.add_argument("--json", default=None, help="also write every run's full report here")
    args, passthrough = parser.parse_known_args()  # anything else goes to dreamfusion (e.g. --theta_range 45 105)
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    rows, reports = [], []
    if args.evaluate:
        for ws in args.evaluate:
            saved = load_saved_config(Path(ws))
            if args.reexport and export_main([ws, "--device", device.type]) != 0:
                raise SystemExit(f"{ws}: export failed")
            report = evaluate_workspace(ws, device=device, spec=rings_covered(saved["theta_range"]))
            setting = saved["exemplar_condition"] + ("" if saved["view_prompt"] else ", no view prompt")
            if list(saved["theta_range"]) != [30.0, 150.0]:
                setting += f", polar {saved['theta_range'][0]:g}-{saved['theta_range'][1]:g}"
            rows.append({"object": report["object"], "setting": setting, "seed": saved["seed"], "seconds": logged_seconds(ws),
                         **summary_row(report)})
            reports.append({**json_report(report), "setting": setting, "seed": saved["seed"]})
    else:
        root = Path(args.workspace or tempfile.mkdtemp(prefix="exemplar-bench-"))
        extra = (["--iters", str(args.iters)] if args.iters else []) + passthrough
        # Validation and the test video render under a private RNG and never touch training, so
        # the benchmark validates once and renders a short video: same results, minutes saved.
        extra = ["--eval_interval", "10", "--dataset_size_test", str(args.video_frames)] + extra
        plan = []
        for prompt in args.objects:
            for condition in args.conditions:
                plan += [(prompt, condition, True, seed) for seed in args.seeds]
            if args.janus and not get_object(prompt).front_back_symmetric:
                plan.append((prompt, "view", False, args.seeds[0]))
        for prompt, condition, view_prompt, seed in plan:
            changed = (["--iters", str(args.iters)] if args.iters else []) + passthrough
            setting = condition + ("" if view_prompt else ", no view prompt") + (f" {' '.join(changed)}" if changed else "")
            flags = ["--exemplar_condition", condition] + ([] if view_prompt else ["--no-view_prompt"])
            name = f"{get_object(prompt).key}-{condition}{'' if view_prompt else '-noview'}-s{seed}"
            report, seconds = distil(prompt, root / name, device, extra + flags, seed)
            row = {"object": prompt, "setting": setting, "seed": seed, "seconds": seconds, **summary_row(report)}
            rows.append(row)
            reports.append({**json_report(report), "setting": setting, "seed": seed, "train_seconds": seconds})
            print(f"{prompt:15s} {setting:24s} seed {seed}: field {row['field_iou']:.3f}/{row['field_psnr']:.1f} dB, "
                  f"mesh {row['mesh_iou']:.3f}/{row['mesh_psnr']:.1f} dB, vol {row['mesh_volume_iou']:.3f}, "
                  f"within {100 * row['within']:.0f} %, p95 {row['p95_mesh']:.3f}/{row['p95_object']:.3f}, "
                  f"{row['pieces']} piece(s), train {seconds:.0f} s", flush=True)
        print(f"\nworkspaces: {root}")
    print(f"\nExemplar distillation, {device}, {torch.get_num_threads()} threads, settings {DEMO_ARGS.name}"
          f"{' + ' + ' '.join(passthrough) if passthrough else ''}; scored on 8 azimuths per ring, 64², "
          f"fovy {RingSpec().fovy:g} at radius {RingSpec().radius:g}\n")
    print_table(rows)
    check_targets(rows, "camera")  # the runs at the demo's settings (a setting with extra options has its own label)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "reports": reports}, indent=1, default=float))


if __name__ == "__main__":
    try:
        main()
    except UserError as error:  # a bad workspace or option: one line, no traceback
        raise SystemExit(f"error: {error}") from None
