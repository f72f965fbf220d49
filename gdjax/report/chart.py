"""A bar chart of interpretable units per concept, drawn with PIL (no plotting dependency).

The reference writes ``bargraph.svg`` (reference §3.6): one bar per concept, its height the
number of interpretable units with that label, concepts grouped by category. Here it is a PNG
drawn with ``ImageFont.load_default()`` so it needs nothing beyond Pillow and opens anywhere.
"""

from __future__ import annotations

import os

from PIL import Image, ImageDraw, ImageFont

__all__ = ["CATEGORY_COLORS", "bar_chart", "category_color", "chart_size"]

# One bar colour per category, in the reference's category order; unknown categories cycle.
CATEGORY_COLORS = {
    "object": (66, 133, 200),
    "scene": (150, 100, 190),
    "part": (60, 160, 90),
    "piece": (120, 170, 60),
    "material": (205, 120, 50),
    "texture": (190, 80, 120),
    "color": (200, 170, 40),
}
_SPARE_COLORS = [(90, 150, 160), (160, 110, 80), (110, 110, 170)]
_AXIS = (120, 120, 120)
_TEXT = (30, 30, 30)

# Layout in pixels.
BAR_W, BAR_GAP, GROUP_GAP = 16, 6, 20
LEFT, RIGHT, TOP = 36, 12, 36
PLOT_H = 160  # height of the tallest bar
LABEL_H = 110  # most room below the axis for rotated concept names (longer ones are cut)
CAPTION_H = 28  # category caption under the names
FONT_SIZE = 13


def _font():
    """Pillow's built-in font (FreeType where available, else its bitmap font at fixed size)."""
    return ImageFont.load_default(size=FONT_SIZE)


def _label_h(labels_summary: list[dict], font) -> int:
    """Room for the rotated names: the longest name plus margins, at most ``LABEL_H``."""
    longest = max((font.getlength(str(e["label"])) for e in labels_summary), default=0)
    return int(min(LABEL_H, max(24, longest + 10)))


def category_color(category: str, categories: list[str]) -> tuple[int, int, int]:
    """The bar colour of ``category`` (fixed for the reference categories)."""
    if category in CATEGORY_COLORS:
        return CATEGORY_COLORS[category]
    others = [c for c in categories if c not in CATEGORY_COLORS]
    i = others.index(category) if category in others else 0
    return _SPARE_COLORS[i % len(_SPARE_COLORS)]


def _groups(labels_summary: list[dict]) -> list[tuple[str, list[dict]]]:
    """Consecutive runs of the same ``cat`` (the summary is already sorted by category)."""
    groups: list[tuple[str, list[dict]]] = []
    for entry in labels_summary:
        if groups and groups[-1][0] == entry["cat"]:
            groups[-1][1].append(entry)
        else:
            groups.append((entry["cat"], [entry]))
    return groups


def chart_size(labels_summary: list[dict]) -> tuple[int, int]:
    """``(width, height)`` of the PNG: ``LEFT + n*(BAR_W+BAR_GAP) + (groups-1)*GROUP_GAP + RIGHT``
    wide (at least 280) and ``TOP + PLOT_H + label_h + CAPTION_H`` high, ``label_h`` the length of
    the longest name plus 10 in ``[24, LABEL_H]``."""
    n, g = len(labels_summary), len(_groups(labels_summary))
    width = LEFT + n * (BAR_W + BAR_GAP) + max(g - 1, 0) * GROUP_GAP + RIGHT
    return max(width, 280), TOP + PLOT_H + _label_h(labels_summary, _font()) + CAPTION_H


def _vertical_text(draw_on: Image.Image, xy: tuple[int, int], text: str, font) -> None:
    """Paste ``text`` rotated 90° (reads bottom to top) with its top-left corner at ``xy``."""
    x0, y0, x1, y1 = font.getbbox(text)
    tile = Image.new("L", (x1 + 2, y1 + 2), 0)
    ImageDraw.Draw(tile).text((1, 1), text, fill=255, font=font)
    tile = tile.rotate(90, expand=True)
    draw_on.paste(Image.new("RGB", tile.size, _TEXT), xy, tile)


def bar_chart(labels_summary: list[dict], categories: list[str], path: str) -> str:
    """Draw the concept bar chart to ``path`` (PNG); returns ``path``.

    ``labels_summary``: the layer's ``labels`` list, ``[{label, units, cat, ...}]`` in report
    order (category, then count). Each concept gets a ``BAR_W``-wide bar of height
    ``PLOT_H * count / max_count`` in its category colour, the count above it and its name
    rotated below; each category run gets a caption. ``categories`` names the known categories
    (for stable colours of categories outside the reference's list). Size: ``chart_size``.
    """
    font = _font()
    width, height = chart_size(labels_summary)
    label_h = _label_h(labels_summary, font)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    base = TOP + PLOT_H  # y of the axis
    draw.text((6, 6), "interpretable units per concept", fill=_TEXT, font=font)
    if not labels_summary:
        draw.text((LEFT, TOP + PLOT_H // 2), "no interpretable units", fill=_TEXT, font=font)
    else:
        top = max(len(e["units"]) for e in labels_summary)
        draw.line([(LEFT - 4, base), (width - RIGHT, base)], fill=_AXIS)
        draw.text((4, TOP - 8), str(top), fill=_AXIS, font=font)
        draw.text((4, base - 8), "0", fill=_AXIS, font=font)
        x = LEFT
        for cat, entries in _groups(labels_summary):
            color = category_color(cat, categories)
            x_start = x
            for entry in entries:
                count = len(entry["units"])
                # Round, but keep at least 1 px so a single unit is visible next to many.
                h = max(1, int(round(PLOT_H * count / top)))
                draw.rectangle([x, base - h, x + BAR_W - 1, base - 1], fill=color)
                tw = draw.textlength(str(count), font=font)
                draw.text((x + (BAR_W - tw) / 2, base - h - 15), str(count), fill=_TEXT, font=font)
                name = str(entry["label"])
                if draw.textlength(name, font=font) > label_h - 6:
                    while name and draw.textlength(name + "...", font=font) > label_h - 6:
                        name = name[:-1]
                    name += "..."
                _vertical_text(img, (x + 1, base + 4), name, font)
                x += BAR_W + BAR_GAP
            x_end = x - BAR_GAP
            y = base + label_h
            draw.line([(x_start, y), (x_end - 1, y)], fill=_AXIS, width=1)
            cw = draw.textlength(cat, font=font)
            cx = max(x_start, (x_start + x_end - cw) / 2)
            draw.text((cx, y + 5), cat, fill=_TEXT, font=font)
            x += GROUP_GAP
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img.save(path)
    return path
