"""The dissection's ``report.html``: one self-contained page (inline CSS and JS, no network,
images by relative path) that opens from disk.

Summary first (model, what IoU, IQR and the flags mean, interpretable units per layer,
settings), then per layer the rule that made units interpretable with the layer's thresholds,
the concept chart and every unit with its strips, label, category, IoU and IQR, sortable by
unit, label (the reference's ``label`` ranking), IoU or IQR, with an "interpretable only"
filter. A unit whose record has a ``flag`` (``'below chance'``, ``'IoU ≈ 0'``) shows its label
greyed with a ⚠ and the flag; records without the field render as before.
"""

from __future__ import annotations

import html
import math
import numbers
import os
import urllib.parse

__all__ = ["FLAGS", "format_value", "write_html"]

# What each unit flag means, shown in the legend and as the flagged label's tooltip.
FLAGS = {
    "below chance": "the unit overlaps its label less than chance predicts (label size x active "
    "size / image area): it is anti-correlated with the label, active mostly elsewhere",
    "IoU ≈ 0": "its IoU is under 0.01: the label is only the best of poor matches",
}


def _url(*parts) -> str:
    """A relative URL from path parts, percent-encoded per part and HTML-escaped."""
    return html.escape("/".join(urllib.parse.quote(str(p)) for p in parts), quote=True)


def _float(v: float) -> str:
    """Compact: ``0.05``, ``12.5``, ``123457``; ``1e-4`` style only below 1e-3 or from 1e6."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    if abs(v) < 1e-3 or abs(v) >= 1e6:
        mantissa, exp = f"{v:.3e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    return f"{v:.6g}"


def format_value(v) -> str:
    """A setting as a person reads it: strings plain, ``None`` as ``—``, booleans yes/no,
    floats compact, lists joined by ``, ``, dicts as ``k: v`` pairs joined by ``; ``."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return _float(float(v))
    if isinstance(v, dict):
        return "; ".join(f"{k}: {format_value(x)}" for k, x in v.items()) or "—"
    if isinstance(v, (list, tuple)):
        return ", ".join(format_value(x) for x in v) or "—"
    return str(v)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}
