"""A bar chart of means with their intervals and counts, drawn with PIL (no plotting
dependency): one bar per group, an interval whisker on each, ``n = …`` under each name."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from gdjax.report import draw

__all__ = ["bar_chart"]

_TEXT, _GRID, _EDGE, _AXIS = (30, 30, 30), (225, 225, 225), (110, 110, 110), (60, 60, 60)
_BAR_W, _GAP, _PAD = 34, 18, 8


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    span = max(hi - lo, 1e-9)
    step = 10 ** np.floor(np.log10(span / n))
    for m in (1, 2, 2.5, 5, 10):
        if span / (m * step) <= n:
            step *= m
            break
    return np.arange(np.floor(lo / step), np.ceil(hi / step) + 1) * step


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-9 else "0"


def bar_chart(
    path: str,
    names,
    values,
    low,
    high,
    counts,
    colors,
    title: str,
    y_label: str,
    note: str = "",
    plot_h: int = 260,
) -> str:
    """Write a PNG bar chart to ``path``; returns ``path``.

    One bar per name (in the given order) from 0 to ``values[i]`` in ``colors[i]`` (uint8 RGB,
    outlined in grey so pale colours show), a whisker from ``low[i]`` to ``high[i]``, the value
    above (or below, when negative) and ``n = counts[i]`` under the name; the y axis spans 0
    and every whisker, with round ticks and ``y_label`` at the left. ``title`` on top and an
    optional ``note`` (wrapped) under the plot.
    """
    fnt = draw.font()
    ascent, descent = fnt.getmetrics()
    line = ascent + descent
    names = [str(x) for x in names]
    values, low, high = (np.asarray(x, np.float64) for x in (values, low, high))
    lo = min(0.0, float(np.min(low, initial=0.0)), float(np.min(values, initial=0.0)))
    hi = max(0.0, float(np.max(high, initial=0.0)), float(np.max(values, initial=0.0)))
    ticks = _ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    tick_w = max(fnt.getlength(_fmt(t)) for t in ticks)
    col_w = max([_BAR_W + _GAP] + [fnt.getlength(x) + 8 for x in names])
    left = int(_PAD + line + _PAD + tick_w + 8)
    width = int(max(left + len(names) * col_w + _PAD, 360))
    note_lines = draw.wrap_text(note, width - 2 * _PAD, fnt) if note else []
    title_lines = draw.wrap_text(title, width - 2 * _PAD, fnt)
    top = _PAD + len(title_lines) * line + _PAD + line
    height = top + plot_h + 2 * line + 2 * _PAD + len(note_lines) * line + _PAD
    img = Image.new("RGB", (width, int(height)), (255, 255, 255))
    d = ImageDraw.Draw(img)
    y = lambda v: top + plot_h * (hi - v) / (hi - lo)
    for i, t in enumerate(title_lines):
        d.text(((width - fnt.getlength(t)) / 2, _PAD + i * line), t, fill=_TEXT, font=fnt)
    for t in ticks:
        d.line([left, y(t), width - _PAD, y(t)], fill=_GRID)
        s = _fmt(t)
        d.text((left - 6 - fnt.getlength(s), y(t) - line / 2), s, fill=_TEXT, font=fnt)
    tile = Image.new("L", (int(fnt.getlength(y_label)) + 2, line + 2), 0)
    ImageDraw.Draw(tile).text((1, 1), y_label, fill=255, font=fnt)
    tile = tile.rotate(90, expand=True)
    yc = int(top + plot_h / 2 - tile.height / 2)
    img.paste(Image.new("RGB", tile.size, _TEXT), (_PAD, max(0, yc)), tile)
    zero = y(0.0)
    for i, name in enumerate(names):
        cx = left + (i + 0.5) * col_w
        v = float(values[i])
        rgb = tuple(int(c) for c in np.asarray(colors[i]).ravel()[:3])
        d.rectangle([cx - _BAR_W / 2, min(zero, y(v)), cx + _BAR_W / 2, max(zero, y(v))],
                    fill=rgb, outline=_EDGE)  # fmt: skip
        d.line([cx, y(low[i]), cx, y(high[i])], fill=_AXIS, width=2)
        for end in (low[i], high[i]):
            d.line([cx - 6, y(end), cx + 6, y(end)], fill=_AXIS, width=2)
        s = _fmt(v)
        ty = y(max(v, high[i])) - line - 2 if v >= 0 else y(min(v, low[i])) + 2
        d.text((cx - fnt.getlength(s) / 2, ty), s, fill=_TEXT, font=fnt)
        base = top + plot_h + 4
        d.text((cx - fnt.getlength(name) / 2, base), name, fill=_TEXT, font=fnt)
        s = f"n = {counts[i]}"
        d.text((cx - fnt.getlength(s) / 2, base + line), s, fill=_EDGE, font=fnt)
    d.line([left, zero, width - _PAD, zero], fill=_AXIS)
    for i, t in enumerate(note_lines):
        yy = top + plot_h + 2 * line + 2 * _PAD + i * line
        d.text((_PAD, yy), t, fill=_EDGE, font=fnt)
    return draw.save_png(path, np.asarray(img))
