"""Checkpoint files: naming, atomic writes, keep-last-N, ``--ckpt`` resolution, RNG states.

Layout under ``<workspace>/checkpoints`` (stable-dreamfusion's names)::

    df_ep0003.pth   full state at the end of epoch 3 (or at an interrupt inside epoch 3);
                    only the newest ``max_keep_ckpt`` (2) are kept
    df.pth          "best": EMA weights after the latest validation, no optimizer state

``--ckpt`` semantics (:meth:`CheckpointManager.resolve`):

    latest        newest ``df_ep*.pth``, full resume; a fresh start when there is none
    latest_model  newest ``df_ep*.pth``, weights only (optimizer, step and RNG start fresh)
    best          ``df.pth``, weights only; an error when missing
    scratch       ignore existing files (they are moved aside, never overwritten)
    <path>        that file, full resume if it holds a full state

Safety rules:

* Every write goes to a temporary file in the same folder, is flushed and fsync'ed, then
  ``os.replace``'d over the target: a kill at any moment leaves the old or the new file, never half
  of one.
* A checkpoint that cannot be read raises :class:`UserError` with one line naming the file; it is
  never skipped or replaced silently. To go on, the user deletes or renames it, picks another with
  ``--ckpt <path>``, or starts over with ``--ckpt scratch``.
* Starting from scratch, or resuming from a checkpoint older than other files in the folder, first
  moves the files that would be overwritten or pruned into ``checkpoints/set_aside_<time>/`` and
  says so in the log.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dreamfusion.errors import UserError

FORMAT = "dreamfusion-checkpoint-1"
_EPOCH_FILE = re.compile(r"^(?P<name>.+)_ep(?P<epoch>\d{4,})\.pth$")


# ------------------------------------------------------------------------------------ RNG states


def capture_rng_state() -> dict[str, Any]:
    """States of every global random generator a run draws from (python, numpy, torch, CUDA)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (the CUDA part only when this machine has the devices)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) <= torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ---------------------------------------------------------------------------------- atomic save


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (temp file in the same folder + fsync + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        with open(tmp, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not supported everywhere (e.g. Windows), hence best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint; any unreadable or foreign file raises :class:`UserError` (one line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # noqa: BLE001 - any failure to unpickle means the file is unusable
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"checkpoint {path} is unreadable ({reason[:120]}); it was left in place: delete or rename "
            f"it, pass another file with --ckpt <path>, or start over with --ckpt scratch") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} holds no model weights; it is not a dreamfusion checkpoint")
    return state


# ------------------------------------------------------------------------------------- manager


@dataclass
class ResolvedCheckpoint:
    """What ``--ckpt`` points at: a file (or None for a fresh start) and whether to load only weights."""

    path: Path | None
    model_only: bool


class CheckpointManager:
    """Names, writes, prunes and finds the checkpoints of one workspace.

    Args:
        workspace: the run folder; checkpoints live in ``<workspace>/checkpoints``.
        name: file prefix (``df``).
        keep: number of full (``_epNNNN``) checkpoints kept.
        log: callable that receives one-line messages (set-aside notices).
    """

    def __init__(self, workspace: str | Path, name: str = "df", keep: int = 2,
                 log: Callable[[str], None] = print):
        self.folder = Path(workspace) / "checkpoints"
        self.name = name
        self.keep = max(1, int(keep))
        self.log = log

    # -- names
    def epoch_path(self, epoch: int) -> Path:
        return self.folder / f"{self.name}_ep{epoch:04d}.pth"

    @property
    def best_path(self) -> Path:
        return self.folder / f"{self.name}.pth"

    def full_checkpoints(self) -> list[tuple[int, Path]]:
        """``(epoch, path)`` of the ``<name>_epNNNN.pth`` files, oldest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for entry in self.folder.iterdir():
            match = _EPOCH_FILE.match(entry.name)
            if match and match["name"] == self.name and entry.is_file():
                found.append((int(match["epoch"]), entry))
        return sorted(found)

    # -- resolution of --ckpt
    def resolve(self, ckpt: str) -> ResolvedCheckpoint:
        if ckpt == "scratch":
            return ResolvedCheckpoint(None, False)
        if ckpt in ("latest", "latest_model"):
            full = self.full_checkpoints()
            if not full:
                if ckpt == "latest" and self.best_path.is_file():
                    # Only df.pth (e.g. the folder was pruned by hand): its weights still beat nothing.
                    return ResolvedCheckpoint(self.best_path, True)
                return ResolvedCheckpoint(None, False)
            return ResolvedCheckpoint(full[-1][1], ckpt == "latest_model")
        if ckpt == "best":
            if not self.best_path.is_file():
                raise UserError(f"--ckpt best: {self.best_path} does not exist (no validation has run yet)")
            return ResolvedCheckpoint(self.best_path, True)
        path = Path(ckpt)
        if not path.is_file():
            raise UserError(f"--ckpt: checkpoint not found: {ckpt}")
        return ResolvedCheckpoint(path, False)

    # -- writing
    def save_full(self, state: dict, epoch: int) -> Path:
        """Write ``<name>_ep{epoch}.pth`` and prune to the newest ``keep`` full checkpoints."""
        path = self.epoch_path(epoch)
        atomic_save({"format": FORMAT, **state}, path)
        for _, old in self.full_checkpoints()[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict) -> Path:
        atomic_save({"format": FORMAT, **state}, self.best_path)
        return self.best_path

    # -- housekeeping
    def remove_stale_temporaries(self) -> None:
        """Delete temporary files left by a write that was killed (``.<name>.tmp-<pid>``)."""
        if self.folder.is_dir():
            for entry in self.folder.glob(".*.pth.tmp-*"):
                entry.unlink(missing_ok=True)

    def set_aside(self, newer_than_epoch: int | None) -> Path | None:
        """Move checkpoint files this run could overwrite or prune into ``set_aside_<time>/``.

        ``newer_than_epoch=None`` (a fresh start) moves every checkpoint file including ``df.pth``;
        an integer moves only full checkpoints of later epochs (another timeline's future).
        Returns the folder, or None when nothing had to move.
        """
        victims = [p for e, p in self.full_checkpoints() if newer_than_epoch is None or e > newer_than_epoch]
        if newer_than_epoch is None and self.best_path.is_file():
            victims.append(self.best_path)
        if not victims:
            return None
        target = self.folder / time.strftime("set_aside_%Y%m%d-%H%M%S")
        suffix = 1
        while target.exists():
            target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
            suffix += 1
        target.mkdir(parents=True)
        for path in victims:
            shutil.move(str(path), target / path.name)
        self.log(f"moved {len(victims)} existing checkpoint file(s) to {target} so they are not overwritten")
        return target
