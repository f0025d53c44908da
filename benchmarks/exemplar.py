"""Distil every built-in object with the exemplar prior and score it against its analytic ground truth.

For each object: train with the demo settings (configs/exemplar-demo.txt, overridable), then render
the trained field (albedo, white background) from held-out cameras and print silhouette IoU and
PSNR against sphere-traced renders of the analytic object, with the wall time. The asymmetric
objects are also run with view-dependent prompting off (--no-view_prompt) to show the Janus effect.

    python benchmarks/exemplar.py                                   # all objects (tens of minutes on CPU)
    python benchmarks/exemplar.py --objects "a hamburger" --no-janus --theta_range 45 105   # extra options go to dreamfusion
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dreamfusion.cli import parse_config
from dreamfusion.devices import select_device
from dreamfusion.exemplar.metrics import evaluate_against_object, summarise
from dreamfusion.exemplar.objects import OBJECT_NAMES, get_object

ROOT = Path(__file__).resolve().parents[1]
DEMO_ARGS = ROOT / "configs" / "exemplar-demo.txt"


def distil(prompt: str, workspace: Path, device: torch.device, extra: list[str]) -> tuple[dict, float]:
    """Train one object through the real CLI code path; return its metrics and training seconds."""
    from dreamfusion import training

    config = parse_config(["--file", str(DEMO_ARGS), "--text", prompt, "--workspace", str(workspace),
                           "--ckpt", "scratch", *extra])
    workspace.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    training.train(config, device)
    seconds = time.perf_counter() - start
    return evaluate_workspace(config, device, prompt), seconds


def evaluate_workspace(config, device: torch.device, prompt: str) -> dict:
    """Held-out IoU / PSNR of a trained workspace (albedo renders over white)."""
    from dreamfusion.training import build_trainer

    test_config = parse_config(["--file", str(DEMO_ARGS), "--text", prompt, "--workspace", config.workspace,
                                "--test", "--ckpt", "latest"])
    trainer = build_trainer(test_config, device, mode="test")
    try:
        trainer.scene.eval()

        @torch.no_grad()
        def render(cameras):
            rgbs, alphas = [], []
            for i in range(cameras.c2w.shape[0]):
                rays_o, rays_d = cameras.to(device).rays()
                rays_o, rays_d = rays_o[i:i + 1], rays_d[i:i + 1]
                out = trainer.scene.render(rays_o, rays_d, shading="albedo", ambient_ratio=1.0,
                                           bg_color=torch.ones(3, device=device), perturb=False, training=False)
                H, W = cameras.height, cameras.width
                rgbs.append(out["image"].reshape(H, W, 3).float())
                alphas.append(out["weights_sum"].reshape(H, W).float())
            return torch.stack(rgbs), torch.stack(alphas)

        result = evaluate_against_object(render, prompt)
        result["render"] = render(result["cameras"])  # (rgb, alpha) for inspection
        return result
    finally:
        trainer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", nargs="+", default=list(OBJECT_NAMES))
    parser.add_argument("--iters", type=int, default=None, help="override the demo's iterations")
    parser.add_argument("--no-janus", action="store_true", help="skip the view-prompting-off runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workspace", default=None, help="keep the workspaces here (default: a temp dir)")
    args, passthrough = parser.parse_known_args()  # anything else goes to dreamfusion (e.g. --guidance_scale 1)
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    root = Path(args.workspace or tempfile.mkdtemp(prefix="exemplar-bench-"))
    extra = (["--iters", str(args.iters)] if args.iters else []) + passthrough
    rows = []
    for prompt in args.objects:
        runs = [("on", [])]
        if not args.no_janus and not get_object(prompt).front_back_symmetric:
            runs.append(("off", ["--no-view_prompt"]))
        for label, flags in runs:
            name = prompt.replace(" ", "_") + ("" if label == "on" else "_noview")
            metrics, seconds = distil(prompt, root / name, device, extra + flags)
            iou, db = summarise(metrics["iou"]), summarise(metrics["psnr"])
            rows.append((prompt, label, iou["mean"], iou["min"], db["mean"], seconds))
            print(f"{prompt:15s} view prompts {label:3s}  IoU {iou['mean']:.3f} (min {iou['min']:.3f})  "
                  f"PSNR {db['mean']:.2f} dB  train {seconds:.0f} s", flush=True)
    print(f"\nExemplar distillation, {device}, {torch.get_num_threads()} threads, settings {DEMO_ARGS.name}"
          f"{' + ' + ' '.join(extra) if extra else ''}; 8 held-out views (polar 75°, 64x64)\n")
    print("| object | view prompts | IoU mean | IoU min | PSNR mean (dB) | train s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for prompt, label, iou_mean, iou_min, db, seconds in rows:
        print(f"| {prompt} | {label} | {iou_mean:.3f} | {iou_min:.3f} | {db:.2f} | {seconds:.0f} |")
    print(f"\nworkspaces: {root}")


if __name__ == "__main__":
    main()
