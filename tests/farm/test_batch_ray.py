"""`dreamfusion batch` on a local Ray (127.0.0.1, 2 CPUs): a bad prompt fails alone while the others
finish; a batch killed mid-way and run again redoes nothing finished and resumes the interrupted run;
without Ray the prompts run one after another."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

pytest.importorskip("ray")

TINY = ["--guidance", "exemplar", "--w", "16", "--h", "16", "--W", "16", "--H", "16", "--num_steps", "8",
        "--upsample_steps", "0", "--log2_hashmap_size", "12", "--dataset_size_train", "5", "--dataset_size_valid", "1",
        "--dataset_size_test", "2", "--exemplar_views", "8", "--exemplar_resolution", "16", "--device", "cpu"]


def batch(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "dreamfusion", "batch", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_a_bad_prompt_fails_alone_and_a_killed_batch_resumes(tmp_path):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt,options\na hamburger,\na spaceship,\na red cube,--iters 400\n")
    farm = tmp_path / "farm"
    args = [prompts, "--workspace", farm, "--num_cpus", "2", "--no_evaluate", *TINY, "--iters", "10"]
    process = subprocess.Popen([sys.executable, "-m", "dreamfusion", "batch", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cube_checkpoints = farm / "a-red-cube" / "checkpoints"
    try:
        deadline = time.monotonic() + 240
        # Kill the whole batch once the hamburger is done and the cube has a checkpoint mid-run.
        while not ((farm / ".batch" / "a-hamburger.json").is_file() and cube_checkpoints.is_dir()
                   and any(cube_checkpoints.glob("df_ep*.pth"))):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    hamburger = json.loads((farm / ".batch" / "a-hamburger.json").read_text())
    assert hamburger["state"] == "done"
    assert not (farm / ".batch" / "a-red-cube.json").exists()
    # The cube's training died with the batch (no run goes on writing behind a rerun's back).
    time.sleep(3)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(farm / "a-red-cube") not in ps

    result = batch(*args)
    assert result.returncode == 1, result.stdout + result.stderr  # one run failed
    out = result.stdout
    assert "2 of 3 runs already done" not in out and "1 of 3 runs already done (skipped)" in out
    assert "FAILED  a-spaceship: prompt 'a spaceship' is not a built-in object" in out
    assert "done    a-red-cube" in out and "done    a-hamburger" not in out  # nothing finished is redone
    cube_log = (farm / "a-red-cube" / "log_df.txt").read_text()
    assert "resumed from" in cube_log  # the interrupted run continued from its checkpoint
    assert json.loads((farm / ".batch" / "a-hamburger.json").read_text()) == hamburger
    rows = {r["slug"]: r for r in csv.DictReader((farm / "runs.csv").open())}
    assert {s: r["state"] for s, r in rows.items()} == {"a-hamburger": "done", "a-spaceship": "failed",
                                                       "a-red-cube": "done"}
    summary = list(csv.DictReader((farm / "summary.csv").open()))
    assert [(r["prompt"], r["runs"], r["done"]) for r in summary] == [
        ("a hamburger", "1", "1"), ("a spaceship", "1", "0"), ("a red cube", "1", "1")]
    page = (farm / "index.html").read_text()
    assert "2 of 3 runs done" in page and "a-hamburger/index.html" in page and "failed: prompt" in page

    again = batch(*args)  # everything done but the bad prompt, which fails again on its own
    assert again.returncode == 1 and "2 of 3 runs already done (skipped)" in again.stdout


def test_without_ray_the_prompts_run_here_and_bad_batch_options_are_one_line(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a hamburger\n")
    result = batch(prompts, "--workspace", tmp_path / "farm", "--no_ray", *TINY, "--iters", "5", "--seeds", "0", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done    a-hamburger-s0" in result.stdout and "done    a-hamburger-s1" in result.stdout
    # Evaluated after each run: offline the default CLIP is absent, so the 3D scores alone, and it says so.
    rows = list(csv.DictReader((tmp_path / "farm" / "runs.csv").open()))
    assert all(r["evaluation"].startswith("CLIP: ") and r["evaluation"].endswith("3D scores only") for r in rows)
    ious = [float(r["exemplar_3d.field.views.all.iou"]) for r in rows]
    (summary,) = csv.DictReader((tmp_path / "farm" / "summary.csv").open())
    assert float(summary["exemplar_3d.field.views.all.iou_mean"]) == pytest.approx(sum(ious) / 2)
    assert float(summary["exemplar_3d.field.views.all.iou_std"]) == pytest.approx(abs(ious[0] - ious[1]) / 2 ** 0.5)
    seeds = [yaml.safe_load((tmp_path / "farm" / f"a-hamburger-s{s}" / "config.yaml").read_text())["seed"]
             for s in (0, 1)]
    assert seeds == [0, 1]
    for args, message in ((["--text", "x"], "--text is set per run"), (["--bogus"], "unrecognized arguments: --bogus"),
                          (["--cpus_per_task", "0"], "--cpus_per_task must be positive")):
        bad = batch(prompts, "--workspace", tmp_path / "bad", *args)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and message in bad.stderr, bad.stderr
        assert not (tmp_path / "bad").exists()
