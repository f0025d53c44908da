"""Finding and loading pretrained weights (Hugging Face hub ids or local folders).

Every guidance model is loaded through `load_pretrained`, so a missing model always fails the same
way: one `UserError` line naming the model id, the cache folder that was checked and how to point
at a local copy. Loading happens only when a run asks for a model (nothing at import time).

Usage:
    unet = load_pretrained(
        lambda key, local_only: UNet2DConditionModel.from_pretrained(key, subfolder="unet",
                                                                    local_files_only=local_only),
        "stabilityai/stable-diffusion-2-1-base", what="Stable Diffusion", option_hint="--hf_key")

Strategy for a hub id: try the local cache first (no network, fast when cached); if that fails
and we are online, let the library download; offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE /
DIFFUSERS_OFFLINE set, or huggingface.co unreachable) we never touch the network, because the
libraries' own retry loops cost ~25 s per component before they give up.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from typing import Callable, TypeVar
from urllib.parse import urlparse

import torch

from ..errors import UserError

T = TypeVar("T")

_TRUE = {"1", "on", "yes", "true"}


def is_offline_env() -> bool:
    """True when the user asked the Hugging Face libraries not to use the network."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE"))


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One quick TCP connection to the hub endpoint (no request is sent)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def cache_folder(cache_dir: str | os.PathLike | None = None) -> str:
    """The Hugging Face hub cache folder that loads look in, resolved from the environment now."""
    if cache_dir is not None:
        return str(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHECKPOINT_FILE = (".ckpt", ".pth", ".pt", ".safetensors", ".bin")


def looks_like_path(key: str) -> bool:
    """A key the user meant as a file or folder: absolute, ~, ./ or ../, existing on disk, or not
    of the hub's "org/name" form (``pretrained/zero123/zero123-xl.ckpt``)."""
    return (os.path.isabs(key) or key.startswith(("~", "./", "../", ".\\", "..\\"))
            or os.path.exists(os.path.expanduser(key)) or not _HUB_ID.match(key)
            or key.lower().endswith(_CHECKPOINT_FILE))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def _is_access_denied(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 8:
        name = type(exc).__name__
        text = str(exc)
        if name == "GatedRepoError" or "gated" in text.lower() or " 401" in text or " 403" in text:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def load_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the weights could not be found or fetched" (not programming bugs)."""
    errors: list[type[BaseException]] = [OSError, ValueError, EnvironmentError]
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:  # pragma: no cover - old huggingface_hub
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def load_pretrained(loader: Callable[[str, bool], T], key: str, *, what: str,
                    option_hint: str = "--hf_key", cache_dir: str | None = None) -> T:
    """Run `loader(key_or_folder, local_files_only)` and turn "weights not found" into `UserError`.

    Args:
        loader: calls the library's `from_pretrained`; receives the resolved key (an expanded
            folder path, or the hub id) and whether to stay offline.
        key: a hub id ("org/name") or a local folder.
        what: a human name for the model, used in the error line ("Stable Diffusion").
        option_hint: the command-line option that takes a local folder instead.
        cache_dir: the cache folder passed to the loader, if not the default one.
    Returns:
        whatever `loader` returns.
    """
    errors = load_errors()
    if looks_like_path(key):
        folder = os.path.expanduser(key)
        if key.lower().endswith(_CHECKPOINT_FILE):
            raise UserError(f"{what} weights '{key}' name a single checkpoint file; dreamfusion loads the diffusers "
                            f"folder layout: pass a hub id or a model folder in the hub's layout with {option_hint}")
        if not os.path.isdir(folder):
            raise UserError(f"{what} weights folder '{key}' does not exist; pass an existing "
                            f"model folder in the hub's layout with {option_hint} /path/to/folder")
        try:
            return loader(folder, True)
        except errors as exc:
            raise UserError(f"could not load {what} weights from folder '{key}' "
                            f"({_first_line(exc)}); {option_hint} needs a complete model folder in "
                            f"the hub's layout") from exc

    cache = cache_folder(cache_dir)
    how = (f"download it where there is network (hf download {key}) or pass a local copy with "
           f"{option_hint} /path/to/folder")
    try:
        return loader(key, True)
    except errors as local_exc:
        offline = is_offline_env()
        if offline or not hub_reachable():
            why = "HF_HUB_OFFLINE is set" if offline else "huggingface.co cannot be reached"
            raise UserError(f"{what} weights '{key}' are not in the Hugging Face cache ({cache}) "
                            f"and {why}; {how}") from local_exc
    try:
        return loader(key, False)
    except errors as exc:
        if _is_access_denied(exc):
            raise UserError(f"{what} weights '{key}' need access rights: accept the licence on "
                            f"huggingface.co and log in (hf auth login), or pass a local copy with "
                            f"{option_hint} /path/to/folder") from exc
        raise UserError(f"{what} weights '{key}' could not be loaded from the hub or the cache "
                        f"({cache}): {_first_line(exc)}; {how}") from exc


@contextlib.contextmanager
def quiet_transformers():
    """No progress bars or backend warnings from transformers while loading (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def torch_dtype_for(device: torch.device, fp16: bool) -> torch.dtype:
    """float16 only where half-precision kernels are fast (CUDA/MPS); CPU stays float32."""
    return torch.float16 if fp16 and torch.device(device).type in ("cuda", "mps") else torch.float32


def pipeline_dtype_kwargs(dtype: torch.dtype) -> dict:
    """`dtype=` for diffusers that renamed it (0.36+), `torch_dtype=` for older ones."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def freeze(*modules: torch.nn.Module | None) -> None:
    """Guidance networks are never trained: no parameter gradients, eval mode (no dropout)."""
    for module in modules:
        if module is not None:
            module.requires_grad_(False)
            module.eval()
