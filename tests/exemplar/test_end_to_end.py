"""Text becomes the right 3D object: the whole pipeline (CLI config, field, renderer, exemplar prior,
SDS, trainer, mesh export) distils "a hamburger" on the CPU, and what a user takes home, the field
and the exported mesh, is scored all around and in 3D against the analytic object."""

import sys
from pathlib import Path

import pytest
import torch

from dreamfusion.cli import parse_config
from dreamfusion.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from exemplar import DEMO_ARGS, check_framing, distil  # noqa: E402  (the benchmark's own code path)

REDUCED = ["--iters", "300", "--dataset_size_test", "4", "--dataset_size_valid", "2", "--W", "32", "--H", "32",
           "--mcubes_resolution", "96", "--texture_size", "256", "--decimate_target", "8000"]


@pytest.mark.slow
def test_hamburger_is_distilled_right_from_everywhere_and_exported_as_a_clean_solid(tmp_path):
    report, _ = distil("a hamburger", tmp_path / "ws", torch.device("cpu"), REDUCED, seed=0)
    field, mesh = report["field"], report["mesh"]
    rings = {ring["polar"]: ring for ring in field["views"]["rings"]}
    assert sorted(rings) == [30.0, 60.0, 90.0, 120.0, 150.0]
    # Seen from above, the horizon and below. A cropped object (fovy 20) or layers at the wrong
    # elevation (view-class prompts over polar 30-150) fail these.
    # 300 steps (a third of the demo) measured 0.92-0.97 IoU and 23.8-26 dB on every ring; the old
    # demo (view prompts, fovy 20, polar 70-80) scored 17 dB at the horizon and from below.
    assert min(r["iou"] for r in rings.values()) >= 0.90, rings
    assert min(r["psnr"] for r in rings.values()) >= 22.0, rings
    # (The field's own volume IoU is not asserted: it moves by ±0.08 between runs of one seed.)
    mesh_rings = mesh["views"]["rings"]
    assert min(r["iou"] for r in mesh_rings) >= 0.92 and min(r["psnr"] for r in mesh_rings) >= 22.0, mesh_rings
    # One clean solid: inner shells, floaters and a tangle under the bun fail these (the old demo's
    # mesh had 21 % of its vertices inside the object, p95 distance 0.33).
    assert mesh["pieces"] == 1 and mesh["watertight"] and mesh["inner_shell_fraction"] < 0.01
    to_object, from_object = mesh["mesh_to_object"], mesh["object_to_mesh"]
    assert to_object["inside"] < 0.03 and to_object["outside"] < 0.2, to_object  # measured 0.02 % / 16 %
    assert to_object["within"] >= 0.8 and to_object["p95"] <= 0.07, to_object  # 84 %, 0.055
    assert from_object["p95"] <= 0.08, from_object  # 0.061
    assert mesh["volume_iou"] >= 0.85  # 0.89
    assert (tmp_path / "ws" / "results").is_dir() and DEMO_ARGS.is_file()


def test_a_cropping_camera_fails_the_benchmark(tmp_path):
    """The benchmark refuses settings whose training views cut the object (fovy 20 at radius 3.2
    frames a ball of radius 0.56; the hamburger reaches 0.66)."""
    tight = parse_config(["--file", str(DEMO_ARGS), "--text", "a hamburger", "--workspace", str(tmp_path / "ws"),
                          "--dont_override_stuff", "--fovy_range", "20", "20"])
    with pytest.raises(UserError, match="leaves the frame"):
        check_framing(tight, "a hamburger")
    check_framing(parse_config(["--file", str(DEMO_ARGS), "--text", "a hamburger"]), "a hamburger")
