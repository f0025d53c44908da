"""Background removal with U^2-Net-p (``u2netp.onnx``, 4.6 MB) run directly through onnxruntime.

    alpha = remove_background(rgb)      # rgb [H, W, 3] uint8 -> alpha [H, W] uint8 (255 = object)

The pre- and post-processing are rembg's for this model (rembg itself is not imported: its first import
compiles numba code for about 80 s): the image is resized to 320x320 with LANCZOS, divided by its
maximum, normalised with the ImageNet mean/std and fed as NCHW float32; the first channel of the first
output is min-max normalised, truncated to 8 bits and resized back to the image size with LANCZOS.
That map is the alpha.

The model file is looked up where rembg keeps it, ``$U2NET_HOME/u2netp.onnx`` (``~/.u2net`` by
default), and checked by md5; ``make models`` puts it there.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from dreamfusion.errors import UserError

MODEL_NAME = "u2netp.onnx"
MODEL_MD5 = "8e83ca70e441ab06c318d82300c84806"
INPUT_SIZE = 320
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MAX_THREADS = 4
MIN_SALIENCY = 0.05  # raw peak below this: nothing salient (a flat image peaks at 0.002, objects at ~1)


def model_path() -> Path:
    """``$U2NET_HOME/u2netp.onnx``, ``~/.u2net/u2netp.onnx`` when U2NET_HOME is unset."""
    home = os.environ.get("U2NET_HOME") or os.path.join("~", ".u2net")
    return Path(home).expanduser() / MODEL_NAME


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model(path: Path | None = None) -> Path:
    """The model file, checked (raises `UserError` when it is missing or is not the expected file)."""
    path = model_path() if path is None else path
    how = "run 'make models' (or set U2NET_HOME to the folder that holds it)"
    if not path.is_file():
        raise UserError(f"background removal needs {path} (u2netp), which is missing; {how}")
    digest = file_md5(path)
    if digest != MODEL_MD5:
        raise UserError(f"{path} is not the expected u2netp model (md5 {digest}, expected {MODEL_MD5}); "
                        f"delete it and {how}")
    return path


@functools.lru_cache(maxsize=2)
def _session(path: str, mtime_ns: int, size: int):
    """One onnxruntime session per model file version (the cache key changes when the file does)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(MAX_THREADS, os.cpu_count() or 1))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no provider/thread warnings on stderr
    try:
        return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - a damaged file that passed no md5 check cannot happen; be clear anyway
        raise UserError(f"{path}: onnxruntime cannot load it ({str(error).splitlines()[0][:200]})") from None


def load_session(path: Path | None = None):
    """The cached onnxruntime ``InferenceSession`` for the checked u2netp model."""
    path = check_model(path)
    stat = path.stat()
    return _session(str(path), stat.st_mtime_ns, stat.st_size)


def model_input(rgb: np.ndarray) -> np.ndarray:
    """rembg's u2netp normalisation.

    Args:
        rgb: ``[H, W, 3]`` uint8.
    Returns:
        ``[1, 3, 320, 320]`` float32.
    """
    from PIL import Image

    resized = np.asarray(Image.fromarray(rgb).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.LANCZOS))
    scaled = resized / max(float(resized.max()), 1e-12)  # by the image maximum, not by 255 (as rembg)
    normalised = (scaled - np.asarray(MEAN)) / np.asarray(STD)
    return normalised.transpose(2, 0, 1)[None].astype(np.float32)


def alpha_from_output(prediction: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """rembg's u2netp post-processing.

    Args:
        prediction: the model's first output, ``[1, C, 320, 320]``; channel 0 is the saliency map.
        size: ``(height, width)`` of the image.
    Returns:
        alpha ``[H, W]`` uint8.
    """
    from PIL import Image

    saliency = prediction[:, 0]
    low, high = float(saliency.min()), float(saliency.max())
    saliency = (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)
    mask = Image.fromarray((np.squeeze(saliency) * 255).astype(np.uint8))  # mode L
    return np.asarray(mask.resize((size[1], size[0]), Image.Resampling.LANCZOS))


def remove_background(rgb: np.ndarray, model: Path | None = None) -> tuple[np.ndarray, float]:
    """Alpha of the salient object of an image.

    Args:
        rgb: ``[H, W, 3]`` uint8.
        model: the ``.onnx`` file; default `model_path()`.
    Returns:
        alpha ``[H, W]`` uint8 (rembg's), and the peak of the raw saliency map in [0, 1] before the
        min-max normalisation: rembg's normalisation stretches even a flat grey image's 0.002 to 255,
        so a low peak is how "no object here" shows.
    """
    session = load_session(model)
    name = session.get_inputs()[0].name
    prediction = session.run(None, {name: model_input(rgb)})[0]
    return alpha_from_output(prediction, rgb.shape[:2]), float(prediction[:, 0].max())
