"""A refused run leaves its workspace exactly as it found it.

Everything that can be checked is checked before the workspace is touched, but some input can only
be found bad while a run starts (an image that does not decode, a checkpoint that does not fit the
model, missing weights). The CLI therefore runs each command inside a :class:`WorkspaceGuard`: until
the run reports that it really started (:func:`mark_started`: training finished its first step, a
render wrote its first frame, an export began writing), any exception restores the workspace —
files it created are deleted, the text files it appended to or replaced (logs, configs, pages) get
their old bytes back, a folder it created is removed.

Steps that move or delete existing files (setting old checkpoints aside, removing a killed write's
temporary files) run only after the start, so there is nothing else to undo.

    with WorkspaceGuard(path) as guard:
        ...               # an exception in here, before mark_started(), restores path
"""

from __future__ import annotations

import os
import shutil
from contextvars import ContextVar
from pathlib import Path

# Text files a starting run may append to or replace; other existing files it must not modify.
_RESTORABLE_SUFFIXES = (".txt", ".yaml", ".yml", ".html", ".json", ".csv")
_RESTORABLE_MAX_BYTES = 8 << 20

_current: ContextVar[WorkspaceGuard | None] = ContextVar("dreamfusion_workspace_guard", default=None)


def mark_started() -> None:
    """Tell the guard of the current command (if any) that the run really started: from now on its
    outputs are the run's, kept whatever happens next."""
    guard = _current.get()
    if guard is not None:
        guard.started = True


class WorkspaceGuard:
    """Context manager over one workspace folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.started = False
        self.existed = self.path.exists()
        # the outermost folder a failed run would have created (parents included)
        self._created_root = self.path
        while not self._created_root.parent.exists() and self._created_root.parent != self._created_root:
            self._created_root = self._created_root.parent
        self._files: dict[str, bytes | None] = {}  # relative path -> saved bytes (None: not restorable)
        self._dirs: set[str] = set()
        if self.existed and self.path.is_dir():
            for root, dirs, files in os.walk(self.path):
                rel_root = Path(root).relative_to(self.path)
                self._dirs.update(str(rel_root / d) for d in dirs)
                for name in files:
                    full = Path(root) / name
                    keep = name.endswith(_RESTORABLE_SUFFIXES) and full.stat().st_size <= _RESTORABLE_MAX_BYTES
                    self._files[str(rel_root / name)] = full.read_bytes() if keep else None

    def __enter__(self) -> WorkspaceGuard:
        self._token = _current.set(self)
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        _current.reset(self._token)
        if kind is not None and not self.started:
            self.restore()
        return False

    def restore(self) -> None:
        """Put the folder back as it was when the guard was made."""
        if not self.existed:
            shutil.rmtree(self._created_root, ignore_errors=True)
            return
        if not self.path.is_dir():
            return
        for root, dirs, files in os.walk(self.path, topdown=False):
            rel_root = Path(root).relative_to(self.path)
            for name in files:
                rel = str(rel_root / name)
                if rel not in self._files:
                    (Path(root) / name).unlink(missing_ok=True)
            for name in dirs:
                rel = str(rel_root / name)
                if rel not in self._dirs:
                    shutil.rmtree(Path(root) / name, ignore_errors=True)
        for rel, data in self._files.items():
            target = self.path / rel
            if data is not None and (not target.is_file() or target.read_bytes() != data):
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary = target.with_name(target.name + ".restore-tmp")
                temporary.write_bytes(data)
                os.replace(temporary, target)