th.sort{cursor:pointer;color:#246}th.sort:hover{text-decoration:underline}
.units img{display:block;height:96px;width:auto;image-rendering:pixelated}.no td{color:#999}
.bar button{margin-right:6px}.bar{margin:8px 0}h2{margin-top:32px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.rule{font-weight:600}.help{max-width:64em;color:#444}
.help dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:0}
.help dt{font-weight:600}.help dd{margin:0}
.flagged .lab{color:#999;font-style:italic}.flag{color:#b35900;white-space:nowrap}
"""

# Sorting reads data-* attributes of the rows; 'label' uses the reference's label ranking.
_JS = """
function sortUnits(id,key,desc){var t=document.getElementById(id).tBodies[0];
var rows=Array.prototype.slice.call(t.rows);rows.sort(function(a,b){
var x=parseFloat(a.dataset[key]),y=parseFloat(b.dataset[key]);return desc?y-x:x-y;});
rows.forEach(function(r){t.appendChild(r);});}
function onlyInterp(id,on){var rows=document.getElementById(id).tBodies[0].rows;
for(var i=0;i<rows.length;i++){rows[i].style.display=(on&&rows[i].dataset.interp!=='1')?'none':'';}}
"""


def _table_id(layer: str) -> str:
    """An HTML id for the layer's unit table (letters, digits and ``_`` only)."""
    return "units-" + "".join(c if c.isalnum() else "_" for c in layer)


def _rule(layer: dict, record: dict) -> str:
    """``interpretable: IoU > a and IQR > b`` with the layer's thresholds (else the record's)."""
    iou = layer.get("iou_threshold", record.get("iou_threshold"))
    iqr = layer.get("iqr_threshold", record.get("iqr_threshold"))
    if iqr is None:  # the PNAS successor's rule: IoU alone
        return f"interpretable: IoU > {format_value(iou)}"
    return f"interpretable: IoU > {format_value(iou)} and IQR > {format_value(iqr)}"


def _help(record: dict) -> list[str]:
    """The legend: what a label, IoU, IQR and the flags mean."""
    e = html.escape
    iou, iqr = (e(format_value(record.get(k))) for k in ("iou_threshold", "iqr_threshold"))
    rule = f"IoU &gt; {iou}" if record.get("iqr_threshold") is None else (
        f"IoU &gt; {iou} and IQR &gt; {iqr}"
    )  # fmt: skip
    flags = "".join(
        f'<dt><span class="flag">⚠ {e(name)}</span></dt><dd>{e(text)}.</dd>'
        for name, text in FLAGS.items()
    )
    return [
        '<div class="help"><h3>How to read this</h3><dl>'
        "<dt>label</dt><dd>the concept whose segmentation best matches where the unit is active "
        "(its activation above the unit's threshold), with the concept's category.</dd>"
        "<dt>IoU</dt><dd>intersection over union of the unit's active pixels and the label's "
        "pixels over all images (0: disjoint, 1: identical).</dd>"
        "<dt>IQR</dt><dd>information quality ratio of the same two masks: their mutual "
        "information divided by their joint entropy (0: independent, 1: identical).</dd>"
        "<dt>interpretable</dt><dd>the label's IoU (and IQR) are above the thresholds each "
        f"layer states (here {rule}); greyed rows are not.</dd>"
        f"{flags}</dl></div>"
    ]


def _layer_html(layer: dict, record: dict) -> list[str]:
    name, e = layer["layer"], html.escape
    tid = _table_id(name)
    rank = next(r["score"] for r in layer["rankings"] if r["name"] == "label")
    flagged = sum(1 for u in layer["units"] if u.get("flag"))
    note = f", {flagged} labels flagged ⚠" if flagged else ""
    sort = lambda key, desc, text: (
        f"<button onclick=\"sortUnits('{tid}','{key}',{str(desc).lower()})\">{text}</button>"
    )
    head = lambda key, desc, text: (
        f"<th class=\"sort\" onclick=\"sortUnits('{tid}','{key}',{str(desc).lower()})\">{text}</th>"
    )
    out = [
        f"<h2>Layer {e(name)}</h2>",
        f'<p><span class="rule">{e(_rule(layer, record))}</span> — {layer["interpretable"]} '
        f"of {len(layer['units'])} units interpretable{e(note)}.</p>",
        f'<img src="{_url(layer["dirname"], layer["bargraph"])}" alt="concepts of {e(name)}">',
        '<div class="bar">Sort by '
        + sort("unit", False, "unit")
        + sort("rank", False, "label")
        + sort("iou", True, "IoU")
        + sort("iqr", True, "IQR")
        + f'<label><input type="checkbox" onchange="onlyInterp(\'{tid}\',this.checked)">'
        " interpretable only</label></div>",
        f'<table class="units" id="{tid}"><thead><tr>'
        + head("unit", False, "unit")
        + head("rank", False, "label")
        + "<th>category</th>"
        + head("iou", True, "IoU")
        + head("iqr", True, "IQR")
        + "<th>interp</th><th>top images / segmentation</th></tr></thead><tbody>",
    ]
    for u in layer["units"]:
        n, iou, iqr = u["unit"], u["iou"] or 0.0, u.get("iou_iqr") or 0.0
        flag = u.get("flag")
        top, seg = _url(name, "image", f"{n}-top.jpg"), _url(name, "image", f"{n}-seg.png")
        classes = " ".join(c for c in ("" if u["interp"] else "no", "flagged" if flag else "") if c)
        classes = f' class="{classes}"' if classes else ""
        label = f'<span class="lab">{e(u["iou_label"])}</span>'
        if flag:
            why = FLAGS.get(flag, "a label not to trust")
            label = (
                f'<td title="{e(f"{flag}: {why}", quote=True)}">{label} '
                f'<span class="flag">⚠ {e(flag)}</span></td>'
            )
        else:
            label = f"<td>{label}</td>"
        out.append(
            f'<tr data-unit="{n}" data-rank="{rank[n]}" data-iou="{iou:.6g}" '
            f'data-iqr="{iqr:.6g}" data-interp="{int(u["interp"])}"{classes}>'
            f"<td>{n}</td>{label}<td>{e(u['iou_cat'])}</td>"
            f'<td class="num">{iou:.3f}</td><td class="num">{iqr:.3f}</td>'
            f"<td>{'yes' if u['interp'] else 'no'}</td>"
            f'<td><a href="{top}"><img loading="lazy" src="{top}" alt="unit {n} top images"></a>'
            f'<a href="{seg}"><img loading="lazy" src="{seg}" alt="unit {n} segmentation"></a>'
            "</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def write_html(outdir: str, record: dict) -> str:
    """Write ``outdir/report.html``: self-contained (inline CSS/JS, no network), images by
    relative path. Summary (model, a legend of IoU, IQR and the flags, interpretable units per
    layer, settings as plain values), then per layer its rule (``interpretable: IoU > t and
    IQR > t``), the chart and every unit (number, label with its flag, category, IoU, IQR,
    interp, strips), sortable by unit, label (the ``label`` ranking), IoU or IQR, with an
    "interpretable only" filter."""
    e = html.escape
    settings = record.get("settings") or {}
    has_flags = any("flag" in u for layer in record["layers"] for u in layer["units"])
    body = [
        f"<h1>GAN dissection: {e(str(record.get('netname', '')))}</h1>",
        "<table><tr><th>layer</th><th>units</th><th>interpretable</th>"
        + ("<th>flagged ⚠</th>" if has_flags else "")
        + "<th>top concepts</th></tr>",
    ]
    for layer in record["layers"]:
        top = ", ".join(f"{s['label']} ({len(s['units'])})" for s in layer["labels"][:6])
        flagged = sum(1 for u in layer["units"] if u.get("flag"))
        body.append(
            f'<tr><td><a href="#{_table_id(layer["layer"])}">{e(layer["layer"])}</a></td>'
            f"<td>{len(layer['units'])}</td><td>{layer['interpretable']}</td>"
            + (f"<td>{flagged}</td>" if has_flags else "")
            + f"<td>{e(top)}</td></tr>"
        )
    body.append("</table>")
    body += _help(record)
    body.append('<h3>Settings</h3><table class="settings">')
    rows = {
        "quantile_threshold": record.get("quantile_threshold"),
        "iou_threshold": record.get("iou_threshold"),
        "iqr_threshold": record.get("iqr_threshold"),
        **settings,
        **(record.get("meta") or {}),
    }
    for k, v in rows.items():
        body.append(f"<tr><td>{e(str(k))}</td><td>{e(format_value(v))}</td></tr>")
    body.append("</table>")
    for layer in record["layers"]:
        body += _layer_html(layer, record)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Dissection of {e(str(record.get('netname', '')))}</title>"
        f"<style>{_CSS}</style><script>{_JS}</script></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
