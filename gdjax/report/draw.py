"""Turning arrays into pictures a person can open: byte conversion, grids, the label palette,
captions and colour legends, PNG and JPEG files."""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont


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


# ---------------------------------------------------------------------------------- captions

CAPTION_SIZE = 13  # px; the size chart.py draws its names with
CAPTION_COLOR = (30, 30, 30)


@functools.lru_cache(maxsize=8)
def font(size: int = CAPTION_SIZE):
    """Pillow's built-in font at ``size`` px (FreeType where available, else its bitmap font)."""
    return ImageFont.load_default(size=size)


def fit_text(text: str, width: float, fnt) -> str:
    """``text``, cut and ended with ``...`` where it is wider than ``width`` px."""
    if fnt.getlength(text) <= width:
        return text
    while text and fnt.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def wrap_text(text: str, width: float, fnt) -> list[str]:
    """Greedy word wrap of ``text`` into lines at most ``width`` px wide (a word wider than a
    line is cut with ``...``)."""
    lines: list[str] = []
    for word in str(text).split():
        if lines and fnt.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(fit_text(word, width, fnt))
    return lines or [""]


def caption_rows(
    image, names, row_heights, pad: int = 2, width: int | None = None, max_width: int = 180,
    size: int = CAPTION_SIZE, margin: int = 8, fill: int = 255, color=CAPTION_COLOR,
) -> np.ndarray:  # fmt: skip
    """``image`` uint8 ``[H, W, 3]`` with a caption band prepended at its left:
    ``[H, band + W, 3]``, ``image`` unchanged in ``out[:, band:]``.

    Row ``i`` of the image spans ``row_heights[i]`` px (an int: every row), rows separated by
    ``pad`` px as :func:`grid` lays them out; ``names[i]`` is drawn right-aligned next to it,
    vertically centred, word-wrapped to the band (lines that do not fit the row are dropped, the
    last one kept ending in ``...``). ``band`` is ``width`` or the widest name plus
    ``2 * margin``, at most ``max_width``.
    """
    image = np.asarray(image, np.uint8)
    names = [str(n) for n in names]
    heights = [int(row_heights)] * len(names) if np.isscalar(row_heights) else list(row_heights)
    if len(heights) != len(names):
        raise ValueError(f"{len(names)} names for {len(heights)} rows")
    fnt = font(size)
    if width is None:
        widest = max((fnt.getlength(n) for n in names), default=0)
        width = int(min(max_width, np.ceil(widest) + 2 * margin))
    band = Image.new("RGB", (width, image.shape[0]), (fill,) * 3)
    d = ImageDraw.Draw(band)
    ascent, descent = fnt.getmetrics()
    line_h = ascent + descent
    y0 = 0
    for name, h in zip(names, heights, strict=True):
        lines = wrap_text(name, width - 2 * margin, fnt)
        fits = max(1, h // line_h)
        if len(lines) > fits:  # keep what fits, the last kept line ending in "..."
            lines = lines[: fits - 1] + [
                fit_text(" ".join(lines[fits - 1 :]), width - 2 * margin - 1, fnt)
            ]
        y = y0 + (h - line_h * len(lines)) / 2
        for line in lines:
            d.text((width - margin - fnt.getlength(line), y), line, fill=color, font=fnt)
            y += line_h
        y0 += h + pad
    return np.concatenate([np.asarray(band), image], axis=1)


def legend(
    names, colors, width: int | None = None, size: int = CAPTION_SIZE, margin: int = 8,
    fill: int = 255, color=CAPTION_COLOR,
) -> np.ndarray:  # fmt: skip
    """A colour key: uint8 ``[h, w, 3]``, one ``size``-px swatch (outlined in grey, so black and
    white show) and name per entry, flowing left to right and onto new lines within ``width``
    px (default: one line). ``colors``: ``[len(names), 3]`` uint8."""
    names = [str(n) for n in names]
    colors = np.asarray(colors, np.uint8).reshape(-1, 3)
    if len(colors) != len(names):
        raise ValueError(f"{len(names)} names for {len(colors)} colours")
    fnt = font(size)
    ascent, descent = fnt.getmetrics()
    line_h = max(ascent + descent, size) + 6
    gap, space = 6, 18  # swatch-to-name, entry-to-entry
    entries = [size + gap + int(np.ceil(fnt.getlength(n))) for n in names]
    if width is None:
        width = 2 * margin + sum(entries) + space * max(len(entries) - 1, 0)
    places, x, y = [], margin, 0
    for w in entries:
        if x > margin and x + w > width - margin:
            x, y = margin, y + line_h
        places.append((x, y))
        x += w + space
    img = Image.new("RGB", (max(int(width), 1), y + line_h + 4), (fill,) * 3)
    d = ImageDraw.Draw(img)
    for name, rgb, (x, y) in zip(names, colors, places, strict=True):
        top = y + 3 + (line_h - 6 - size) // 2
        d.rectangle([x, top, x + size - 1, top + size - 1], fill=tuple(int(c) for c in rgb),
                    outline=(150, 150, 150))  # fmt: skip
        name = fit_text(name, width - margin - x - size - gap, fnt)
        d.text((x + size + gap, y + 3 + (line_h - 6 - ascent - descent) // 2), name, fill=color,
               font=fnt)  # fmt: skip
    return np.asarray(img)


def vstack(images, gap: int = 4, fill: int = 255) -> np.ndarray:
    """uint8 ``[H_i, W_i, 3]`` images one below the other, ``gap`` px apart, left-aligned and
    padded with ``fill`` on the right to the widest."""
    images = [np.asarray(a, np.uint8) for a in images]
    w = max(a.shape[1] for a in images)
    h = sum(a.shape[0] for a in images) + gap * (len(images) - 1)
    out = np.full((h, w, 3), fill, np.uint8)
    y = 0
    for a in images:
        out[y : y + a.shape[0], : a.shape[1]] = a
        y += a.shape[0] + gap
    return out
