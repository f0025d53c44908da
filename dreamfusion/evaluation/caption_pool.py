"""The fixed caption pool R-precision ranks a prompt against (``captions.txt`` in this package).

DreamFusion measures R-precision by asking CLIP to find a render's caption among many. Here the
others are a fixed, shipped pool of object-centric captions (never the batch's own prompts, so a
score does not depend on what else was run). A prompt that is itself in the pool is counted once:

    candidates = ranking_candidates("a hamburger")   # ["a hamburger", <the pool minus it>]
    candidates[0] is the true caption; pool_fingerprint() names the pool in reports.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from importlib import resources

POOL_FILE = "captions.txt"


def _pool_text() -> str:
    return resources.files(__package__).joinpath(POOL_FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def caption_pool() -> tuple[str, ...]:
    """The captions, in file order (comments and blank lines skipped)."""
    lines = (line.strip() for line in _pool_text().splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def pool_fingerprint() -> str:
    """First 12 hex digits of the sha256 of the captions: which pool a report was ranked against."""
    return hashlib.sha256("\n".join(caption_pool()).encode()).hexdigest()[:12]


def caption_key(text: str) -> str:
    """What makes two captions the same one: case, spacing and a final full stop do not count."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".").strip().lower()


def ranking_candidates(prompt: str, pool: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """``[prompt, *distractors]``: the pool without any caption equal to ``prompt`` (see
    :func:`caption_key`), so a prompt from the pool competes only with the others."""
    pool = caption_pool() if pool is None else pool
    key = caption_key(prompt)
    return [prompt, *(c for c in pool if caption_key(c) != key)]
