"""What a tool watching a run (the browser viewer) may do to the training loop, and when.

The Trainer calls its ``observer`` (None by default) on the training thread only, so an observer
never races the optimiser:

    between_steps(trainer, stop)      before every step: may block (pause), run queued actions
                                      (save a checkpoint, export the mesh), copy the weights
    after_step(trainer, step, terms)  after every step: the step's losses, cameras and renders
    preview_sink(trainer, step)       a callable for this step's guidance preview, or None

``trainer.last_batch`` holds the latest step's :class:`StepBatch` while an observer is attached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from torch import Tensor

from dreamfusion.cameras import CameraBatch


@dataclass
class StepBatch:
    """One training step's cameras and what was rendered from them (detached)."""

    cameras: CameraBatch
    rgb: Tensor          # [B, H, W, 3] in [0, 1]
    opacity: Tensor      # [B, H, W]
    known_view: bool     # a reference-view step (image runs), not a guidance one


class TrainingObserver(Protocol):
    def between_steps(self, trainer, stop) -> None: ...

    def after_step(self, trainer, step: int, terms: dict[str, float]) -> None: ...

    def preview_sink(self, trainer, step: int) -> Callable | None: ...
