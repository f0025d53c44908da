"""Loss curves as SVG: where known points land, the scale chosen, one polyline per term."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from dreamfusion.report.loss_curves import loss_section, loss_series
from dreamfusion.report.plots import downsample, line_plot_svg, smooth

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg):
    root = ET.fromstring(svg)
    area = root.find(f"{SVG}rect[@class='plot-area']")
    box = {k: float(area.get(k)) for k in ("x", "y", "width", "height")}
    curves = {c.get("data-name"): np.array([[float(v) for v in p.split(",")] for p in c.get("points").split()])
              for c in root.iter(f"{SVG}polyline")}
    grid = {float(g.get("data-value")): float(g.get("y1")) for g in root.iter(f"{SVG}line") if g.get("class") == "grid"}
    return box, curves, grid


def series(steps, values):
    return np.asarray(steps), np.asarray(values, dtype=float)


def test_first_and_last_steps_land_on_the_left_and_right_edges():
    svg = line_plot_svg({"a": series([100, 150, 300], [2.0, 3.0, 4.0]), "b": series([200], [3.0])})
    box, curves, grid = parse(svg)
    a = curves["a"]
    assert a[0, 0] == pytest.approx(box["x"]) and a[-1, 0] == pytest.approx(box["x"] + box["width"])
    assert a[1, 0] == pytest.approx(box["x"] + box["width"] / 4, abs=0.05)  # 150: a quarter of 100..300
    assert curves["b"][0, 0] == pytest.approx(box["x"] + box["width"] / 2, abs=0.05)
    # linear y: each point lies on its value's grid line, or in proportion between two
    assert a[0, 1] == pytest.approx(grid[2.0], abs=0.05) and a[-1, 1] == pytest.approx(grid[4.0], abs=0.05)
    assert a[1, 1] == pytest.approx((grid[2.0] + grid[4.0]) / 2, abs=0.05)


def test_on_a_log_scale_ten_times_the_value_is_one_decade_higher():
    svg = line_plot_svg({"loss": series([0, 1, 2, 3], [1.0, 10.0, 0.01, 5.0])})
    box, curves, grid = parse(svg)
    points = curves["loss"]
    assert sorted(grid) == [0.01, 0.1, 1.0, 10.0]  # whole decades, bottom and top edges included
    decade = box["height"] / 3
    assert grid[0.01] == pytest.approx(box["y"] + box["height"]) and grid[10.0] == pytest.approx(box["y"])
    assert points[0, 1] - points[1, 1] == pytest.approx(decade, abs=0.1)  # 1 -> 10: one decade up
    assert points[0, 1] == pytest.approx(grid[1.0], abs=0.05) and points[2, 1] == pytest.approx(grid[0.01], abs=0.05)
    assert points[3, 1] == pytest.approx(grid[1.0] - np.log10(5) * decade, abs=0.05)
    assert "log scale" in svg


def test_the_scale_is_linear_within_a_decade_or_with_values_at_or_below_zero():
    assert "log scale" not in line_plot_svg({"a": series([0, 1], [1.0, 9.0])})
    assert "log scale" not in line_plot_svg({"a": series([0, 1], [0.0, 1000.0])})
    assert "log scale" in line_plot_svg({"a": series([0, 1], [0.5, 1000.0])})


def test_non_finite_values_are_left_out_and_nothing_finite_draws_nothing():
    _, curves, _ = parse(line_plot_svg({"a": series([0, 1, 2], [1.0, np.nan, np.inf])}))
    assert len(curves["a"]) == 1
    assert line_plot_svg({"a": series([0], [np.nan])}) == ""


def test_smoothing_is_debiased_and_downsampling_keeps_the_mean():
    np.testing.assert_allclose(smooth(np.full(50, 3.0), 0.9), 3.0)
    noisy = np.random.default_rng(0).normal(0, 1, 2000)
    assert smooth(noisy, 0.6).std() < 0.6 * noisy.std()
    steps, values = downsample(np.arange(1000), np.arange(1000.0), 100)
    assert len(steps) == 100 and values.mean() == pytest.approx(499.5) and steps[0] == 4.5


def test_loss_section_draws_the_total_and_each_term_but_not_the_learning_rate():
    steps = np.arange(1, 101)
    scalars = {"train/sds": series(steps, 1 / steps), "train/loss": series(steps, 1 / steps + 0.01),
               "train/orient": series(steps, np.full(100, 1e-3)), "train/lr": series(steps, np.full(100, 1e-3))}
    assert list(loss_series(scalars)) == ["total", "sds", "orient"]
    section = loss_section(scalars)
    plots = ET.fromstring(section).findall(f".//{SVG}svg")
    # one polyline per term, the total drawn last (on top); the legend lists it first
    curves = [[c.get("data-name") for c in p.iter(f"{SVG}polyline")] for p in plots]
    legend = [t.text.split()[0] for t in plots[0].iter(f"{SVG}text") if t.get("class") == "legend"]
    assert curves == [["orient", "sds", "total"], ["lr"]] and legend == ["total", "sds", "orient"]
    assert loss_section({}) == "" and loss_section({"train/lr": scalars["train/lr"]}) == ""
