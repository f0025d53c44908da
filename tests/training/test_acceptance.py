"""Acceptance: a CLI run with the tiny random SD writes every output; --test reproduces the video;
--six_views; corrupt checkpoints; kill -9 and resume ends with the weights of an uninterrupted run."""

import cv2
import pytest
import torch

from dreamfusion.cli import main
from dreamfusion.training.outputs import count_video_frames

from training_helpers import run_cli, tiny_args


def scalar_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def test_cli_run_writes_every_output(tmp_path, tiny_sd, capsys):
    ws = tmp_path / "ws"
    args = tiny_args(ws, tiny_sd, "--save_mesh", "--mcubes_resolution", "24", "--texture_size", "32",
                     "--decimate_target", "300", iters=4, per_epoch=2)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "it/s" in err or "s/it" in err                          # tqdm progress bar with its rate
    assert "loss=" in err

    ckpts = ws / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["df.pth", "df_ep0001.pth", "df_ep0002.pth"]
    state = torch.load(ckpts / "df_ep0002.pth", weights_only=False)
    assert state["global_step"] == 4 and state["epoch"] == 2 and {"optimizer", "ema", "rng", "scaler"} <= set(state)
    for epoch in (1, 2):
        for i in range(2):
            for kind in ("rgb", "depth", "normal"):
                image = cv2.imread(str(ws / "validation" / f"df_ep{epoch:04d}_{i:04d}_{kind}.png"))
                assert image is not None and image.shape == (16, 16, 3), (epoch, i, kind)
    video = ws / "results" / "df_ep0002_rgb.mp4"
    assert count_video_frames(video) == 3 and count_video_frames(ws / "results" / "df_ep0002_depth.mp4") == 3
    for name in ("mesh.obj", "mesh.mtl", "albedo.png", "mesh.glb"):
        assert (ws / "mesh" / name).stat().st_size > 0, name
    log = (ws / "log_df.txt").read_text()
    assert "training finished at step 4" in log and "config: " in log
    events = scalar_tags(ws / "run" / "df")
    assert len(events.Scalars("train/loss")) == 4 and len(events.Scalars("train/lr")) == 4
    assert "validation/rgb" in events.Tags()["images"]
    index = (ws / "index.html").read_text()
    assert "results/df_ep0002_rgb.mp4" in index and "validation/df_ep0001_0000_rgb.png" in index
    assert "mesh/mesh.obj" in index

    # --test renders the same turntable from the checkpoint: the mp4 comes out byte for byte equal
    trained_video = video.read_bytes()
    video.unlink()
    assert main(tiny_args(ws, tiny_sd, "--test", iters=4, per_epoch=2)) == 0
    assert video.read_bytes() == trained_video

    assert main(tiny_args(ws, tiny_sd, "--six_views", iters=4, per_epoch=2)) == 0
    assert len(list((ws / "results").glob("df_ep0002_000?_rgb.png"))) == 6

    # `dreamfusion export <workspace>` re-exports the mesh from the latest checkpoint
    (ws / "mesh" / "mesh.glb").unlink()
    assert main(["export", str(ws), "--mcubes_resolution", "24", "--texture_size", "32", "--device", "cpu"]) == 0
    assert (ws / "mesh" / "mesh.glb").stat().st_size > 0


def test_corrupt_checkpoint_is_refused_and_kept(tmp_path, tiny_sd, capsys):
    ws = tmp_path / "ws"
    assert main(tiny_args(ws, tiny_sd, iters=2, per_epoch=2)) == 0
    path = ws / "checkpoints" / "df_ep0001.pth"
    broken = path.read_bytes()[:1000]
    path.write_bytes(broken)
    capsys.readouterr()
    assert main(tiny_args(ws, tiny_sd, iters=4, per_epoch=2)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dreamfusion: error: checkpoint") and "unreadable" in err[-1]
    assert path.read_bytes() == broken                       # left as it was
    # --ckpt scratch starts over and moves the broken file aside instead of overwriting it
    assert main(tiny_args(ws, tiny_sd, "--ckpt", "scratch", iters=2, per_epoch=2)) == 0
    aside = list((ws / "checkpoints").glob("set_aside_*/df_ep0001.pth"))
    assert len(aside) == 1 and aside[0].read_bytes() == broken
    assert main(tiny_args(ws, tiny_sd, "--test", "--ckpt", str(tmp_path / "missing.pth"))) == 2


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(tmp_path, tiny_sd):
    def run(workspace, kill_at=0):
        return run_cli(tiny_args(workspace, tiny_sd, iters=20, per_epoch=5), kill_at)

    straight = run(tmp_path / "a")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run(tmp_path / "b", kill_at=11)                 # killed after 10 iterations
    assert killed.returncode == -9
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("df_ep*.pth")) == \
        ["df_ep0001.pth", "df_ep0002.pth"]
    resumed = run(tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in (tmp_path / "b" / "log_df.txt").read_text()

    a = torch.load(tmp_path / "a" / "checkpoints" / "df_ep0004.pth", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoints" / "df_ep0004.pth", weights_only=False)
    assert a["global_step"] == b["global_step"] == 20
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"]):
        assert torch.equal(x, y)
