"""The DMTet stage from the command line, as stable-dreamfusion's workflow: train the NeRF, then
``--dmtet --init_with <ws>/checkpoints/df.pth``, then ``--test --save_mesh`` on the DMTet workspace
without ``--dmtet``; checkpoints record the stage; a killed DMTet run resumes identically."""

import os
import re
import sys

import numpy as np
import pytest
import torch
import trimesh

from dreamfusion.cli import main, parse_config
from dreamfusion.exemplar.metrics.geometry import edge_report, weld

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "training"))
from training_helpers import run_cli, tiny_args  # noqa: E402


@pytest.fixture(scope="module")
def tiny_sd_dmtet(tmp_path_factory):
    from dreamfusion.guidance.tiny_models import save_tiny_stable_diffusion

    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"), seed=0)


@pytest.fixture(scope="module")
def nerf_workspace(tmp_path_factory, tiny_sd_dmtet):
    ws = tmp_path_factory.mktemp("nerf")
    assert main(tiny_args(ws, tiny_sd_dmtet, "--eval_interval", "1", iters=4, per_epoch=2)) == 0
    assert (ws / "checkpoints" / "df.pth").is_file()
    return ws


def dmtet_args(ws, sd, init, *extra, iters=4, per_epoch=2):
    return tiny_args(ws, sd, "--dmtet", "--init_with", str(init), "--tet_grid_size", "32",
                     "--dmtet_reso_scale", "2", "--mcubes_resolution", "32", "--texture_size", "64", "--save_mesh",
                     *extra, iters=iters, per_epoch=per_epoch)


def test_nerf_then_dmtet_then_test_and_export_without_the_flag(tmp_path, tiny_sd_dmtet, nerf_workspace, capsys):
    ws = tmp_path / "trial_dmtet"
    assert main(dmtet_args(ws, tiny_sd_dmtet, nerf_workspace / "checkpoints" / "df.pth")) == 0
    log = (ws / "log_df.txt").read_text()
    assert "DMTet initialised from" in log and "mesh_normal=" in log and "mesh_laplacian=" in log
    state = torch.load(ws / "checkpoints" / "df_ep0002.pth", weights_only=True)
    assert state["stage"] == "dmtet" and state["config"]["h"] == 32  # 16 x dmtet_reso_scale 2
    assert {"geometry.sdf", "geometry.deform", "geometry.tet_scale", "geometry.cells_per_axis"} <= set(state["model"])
    # The SDF was trained: it differs from the initial one a fresh init would give.
    assert not torch.equal(state["model"]["geometry.sdf"], torch.load(
        ws / "checkpoints" / "df_ep0001.pth", weights_only=True)["model"]["geometry.sdf"])

    # --test --save_mesh with no --dmtet: the checkpoint says which stage it holds.
    capsys.readouterr()
    assert main(tiny_args(ws, tiny_sd_dmtet, "--test", "--save_mesh", "--texture_size", "64", iters=4, per_epoch=2)) == 0
    assert "holds the DMTet stage" in capsys.readouterr().out + (ws / "log_df.txt").read_text()
    mesh = trimesh.load(ws / "mesh" / "mesh.glb", force="mesh")
    vertices, faces = weld(mesh.vertices, mesh.faces)  # UV seams split vertices in the file
    assert len(faces) > 50 and edge_report(faces)["watertight"]
    assert (ws / "mesh" / "mesh.obj").is_file() and (ws / "mesh" / "albedo.png").is_file()
    # The exported mesh is the tet surface: its vertices lie within the tet grid's box.
    assert abs(mesh.vertices).max() <= float(state["model"]["geometry.tet_scale"].max()) + 1.0 / 32 + 1e-4
    assert list((ws / "results").glob("*_rgb.mp4"))
    # `dreamfusion export` too (it re-exports from the checkpoint).
    first = (ws / "mesh" / "mesh.glb").read_bytes()
    assert main(["export", str(ws), "--texture_size", "64", "--device", "cpu"]) == 0
    assert (ws / "mesh" / "mesh.glb").read_bytes() == first  # the same surface and texture, bit for bit


