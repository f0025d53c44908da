"""Reading the photo to preprocess: every way an input file can be wrong ends as one `UserError` line.

    image = read_image("photo.jpg")             # LoadedImage: rgb [H, W, 3] uint8, alpha [H, W] | None
    image, factor = limit_size(image, 2048)     # longer side at most 2048 px (factor = new / old)

The file is decoded twice on purpose. Pillow decodes it first, only to check it: a file that is not an
image, or a PNG/JPEG cut short, raises there, as a Python exception (OpenCV would print libpng/libjpeg
complaints on stderr and hand back half an image or None). OpenCV then decodes the pixels, because it
keeps 16-bit channels and the alpha of every format. The EXIF orientation of phone photos is applied,
so that "source pixels" always mean the upright image a viewer shows.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dreamfusion.errors import UserError

MAX_SIDE = 2048  # longer side after the first downscale: a 10000x10000 photo must not run out of memory
_EXIF_ORIENTATION = 0x0112


@dataclass
class LoadedImage:
    """A decoded input image, upright, 8-bit.

    Attributes:
        rgb: ``[H, W, 3]`` uint8, RGB order.
        alpha: ``[H, W]`` uint8, or None when the file has no alpha channel or its alpha is 255 everywhere
            (an all-opaque alpha says nothing about the object, so background removal runs).
        source_size: ``(height, width)`` of the upright image in the file, before any downscale.
        notes: one-line remarks on what was done to read it (16-bit scaled, grey to RGB, ...).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    source_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the pixels held now."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _check_with_pillow(path: Path, data: bytes) -> tuple[int, str]:
    """Decode ``data`` fully with Pillow to refuse non-images and truncated files; returns the EXIF
    orientation (1 when absent) and Pillow's mode. The decoded pixels are dropped at once (huge inputs:
    one copy at a time)."""
    import io

    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # a 100-megapixel photo is a photo, not a decompression bomb: refuse only past Pillow's hard limit
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
                mode, kind = image.mode, image.format
                image.load()
        except Image.DecompressionBombError:
            raise UserError(f"{path}: image is too large to read (over {2 * Image.MAX_IMAGE_PIXELS} pixels)") from None
        except UnidentifiedImageError:
            raise UserError(f"{path}: not an image file (Pillow cannot identify it)") from None
        except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{path}: truncated or corrupt image file ({reason})") from None
    end = data.rfind(b"IEND")
    if kind == "PNG" and (end < 0 or len(data) < end + 8):  # Pillow stops before the end chunk's CRC
        raise UserError(f"{path}: truncated or corrupt image file (the PNG end chunk is missing or cut)")
    return (orientation if 1 <= orientation <= 8 else 1), mode


@contextlib.contextmanager
def _silenced_stderr_fd():
    """Send what C libraries (libpng, libjpeg) print on file descriptor 2 to /dev/null meanwhile."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (captured in-process): nothing to do
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def apply_exif_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn ``[H, W, ...]`` pixels stored with EXIF orientation 1..8 upright (as Pillow's exif_transpose)."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return pixels[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _to_uint8(pixels: np.ndarray, notes: list[str]) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        notes.append("16-bit image: scaled to 8 bits")
        return cv2.convertScaleAbs(pixels, alpha=1.0 / 257.0)  # round(x / 257), no float copy of a huge photo
    if np.issubdtype(pixels.dtype, np.floating):
        notes.append("floating-point image: values in [0, 1] scaled to 8 bits")
        return np.round(np.clip(np.nan_to_num(pixels, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.integer):
        top = np.iinfo(pixels.dtype).max
        notes.append(f"{pixels.dtype} image: scaled to 8 bits")
        return np.round(np.clip(pixels, 0, top).astype(np.float64) / top * 255.0).astype(np.uint8)
    raise TypeError(f"unsupported pixel type {pixels.dtype}")


def _decode_with_pillow(data: bytes) -> np.ndarray:
    """Fallback for formats OpenCV cannot decode: ``[H, W, 3|4]`` uint8 in OpenCV's BGR(A) order."""
    import io

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as image:
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if has_alpha else cv2.COLOR_RGB2BGR)


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read and check an input photo (raises `UserError` with one line for anything wrong with it).

    Args:
        path: any image file Pillow can identify (PNG, JPEG, WebP, TIFF, BMP, ...).
    Returns:
        the upright image as 8-bit RGB plus its alpha when the alpha says something (not all 255).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an image file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    if not data:
        raise UserError(f"{path}: empty file, not an image")
    orientation, mode = _check_with_pillow(path, data)

    with _silenced_stderr_fd():
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        if data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8")):  # formats OpenCV reads: the file is bad
            raise UserError(f"{path}: truncated or corrupt image file (OpenCV cannot decode it)")
        pixels = _decode_with_pillow(data)  # a format OpenCV does not read (GIF, ...)
    del data
    notes: list[str] = []
    pixels = _to_uint8(pixels, notes)
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation}: turned upright")
        pixels = np.ascontiguousarray(apply_exif_orientation(pixels, orientation))

    alpha = None
    if mode in _GREY_MODES or pixels.ndim == 2 or pixels.shape[2] in (1, 2):
        notes.append("grey image: converted to RGB")  # OpenCV may already have made it BGR(A)
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        rgb = cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2RGB)
    elif pixels.shape[2] == 2:  # grey + alpha
        rgb, alpha = cv2.cvtColor(np.ascontiguousarray(pixels[..., 0]), cv2.COLOR_GRAY2RGB), pixels[..., 1]
    elif pixels.shape[2] == 3:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    else:
        rgb, alpha = cv2.cvtColor(pixels[..., :3], cv2.COLOR_BGR2RGB), pixels[..., 3]
    if alpha is not None:
        if int(alpha.min()) == 255:
            notes.append("alpha channel is opaque everywhere: ignored, the background is removed")
            alpha = None
        else:
            notes.append("image has an alpha channel: used as the mask (no background removal)")
            alpha = np.ascontiguousarray(alpha)
    return LoadedImage(rgb=np.ascontiguousarray(rgb), alpha=alpha, source_size=(int(rgb.shape[0]), int(rgb.shape[1])),
                       notes=notes)


def limit_size(image: LoadedImage, max_side: int = MAX_SIDE) -> tuple[LoadedImage, float]:
    """Downscale (INTER_AREA) so that the longer side is at most ``max_side`` pixels.

    Returns:
        the image (the same object when already small enough) and the exact scale factor s used on both
        axes: a source point x (pixel edges at integers) lands at ``s * x`` in the returned pixels.
    """
    height, width = image.size
    if max(height, width) <= max_side:
        return image, 1.0
    factor = max_side / max(height, width)

    def shrink(pixels: np.ndarray) -> np.ndarray:
        # fx/fy (not dsize) so that OpenCV uses exactly `factor` on both axes
        return cv2.resize(pixels, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_AREA)

    rgb = shrink(image.rgb)
    alpha = None if image.alpha is None else shrink(image.alpha)
    note = f"large image ({width}x{height}): downscaled to {rgb.shape[1]}x{rgb.shape[0]} (longer side {max_side} px) first"
    return LoadedImage(rgb=rgb, alpha=alpha, source_size=image.source_size, notes=image.notes + [note]), factor
