"""The run's scalars as a plain CSV, ``<workspace>/run/df/scalars.csv``: what the loss plot of the
run page reads (TensorBoard's event files, beside it, need TensorBoard to read).

Long format, one row per value, since the set of loss terms varies from run to run::

    step,tag,value
    1,train/loss,0.8133
    1,train/sds,0.8121
    1,train/lr,0.001

    csv = ScalarsCsv(scalars_path(workspace))
    csv.append(step, {"train/loss": 0.81})     # one write per step, flushed
    read_scalars(workspace)["train/loss"]      # (steps Int64[N], values Float64[N]), sorted by step

A run that is killed and resumed trains again the steps after its checkpoint and appends them
again: the reader keeps the last value written for each (step, tag). A kill can cut the last row;
the reader ignores a last line without its newline, and the writer cuts it off before appending.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

SCALARS_NAME = "scalars.csv"
HEADER = ("step", "tag", "value")


def scalars_path(workspace: str | os.PathLike, name: str = "df") -> Path:
    """Where run ``name`` of ``workspace`` keeps its scalars (next to its TensorBoard events)."""
    return Path(workspace) / "run" / name / SCALARS_NAME


class ScalarsCsv:
    """Appends ``step,tag,value`` rows to one CSV file, opened on the first :meth:`append`.

    Each step's rows go out in one write and are flushed at once (a few microseconds per training
    step), so a page written at the end of an epoch sees every step of it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def append(self, step: int, values: dict[str, float]) -> None:
        if self._file is None:
            self._file = self._open()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows((int(step), tag, repr(float(value))) for tag, value in values.items())
        self._file.write(buffer.getvalue())
        self._file.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_partial_last_line(self.path)
        handle = open(self.path, "a", encoding="utf-8", newline="")
        if handle.tell() == 0:
            handle.write(",".join(HEADER) + "\n")
        return handle


def _cut_partial_last_line(path: Path) -> None:
    """Truncate a file after its last newline: a row a kill cut in half would otherwise be glued
    to the first row appended after it."""
    try:
        handle = open(path, "rb+")
    except FileNotFoundError:
        return
    with handle:
        size = handle.seek(0, os.SEEK_END)
        end, chunk = size, 4096
        while end > 0:
            start = max(0, end - chunk)
            handle.seek(start)
            newline = handle.read(end - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            handle.truncate(keep)


def read_scalars(workspace: str | os.PathLike, name: str = "df") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every tag of run ``name`` -> ``(steps Int64[N], values Float64[N])`` sorted by step, with
    the last value written for each step. ``{}`` when the run wrote no scalars yet."""
    try:
        data = scalars_path(workspace, name).read_bytes()
    except FileNotFoundError:
        return {}
    complete = data[: data.rfind(b"\n") + 1]  # a row still being written (or cut by a kill) is left out
    last: dict[str, dict[int, float]] = {}
    for row in csv.reader(io.StringIO(complete.decode("utf-8", errors="replace"))):
        if len(row) != 3:
            continue
        try:
            step, value = int(row[0]), float(row[2])
        except ValueError:  # the header (or a line garbled some other way)
            continue
        last.setdefault(row[1], {})[step] = value  # a later row (a resumed run's) replaces an earlier one
    result = {}
    for tag, by_step in last.items():
        steps = np.fromiter(by_step.keys(), dtype=np.int64, count=len(by_step))
        values = np.fromiter(by_step.values(), dtype=np.float64, count=len(by_step))
        order = np.argsort(steps, kind="stable")
        result[tag] = (steps[order], values[order])
    return result
