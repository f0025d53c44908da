"""The run's scalars CSV: written by RunLog.scalars, read back with the last value of each step."""

import numpy as np

from dreamfusion.report.scalars import ScalarsCsv, read_scalars, scalars_path
from dreamfusion.training.run_log import RunLog


def log_steps(workspace, steps, scale):
    log = RunLog(workspace, tensorboard=False)
    for step in steps:
        log.scalars(step, {"train/loss": scale * step, "train/sds": scale * step / 2, "train/lr": 1e-3})
    return log


def test_a_resumed_run_rewrites_steps_and_the_last_value_wins(tmp_path):
    log_steps(tmp_path, range(1, 7), scale=1.0).close()  # killed after step 6, checkpoint at step 4
    log_steps(tmp_path, range(5, 9), scale=10.0).close()  # resumed: steps 5..8 trained again
    scalars = read_scalars(tmp_path)
    assert list(scalars) == ["train/loss", "train/sds", "train/lr"]
    steps, values = scalars["train/loss"]
    np.testing.assert_array_equal(steps, np.arange(1, 9))
    np.testing.assert_array_equal(values, [1, 2, 3, 4, 50, 60, 70, 80])
    np.testing.assert_array_equal(scalars["train/sds"][1], [0.5, 1, 1.5, 2, 25, 30, 35, 40])
    assert steps.dtype == np.int64 and values.dtype == np.float64


def test_values_come_back_exactly_and_sorted_by_step(tmp_path):
    csv = ScalarsCsv(scalars_path(tmp_path))
    for step, value in ((3, 0.1 + 0.2), (1, 1e-300), (2, float("nan")), (10, -7.25)):
        csv.append(step, {"train/loss": value})
    csv.close()
    steps, values = read_scalars(tmp_path)["train/loss"]
    np.testing.assert_array_equal(steps, [1, 2, 3, 10])
    assert values[0] == 1e-300 and np.isnan(values[1]) and values[2] == 0.1 + 0.2 and values[3] == -7.25
    assert scalars_path(tmp_path).read_text().splitlines()[0] == "step,tag,value"


def test_a_row_cut_by_a_kill_is_ignored_then_cut_off_before_the_next_append(tmp_path):
    log_steps(tmp_path, [1, 2], scale=1.0).close()
    path = scalars_path(tmp_path)
    with open(path, "a") as file:
        file.write("3,train/loss,3.14")  # the value of a row being written: "3.14159" when complete
    assert list(read_scalars(tmp_path)["train/loss"][0]) == [1, 2]
    log_steps(tmp_path, [3], scale=5.0).close()
    steps, values = read_scalars(tmp_path)["train/loss"]
    assert list(steps) == [1, 2, 3] and values[-1] == 15.0
    lines = path.read_text().splitlines()
    assert all(len(line.split(",")) == 3 for line in lines) and "3.14" not in path.read_text()


def test_each_step_is_on_disk_as_soon_as_it_is_logged(tmp_path):
    """The trainer writes index.html at the end of an epoch with the log still open."""
    log = log_steps(tmp_path, [1, 2, 3], scale=1.0)
    try:
        assert list(read_scalars(tmp_path)["train/loss"][0]) == [1, 2, 3]
    finally:
        log.close()


def test_no_scalars_no_file(tmp_path):
    RunLog(tmp_path, tensorboard=False).close()  # a test / six-views run logs no scalars
    assert not scalars_path(tmp_path).exists()
    assert read_scalars(tmp_path) == {}