def test_the_weights_average_starts_from_the_initialised_stage(tmp_path, tiny_sd_dmtet, nerf_workspace):
    """df.pth and validation show the EMA of the weights: it must start from the geometry and field
    the NeRF initialised (on the re-gridded tet grid), not from the empty grid and random field the
    trainer was built with."""
    from dreamfusion.training.entry import build_trainer

    config = parse_config(dmtet_args(tmp_path / "ws", tiny_sd_dmtet, nerf_workspace / "checkpoints" / "df.pth"))
    trainer = build_trainer(config, torch.device("cpu"), progress_bar=False, log_echo=False)
    try:
        params = [p for p in trainer.scene.parameters() if p.requires_grad]
        assert float(trainer.scene.geometry.sdf.detach().abs().max()) > 0.5
        assert len(trainer.ema.shadow) == len(params)
        assert all(torch.equal(s, p.detach()) for s, p in zip(trainer.ema.shadow, params))
    finally:
        trainer.close()


def test_texture_a_mesh_with_lock_geo(tmp_path, tiny_sd_dmtet):
    # --init_with a mesh file and --lock_geo: the surface stays the input's (normalised to a 0.8 box).
    source = tmp_path / "box.obj"
    trimesh.creation.box(extents=(2.0, 1.0, 1.0)).export(source)
    ws = tmp_path / "tex"
    assert main(dmtet_args(ws, tiny_sd_dmtet, source, "--lock_geo")) == 0
    state = torch.load(ws / "checkpoints" / "df_ep0002.pth", weights_only=True)
    first = torch.load(ws / "checkpoints" / "df_ep0001.pth", weights_only=True)
    assert torch.equal(state["model"]["geometry.sdf"], first["model"]["geometry.sdf"])
    assert not re.search(r"step \d+: .*mesh_normal=", (ws / "log_df.txt").read_text())  # no geometry losses
    mesh = trimesh.load(ws / "mesh" / "mesh.glb", force="mesh")
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    np.testing.assert_allclose(extent, [1.6, 0.8, 0.8], atol=2 * 0.9 * 2 / 16)  # within two cells of the 16-cell grid


def test_dmtet_refuses_bad_starts(tmp_path, tiny_sd_dmtet, nerf_workspace, capsys):
    ws = tmp_path / "d"
    assert main(tiny_args(ws, tiny_sd_dmtet, "--dmtet", "--tet_grid_size", "32")) == 2
    assert "--init_with" in capsys.readouterr().err
    assert main(dmtet_args(ws, tiny_sd_dmtet, tmp_path / "missing.pth")) == 2
    assert "not found" in capsys.readouterr().err
    # Training a NeRF workspace with --dmtet would mix stages: one clear line.
    assert main(dmtet_args(nerf_workspace, tiny_sd_dmtet, nerf_workspace)) == 2
    assert "workspace of its own" in capsys.readouterr().err
    # A DMTet workspace trained again without --dmtet.
    dm = tmp_path / "dm"
    assert main(dmtet_args(dm, tiny_sd_dmtet, nerf_workspace, iters=2, per_epoch=2)) == 0
    assert main(tiny_args(dm, tiny_sd_dmtet, iters=4, per_epoch=2)) == 2
    assert "add --dmtet" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_dmtet_run_resumes_identically(tmp_path, tiny_sd_dmtet, nerf_workspace):
    def run(workspace, kill_at=0):
        return run_cli(dmtet_args(workspace, tiny_sd_dmtet, nerf_workspace / "checkpoints" / "df.pth", iters=6,
                                  per_epoch=2), kill_at)

    straight = run(tmp_path / "a")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run(tmp_path / "b", kill_at=4)
    assert killed.returncode == -9
    resumed = run(tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in (tmp_path / "b" / "log_df.txt").read_text()
    a = torch.load(tmp_path / "a" / "checkpoints" / "df_ep0003.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "df_ep0003.pth", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
