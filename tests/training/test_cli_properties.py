"""Property-based test of the command line (hypothesis): random options with nasty values (NaN, inf,
negative, huge, empty, non-UTF-8, wrong types) against random workspace states, through
``--dry_run`` so each try takes milliseconds. Every try ends with exit code 0 or 2, at most one
error line and no traceback, and leaves the workspace byte for byte as it was. The inputs of the
reliability issue's table are pinned as explicit examples, and the nastiest run for real below."""

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from training_helpers import tiny_args

from dreamfusion.cli import main
from dreamfusion.config import cli_fields

NON_UTF8 = "\udcff\udcfe burger"  # what Python makes of the bytes ff fe in argv
NASTY = ["nan", "inf", "-inf", "-1", "0", "1e30", "100000", "99999999999999999999", "abc", "", " ", NON_UTF8,
         "1.5", "a hamburger", "scratch", "missing.pth", "x_rgba.png", "--", "-5e-3"]
FIELDS = {(f.metadata["flag"] or f"--{f.name}"): f for f in cli_fields()}
FLAGS = sorted(set(FIELDS) - {"--file"})
STATES = ["absent", "empty", "file", "corrupt_checkpoint", "trained_config", "nested_absent"]


def option(flag):
    hint = str(FIELDS[flag].type)
    if hint.startswith("bool"):
        return st.just([flag])
    if hint.startswith("list"):
        return st.lists(st.sampled_from(NASTY), min_size=1, max_size=3).map(lambda values: [flag, *values])
    return st.sampled_from(NASTY).map(lambda value: [flag, value])


command_lines = st.lists(st.sampled_from(FLAGS), min_size=0, max_size=4, unique=True).flatmap(
    lambda flags: st.tuples(*[option(f) for f in flags]) if flags else st.just(()))


def make_workspace(root: Path, state: str) -> Path:
    ws = root / "ws"
    if state == "nested_absent":
        return root / "a" / "b" / "ws"
    if state == "absent":
        return ws
    if state == "file":
        ws.write_text("not a folder")
        return ws
    ws.mkdir()
    if state == "corrupt_checkpoint":
        (ws / "checkpoints").mkdir()
        (ws / "checkpoints" / "df_ep0001.pth").write_bytes(b"garbage")
        (ws / "log_df.txt").write_text("[earlier] a line of an earlier run\n")
    if state == "trained_config":
        (ws / "config.yaml").write_text("text: a hamburger\n")
        (ws / "run").mkdir()
    return ws


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check(argv, root: Path, *, dry: bool = True):
    before = snapshot(root)
    code, out, err = run_cli([*argv, "--dry_run"] if dry else argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        errors = [line for line in lines if line.startswith("dreamfusion: error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], lines  # progress bars may come before it
        if dry:
            assert len(lines) == 1, lines
        assert snapshot(root) == before, "a refused run changed the workspace"
    elif dry:
        assert lines == [], lines
        assert out.rstrip().endswith("nothing was written")
        assert snapshot(root) == before, "a dry run changed the workspace"
    return code, lines


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(options=command_lines, state=st.sampled_from(STATES), with_text=st.booleans())
@example(options=(["--text", NON_UTF8],), state="absent", with_text=False)
@example(options=(["--lr", "nan"],), state="trained_config", with_text=True)
@example(options=(["--bound", "nan"],), state="absent", with_text=True)
@example(options=(["--h", "100000"], ["--w", "100000"]), state="absent", with_text=True)
@example(options=(["--W", "100000"], ["--H", "100000"]), state="trained_config", with_text=True)
@example(options=(["--image", "x_rgba.png"],), state="corrupt_checkpoint", with_text=False)
@example(options=(["--test"],), state="empty", with_text=False)
@example(options=(["--test"],), state="corrupt_checkpoint", with_text=False)
@example(options=(["--ckpt", "missing.pth"],), state="trained_config", with_text=True)
@example(options=(["--mcubes_resolution", "100000"], ["--save_mesh"]), state="absent", with_text=True)
def test_any_command_line_is_one_line_or_a_plan_and_never_touches_the_workspace(options, state, with_text):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        ws = make_workspace(root, state)
        argv = ["--workspace", str(ws), "--device", "cpu"]
        if with_text:
            argv += ["--text", "a hamburger"]
        for part in options:
            argv += part
        cwd = os.getcwd()
        os.chdir(root)  # relative paths in the options land in the temporary folder
        try:
            check(argv, root)
        finally:
            os.chdir(cwd)


# ------------------------------------------------------------------ the nastiest ones, for real


@pytest.fixture
def existing(tmp_path, tiny_sd):
    """A finished tiny run: its checkpoint, config, log and TensorBoard files."""
    ws = tmp_path / "ws"
    assert main(tiny_args(ws, tiny_sd, iters=2, per_epoch=2)) == 0
    return ws


@pytest.mark.parametrize("extra", [
    ["--text", NON_UTF8],
    ["--lr", "nan"],
    ["--h", "100000", "--w", "100000"],
    ["--W", "100000", "--H", "100000"],
    ["--image", "missing_rgba.png"],
    ["--image", "bad_rgba.png"],
    ["--ckpt", "corrupt.pth"],
    ["--ckpt", "foreign.pth"],
])
def test_real_refused_runs_leave_an_existing_workspace_byte_for_byte(existing, tiny_sd, tmp_path, extra):
    (tmp_path / "bad_rgba.png").write_bytes(b"not a png")
    (tmp_path / "corrupt.pth").write_bytes(b"garbage")
    torch.save({"model": {}, "payload": shutil.rmtree}, tmp_path / "foreign.pth")  # would run code to load
    argv = tiny_args(existing, tiny_sd, iters=4, per_epoch=2)
    if "--text" in extra:
        argv[argv.index("--text") + 1] = extra[1]
        extra = []
    extra = [str(tmp_path / e) if e.endswith((".png", ".pth")) else e for e in extra]
    code, lines = check([*argv, *extra], existing.parent, dry=False)
    assert code == 2


def test_real_test_run_without_a_checkpoint_leaves_nothing(tmp_path, tiny_sd):
    ws = tmp_path / "ws"
    ws.mkdir()
    code, lines = check(tiny_args(ws, tiny_sd, "--test"), tmp_path, dry=False)
    assert code == 2 and "no checkpoint" in lines[0]
