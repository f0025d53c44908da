"""The viewer's link to a run: what the training thread reports, and what the viewer asks of it.

:class:`TrainingLink` is the Trainer's observer (:mod:`dreamfusion.training.observer`). Everything
that touches the trained model happens on the training thread, between steps: pausing, the actions
the browser queues (save a checkpoint, export the mesh), and copying the weights into the viewer's
own copy of the scene, which the render threads draw from without ever blocking an optimiser step.
For a finished workspace (``--test --gui``, ``dreamfusion view``) there is no training thread: the
viewer renders the loaded scene itself and runs actions on a worker thread.
"""

from __future__ import annotations

import contextlib
import copy
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from dreamfusion.cameras import VIEW_NAMES


@dataclass
class LossHistory:
    """Per-step losses: ``steps`` and one list per term (NaN where a step lacked the term)."""

    steps: list[int] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.terms.setdefault(name, [math.nan] * len(self.steps))
        self.steps.append(step)
        for name, column in self.terms.items():
            column.append(float(values.get(name, math.nan)))

    def arrays(self, max_points: int = 400) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Steps and terms, averaged over equal bins of consecutive steps when there are more
        than ``max_points`` (a plot of thousands of noisy SDS losses is unreadable)."""
        steps = np.asarray(self.steps, dtype=np.float64)
        terms = {k: np.asarray(v, dtype=np.float64) for k, v in self.terms.items()}
        if len(steps) <= max_points:
            return steps, terms
        edges = np.linspace(0, len(steps), max_points + 1).astype(int)

        def binned(values: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore"):
                return np.array([np.nanmean(values[a:b]) if np.isfinite(values[a:b]).any() else np.nan
                                 for a, b in zip(edges[:-1], edges[1:])])

        return binned(steps), {k: binned(v) for k, v in terms.items()}


@dataclass
class TrainingFrame:
    """One training camera as the viewer draws it: OpenGL c2w [4, 4], fovy (degrees), aspect, and
    the image rendered from it (uint8 [H, W, 3])."""

    c2w: np.ndarray
    fovy: float
    aspect: float
    image: np.ndarray


@dataclass
class GuidanceShot:
    """The latest guidance preview: the render | noisy | denoised strip (uint8), the prompt the
    prior was given, the timestep and the step."""

    strip: np.ndarray
    prompt: str
    timestep: int
    step: int


class TrainingLink:
    """Shared state between one run and its viewer. Thread-safe; see the module docstring.

    Args:
        render_scene: the scene the viewer draws: the trainer's own scene for a finished
            workspace, or a copy of it for a training run (kept in step by :meth:`between_steps`).
        iters: the run's total steps (0 for a finished workspace).
        text: the prompt, for the guidance panel's view prompts.
    """

    FRUSTA = 12              # training cameras kept for display
    PREVIEW_EVERY_S = 2.0    # guidance previews while a client is connected
    FRUSTA_EVERY_S = 3.0     # the frusta are redrawn with their images: a texture upload each
    HOLD_S = 1.0             # longest wait of a step for a camera-driven frame

    def __init__(self, render_scene, *, iters: int = 0, text: str | None = None, training: bool = False):
        self.render_scene = render_scene
        self.render_lock = threading.Lock()   # held while a frame is drawn from render_scene
        # Training copies its weights into the staging scene, and a frame about to be drawn swaps it
        # in: neither thread ever waits for the other's long work (a frame, a step).
        self._staging = viewer_copy(render_scene) if training else None
        self._staging_lock = threading.Lock()
        self.latest_version = 0                # the newest weights copied (see weights_version)
        self.iters = iters
        self.text = text
        self.training = training               # a training thread is attached and not finished
        self.step = 0
        self.weights_version = 0               # the weights render_scene holds
        self.paused = threading.Event()
        self.history = LossHistory()
        self.frusta: list[TrainingFrame] = []
        self.frusta_version = 0
        self.guidance: GuidanceShot | None = None
        self.clients = 0
        self.it_per_s = 0.0
        self.status = "training" if training else "loaded"
        self._lock = threading.Lock()
        self._actions: queue.Queue = queue.Queue()
        self._sync_wanted = threading.Event()
        self._stop_wanted = False
        self._trainer = None                    # for actions when no training thread runs them
        self._holds = 0                         # frames the camera asked for, being drawn now
        self._last_step_time: float | None = None
        self._last_preview = 0.0
        self._last_frusta = 0.0
        self.changed = threading.Condition()   # notified when the step, weights or status change

    # ----------------------------------------------------------------- asked by the viewer
    def request_sync(self) -> None:
        """Ask the training thread to copy its weights into ``render_scene`` at the next step."""
        self._sync_wanted.set()

    def submit(self, action: Callable[[object], object], done: Callable[[object, BaseException | None], None]) -> None:
        """Run ``action(trainer)`` on the training thread between steps (or now, on a worker, when
        no training thread is attached); ``done(result, error)`` is called afterwards."""
        self._actions.put((action, done))
        if not self.training:
            threading.Thread(target=self._run_actions, args=(None,), daemon=True).start()

    def attach_trainer(self, trainer) -> None:
        """For a finished workspace: actions run against this trainer on worker threads."""
        self._trainer = trainer

    # ------------------------------------------------------ the TrainingObserver interface
    @contextlib.contextmanager
    def hold_training(self):
        """While a frame the browser's camera asked for is drawn, the next step waits for it (at
        most ``HOLD_S``): on a small machine the two would otherwise share the cores and the frame
        would come twice as late."""
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1

    def request_stop(self) -> None:
        """Stop training at the next step boundary, as Ctrl-C does (a checkpoint is saved)."""
        self._stop_wanted = True
        self.paused.clear()

    def between_steps(self, trainer, stop) -> None:
        if self._stop_wanted:
            stop.requested = True
            return
        self._run_actions(trainer)
        self._sync(trainer)
        deadline = time.perf_counter() + self.HOLD_S
        while self._holds > 0 and time.perf_counter() < deadline:
            time.sleep(0.002)
        if self.paused.is_set():
            self._set_status("paused")
            self._last_step_time = None
            self.sync_now(trainer)  # the viewer shows exactly the paused weights
            while self.paused.is_set() and not stop.requested and not self._stop_wanted:
                self._run_actions(trainer)
                self._sync(trainer)
                time.sleep(0.02)
            self._set_status("training")

    def after_step(self, trainer, step: int, terms: dict[str, float]) -> None:
        now = time.perf_counter()
        if self._last_step_time is not None:
            rate = 1.0 / max(now - self._last_step_time, 1e-6)
            self.it_per_s = rate if self.it_per_s == 0 else 0.9 * self.it_per_s + 0.1 * rate
        self._last_step_time = now
        with self._lock:
            self.step = step
            self.history.add(step, {("total" if k == "loss" else k): v for k, v in terms.items()})
        batch = trainer.last_batch
        if batch is not None and self.clients > 0 and now - self._last_frusta >= self.FRUSTA_EVERY_S:
            self._last_frusta = now
            self._add_frusta(batch)
        self._notify()

    def preview_sink(self, trainer, step: int):
        now = time.perf_counter()
        if self.clients == 0 or now - self._last_preview < self.PREVIEW_EVERY_S or trainer.last_batch is None:
            return None
        self._last_preview = now
        prompt = self._prompt(trainer.last_batch.cameras)

        def receive(preview) -> None:
            if preview is None:  # this prior cannot decode its latents
                return
            shot = GuidanceShot(preview.strip(), prompt, int(preview.t.reshape(-1)[0]), step)
            with self._lock:
                self.guidance = shot
            self._notify()

        return receive

    def _prompt(self, cameras) -> str:
        """What the prior was told about the first camera of a step: the view prompt of a text
        prior, or the camera relative to the reference for an image-only run."""
        if self.text:
            return f"{self.text}, {VIEW_NAMES[int(cameras.direction[0])]} view"
        return (f"reference image, camera at Δpolar {float(cameras.delta_polar[0]):+.0f}°, "
                f"Δazimuth {float(cameras.delta_azimuth[0]):+.0f}°")

    # ---------------------------------------------------------------------- internals
    def finished(self, status: str = "finished") -> None:
        """The training thread is gone: actions now run on workers, the status says why."""
        self.training = False
        self._set_status(status)
        self._run_actions(self._trainer)

    def _run_actions(self, trainer) -> None:
        trainer = trainer if trainer is not None else self._trainer
        while True:
            try:
                action, done = self._actions.get_nowait()
            except queue.Empty:
                return
            try:
                result = action(trainer)
            except BaseException as error:  # noqa: BLE001 - reported to the browser, training goes on
                done(None, error)
            else:
                done(result, None)
            self._notify()

    def _sync(self, trainer) -> None:
        """Copy the weights when the viewer asked for them."""
        if self._sync_wanted.is_set():
            self.sync_now(trainer)

    def sync_now(self, trainer) -> None:
        """Copy the weights into the staging scene now (the next frame shows them)."""
        if self._staging is None:
            return  # the viewer draws the trainer's own scene
        with torch.no_grad(), self._staging_lock:
            source = trainer.scene.state_dict()
            for name, tensor in self._staging.state_dict().items():
                tensor.copy_(source[name])
            self.latest_version += 1
        self._sync_wanted.clear()
        self._notify()

    @contextlib.contextmanager
    def scene_for_frame(self):
        """``with link.scene_for_frame() as (scene, version):`` draw a frame from the newest weights."""
        with self.render_lock:
            with self._staging_lock:
                if self._staging is not None and self.latest_version != self.weights_version:
                    self.render_scene, self._staging = self._staging, self.render_scene
                    self.weights_version = self.latest_version
            yield self.render_scene, self.weights_version

    def _add_frusta(self, batch) -> None:
        cams = batch.cameras
        rgb = (batch.rgb.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        c2w = cams.c2w.detach().double().cpu().numpy()
        aspect = cams.width / cams.height
        with self._lock:
            for i in range(c2w.shape[0]):
                self.frusta.append(TrainingFrame(c2w[i], float(cams.fovy[i]), aspect, rgb[i]))
            del self.frusta[:-self.FRUSTA]
            self.frusta_version += 1

    def _set_status(self, status: str) -> None:
        self.status = status
        self._notify()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def snapshot(self) -> dict:
        """A consistent copy of what the panels show."""
        with self._lock:
            return {"step": self.step, "iters": self.iters, "status": self.status, "it_per_s": self.it_per_s,
                    "history": self.history.arrays(), "frusta": list(self.frusta),
                    "frusta_version": self.frusta_version, "guidance": self.guidance}


def viewer_copy(scene):
    """The viewer's own copy of a training scene (same device), in eval mode, no gradients."""
    clone = copy.deepcopy(scene)
    clone.eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone
