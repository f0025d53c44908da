"""Text becomes the right 3D object: the whole pipeline (CLI config, field, renderer, exemplar prior,
SDS, trainer) distils "a hamburger" on the CPU, scored against the analytic object at held-out views."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from exemplar import DEMO_ARGS, distil  # noqa: E402  (the benchmark's own code path)


@pytest.mark.slow
def test_hamburger_is_distilled_with_the_right_silhouette(tmp_path):
    metrics, _ = distil("a hamburger", tmp_path / "ws", torch.device("cpu"),
                        ["--iters", "200", "--dataset_size_test", "4", "--dataset_size_valid", "2", "--W", "32",
                         "--H", "32"])
    iou = metrics["iou"]
    assert iou.min() >= 0.8, iou  # issue 6 floor at every held-out view
    assert metrics["psnr_mean"] > 12.0  # colours matter: all white scores 5.7 dB, all grey 9.4 dB
    assert (tmp_path / "ws" / "results").is_dir() and DEMO_ARGS.is_file()
