"""The run's text log (``<workspace>/log_df.txt``), TensorBoard writer (``<workspace>/run/df``) and
scalars CSV (``<workspace>/run/df/scalars.csv``, read by the run page's loss plot).

    log = RunLog(workspace, name="df", tensorboard=True)
    log.line("epoch 3 done")                 # appended to log_df.txt (and echoed when echo=True)
    log.scalars(step, {"train/loss": 0.1})   # scalars.csv (always) and TensorBoard
    log.image(step, "validation/rgb", img)   # [H, W, 3] in [0, 1]
    log.close()
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from torch import Tensor

from dreamfusion.report.scalars import ScalarsCsv, scalars_path


class RunLog:
    def __init__(self, workspace: str | Path, name: str = "df", *, tensorboard: bool = True, echo: bool = False):
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path = self.workspace / f"log_{name}.txt"
        self._file = open(self.path, "a", encoding="utf-8")
        self.echo = echo
        self._scalars = ScalarsCsv(scalars_path(self.workspace, name))  # the file opens on the first scalars()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the run goes on, logs stay text only
                self.line("tensorboard is not installed; TensorBoard logs are off")
            else:
                self._writer = SummaryWriter(str(self.workspace / "run" / name))

    def line(self, message: str, echo: bool = True) -> None:
        """Append one line to the log file; also print it to stderr when echoing is on."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._file.write(f"[{stamp}] {message}\n")
        self._file.flush()
        if self.echo and echo:
            print(message, file=sys.stderr)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._scalars.append(step, values)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, float(value), step)

    def image(self, step: int, tag: str, image: Tensor | np.ndarray) -> None:
        if self._writer is not None:
            if isinstance(image, Tensor):
                image = image.detach().float().cpu().numpy()
            image = np.clip(image, 0.0, 1.0)
            self._writer.add_image(tag, image, step, dataformats="HWC" if image.ndim == 3 else "HW")

    def flush(self) -> None:
        self._file.flush()
        self._scalars.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self._scalars.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self._file.closed:
            self._file.close()
