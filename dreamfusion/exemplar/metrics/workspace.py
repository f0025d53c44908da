"""Score a trained workspace against the analytic object its prompt names: the field and the exported
mesh, seen from all around and measured in 3D. Reads the workspace, writes nothing into it.

    report = evaluate_workspace("workspace/demo-hamburger")
    report["field"]["views"]["all"]["iou"], report["mesh"]["views"]["rings"], report["mesh"]["volume_iou"]

Command line (prints the report as JSON, or a short table with ``--table``)::

    python -m dreamfusion.exemplar.metrics workspace/demo-hamburger --table
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from dreamfusion.errors import UserError
from dreamfusion.exemplar.metrics.geometry import (LoadedMesh, field_solid, load_mesh, mesh_geometry_report,
                                                   object_solid, volume_iou)
from dreamfusion.exemplar.metrics.views import EVAL_SUPERSAMPLE, RingSpec, ViewRender, check_framed, evaluation_cameras, ground_truth, score_views
from dreamfusion.exemplar.objects import get_object


def load_scene(workspace: str | Path, ckpt: str = "latest", device: torch.device | str = "cpu"):
    """(config, scene) of a workspace: its saved config and the weights of ``ckpt`` (latest, best or
    a path). The scene is in eval mode on ``device``."""
    from dreamfusion.checkpoints import CheckpointManager, load_checkpoint
    from dreamfusion.cli import load_saved_config
    from dreamfusion.config import Config, resolve
    from dreamfusion.dmtet.stage import checkpoint_stage
    from dreamfusion.training.entry import build_stage_scene

    workspace = Path(workspace)
    if not workspace.is_dir():
        raise UserError(f"{workspace}: workspace not found")
    saved = load_saved_config(workspace)
    known = {f.name for f in dataclasses.fields(Config)}
    config = Config(**{k: v for k, v in saved.items() if k in known and k != "references"})
    resolved = CheckpointManager(workspace, "df", log=lambda *_: None).resolve(ckpt)
    if resolved.path is None:
        raise UserError(f"{workspace}: no checkpoint to evaluate (train first)")
    state = load_checkpoint(resolved.path, map_location=device)
    if checkpoint_stage(state) == "dmtet":
        config.dmtet = True  # the saved config is already resolved: keep its sizes
    else:
        config = resolve(config)
    scene = build_stage_scene(config).to(device)
    scene.load_state_dict(state["model"])
    scene.eval()
    return config, scene


def field_renderer(scene, device: torch.device | str, placement=None):
    """A view renderer (see ``views.score_views``) of a scene: albedo over white, and the field's
    normal (-∇σ, normalised) at each pixel's expected surface point o + d·depth/alpha. With a
    ``placement`` the cameras are moved into the run's frame with the object (same images)."""
    device = torch.device(device)

    @torch.no_grad()
    def render(cameras) -> ViewRender:
        if placement is not None:
            cameras = moved_cameras(cameras, placement)
        rgbs, alphas, normals = [], [], []
        H, W = cameras.height, cameras.width
        rays_o, rays_d = cameras.to(device).rays()
        for i in range(rays_o.shape[0]):
            out = scene.render(rays_o[i:i + 1], rays_d[i:i + 1], shading="albedo", ambient_ratio=1.0,
                               bg_color=torch.ones(3, device=device), perturb=False, training=False,
                               need_normal_image=True, cameras=_one_camera(cameras, i).to(device))
            alpha = out["weights_sum"].reshape(H, W).float()
            # The scene's normal image is opacity * (n + 1) / 2, n at the expected surface point.
            normal = 2.0 * out["normal_image"].reshape(H, W, 3).float() / alpha[..., None].clamp_min(1e-6) - 1.0
            rgbs.append(out["image"].reshape(H, W, 3).float())
            alphas.append(alpha)
            if placement is not None:  # back into the object's frame, where the truth's normals are
                normal = normal @ placement.rotation().to(normal)
            normals.append(torch.nn.functional.normalize(normal, dim=-1))
        return ViewRender(torch.stack(rgbs).cpu(), torch.stack(alphas).cpu(), torch.stack(normals).cpu())

    return render


def moved_cameras(cameras, placement):
    """The cameras moved by a placement (rotation, uniform scale, translation): each sees the moved
    scene exactly as it saw the original."""
    c2w = cameras.c2w.double().clone()
    rotation = placement.rotation().to(c2w)
    c2w[:, :3, :3] = rotation @ c2w[:, :3, :3]
    c2w[:, :3, 3] = placement.to_nerf(c2w[:, :3, 3])
    return dataclasses.replace(cameras, c2w=c2w.float())


def _one_camera(cameras, i: int):
    from dreamfusion.training.trainer import _slice_cameras

    return _slice_cameras(cameras, i)


