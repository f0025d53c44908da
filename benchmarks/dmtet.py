"""Does the DMTet stage make a better mesh? Three rows per built-in object, scored with the 3D-fidelity
metrics (``dreamfusion.exemplar.metrics``: views all around, polar 30-150, and distances in 3D):

1. ``nerf``: the NeRF stage's exported mesh (marching cubes, the `make demo` settings);
2. ``dmtet init``: the DMTet surface right after initialisation from that NeRF, exported untrained
   (so extraction is not credited as refinement);
3. ``dmtet``: after the DMTet stage (``--dmtet --init_with <nerf>/checkpoints``), exported.

Everything goes through the real CLI configuration (configs/exemplar-demo.txt, then
configs/exemplar-demo-dmtet.txt for the DMTet stage: the `make demo` settings); NeRF workspaces are
reused when they already hold a mesh.

    python benchmarks/dmtet.py                                   # every object, seed 0
    python benchmarks/dmtet.py --objects "a hamburger" --workspace bench-dmtet -- --iters 300
    python benchmarks/dmtet.py --workspace bench-dmtet --reexport   # after a change to the export only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exemplar import DEMO_ARGS, distil, logged_seconds  # noqa: E402

from dreamfusion.cli import export_main, parse_config, run  # noqa: E402
from dreamfusion.devices import select_device  # noqa: E402
from dreamfusion.exemplar.metrics import evaluate_workspace  # noqa: E402
from dreamfusion.exemplar.objects import OBJECT_NAMES, get_object  # noqa: E402

# The DMTet settings measured (and used by `make demo`): see docs/dmtet.md.
DMTET_ARGS = ["--file", str(DEMO_ARGS.parent / "exemplar-demo-dmtet.txt")]


def mesh_row(report: dict) -> dict:
    m = report["mesh"]
    near, far = m["mesh_to_object"], m["object_to_mesh"]
    return {"mesh_iou": m["views"]["all"]["iou"], "mesh_psnr": m["views"]["all"]["psnr"],
            "worst_ring_psnr": min(r["psnr"] for r in m["views"]["rings"]),
            "normal_deg": m["views"]["all"].get("normal_deg", float("nan")),
            "mean_mesh": near["mean"], "p95_mesh": near["p95"], "mean_object": far["mean"], "p95_object": far["p95"],
            "two_way": (near["mean"] + far["mean"]) / 2, "within": near["within"], "volume_iou": m["volume_iou"],
            "watertight": float(m["watertight"]), "pieces": m["pieces"], "hidden": m["inner_shell_fraction"],
            "faces": m["faces"]}


def dmtet_config(prompt: str, workspace: Path, nerf: Path, device: torch.device, extra: list[str]):
    return parse_config(["--file", str(DEMO_ARGS), "--text", prompt, "--workspace", str(workspace), "--ckpt", "scratch",
                         "--save_mesh", "--init_with", str(nerf), "--device", device.type, *DMTET_ARGS, *extra])


def initial_surface(prompt: str, workspace: Path, nerf: Path, device: torch.device, extra: list[str]) -> Path:
    """Export the DMTet surface right after initialisation, untrained: <workspace>/mesh/mesh.obj."""
    from dreamfusion.dmtet.stage import build_dmtet_scene, initialise
    from dreamfusion.export import MeshExportConfig, export_textured_mesh

    config = dmtet_config(prompt, workspace, nerf, device, extra)  # parsed and resolved
    scene = build_dmtet_scene(config).to(device)
    initialise(scene, config, device, log=lambda line: print("  " + line))
    scene.eval()
    vertices, faces = scene.surface_numpy()
    out = workspace / "mesh"
    with torch.no_grad():
        export_textured_mesh(vertices, faces, scene.albedo_fn, out, device=device, progress=False,
                             config=MeshExportConfig(decimate_target=config.decimate_target,
                                                     texture_size=config.texture_size))
    return out / "mesh.obj"


COLUMNS = (("mesh_iou", "mesh IoU", 3), ("mesh_psnr", "mesh dB", 2), ("worst_ring_psnr", "worst ring dB", 1),
           ("normal_deg", "normal °", 1), ("mean_mesh", "mean m→o", 4), ("p95_mesh", "p95 m→o", 3),
           ("mean_object", "mean o→m", 4), ("p95_object", "p95 o→m", 3), ("two_way", "two-way", 4),
           ("within", "area ≤.03", 3), ("volume_iou", "mesh vol", 3), ("watertight", "watertight", 0), ("pieces", "pieces", 0), ("hidden", "hidden", 3),
           ("faces", "faces", 0), ("seconds", "s", 0))


def print_table(rows: list[dict]) -> None:
    print("| object | mesh | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " |")
    for row in rows:
        print(f"| {row['object']} | {row['row']} | " + " | ".join(f"{row[k]:.{d}f}" for k, _, d in COLUMNS) + " |")


def check(rows: list[dict]) -> bool:
    """The issue's target: the trained stage beats both other rows on two-way surface distance and
    on all-around PSNR of the textured mesh, for every object."""
    ok = True
    for obj in dict.fromkeys(r["object"] for r in rows):
        by = {r["row"]: r for r in rows if r["object"] == obj}
        if len(by) < 3:
            continue
        d, n, i = by["dmtet"], by["nerf"], by["dmtet init"]
        distance = d["two_way"] < min(n["two_way"], i["two_way"])
        psnr = d["mesh_psnr"] > max(n["mesh_psnr"], i["mesh_psnr"])
        ok &= distance and psnr
        print(f"  {'PASS' if distance and psnr else 'FAIL'}  {obj}: two-way {d['two_way']:.4f} vs nerf "
              f"{n['two_way']:.4f}, init {i['two_way']:.4f}; mesh PSNR {d['mesh_psnr']:.2f} vs nerf "
              f"{n['mesh_psnr']:.2f}, init {i['mesh_psnr']:.2f}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", nargs="+", default=list(OBJECT_NAMES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", default="workspace/bench-dmtet", help="where the workspaces live (reused)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write every row here")
    parser.add_argument("--reexport", action="store_true", help="reuse finished DMTet workspaces: export them "
                        "again (after a change to the export) instead of training")
    args, extra = parser.parse_known_args()  # anything else goes to the DMTet runs (e.g. --iters 300)
    extra = [e for e in extra if e != "--"]
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    root = Path(args.workspace)
    rows = []
    for prompt in args.objects:
        key = get_object(prompt).key
        nerf = root / f"{key}-s{args.seed}" / "nerf"
        start = time.perf_counter()
        if not (nerf / "mesh" / "mesh.obj").is_file():
            print(f"{prompt}: NeRF stage")
            distil(prompt, nerf, device, ["--eval_interval", "10", "--dataset_size_test", "8"], args.seed)
        seconds = {"nerf": time.perf_counter() - start}
        start = time.perf_counter()
        init_mesh = initial_surface(prompt, nerf.parent / "dmtet-init", nerf, device, extra)
        seconds["dmtet init"] = time.perf_counter() - start
        start = time.perf_counter()
        dmtet = nerf.parent / "dmtet"
        if args.reexport and (dmtet / "mesh" / "mesh.obj").is_file():
            if export_main([str(dmtet), "--device", device.type]) != 0:
                raise SystemExit(f"{prompt}: the DMTet export failed")
            seconds["dmtet"] = logged_seconds(dmtet)
        else:
            config = dmtet_config(prompt, dmtet, nerf, device, ["--seed", str(args.seed), "--dataset_size_test", "8",
                                                                 *extra])
            if run(config) != 0:
                raise SystemExit(f"{prompt}: the DMTet stage failed")
            seconds["dmtet"] = time.perf_counter() - start
        meshes = {"nerf": nerf / "mesh" / "mesh.obj", "dmtet init": init_mesh,
                  "dmtet": nerf.parent / "dmtet" / "mesh" / "mesh.obj"}
        for name, path in meshes.items():
            report = evaluate_workspace(nerf, prompt=prompt, device=device, field=False, mesh_path=path)
            rows.append({"object": get_object(prompt).name, "row": name, "seconds": seconds[name], **mesh_row(report)})
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))
            print(f"  {name}: {rows[-1]}")
    print_table(rows)
    print("\nTarget (issue 13): the DMTet stage beats the NeRF mesh and its own initial surface on two-way surface "
          "distance and on all-around PSNR of the textured mesh:")
    sys.exit(0 if check(rows) else 1)


if __name__ == "__main__":
    main()
