"""Turning arrays into pictures a person can open: byte conversion, grids, the label palette,
PNG and JPEG files."""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
    """Images ``[..., 3]`` in ``[-1, 1]`` -> uint8 as the original, clamp((x+1)/2*255) truncated."""
    x = (np.asarray(images, np.float32) + 1.0) / 2.0 * 255.0
    return np.clip(x, 0, 255).astype(np.uint8)


def grid(tiles, ncols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """uint8 tiles ``[N, H, W, 3]`` -> one ``[rows*(H+pad)-pad, cols*(W+pad)-pad, 3]`` image."""
    tiles = np.asarray(tiles)
    n, h, w, c = tiles.shape
    rows = -(-n // ncols)
    out = np.full((rows * (h + pad) - pad, ncols * (w + pad) - pad, c), fill, np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = tile
    return out


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of ``[H, W, C]`` so small images stay crisp on screen."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def save_png(path: str, image: np.ndarray) -> str:
    """Write a uint8 ``[H, W, 3]`` array as PNG (fast, light compression), creating the folder;
    returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(path, compress_level=1)
    return path


def save_jpeg(path: str, image: np.ndarray, quality: int = 90) -> str:
    """Write a uint8 ``[H, W, 3]`` array as JPEG, creating the folder; returns ``path``. For
    photographs: about 20x faster to encode than PNG and a third of the size."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(path, quality=quality)
    return path


@functools.lru_cache(maxsize=16)
def palette(num_labels: int) -> np.ndarray:
    """A fixed colour per label: uint8 ``[num_labels, 3]``; label 0 is black.

    Prefix-stable (``palette(n)`` is a prefix of ``palette(m)`` for ``n < m``): the first labels
    get the natural colours of the built-in world's labels (:data:`gdjax.world.scenes.LABELS`),
    the rest golden-ratio hues with varying saturation and value, so any segmenter's label map
    can be shown with it.
    """
    fixed = [(0, 0, 0), (110, 170, 240), (235, 235, 250), (130, 110, 160), (20, 70, 170)]
    fixed += [(70, 190, 60), (90, 90, 95), (20, 100, 30), (220, 190, 120), (190, 40, 30)]
    fixed += [(250, 230, 40), (140, 70, 20)]
    i = np.arange(num_labels)
    hue = (i * 0.618033988749895) % 1.0
    sat = 0.55 + 0.45 * ((i * 7) % 5) / 4
    val = 0.65 + 0.35 * ((i * 3) % 4) / 3
    k = (hue[:, None] * 6 + np.array([5, 3, 1])) % 6  # HSV -> RGB, vectorized
    rgb = val[:, None] * (1 - sat[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1))
    out = np.round(rgb * 255).astype(np.uint8)
    m = min(num_labels, len(fixed))
    out[:m] = np.array(fixed[:m], np.uint8)
    out.setflags(write=False)
    return out


def colorize(labels, colors=None) -> np.ndarray:
    """Colours int labels ``[...]``: uint8 ``[..., 3]``; labels < 0 are black. ``colors``: a
    uint8 ``[L, 3]`` palette (labels past its end are clipped), default :func:`palette`."""
    labels = np.asarray(labels)
    if colors is None:
        colors = palette(int(labels.max(initial=0)) + 1)
    return np.take(np.asarray(colors, np.uint8), np.maximum(labels, 0), axis=0, mode="clip")
