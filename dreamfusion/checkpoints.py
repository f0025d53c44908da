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

import importlib
import io
import os
import pickle
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dreamfusion.errors import UserError
from dreamfusion.pause_points import pause_point

FORMAT = "dreamfusion-checkpoint-1"
_EPOCH_FILE = re.compile(r"^(?P<name>.+)_ep(?P<epoch>\d{4,})\.pth$")


# ------------------------------------------------------------------------------------ RNG states


def capture_rng_state() -> dict[str, Any]:
    """States of every global random generator a run draws from (python, numpy, torch, CUDA), as
    tensors and plain numbers only, so a checkpoint loads with ``torch.load(weights_only=True)``."""
    state = _tensor_rng({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()})
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (the CUDA part only when this machine has the devices).
    Also takes the tuples older checkpoints stored (``random.getstate()``, ``np.random.get_state()``)."""
    python, numpy_state = _plain_rng(state)
    random.setstate(python)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) <= torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _plain_rng(state: dict[str, Any]) -> tuple[tuple, tuple]:
    python, numpy_state = state["python"], state["numpy"]
    if isinstance(python, dict):
        python = (python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"])
    if isinstance(numpy_state, dict):
        keys = np.asarray(numpy_state["keys"].cpu().numpy(), dtype=np.uint32)
        numpy_state = ("MT19937", keys, numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"])
    return python, numpy_state


def _tensor_rng(state: dict[str, Any]) -> dict[str, Any]:
    """An RNG state of either form, in the tensor form :func:`capture_rng_state` writes."""
    (version, words, gauss), (_, keys, pos, has_gauss, cached) = _plain_rng(state)
    converted = dict(state)
    converted["python"] = {"version": int(version), "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss}
    converted["numpy"] = {"keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    return converted


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
        pause_point("checkpoint")
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


# What checkpoints written before the tensor-only RNG state pickled besides tensors: numpy's RNG
# state array. Only these globals are allowed when such a file is converted; anything else is refused.
_LEGACY_GLOBALS = ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
                   "numpy.dtype", "numpy.dtypes.UInt32DType")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                    log: Callable[[str], None] | None = None, rewrite: bool = True) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: tensors and plain values only, so a
    file cannot run code. A checkpoint of an earlier version (numpy arrays in its RNG state) is
    converted once (rewritten in place when its folder is writable and ``rewrite``; ``log`` gets a
    line saying so).
    An unreadable, foreign or code-carrying file raises :class:`UserError` (one line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        state = _load_legacy(path, map_location, log, error, rewrite)
    except Exception as error:  # noqa: BLE001 - any failure to unpickle means the file is unusable
        raise _unreadable(path, error) from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} holds no model weights; it is not a dreamfusion checkpoint")
    return state


def _unreadable(path: Path, error: BaseException) -> UserError:
    text = str(error)
    if "WeightsUnpickler error:" in text:  # torch's long advice text; the cause follows this marker
        text = text.split("WeightsUnpickler error:", 1)[1]
        text = "not a torch checkpoint: " + (text.strip().splitlines() or ["?"])[0]
    reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return UserError(f"checkpoint {path} is unreadable ({reason[:120]}); it was left in place: delete or rename "
                     f"it, pass another file with --ckpt <path>, or start over with --ckpt scratch")


def _load_legacy(path: Path, map_location, log: Callable[[str], None] | None, first: Exception,
                 rewrite: bool = True) -> dict:
    """The one-time conversion of an older checkpoint (see :func:`load_checkpoint`); ``first`` is
    the error of the plain load, reported when the file is not a checkpoint at all."""
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - not a torch.save zip file
        raise _unreadable(path, first) from None
    foreign = sorted(needed - set(_LEGACY_GLOBALS))
    if foreign:
        raise UserError(f"checkpoint {path} refused: loading it would run code it names ({', '.join(foreign[:3])}); "
                        f"dreamfusion loads checkpoints with weights_only=True (tensors and plain values only)")
    allowed = [_resolve_global(name) for name in _LEGACY_GLOBALS]  # dtype classes are not listed as needed
    try:
        with torch.serialization.safe_globals([g for g in allowed if g is not None]):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise _unreadable(path, error) from None
    if isinstance(state, dict) and isinstance(state.get("rng"), dict):
        state["rng"] = _tensor_rng(state["rng"])
    note = (log or (lambda line: print(line, file=sys.stderr)))
    if rewrite and os.access(path.parent, os.W_OK):
        atomic_save(state, path)
        note(f"converted {path} to the tensor-only checkpoint format (once; it loads with weights_only=True)")
    else:
        note(f"converted {path} in memory to the tensor-only checkpoint format (not rewritten)")
    return state


def _resolve_global(name: str):
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


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
