"""Where the time of a training step goes: named wall-clock sections, off unless a profile is on.

The trainer, renderer, field and guidance mark their parts with :func:`section`; while no
:class:`StepProfile` is active a section costs one global read. ``benchmarks/training_step.py
--profile`` turns one on around a few steps and prints the table::

    with StepProfile(device) as prof:
        for step in range(100, 110):
            trainer.optimize(step)
    print(prof.table(steps=10))

Sections nest: ``render/field`` is the field's share of the render. The field's backward is marked
inside its own autograd functions (the CPU hash grid and chunked MLP), so ``backward/field`` exists
where those run; on other paths the field's backward stays inside ``backward``. On CUDA each
boundary synchronises the device, so the figures are the kernels' time, not launch time (which
slows the step down a little while profiling).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

_active: "StepProfile | None" = None


@contextmanager
def section(name: str):
    """Time the enclosed block under ``name`` (nested under any open section) while profiling."""
    profile = _active
    if profile is None:
        yield
        return
    profile._enter(name)
    try:
        yield
    finally:
        profile._exit()


class StepProfile:
    """Accumulated wall time per section path (``"render/field"``) while active."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[tuple[str, float]] = []
        self._started = 0.0
        self.wall = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _enter(self, name: str) -> None:
        self._sync()
        path = f"{self._stack[-1][0]}/{name}" if self._stack else name
        self._stack.append((path, time.perf_counter()))

    def _exit(self) -> None:
        self._sync()
        path, start = self._stack.pop()
        self.seconds[path] += time.perf_counter() - start
        self.calls[path] += 1

    def __enter__(self) -> "StepProfile":
        global _active
        if _active is not None:
            raise RuntimeError("a StepProfile is already active")
        self._sync()
        self._started = time.perf_counter()
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        self._sync()
        self.wall += time.perf_counter() - self._started
        _active = None

    def rows(self, steps: int) -> list[tuple[str, float, float]]:
        """``(path, ms per step, share of the step wall)`` in tree order, plus an ``other`` row per
        parent for its untimed remainder and a top-level ``other`` (data, logging, loss bookkeeping)."""
        children: dict[str, list[str]] = defaultdict(list)
        for path in self.seconds:
            parent = path.rpartition("/")[0]
            children[parent].append(path)
        out: list[tuple[str, float, float]] = []

        def walk(parent: str) -> None:
            # largest first, so the table reads as a ranked breakdown at every level
            for path in sorted(children.get(parent, []), key=lambda p: -self.seconds[p]):
                out.append((path, 1e3 * self.seconds[path] / steps, self.seconds[path] / self.wall))
                if path in children:
                    walk(path)
                    rest = self.seconds[path] - sum(self.seconds[c] for c in children[path])
                    out.append((f"{path}/other", 1e3 * rest / steps, rest / self.wall))

        walk("")
        rest = self.wall - sum(self.seconds[p] for p in children.get("", []))
        out.append(("other", 1e3 * rest / steps, rest / self.wall))
        return out

    def table(self, steps: int) -> str:
        """A markdown table: section (one dot per level of nesting), ms per step, share of the step."""
        lines = ["| section | ms / step | share |", "|---|---|---|"]
        for path, ms, share in self.rows(steps):
            depth = path.count("/")
            label = "· " * depth + path.rpartition("/")[2]
            lines.append(f"| {label} | {ms:.1f} | {100 * share:.1f} % |")
        lines.append(f"| **step** | **{1e3 * self.wall / steps:.1f}** | 100 % |")
        return "\n".join(lines)
