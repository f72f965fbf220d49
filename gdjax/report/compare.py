"""Compare dissections: interpretable units per concept and per category, layer by layer or
model by model (the paper's comparison of layers and scene models), from ``dissect.json``
files alone — no network runs.

A *column* is one layer of one run. :func:`columns` picks them (every layer of every run, or
the named layers of each), :func:`table` counts, :func:`write` saves ``compare.json``,
``compare.png`` (one row of bars per column over the same concept axis, concepts grouped by
category) and ``compare.html``.

What is counted, per column: a unit counts for a concept when it is interpretable (its
record's ``interp``, the thresholds its dissection used) and labelled with that concept
(``iou_label``); a category's units are the interpretable units whose label is of that
category (``iou_cat``), its concepts the distinct labels among them, its mean IoU the mean of
their ``iou``.
"""

from __future__ import annotations

import collections
import html
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from gdjax import rundir
from gdjax.errors import InputError
from gdjax.report import chart, draw, record

__all__ = ["columns", "summarize_layer", "table", "text", "write", "draw_chart", "write_html"]

JSON, PNG, HTML = "compare.json", "compare.png", "compare.html"


def _run_names(paths: Sequence[str]) -> list[str]:
    """The run directory's name for each path (``out/dissect/dissect.json`` and
    ``out/dissect`` are both ``dissect``); the paths as given where two names would clash."""
    names = []
    for p in paths:
        p = os.path.normpath(p)
        d = os.path.dirname(p) if p.endswith(".json") else p
        names.append(os.path.basename(d) or d)
    if len(set(names)) < len(names):
        return [os.path.normpath(p) for p in paths]
    return names


def columns(runs: Sequence[str], layers: Sequence[str] | None = None) -> list[tuple[str, dict]]:
    """``[(name, layer record)]``: the ``layers`` of each run (every dissected layer when
    ``None`` or empty), run by run, in the given order.

    ``runs``: ``dissect.json`` paths or directories holding one. Names are the layer when
    there is one run, the run's directory name when each run gives one layer, else
    ``run/layer``. A missing file or layer raises :class:`InputError` naming it.
    """
    runs = [r for r in runs if r]
    if not runs:
        raise InputError("--runs: no dissection given")
    layers = [x for x in layers or () if x]
    names = _run_names(runs)
    picked = []
    for name, path in zip(names, runs, strict=True):
        file = os.path.join(path, record.DISSECT_JSON) if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise InputError(
                f"{path}: no dissection there ({file} not found; make one with "
                "python examples/dissect.py --outdir DIR)"
            )
        rec = record.read(file)
        chosen = layers or [lrec.get("layer") for lrec in rec["layers"]]
        if not chosen:
            raise InputError(f"{path} has no dissected layer")
        for layer in chosen:
            picked.append((name, layer, record.layer(rec, layer, path)))
    one_run = len(runs) == 1
    one_layer = all(sum(1 for n, _, _ in picked if n == run) == 1 for run in names)
    out = []
    for run, layer, lrec in picked:
        label = layer if one_run else run if one_layer else f"{run}/{layer}"
        out.append((label, lrec))
    return out


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def summarize_layer(name: str, lrec: dict) -> dict:
    """One column: ``{name, layer, units, interpretable, iou_threshold, iqr_threshold,
    concepts: {label: {cat, units, mean_iou}}, categories: {cat: {units, concepts,
    mean_iou}}}`` from a layer record's unit records (``mean_iou``: ``None`` without units)."""
    units = lrec.get("units") or []
    good = [u for u in units if u.get("interp")]
    by_label, by_cat = collections.defaultdict(list), collections.defaultdict(list)
    cat_of = {}
    for u in good:
        by_label[u["iou_label"]].append(float(u.get("iou") or 0.0))
        by_cat[u["iou_cat"]].append(u)
        cat_of[u["iou_label"]] = u["iou_cat"]
    return {
        "name": name,
        "layer": lrec.get("layer"),
        "units": len(units),
        "interpretable": len(good),
        "iou_threshold": lrec.get("iou_threshold"),
        "iqr_threshold": lrec.get("iqr_threshold"),
        "concepts": {
            label: {"cat": cat_of[label], "units": len(ious), "mean_iou": _mean(ious)}
            for label, ious in by_label.items()
        },
        "categories": {
            cat: {
                "units": len(us),
                "concepts": len({u["iou_label"] for u in us}),
                "mean_iou": _mean([float(u.get("iou") or 0.0) for u in us]),
            }
            for cat, us in by_cat.items()
        },
    }


