"""Benchmark of the radiance field and volume renderer (issue 3).

Prints three tables, each measured in one run so ratios compare like with like on a shared machine:
  1. field throughput: forward+backward (and forward-only) samples/s of the default hash-grid field
     (16x2 levels, 2^19 table, MLP 32-64-64-4) on 64x64 rays x 64 samples, for the frozen naive
     baseline (a pure-PyTorch hash grid with int64 index math and autograd through indexing, the
     feasibility study's "v1", and a plain nn.Linear MLP: nothing of ours, so the ratio cannot
     drift), the naive grid with our MLP (the baseline before it was frozen), our eager encoder,
     and our encoder with ``torch.compile`` of the index math;
  2. rendering: iterations/s of a 64x64 render (training: forward+backward; inference: no grad) with
     the naive ``run`` (64 + 32 samples) and the occupancy-grid fast path, on a mostly empty scene
     (the default field distilled to an opaque sphere of radius 0.3 in the [-1, 1] cube);
  3. fit: held-out PSNR and wall time of fitting the field to multi-view renders of an analytic
     coloured sphere (no external data).

Usage::

    python benchmarks/renderer.py                       # all sections, CPU, 2 threads
    python benchmarks/renderer.py --sections field --repeats 5
    python benchmarks/renderer.py --sections fast-baseline --baseline 1bc9b31 --repeats 8   # fast path vs an older one
    python benchmarks/renderer.py --device cuda --threads 0
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # analytic scenes

from dreamfusion.cameras import get_rays, intrinsics_from_fovy, look_at, spherical_to_position  # noqa: E402
from dreamfusion.encoders import HashGridEncoder  # noqa: E402
from dreamfusion.fields import FieldConfig, NeRFField  # noqa: E402
from dreamfusion.renderers import RenderConfig, VolumeRenderer  # noqa: E402


# --------------------------------------------------------------------------------------------------
# Naive baseline
# --------------------------------------------------------------------------------------------------


class NaiveHashGrid(nn.Module):
    """A straightforward hash grid: int64 corner math per level, gather with autograd."""

    def __init__(self, reference: HashGridEncoder):
        super().__init__()
        self.ref = reference
        self.embeddings = reference.embeddings
        self.register_buffer("corners", torch.tensor([[(k >> a) & 1 for a in range(3)] for k in range(8)]), persistent=False)

    def forward(self, x: torch.Tensor, max_level=None) -> torch.Tensor:
        u = (x + self.ref.bound) / (2 * self.ref.bound)
        outs = []
        for lv in self.ref.levels:
            pos = (u * lv.resolution - 0.5).clamp(0, lv.resolution - 1)
            p0 = pos.floor()
            f = pos - p0
            f = f * f * (3 - 2 * f)
            c = (p0.long()[:, None, :] + self.corners[None]).clamp(max=lv.resolution - 1)  # [N, 8, 3]
            if lv.hashed:
                idx = (c[..., 0] ^ (c[..., 1] * 2654435761) ^ (c[..., 2] * 805459861)) % lv.size
            else:
                idx = c[..., 0] + c[..., 1] * (lv.resolution + 1) + c[..., 2] * (lv.resolution + 1) ** 2
            w = torch.where(self.corners[None].bool(), f[:, None, :], 1 - f[:, None, :]).prod(-1)  # [N, 8]
            outs.append((self.embeddings[lv.offset + idx] * w[..., None]).sum(1))
        return torch.cat(outs, -1)


def plain_mlp(mlp) -> nn.Sequential:
    """nn.Linear + ReLU layers with the weights of ``mlp`` (a fields.MLP), run by plain autograd."""
    layers = []
    for i, layer in enumerate(mlp.net):
        copy = nn.Linear(layer.in_features, layer.out_features).to(layer.weight.device)
        copy.load_state_dict(layer.state_dict())
        layers += [copy] + ([nn.ReLU()] if i != len(mlp.net) - 1 else [])
    return nn.Sequential(*layers)


class NaiveField(nn.Module):
    """The frozen baseline: the naive hash grid and a plain-autograd MLP (nothing of ours but the
    weights and the table layout, so the ratio cannot drift when our encoder or MLP change).
    ``our_mlp=True``: the naive grid with our chunked MLP, the baseline before it was frozen."""

    def __init__(self, field: NeRFField, our_mlp: bool = False):
        super().__init__()
        self.encoder, self.field = NaiveHashGrid(field.encoder), field
        self.sigma_net = field.sigma_net if our_mlp else plain_mlp(field.sigma_net)

    def density(self, x):
        h = self.sigma_net(self.encoder(x))
        return {"sigma": torch.exp(h[..., 0] + self.field.density_blob(x)), "albedo": torch.sigmoid(h[..., 1:])}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def camera_rays(size: int, device, azimuth: float = 30.0, polar: float = 80.0, radius: float = 3.2, fovy: float = 20.0):
    centre = spherical_to_position(torch.tensor([polar]), torch.tensor([azimuth]), torch.tensor([radius]))
    rays_o, rays_d = get_rays(look_at(centre), intrinsics_from_fovy(fovy, size, size), size, size)
    return rays_o.to(device), rays_d.to(device)


def ray_samples(size: int, n_samples: int, device, seed: int = 0) -> torch.Tensor:
    """[size*size*n_samples, 3] stratified points along camera rays inside the unit sphere."""
    rays_o, rays_d = camera_rays(size, device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    t = torch.linspace(2.2, 4.2, n_samples)[None] + (torch.rand(size * size, n_samples, generator=g) - 0.5) * 2 / n_samples
    x = rays_o[0, :, None] + rays_d[0, :, None] * t.to(device)[..., None]
    return x.reshape(-1, 3).clamp(-1, 1).contiguous()


def timed(fn, device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def best_time(fn, repeats: int, device) -> float:
    """Minimum wall time over repeats (min, not mean: other users' load only ever adds time)."""
    return min(timed(fn, device)[0] for _ in range(repeats))


def interleaved(fns: dict, repeats: int, device) -> dict:
    """Best (wall, cpu) of each function (by wall time), alternating between them so that load
    changes hit all alike."""
    best = {k: (math.inf, math.inf) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            best[k] = min(best[k], timed(fn, device))
    return best


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


def bench_field(args, device) -> None:
    x = ray_samples(64, 64, device)
    n = x.shape[0]
    torch.manual_seed(0)
    eager = NeRFField(FieldConfig()).to(device)
    compiled = NeRFField(FieldConfig(compile_encoder=True)).to(device)
    compiled.load_state_dict(eager.state_dict())
    variants = {"naive (int64, autograd gather; plain MLP): frozen baseline": NaiveField(eager),
                "naive grid + our chunked MLP (the baseline until it was frozen)": NaiveField(eager, our_mlp=True),
                "ours, eager": eager}
    if not args.no_compile:
        variants["ours, torch.compile index math"] = compiled

    def train_step(f):
        def run():
            out = f.density(x)
            (out["sigma"].mean() + out["albedo"].mean()).backward()
        return run

    def fwd(f):
        def run():
            with torch.no_grad():
                f.density(x)
        return run

    t0 = time.perf_counter()
    for f in variants.values():  # warm-up (and compile)
        train_step(f)()
        fwd(f)()
    warm = time.perf_counter() - t0
    fns = {}
    for name, f in variants.items():
        fns[(name, "fwd+bwd")] = train_step(f)
        fns[(name, "fwd")] = fwd(f)
    best = interleaved(fns, args.repeats, device)
    opt = torch.optim.Adam(eager.get_params(1e-3), fused=device.type == "cpu")
    adam = best_time(lambda: opt.step(), args.repeats, device)
    base = best[(next(iter(variants)), "fwd+bwd")][0]
    rows = []
    for name in variants:
        (tb, cb), (tf, _) = best[(name, "fwd+bwd")], best[(name, "fwd")]
        rows.append([name, f"{tb:.3f}", f"{n / tb / 1e6:.3f}", f"{base / tb:.2f}x", f"{cb:.3f}", f"{n / cb / 1e6:.3f}", f"{tf:.3f}", f"{n / tf / 1e6:.3f}"])
    table(
        f"Field throughput: {n:,} samples (64x64 rays x 64), default grid field, {device}, "
        f"{torch.get_num_threads()} threads (warm-up incl. compile {warm:.1f} s; a fused Adam step adds {adam * 1e3:.0f} ms)",
        ["variant", "fwd+bwd wall s", "M samples/s", "vs naive", "CPU s", "M samples/CPU-s", "fwd wall s", "fwd M samples/s"],
        rows,
    )
    print("(CPU s = process CPU time of the best run; wall = CPU / 2 means both cores were ours, wall = CPU one.)")


def distill_sphere(field: NeRFField, radius: float, steps: int, device) -> float:
    """Regress the field's log-density and albedo onto an opaque coloured sphere (3-D supervision).

    Gives a default-size field that looks like a trained object: an opaque surface in a mostly
    empty cube. Returns the wall time.
    """
    t0 = time.perf_counter()
    opt = torch.optim.Adam(field.get_params(1e-2), betas=(0.9, 0.99), eps=1e-15)
    g = torch.Generator(device="cpu").manual_seed(0)
    for _ in range(steps):
        x = torch.rand(1 << 14, 3, generator=g) * 2 - 1
        shell = torch.nn.functional.normalize(torch.randn(1 << 14, 3, generator=g), dim=-1) * (radius + 0.1 * torch.randn(1 << 14, 1, generator=g))
        x = torch.cat([x, shell]).to(device)
        inside = (x.norm(dim=-1) < radius).float()
        out = field.density(x)
        loss = ((torch.log(out["sigma"] + 1e-6) - (inside * 14 - 9)) ** 2).mean()  # sigma e^5 inside, e^-9 outside
        loss = loss + ((out["albedo"] - (0.5 + 0.4 * torch.sin(3 * x))) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def bench_render(args, device) -> None:
    rays_o, rays_d = camera_rays(64, device)
    rows = []
    scenes = [("opaque sphere r=%.2g (mostly empty)" % args.object_radius, True), ("fresh field (soft blob)", False)]
    for scene, distill in scenes:
        torch.manual_seed(0)
        field = NeRFField(FieldConfig(compile_encoder=not args.no_compile and args.render_compile)).to(device)
        distill_s = distill_sphere(field, args.object_radius, args.distill_steps, device) if distill else 0.0
        naive = VolumeRenderer(field, RenderConfig()).to(device)
        fast = VolumeRenderer(field, RenderConfig(cuda_ray=True)).to(device)
        t0 = time.perf_counter()
        fast.update_occupancy(0)
        update_s = time.perf_counter() - t0

        light = torch.nn.functional.normalize(torch.tensor([0.3, 0.5, 0.8], device=device), dim=0)

        def train(r, shading="albedo"):
            def run():
                out = r(rays_o, rays_d, perturb=True, light_d=light, shading=shading, ambient_ratio=0.1)
                out["image"].mean().backward()
            return run

        def infer(r):
            def run():
                with torch.no_grad():
                    r(rays_o, rays_d)
            return run

        for r in (naive, fast):
            train(r)()
            infer(r)()
        best = interleaved({("run", "train"): train(naive), ("fast", "train"): train(fast),
                            ("run", "train, lambertian"): train(naive, "lambertian"), ("fast", "train, lambertian"): train(fast, "lambertian"),
                            ("run", "infer"): infer(naive), ("fast", "infer"): infer(fast)}, args.repeats, device)
        with torch.no_grad():
            from dreamfusion.occupancy_grid import march

            marched = march(fast.occupancy, rays_o[0], rays_d[0], fast.config.max_steps,
                            max_samples=fast.config.num_steps + fast.config.upsample_steps)[0].numel() / rays_o.shape[1]
            coverage = (naive(rays_o, rays_d)["weights_sum"] > 0.5).float().mean().item()
        occ = fast.occupancy.occupied.float().mean().item()
        for mode in ("train", "train, lambertian", "infer"):
            a, b = best[("run", mode)][0], best[("fast", mode)][0]
            rows.append([scene, mode, f"{coverage:.0%}", f"{occ:.1%}", f"{marched:.0f}", f"{1 / a:.2f}", f"{1 / b:.2f}", f"{a / b:.1f}x", f"{update_s:.1f}"])
        if distill:
            print(f"(scene: default field distilled for {distill_s:.0f} s onto an opaque coloured sphere)")
    table(
        f"Rendering a 64x64 image on {device} (run: 64 coarse + 32 fine samples, each queried once; fast path: occupancy grid 128^3, max_steps 1024, at most 96 samples per ray)",
        ["scene", "mode", "pixels covered", "occupied cells", "marched samples/ray", "run it/s", "fast it/s", "fast / run", "grid update s"],
        rows,
    )


def bench_fast_baseline(args, device) -> None:
    """The fast path's march_and_composite of ``--baseline`` (a git revision; its occupancy_grid.py
    loaded beside the current one) against the current one: same field (distilled onto the opaque
    sphere), rays and light, interleaved in this process, training renders (forward + backward)."""
    import importlib.util
    import subprocess
    import tempfile

    from dreamfusion import occupancy_grid as current

    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "-C", str(root), "show", f"{args.baseline}:dreamfusion/occupancy_grid.py"],
                            check=True, capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("dreamfusion._baseline_occupancy_grid", f.name)  # its relative imports: this package
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    os.unlink(f.name)

    torch.manual_seed(0)
    field = NeRFField(FieldConfig(compile_encoder=False)).to(device)
    distill_sphere(field, args.object_radius, args.distill_steps, device)
    renderer = VolumeRenderer(field, RenderConfig(cuda_ray=True)).to(device)
    renderer.update_occupancy(0)
    rays_o, rays_d = camera_rays(64, device)
    light = torch.nn.functional.normalize(torch.tensor([[0.3, 0.5, 0.8]], device=device), dim=-1)

    def step(module, shading, seed=None):
        if seed is not None:
            torch.manual_seed(seed)
        out = module.march_and_composite(renderer, rays_o, rays_d, light, ambient_ratio=0.1, shading=shading, perturb=True)
        out["image"].mean().backward()
        field.zero_grad(set_to_none=True)
        return out["image"].detach()

    rows = []
    for shading in ("albedo", "lambertian"):
        difference = float((step(baseline, shading, seed=1) - step(current, shading, seed=1)).abs().max())
        best = interleaved({"baseline": lambda: step(baseline, shading), "current": lambda: step(current, shading)},
                           args.repeats, device)
        a, b = best["baseline"][0], best["current"][0]
        rows.append([shading, f"{a * 1000:.0f}", f"{b * 1000:.0f}", f"{a / b:.2f}x", f"{difference:.1e}"])
    table(f"Fast path, 64x64 training render of the opaque sphere on {device}: {args.baseline} against this tree "
          f"(interleaved, best of {args.repeats})",
          ["shading", f"{args.baseline} ms", "now ms", "speed-up", "max |image difference|"], rows)


def bench_fit(args, device) -> None:
    from analytic_scenes import fit_field

    rows = []
    configs = {"default grid field (16x2, 2^19)": FieldConfig(bg_radius=-1, compile_encoder=args.render_compile), "test-size field (8x2, 2^14, hidden 32)": None}
    for name, config in configs.items():
        t0 = time.perf_counter()
        psnr, _, _ = fit_field(size=args.fit_size, iters=args.fit_iters, n_rays=args.fit_rays, steps=args.fit_steps, field_config=config)
        elapsed = time.perf_counter() - t0
        rows.append([name, args.fit_iters, args.fit_rays, f"{args.fit_steps}+{args.fit_steps // 2}", f"{psnr:.2f}", f"{elapsed:.1f}"])
    table(
        f"Fit to 24 views of an analytic coloured sphere ({args.fit_size}x{args.fit_size}, random backgrounds), 3 held-out views, Adam lr 1e-2 (grid 1e-1)",
        ["field", "iterations", "rays/iter", "samples/ray", "held-out PSNR dB", "wall s"],
        rows,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch threads on CPU (0: leave as is)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sections", default="field,render,fit", help="any of field, render, fit, fast-baseline")
    p.add_argument("--baseline", default="1bc9b31", help="fast-baseline section: the git revision whose fast path is compared")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--render-compile", action="store_true", help="use the compiled encoder in the render section")
    p.add_argument("--object-radius", type=float, default=0.3, help="render section: radius of the opaque sphere")
    p.add_argument("--distill-steps", type=int, default=150)
    p.add_argument("--fit-size", type=int, default=64)
    p.add_argument("--fit-iters", type=int, default=300)
    p.add_argument("--fit-rays", type=int, default=1024)
    p.add_argument("--fit-steps", type=int, default=32)
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, load average at start {load0:.2f} on {os.cpu_count()} CPUs")
    sections = {"field": bench_field, "render": bench_render, "fit": bench_fit, "fast-baseline": bench_fast_baseline}
    for name in args.sections.split(","):
        sections[name](args, device)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average at end {load1:.2f} (other processes share these CPUs; compare ratios within a run)")


if __name__ == "__main__":
    main()
