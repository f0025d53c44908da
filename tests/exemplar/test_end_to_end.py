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
def test_hamburger_is_distilled_with_the_right_shape_and_colours(tmp_path):
    metrics, _ = distil("a hamburger", tmp_path / "ws", torch.device("cpu"),
                        ["--iters", "200", "--dataset_size_test", "4", "--dataset_size_valid", "2", "--W", "32",
                         "--H", "32"])
    iou = metrics["iou"]
    assert iou.min() >= 0.9, iou  # issue 6 asks for 0.8; measured 0.987-0.988
    # Colours and layer heights: measured 21.8-22.6 dB. A bun-coloured dome with the layers missing
    # or at the wrong heights (polar 45-105, docs/exemplar.md) scored 16-18 dB at 300 iterations.
    assert metrics["psnr_mean"] >= 18.0, metrics["psnr"]
    assert (tmp_path / "ws" / "results").is_dir() and DEMO_ARGS.is_file()
