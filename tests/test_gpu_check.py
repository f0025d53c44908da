"""benchmarks/gpu_check.sh's CPU fallback, end to end, so that the GPU machine's script cannot rot:
device probe, packages, the device-path tests, timings and the summary, at the smallest sizes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROWS = {"field_fwd_bwd", "field_fwd", "train_O_tiny_sd", "train_O_vram_O_tiny_sd", "train_exemplar_demo"}


@pytest.mark.slow
def test_cpu_fallback_passes_and_writes_its_figures(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "DREAMFUSION_TEST_DEVICE")}
    env["GPU_CHECK_PYTHON"] = sys.executable
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", "--quick", "--out", str(tmp_path)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "gpu_check passed" in run.stdout and "| measurement |" in run.stdout

    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["steps"] == {"packages": "ok", "pytest": "ok", "timing": "ok"} and summary["failed"] == []
    assert summary["pytest"]["passed"] > 0 and summary["pytest"]["failures"] == summary["pytest"]["errors"] == 0
    assert summary["env"]["torch"] and summary["env"]["packages"]["diffusers"]

    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["columns"] == ["cpu"] and timing["failed"] == []
    assert {row["key"] for row in timing["rows"]} == ROWS
    for row in timing["rows"]:
        result = row["results"]["cpu"]
        assert result["value"] > 0, row
        if row["key"].startswith("train"):
            assert result["steps"] >= 1 and result["weights_moved"] and result["loss"] == result["loss"]  # not NaN
    assert (tmp_path / "gpu_check.md").read_text().count("\n| ") >= 5 + 3
