import os
import subprocess
import sys
import types

import pytest
import yaml

from dreamfusion import cli
from dreamfusion.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--text", "a hamburger", "--bogus"], "unrecognized arguments: --bogus"),
    (["--text", "a hamburger", "--theta_range", "120", "45"], "min 120.0 is greater than max 45.0"),
    ([], "give a prompt with --text"),
    (["--text", "a hamburger", "--optim", "sgd"], "invalid choice: 'sgd'"),
    (["--text", "a hamburger", "--iters", "ten"], "invalid int value: 'ten'"),
    (["--text", "a hamburger", "--taichi_ray"], "Taichi ray marching (--taichi_ray) is not available"),
    (["--text", "a hamburger", "--file", "missing.txt"], "--file missing.txt: cannot read"),
    (["--text", "a hamburger", "--device", "tpu9"], "unknown device"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    result = run_cli(*args, "--workspace", "ws", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dreamfusion: error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ws").exists()


def test_unwritable_workspace_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    result = run_cli("--text", "a hamburger", "--workspace", str(blocker / "ws"), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not writable" in result.stderr or "cannot create" in result.stderr
    assert blocker.read_text() == "keep me"


def test_help_lists_every_group(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for text in ("-O2", "--vram_O", "--IF", "--image_config", "--dmtet", "--lambda_entropy", "--radius_range", "--W"):
        assert text in result.stdout


def test_file_arguments_are_read_and_later_arguments_win(tmp_path):
    args = tmp_path / "args.txt"
    args.write_text('--text "a red cube"  # comment\n--iters 300 -O\n--theta_range 60 90\n')
    config = cli.parse_config(["--file", str(args), "--iters", "50"])
    assert config.text == "a red cube" and config.iters == 50 and config.fp16 and config.cuda_ray
    assert config.theta_range == [60.0, 90.0] and config.file == str(args)


def test_documented_command_lines_parse():
    config = cli.parse_config(["--text", "a hamburger", "--workspace", "trial", "-O", "--vram_O"])
    assert config.workspace == "trial" and config.vram_O and config.fp16
    config = cli.parse_config(["--text", "a hamburger", "-O2", "--guidance", "SD", "clip", "--t_range", "0.2", "0.6"])
    assert config.guidance == ["SD", "clip"] and config.t_range == [0.2, 0.6] and config.backbone == "vanilla"


def test_run_saves_the_resolved_config_and_dispatches(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("dreamfusion.training")
    fake.train = lambda config, device: calls.append(("train", config, device)) or 0
    fake.test = lambda config, device: calls.append(("test", config, device)) or 0
    fake.six_views = lambda config, device: calls.append(("six", config, device)) or 0
    monkeypatch.setitem(sys.modules, "dreamfusion.training", fake)
    import dreamfusion

    monkeypatch.setattr(dreamfusion, "training", fake, raising=False)
    workspace = tmp_path / "ws"
    assert cli.main(["--text", "a hamburger", "-O", "--workspace", str(workspace), "--device", "cpu", "--seed", "3"]) == 0
    assert calls[0][0] == "train" and calls[0][2].type == "cpu"
    saved = yaml.safe_load((workspace / "config.yaml").read_text())
    assert saved["text"] == "a hamburger" and saved["fp16"] is True and saved["cuda_ray"] is True
    assert saved["exp_end_iter"] == 10000
    assert Config(**saved) == calls[0][1]  # the file holds the whole resolved config
    assert cli.main(["--test", "--workspace", str(workspace), "--device", "cpu"]) == 0
    assert calls[1][0] == "test" and (workspace / "config_test.yaml").exists()
    assert yaml.safe_load((workspace / "config.yaml").read_text())["text"] == "a hamburger"  # not overwritten


def test_failed_run_leaves_the_workspace_as_it_was(tmp_path):
    bad = tmp_path / "bad_rgba.png"
    bad.write_text("not a png")
    result = run_cli("--image", str(bad), "--workspace", "fresh", "--iters", "2", cwd=tmp_path)
    assert result.returncode == 2 and "cannot read image" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "fresh").exists()  # created by the run, removed again
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text("text: earlier run\n")
    result = run_cli("--text", "a hamburger", "--workspace", "old", "--iters", "2", cwd=tmp_path)
    assert result.returncode == 2 and "--hf_key" in result.stderr  # no weights offline
    assert (old / "config.yaml").read_text() == "text: earlier run\n"


def test_an_unexpected_error_is_one_line_exit_1_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    def broken(config, device, estimate):
        raise RuntimeError("something internal\nsecond line")

    monkeypatch.setattr(cli, "dry_run", broken)
    argv = ["--text", "a hamburger", "--workspace", str(tmp_path / "ws"), "--device", "cpu", "--dry_run"]
    monkeypatch.delenv("DREAMFUSION_DEBUG", raising=False)
    assert cli.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["dreamfusion: error: RuntimeError: something internal (unexpected; run again with --debug "
                     "or DREAMFUSION_DEBUG=1 for the traceback, and please report it)"]
    with pytest.raises(RuntimeError, match="something internal"):
        cli.main([*argv, "--debug"])
    monkeypatch.setenv("DREAMFUSION_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(argv)
    assert not (tmp_path / "ws").exists()