def mesh_renderer(mesh: LoadedMesh, supersample: int = EVAL_SUPERSAMPLE, device: torch.device | str = "cpu"):
    """A view renderer of a loaded mesh: the textured surface (vertex colours absent: grey) over
    white and its face normals, rasterised at ``supersample``² samples per pixel and box-filtered,
    like the ground truth."""
    from dreamfusion.cameras import intrinsics_from_fovy
    from dreamfusion.renderers.mesh import mvp_from_c2w, render_mesh

    vertices = torch.from_numpy(mesh.render_vertices).float().to(device)
    faces = torch.from_numpy(mesh.render_faces).long().to(device)
    uvs = torch.from_numpy(mesh.uvs).float().to(device) if mesh.uvs is not None else None
    texture = torch.from_numpy(mesh.texture).float().to(device) if mesh.texture is not None else None
    grey = None if texture is not None else torch.full_like(vertices, 0.5)
    k = int(supersample)

    @torch.no_grad()
    def render(cameras) -> ViewRender:
        H, W = cameras.height * k, cameras.width * k
        rgbs, alphas, normals = [], [], []
        for i in range(cameras.c2w.shape[0]):
            mvp = mvp_from_c2w(cameras.c2w[i].to(device), intrinsics_from_fovy(cameras.fovy[i], H, W), H, W)
            out = render_mesh(vertices, faces, mvp, H, W, uvs=uvs, texture=texture, vertex_colors=grey,
                              background=0.0)
            mask = out["mask"][0].float()
            premultiplied = out["rgb"][0] * mask[..., None]
            pool = lambda x: torch.nn.functional.avg_pool2d(x.permute(2, 0, 1)[None], k)[0].permute(1, 2, 0)  # noqa: E731
            alpha = pool(mask[..., None])[..., 0]
            rgbs.append(pool(premultiplied) + (1.0 - alpha[..., None]))
            alphas.append(alpha)
            normals.append(torch.nn.functional.normalize(pool(out["normal"][0]), dim=-1))
        return ViewRender(torch.stack(rgbs).cpu(), torch.stack(alphas).cpu(), torch.stack(normals).cpu())

    return render


def evaluate_workspace(workspace: str | Path, *, prompt: str | None = None, device: torch.device | str = "cpu",
                       ckpt: str = "latest", spec: RingSpec = RingSpec(), supersample: int = EVAL_SUPERSAMPLE,
                       volume_resolution: int = 128, field: bool = True, mesh: bool = True,
                       mesh_path: str | Path | None = None, placement=None) -> dict:
    """Every score of a workspace (see docs/exemplar.md, "Scoring a result").

    Args:
        prompt: the object to compare with (default: the workspace's --text).
        ckpt: which weights the field scores use (the exported mesh was made from the latest).
        spec: the evaluation rings (default: polar 30…150 × 8 azimuths, 64², fovy 40 at radius 3.2).
        volume_resolution: voxels per axis of the volume IoU (and of the object's solid).
        field / mesh: which parts to score; ``mesh_path`` defaults to ``<workspace>/mesh/mesh.obj``.
        placement: where the run put the object (an :class:`~dreamfusion.exemplar.image_prior.Placement`,
            object frame -> run frame), for image runs whose recentring moved and scaled it: the
            field is seen through cameras and a density lookup moved by it, the mesh is moved back.
    Returns:
        {"object", "field": {"views", "volume_iou" (density > --density_thresh: hollow where the field
        is), "threshold"}, "mesh": {"views", "volume_iou",
        "mesh_to_object", "object_to_mesh", "pieces", "watertight", "inner_shell_area", ...},
        "seconds"} (a part is None when not scored).
    """
    started = time.perf_counter()
    workspace = Path(workspace)
    config = scene = None
    if prompt is None or field:
        config, scene = load_scene(workspace, ckpt, device) if field else (None, None)
        if prompt is None:
            if config is None:
                from dreamfusion.cli import load_saved_config

                prompt = load_saved_config(workspace).get("text")
            else:
                prompt = config.text
    if not prompt:
        raise UserError(f"{workspace}: no --text prompt to compare with (pass prompt=)")
    obj = get_object(prompt)
    cameras = evaluation_cameras(spec)
    truth = ground_truth(obj, cameras, supersample=supersample)
    check_framed(truth.alpha, f"evaluation views of {obj.name!r}")
    report: dict = {"object": obj.name, "workspace": str(workspace), "field": None, "mesh": None}
    truth_solid = object_solid(obj, volume_resolution)
    if field:
        from dreamfusion.export import resolve_density_threshold

        views = score_views(field_renderer(scene, device, placement), truth, cameras)
        if getattr(scene, "stage", "nerf") == "dmtet":  # the DMTet stage's field is its surface
            from dreamfusion.exemplar.metrics.geometry import voxelize_mesh

            threshold = 0.0
            vertices, faces = scene.surface_numpy()
            if placement is not None:
                vertices = placement.to_object(torch.from_numpy(vertices).double()).numpy()
            solid = voxelize_mesh(vertices, faces, volume_resolution)
        else:
            threshold = resolve_density_threshold(config.density_thresh, scene.mean_density())
            density = scene.density_fn if placement is None else \
                (lambda x: scene.density_fn(placement.to_nerf(x.double()).to(x.dtype)))
            solid = field_solid(density, threshold, volume_resolution, config.bound, device)
        report["field"] = {"views": _public(views), "volume_iou": volume_iou(solid, truth_solid), "threshold": threshold}
        report["field_images"] = views["images"]
    if mesh:
        path = Path(mesh_path) if mesh_path is not None else workspace / "mesh" / "mesh.obj"
        loaded = load_mesh(path)
        if placement is not None:
            back = lambda v: placement.to_object(torch.from_numpy(v)).numpy()  # noqa: E731
            loaded = dataclasses.replace(loaded, vertices=back(loaded.vertices), render_vertices=back(loaded.render_vertices))
        views = score_views(mesh_renderer(loaded, supersample, device), truth, cameras)
        geometry = mesh_geometry_report(loaded, obj, resolution=volume_resolution)
        report["mesh"] = {"path": str(path), "views": _public(views), "faces": int(len(loaded.faces)),
                          "textured": loaded.texture is not None, **geometry}
        report["mesh_images"] = views["images"]
    report["truth_images"] = {"rgb": truth.rgb, "alpha": truth.alpha}
    report["seconds"] = time.perf_counter() - started
    return report