def _cat_key(cat: str, seen: list[str]) -> tuple[int, int]:
    order = record.CATEGORY_ORDER
    return (order.index(cat), 0) if cat in order else (len(order), seen.index(cat))


def table(cols: Sequence[tuple[str, dict]]) -> dict:
    """The comparison of :func:`columns`: ``{columns: [summarize_layer ...], concepts: [{label,
    cat, units: [per column]}], categories: [{cat, units, concepts, mean_iou: [per column]}]}``.

    Concepts are grouped by category (the reference's category order, others after in the
    order met), then by units over all columns (more first), then by name; a concept or
    category absent from a column counts 0 there (``mean_iou`` ``None``).
    """
    summaries = [summarize_layer(name, lrec) for name, lrec in cols]
    cat_of, total, seen = {}, collections.Counter(), []
    for s in summaries:
        for label, c in s["concepts"].items():
            cat_of[label] = c["cat"]
            total[label] += c["units"]
            if c["cat"] not in seen:
                seen.append(c["cat"])
    cats = sorted(seen, key=lambda c: _cat_key(c, seen))
    labels = sorted(cat_of, key=lambda x: (_cat_key(cat_of[x], seen), -total[x], x))
    concepts = [
        {"label": x, "cat": cat_of[x],
         "units": [s["concepts"].get(x, {}).get("units", 0) for s in summaries]}
        for x in labels
    ]  # fmt: skip
    categories = []
    for cat in cats:
        per = [s["categories"].get(cat, {}) for s in summaries]
        categories.append({
            "cat": cat,
            "units": [p.get("units", 0) for p in per],
            "concepts": [p.get("concepts", 0) for p in per],
            "mean_iou": [p.get("mean_iou") for p in per],
        })  # fmt: skip
    return {"columns": summaries, "concepts": concepts, "categories": categories}


