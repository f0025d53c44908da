"""Outputs that always finish: a run killed with kill -9 (from outside) during a checkpoint write,
during validation, during the video or during the mesh export, then run again with the same
command, ends with the files of an uninterrupted run (checkpoints, images, video frames, mesh), and
no temporary files."""

import os
import signal
import subprocess
import sys
import time

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import yaml
from training_helpers import tiny_args

IGNORED = {"log_df.txt"}  # wall-clock times; TensorBoard's run/ folder is skipped too


def command(workspace, sd):
    return [sys.executable, "-m", "dreamfusion",
            *tiny_args(workspace, sd, "--eval_interval", "1", "--test_interval", "1", "--save_mesh",
                       "--mcubes_resolution", "24", "--texture_size", "32",
                       iters=4, per_epoch=2)]


def run(workspace, sd, pause_at=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if pause_at is None:
        return subprocess.run(command(workspace, sd), env=env, capture_output=True, text=True, timeout=timeout)
    marker = workspace.parent / f"{workspace.name}.paused"
    env.update(DREAMFUSION_PAUSE_AT=pause_at, DREAMFUSION_PAUSE_FILE=str(marker))
    process = subprocess.Popen(command(workspace, sd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while not marker.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline, f"never reached {pause_at}"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)  # kill -9 from outside, at that moment
    process.wait()
    process.stderr.close()
    return process


def files(workspace):
    found = {}
    for root, dirs, names in os.walk(workspace):
        dirs[:] = [d for d in dirs if d != "run"]
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, workspace)
            if name not in IGNORED:
                found[rel] = path
    return found


def same_content(a, b, rel):
    if rel.endswith((".pth", ".pt")):
        x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        assert x["global_step"] == y["global_step"]
        return all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"]) and x["model"].keys() == y["model"].keys()
    if rel.endswith(".mp4"):
        fa, fb = imageio.mimread(a), imageio.mimread(b)
        return len(fa) == len(fb) and all(np.array_equal(p, q) for p, q in zip(fa, fb))
    if rel.endswith(".yaml"):  # the config names its own workspace
        x, y = yaml.safe_load(open(a)), yaml.safe_load(open(b))
        return {**x, "workspace": None} == {**y, "workspace": None}
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_sd):
    workspace = tmp_path_factory.mktemp("straight") / "ws"
    result = run(workspace, tiny_sd)
    assert result.returncode == 0, result.stderr[-2000:]
    return workspace


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["checkpoint", "validation", "video", "export"])
def test_a_kill_at_any_moment_then_a_rerun_ends_as_an_uninterrupted_run(moment, uninterrupted, tiny_sd, tmp_path):
    workspace = tmp_path / "ws"
    killed = run(workspace, tiny_sd, pause_at=moment)
    assert killed.returncode == -signal.SIGKILL
    rerun = run(workspace, tiny_sd)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    expected, got = files(uninterrupted), files(workspace)
    assert sorted(got) == sorted(expected)  # same names: nothing missing, no temporary left over
    for rel in expected:
        assert same_content(expected[rel], got[rel], rel), rel
    assert "mesh/mesh.glb" in expected and any(rel.endswith("_rgb.mp4") for rel in expected)


@pytest.mark.slow
def test_a_rerun_of_a_finished_run_changes_nothing_and_remakes_what_was_deleted(uninterrupted, tiny_sd, tmp_path):
    import shutil

    workspace = tmp_path / "ws"
    shutil.copytree(uninterrupted, workspace)
    videos = sorted((workspace / "results").glob("*.mp4"))
    for video in videos[-2:]:
        video.unlink()
    shutil.rmtree(workspace / "mesh")
    rerun = run(workspace, tiny_sd)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    expected, got = files(uninterrupted), files(workspace)
    assert sorted(got) == sorted(expected)
    for rel in expected:
        assert same_content(expected[rel], got[rel], rel), rel
    outputs = lambda: {rel: os.stat(path).st_mtime_ns for rel, path in files(workspace).items()  # noqa: E731
                       if rel not in ("config.yaml", "index.html")}  # rewritten with the same content
    before = outputs()
    again = run(workspace, tiny_sd)
    assert again.returncode == 0 and "outputs are complete" in again.stderr
    assert outputs() == before  # nothing made again
