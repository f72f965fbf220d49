"""Line plots of ablation experiments: the fraction of a class removed against the number of
units ablated, one line per ranking with its bootstrap band, drawn with PIL."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["plot"]

_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def plot(curves: dict, path: str, title: str = "", size=(640, 420)) -> str:
    """PNG line plot of ``removed`` vs ``n`` for named :func:`curve` results, bands shaded."""
    w, h = size
    left, right, top, bottom = 56, 150, 30, 40
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img, "RGBA")
    n_max = max(max(c["n"]) for c in curves.values()) or 1
    x = lambda n: left + (w - left - right) * n / n_max
    y = lambda v: top + (h - top - bottom) * (1 - min(max(v, 0.0), 1.0))
    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for v in np.linspace(0, 1, 6):
        d.line([left - 4, y(v), left, y(v)], fill=(0, 0, 0))
        d.text((8, y(v) - 6), f"{v:.1f}", fill=(0, 0, 0))
    for n in range(0, n_max + 1, max(1, n_max // 6)):
        d.line([x(n), h - bottom, x(n), h - bottom + 4], fill=(0, 0, 0))
        d.text((x(n) - 6, h - bottom + 8), str(n), fill=(0, 0, 0))
    d.text((left, 8), title or "fraction of class pixels removed", fill=(0, 0, 0))
    d.text((w - right - 120, h - 16), "units ablated", fill=(0, 0, 0))
    for i, (name, c) in enumerate(curves.items()):
        col = _COLORS[i % len(_COLORS)]
        band = [(x(n), y(v)) for n, v in zip(c["n"], c["high"], strict=True)]
        band += [(x(n), y(v)) for n, v in reversed(list(zip(c["n"], c["low"], strict=True)))]
        d.polygon(band, fill=(*col, 50))
        d.line([(x(n), y(v)) for n, v in zip(c["n"], c["removed"], strict=True)], fill=col, width=2)
        d.line(
            [w - right + 10, top + 10 + 18 * i, w - right + 30, top + 10 + 18 * i],
            fill=col,
            width=3,
        )
        d.text((w - right + 36, top + 4 + 18 * i), name, fill=(0, 0, 0))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path)
    return path