def _fmt_iou(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def text(tab: dict) -> str:
    """A plain-text table: interpretable / all units, then one row per concept, then per
    category its units, concepts and mean IoU, one column per layer or model."""
    names = [c["name"] for c in tab["columns"]]
    w0 = max([12, *(len(x["label"]) + 2 for x in tab["concepts"])])
    w0 = max([w0, *(len(c["cat"]) + 12 for c in tab["categories"])])
    w = max([9, *(len(n) + 2 for n in names)])
    row = lambda head, cells: head.ljust(w0) + "".join(str(c).rjust(w) for c in cells)
    lines = [row("", names)]
    lines.append(row("interpretable", [f"{c['interpretable']}/{c['units']}"
                                       for c in tab["columns"]]))  # fmt: skip
    cat = None
    for x in tab["concepts"]:
        if x["cat"] != cat:
            cat = x["cat"]
            lines.append(f"[{cat}]")
        lines.append(row("  " + x["label"], x["units"]))
    for c in tab["categories"]:
        lines.append(row(f"{c['cat']} units", c["units"]))
        lines.append(row(f"{c['cat']} concepts", c["concepts"]))
        lines.append(row(f"{c['cat']} mean IoU", [_fmt_iou(v) for v in c["mean_iou"]]))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ chart

_TEXT, _AXIS, _ROW = (30, 30, 30), (120, 120, 120), (244, 244, 244)
_BAR_W, _COL_W, _GROUP_GAP = 16, 24, 14  # bar, concept column and gap between categories
_ROW_H, _BAR_MAX = 66, 40  # one row per layer/model; the tallest bar
_PAD = 8


def _rotated(img: Image.Image, xy: tuple[int, int], text_: str, fnt) -> None:
    """Paste ``text_`` rotated 90° (reads bottom to top) with its top-left corner at ``xy``."""
    x0, y0, x1, y1 = fnt.getbbox(text_)
    tile = Image.new("L", (int(x1) + 2, int(y1) + 2), 0)
    ImageDraw.Draw(tile).text((1, 1), text_, fill=255, font=fnt)
    tile = tile.rotate(90, expand=True)
    img.paste(Image.new("RGB", tile.size, _TEXT), xy, tile)


def _concept_x(tab: dict) -> tuple[list[float], list[tuple[str, float, float]], float]:
    """x offsets of the concept columns, ``(cat, x0, x1)`` per category run, total width."""
    xs, groups, x, cat = [], [], 0.0, None
    for c in tab["concepts"]:
        if c["cat"] != cat:
            if cat is not None:
                x += _GROUP_GAP
            groups.append([c["cat"], x, x])
            cat = c["cat"]
        xs.append(x)
        x += _COL_W
        groups[-1][2] = x
    return xs, [tuple(g) for g in groups], x


def _iou(col: dict) -> float | None:
    """Mean IoU of a column's interpretable units (over all categories)."""
    cats = col["categories"].values()
    n = sum(c["units"] for c in cats)
    return sum(c["units"] * c["mean_iou"] for c in cats) / n if n else None


def draw_chart(tab: dict, path: str, title: str = "interpretable units per concept") -> str:
    """PNG small multiples: one row per column of ``tab`` (at its left the name,
    ``interpretable/units`` and the mean IoU of its interpretable units), one bar per concept,
    heights on one scale over all rows (the count written above each bar), concepts named
    below the last row and grouped by category under a caption, bars in the category's
    colour."""
    fnt = draw.font()
    ascent, descent = fnt.getmetrics()
    line = ascent + descent
    cols = tab["columns"]
    heads = [
        (c["name"], f"{c['interpretable']}/{c['units']} interp.", f"IoU {_fmt_iou(_iou(c))}")
        for c in cols
    ]
    left = int(max([fnt.getlength(t) for h in heads for t in h] + [40])) + 2 * _PAD
    xs, groups, width = _concept_x(tab)
    longest = max([fnt.getlength(c["label"]) for c in tab["concepts"]] + [20])
    label_h = int(min(110, longest + 10))
    top = _PAD + line + _PAD
    w = int(left + max(width, 120) + _PAD)
    h = top + len(cols) * _ROW_H + label_h + line + 2 * _PAD
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((_PAD, _PAD), draw.fit_text(title, w - 2 * _PAD, fnt), fill=_TEXT, font=fnt)
    peak = max([max(c["units"]) for c in tab["concepts"]] + [1])
    cats = [c["cat"] for c in tab["categories"]]
    for r in range(len(cols)):
        y0 = top + r * _ROW_H
        base = y0 + _ROW_H - 6
        if r % 2 == 0:
            d.rectangle([0, y0, w - 1, y0 + _ROW_H - 1], fill=_ROW)
        d.text((_PAD, y0 + 6), heads[r][0], fill=_TEXT, font=fnt)
        d.text((_PAD, y0 + 6 + line), heads[r][1], fill=_AXIS, font=fnt)
        d.text((_PAD, y0 + 6 + 2 * line), heads[r][2], fill=_AXIS, font=fnt)
        d.line([left - 2, base, left + width, base], fill=_AXIS)
        if not tab["concepts"]:
            d.text((left, base - line), "no interpretable units", fill=_TEXT, font=fnt)
        for x, c in zip(xs, tab["concepts"], strict=True):
            n = c["units"][r]
            if n == 0:
                continue
            bh = max(1, int(round(_BAR_MAX * n / peak)))
            x0 = left + x + (_COL_W - _BAR_W) / 2
            d.rectangle([x0, base - bh, x0 + _BAR_W - 1, base - 1],
                        fill=chart.category_color(c["cat"], cats))  # fmt: skip
            s = str(n)
            d.text((x0 + (_BAR_W - fnt.getlength(s)) / 2, base - bh - line), s, fill=_TEXT,
                   font=fnt)  # fmt: skip
    y = top + len(cols) * _ROW_H + 4
    for x, c in zip(xs, tab["concepts"], strict=True):
        name = draw.fit_text(c["label"], label_h - 6, fnt)
        _rotated(img, (int(left + x + (_COL_W - line) / 2), y), name, fnt)
    for cat, x0, x1 in groups:
        yc = y + label_h
        d.line([left + x0, yc, left + x1 - 1, yc], fill=_AXIS)
        cw = fnt.getlength(cat)
        d.text((left + max(x0, (x0 + x1 - cw) / 2), yc + 4), cat, fill=_TEXT, font=fnt)
    return draw.save_png(path, np.asarray(img))


# ------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222}
table{border-collapse:collapse;margin:8px 0 24px}
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}
tr.cat td{font-weight:600;background:#f4f4f4;text-align:left}
td.zero{color:#bbb}.help{max-width:60em;color:#444}
"""


def write_html(path: str, tab: dict, png: str | None = None) -> str:
    """A self-contained page: what is counted, the chart (``png``, by relative path), the
    concept table grouped by category and the per-category units, concepts and mean IoU."""
    e = html.escape
    cols = tab["columns"]
    head = "<tr><th></th>" + "".join(f"<th>{e(c['name'])}</th>" for c in cols) + "</tr>"
    cell = lambda v: f'<td class="zero">{v}</td>' if v in (0, "-") else f"<td>{e(str(v))}</td>"
    body = [
        "<h1>Interpretable units per concept</h1>",
        '<p class="help">One column per layer or model. A unit counts for a concept when its '
        "dissection found it interpretable (IoU, and IQR where the run used it, above that "
        "run's thresholds) with that concept as its label. Categories: units whose label is of "
        "the category, distinct concepts among them, their mean IoU.</p>",
    ]
    if png:
        src = html.escape(os.path.relpath(png, os.path.dirname(os.path.abspath(path))))
        body.append(f'<img src="{src}" alt="interpretable units per concept">')
    body += ["<h2>Concepts</h2><table>", head]
    body.append("<tr><td>interpretable / units</td>" + "".join(
        f"<td>{c['interpretable']}/{c['units']}</td>" for c in cols) + "</tr>")  # fmt: skip
    cat = None
    for x in tab["concepts"]:
        if x["cat"] != cat:
            cat = x["cat"]
            body.append(f'<tr class="cat"><td colspan="{len(cols) + 1}">{e(cat)}</td></tr>')
        body.append(f"<tr><td>{e(x['label'])}</td>" + "".join(map(cell, x["units"])) + "</tr>")
    body += ["</table><h2>Categories</h2><table>", head]
    for c in tab["categories"]:
        body.append(f'<tr class="cat"><td colspan="{len(cols) + 1}">{e(c["cat"])}</td></tr>')
        body.append("<tr><td>units</td>" + "".join(map(cell, c["units"])) + "</tr>")
        body.append("<tr><td>concepts</td>" + "".join(map(cell, c["concepts"])) + "</tr>")
        ious = [_fmt_iou(v) for v in c["mean_iou"]]
        body.append("<tr><td>mean IoU</td>" + "".join(map(cell, ious)) + "</tr>")
    body.append("</table>")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Comparison: {e(', '.join(c['name'] for c in cols))}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def write(outdir: str, runs: Sequence[str], layers: Sequence[str] | None = None) -> dict:
    """Compare ``layers`` of ``runs`` (:func:`columns`) and write ``compare.json`` (the
    :func:`table` record with the runs, layers and ``paths``), ``compare.png`` and
    ``compare.html`` into ``outdir``. Everything is read and checked before anything is
    written. Returns the record."""
    tab = table(columns(runs, layers))
    paths = [os.path.join(outdir, name) for name in (JSON, PNG, HTML)]
    out = {"runs": list(runs), "layers": list(layers or []), **tab, "paths": paths}
    draw_chart(tab, paths[1])
    write_html(paths[2], tab, paths[1])
    rundir.write_json(paths[0], out)
    return out
