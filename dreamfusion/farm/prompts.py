"""What a batch runs: a prompt list read from a text, CSV or JSON-lines file.

    items = read_batch(Path("prompts.txt"), seeds=[0, 1])

* ``.txt``: one prompt a line; blank lines and ``#`` comments are skipped.
* ``.csv``: a header row; columns ``prompt`` (or ``text``), and optionally ``image`` (a reference
  ``_rgba.png``), ``seed``, ``name`` (the workspace's name) and ``options`` (extra command-line
  options for that prompt, shell-quoted, e.g. ``--iters 5000 --lambda_entropy 1e-4``).
* ``.jsonl``: one object a line with the same keys (``options`` a string or a list).

Each (prompt, seed) is one run with a workspace ``<farm>/<slug>``: the name (or the prompt) made
filesystem-safe, plus ``-s<seed>`` when the batch has several seeds. Relative image paths are taken
relative to the prompt file.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from dreamfusion.errors import UserError

SLUG_LENGTH = 60


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch."""

    slug: str
    prompt: str | None
    image: str | None = None
    seed: int | None = None
    options: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return self.prompt if self.prompt else f"image {Path(self.image).name}"


def slugify(text: str) -> str:
    """Lower-case letters, digits and single dashes: 'A hamburger!' -> 'a-hamburger'."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:SLUG_LENGTH].rstrip("-") or "run"


def read_batch(path: Path, seeds: list[int] | None = None) -> list[BatchItem]:
    """The runs of a prompt file (raises UserError with the file and line of a bad entry)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prompt file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read it as UTF-8 text ({error})") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        entries = _csv_entries(path, text)
    elif suffix in (".jsonl", ".ndjson"):
        entries = _jsonl_entries(path, text)
    else:
        entries = [(n, {"prompt": line.strip()}) for n, line in enumerate(text.splitlines(), 1)
                   if line.strip() and not line.strip().startswith("#")]
    if not entries:
        raise UserError(f"{path}: no prompts in it")
    seeds = list(seeds) if seeds else [None]
    items, taken = [], set()
    for line, entry in entries:
        for item in _expand(path, line, entry, seeds):
            slug, k = item.slug, 2
            while slug in taken:
                slug, k = f"{item.slug}-{k}", k + 1
            taken.add(slug)
            items.append(BatchItem(slug, item.prompt, item.image, item.seed, item.options))
    return items


def _expand(path: Path, line: int, entry: dict, seeds: list[int | None]) -> list[BatchItem]:
    where = f"{path}:{line}"
    unknown = set(entry) - {"prompt", "text", "image", "seed", "name", "options"}
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (prompt, image, seed, name, options)")
    prompt = entry.get("prompt") or entry.get("text") or None
    image = entry.get("image") or None
    if prompt is not None and not str(prompt).strip():
        prompt = None
    if prompt is None and image is None:
        raise UserError(f"{where}: an entry needs a prompt or an image")
    if image is not None:
        image = str(image) if Path(str(image)).is_absolute() else str((path.parent / str(image)).resolve())
    options = entry.get("options") or ()
    if isinstance(options, str):
        try:
            options = shlex.split(options)
        except ValueError as error:
            raise UserError(f"{where}: options: {error}") from None
    if not isinstance(options, (list, tuple)) or not all(isinstance(o, (str, int, float)) for o in options):
        raise UserError(f"{where}: options must be a string or a list of strings")
    options = tuple(str(o) for o in options)
    own_seed = entry.get("seed")
    if own_seed not in (None, ""):
        try:
            own_seeds = [int(own_seed)]
        except (TypeError, ValueError):
            raise UserError(f"{where}: seed must be an integer, got {own_seed!r}") from None
    else:
        own_seeds = seeds
    base = slugify(str(entry.get("name") or prompt or Path(image).stem.removesuffix("_rgba")))
    several = len(own_seeds) > 1
    return [BatchItem(f"{base}-s{seed}" if several else base, str(prompt) if prompt else None, image, seed, options)
            for seed in own_seeds]


def _csv_entries(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = csv.DictReader(text.splitlines())
    if rows.fieldnames is None or not ({"prompt", "text", "image"} & {f.strip() for f in rows.fieldnames}):
        raise UserError(f"{path}: a CSV prompt file needs a header with a 'prompt' (or 'text', 'image') column")
    return [(n, {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k is not None and v})
            for n, row in enumerate(rows, 2) if any((v or "").strip() for v in row.values() if isinstance(v, str))]


def _jsonl_entries(path: Path, text: str) -> list[tuple[int, dict]]:
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{n}: not JSON ({error.msg})") from None
        if not isinstance(entry, dict):
            raise UserError(f"{path}:{n}: each line must be a JSON object")
        entries.append((n, entry))
    return entries
