"""Line plots of ablation experiments: the fraction of a class removed against the number of
units ablated, one line per ranking with its bootstrap band, drawn with PIL."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from gdjax.report import draw

__all__ = ["X_LABEL", "Y_LABEL", "layout", "plot"]

_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]
_TEXT, _GRID = (30, 30, 30), (225, 225, 225)
X_LABEL, Y_LABEL = "units ablated", "fraction of class pixels removed"
_SWATCH, _PAD = 22, 8  # legend line length; the gap between a label and what it names


def layout(names, size=(640, 420)) -> dict:
    """The plot area ``{left, right, top, bottom}`` (margins in px) for legend ``names``: room
    at the left for the rotated y label and the tick numbers, at the bottom for the tick numbers
    and the x label, at the right for the legend (at most a third of the width)."""
    fnt = draw.font()
    ascent, descent = fnt.getmetrics()
    line = ascent + descent
    tick_w = int(np.ceil(fnt.getlength("1.0")))
    widest = max((fnt.getlength(str(n)) for n in names), default=0)
    right = int(min(size[0] // 3, 16 + _SWATCH + 6 + np.ceil(widest) + _PAD))
    return {
        "left": _PAD + line + _PAD + tick_w + 6 + 4,
        "right": right,
        "top": _PAD + line + _PAD,
        "bottom": 4 + 4 + line + _PAD + line + _PAD,
    }


def _rotated(img: Image.Image, center: tuple[float, float], text: str, fnt) -> None:
    """Paste ``text`` rotated 90° (reads bottom to top), centred on ``center``."""
    x0, y0, x1, y1 = fnt.getbbox(text)
    tile = Image.new("L", (int(x1) + 2, int(y1) + 2), 0)
    ImageDraw.Draw(tile).text((1, 1), text, fill=255, font=fnt)
    tile = tile.rotate(90, expand=True)
    xy = (int(center[0] - tile.width / 2), int(center[1] - tile.height / 2))
    img.paste(Image.new("RGB", tile.size, _TEXT), xy, tile)


def plot(curves: dict, path: str, title: str = "", size=(640, 420)) -> str:
    """PNG line plot of ``removed`` vs ``n`` for named :func:`curve` results, bands shaded.

    x: ``n`` (units ablated), y: ``removed`` in ``[0, 1]`` (fraction of class pixels removed);
    ``title`` above the plot, the legend at its right (margins: :func:`layout`).
    """
    w, h = size
    fnt = draw.font()
    ascent, descent = fnt.getmetrics()
    line = ascent + descent
    m = layout(list(curves), size)
    left, right, top, bottom = m["left"], m["right"], m["top"], m["bottom"]
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img, "RGBA")
    n_max = max(max(c["n"]) for c in curves.values()) or 1
    x = lambda n: left + (w - left - right) * n / n_max
    y = lambda v: top + (h - top - bottom) * (1 - min(max(v, 0.0), 1.0))
    for v in np.linspace(0, 1, 6):
        d.line([left, y(v), w - right, y(v)], fill=_GRID)
        d.line([left - 4, y(v), left, y(v)], fill=_TEXT)
        label = f"{v:.1f}"
        d.text((left - 6 - fnt.getlength(label), y(v) - line / 2), label, fill=_TEXT, font=fnt)
    for n in range(0, n_max + 1, max(1, n_max // 6)):
        d.line([x(n), h - bottom, x(n), h - bottom + 4], fill=_TEXT)
        d.text((x(n) - fnt.getlength(str(n)) / 2, h - bottom + 8), str(n), fill=_TEXT, font=fnt)
    title = draw.fit_text(title or Y_LABEL, w - 2 * _PAD, fnt)
    d.text(((w - fnt.getlength(title)) / 2, _PAD), title, fill=_TEXT, font=fnt)
    d.text(((left + w - right - fnt.getlength(X_LABEL)) / 2, h - _PAD - line), X_LABEL,
           fill=_TEXT, font=fnt)  # fmt: skip
    _rotated(img, (_PAD + line / 2, (top + h - bottom) / 2), Y_LABEL, fnt)
    for i, (name, c) in enumerate(curves.items()):
        col = _COLORS[i % len(_COLORS)]
        band = [(x(n), y(v)) for n, v in zip(c["n"], c["high"], strict=True)]
        band += [(x(n), y(v)) for n, v in reversed(list(zip(c["n"], c["low"], strict=True)))]
        d.polygon(band, fill=(*col, 50))
        d.line([(x(n), y(v)) for n, v in zip(c["n"], c["removed"], strict=True)], fill=col, width=2)
        ly = top + 4 + (line + 6) * i
        d.line([w - right + 16, ly + line / 2, w - right + 16 + _SWATCH, ly + line / 2], fill=col,
               width=3)  # fmt: skip
        label = draw.fit_text(str(name), right - 16 - _SWATCH - 6 - _PAD, fnt)
        d.text((w - right + 16 + _SWATCH + 6, ly), label, fill=_TEXT, font=fnt)
    d.rectangle([left, top, w - right, h - bottom], outline=_TEXT)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path)
    return path