def _public(views: dict) -> dict:
    return {k: v for k, v in views.items() if k != "images"}


def json_report(report: dict) -> dict:
    """The report without its image tensors (what ``--json`` prints and benchmarks store)."""
    return {k: v for k, v in report.items() if not k.endswith("_images")}


def format_report(report: dict) -> str:
    """A few lines a person reads: per-ring view scores and the 3D scores."""
    lines = [f"{report['workspace']}: scored against {report['object']!r}"]
    for part in ("field", "mesh"):
        r = report.get(part)
        if not r:
            continue
        rings = "  ".join(f"{ring['polar']:.0f}°: {ring['iou']:.3f}/{ring['psnr']:.1f}" for ring in r["views"]["rings"])
        a = r["views"]["all"]
        normal = f", normal error {a['normal_deg']:.1f}°" if "normal_deg" in a else ""
        density = f" (density > {r['threshold']:g})" if "threshold" in r else ""
        lines.append(f"  {part:5s} views IoU {a['iou']:.3f} PSNR {a['psnr']:.2f} dB (object {a['psnr_object']:.2f} dB)"
                     f"{normal}; volume IoU {r['volume_iou']:.3f}{density}")
        lines.append(f"        rings (IoU/PSNR) {rings}")
    m = report.get("mesh")
    if m:
        lines.append(f"  mesh  {m['faces']} faces, {m['pieces']} piece(s) (object {m['object_pieces']}), "
                     f"watertight {m['watertight']}, inner shells {m['inner_shell_area']:.3f} of {m['area']:.3f} area "
                     f"({m['enclosed_pieces']} enclosed pieces); area inside/outside the object by > 0.03: "
                     f"{100 * m['mesh_to_object']['inside']:.1f} % / {100 * m['mesh_to_object']['outside']:.1f} %")
        lines.append(f"        mesh->object mean {m['mesh_to_object']['mean']:.4f} p95 {m['mesh_to_object']['p95']:.4f} "
                     f"area within 0.03: {100 * m['mesh_to_object']['within']:.1f} %; object->mesh mean "
                     f"{m['object_to_mesh']['mean']:.4f} p95 {m['object_to_mesh']['p95']:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m dreamfusion.exemplar.metrics",
                                     description="Score trained workspaces against the built-in object of their prompt.")
    parser.add_argument("workspaces", nargs="+")
    parser.add_argument("--prompt", default=None, help="object to compare with (default: the workspace's --text)")
    parser.add_argument("--ckpt", default="latest")
    parser.add_argument("--size", type=int, default=64, help="evaluation image size")
    parser.add_argument("--no-mesh", action="store_true", help="score the field only")
    parser.add_argument("--table", action="store_true", help="print a short summary instead of JSON")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    from dreamfusion.devices import select_device

    try:
        device = select_device(args.device)
        for ws in args.workspaces:
            report = evaluate_workspace(ws, prompt=args.prompt, device=device, ckpt=args.ckpt,
                                        spec=RingSpec(size=args.size), mesh=not args.no_mesh)
            print(format_report(report) if args.table else json.dumps(json_report(report), indent=1, default=_plain))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _plain(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    raise TypeError(type(value).__name__)
