"""Reading a user's picture for inversion: RGB only, made square and resized to the generator's
resolution, as float32 in ``[-1, 1]``.

Every refusal is one line (:class:`gdjax.errors.InputError`) naming the file and the problem:
not a file, not an image, grayscale, transparency (alpha or a transparent palette colour), too
small, or the wrong size under ``fit='exact'``.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from gdjax.errors import InputError

__all__ = ["FITS", "MIN_SIDE", "check_array", "from_pil", "load", "save", "to_uint8"]

FITS = ("crop", "resize", "exact")
MIN_SIDE = 8  # a smaller picture carries too little to invert
_GRAY = {"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA = {"RGBA", "LA", "La", "RGBa", "PA"}


def from_pil(image: Image.Image, resolution: int, fit: str = "crop", name: str = "image"):
    """``[R, R, 3]`` float32 in ``[-1, 1]`` from a PIL image (see :func:`load` for ``fit``)."""
    if fit not in FITS:
        raise InputError(f"fit {fit!r}: must be one of {', '.join(FITS)}")
    mode = image.mode
    if mode in _GRAY or (mode == "P" and image.palette and image.palette.mode in ("L", "LA")):
        raise InputError(f"{name}: grayscale image (mode {mode}); give an RGB image")
    if mode in _ALPHA or (mode == "P" and "transparency" in image.info):
        raise InputError(f"{name}: image has an alpha channel (mode {mode}); give an RGB image")
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        raise InputError(f"{name}: {w}x{h} is too small (at least {MIN_SIDE}x{MIN_SIDE})")
    if fit == "exact" and (w, h) != (resolution, resolution):
        raise InputError(
            f"{name}: {w}x{h}, but the generator makes {resolution}x{resolution} images "
            "(resize it, or use fit 'crop' or 'resize')"
        )
    image = image.convert("RGB")
    if fit == "crop" and w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        image = image.crop((left, top, left + s, top + s))
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(image, np.float32) / 127.5 - 1.0


def load(path: str, resolution: int, fit: str = "crop") -> np.ndarray:
    """Read ``path`` as ``[R, R, 3]`` float32 in ``[-1, 1]`` for a generator of resolution ``R``.

    ``fit``: ``'crop'`` (default) takes the centred square and resizes it (Lanczos),
    ``'resize'`` squashes the whole picture to a square, ``'exact'`` insists on ``R x R``.
    """
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            image.load()
            return from_pil(image, resolution, fit, name=path)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        if isinstance(e, UnidentifiedImageError):
            raise InputError(f"{path}: not an image file PIL can read") from None
        raise InputError(f"{path}: cannot read the image ({str(e).splitlines()[0]})") from None


def check_array(images, resolution: int, name: str = "image") -> np.ndarray:
    """``[N, R, R, 3]`` float32 from an array ``[R, R, 3]`` or ``[N, R, R, 3]`` in ``[-1, 1]``."""
    x = np.asarray(images, np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1:] != (resolution, resolution, 3):
        raise InputError(
            f"{name}: shape {tuple(np.shape(images))}; expected [{resolution}, {resolution}, 3] "
            f"or [N, {resolution}, {resolution}, 3] RGB in [-1, 1]"
        )
    if not np.isfinite(x).all():
        raise InputError(f"{name}: has NaN or infinite values")
    return x


def to_uint8(images) -> np.ndarray:
    """``[-1, 1]`` floats -> uint8 ``[0, 255]`` (clipped, rounded)."""
    return np.clip(np.rint((np.asarray(images) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def save(path: str, picture) -> str:
    """Write ``picture [R, R, 3]`` in ``[-1, 1]`` as a PNG (the inverse of :func:`load` on
    8-bit pictures)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(to_uint8(picture)).save(path)
    return path
