"""The dissection's ``report.html``: one self-contained page (inline CSS and JS, no network,
images by relative path) that opens from disk.

Summary first (model, samples, settings, interpretable units per layer), then per layer the
concept chart and every unit with its strips, label, category and IoU, sortable by unit, label
(the reference's ``label`` ranking) or IoU, with an "interpretable only" filter.
"""

from __future__ import annotations

import html
import json
import os
import urllib.parse

__all__ = ["write_html"]


def _url(*parts) -> str:
    """A relative URL from path parts, percent-encoded per part and HTML-escaped."""
    return html.escape("/".join(urllib.parse.quote(str(p)) for p in parts), quote=True)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222}
table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}
th.sort{cursor:pointer;color:#246}th.sort:hover{text-decoration:underline}
.units img{display:block;height:96px;width:auto;image-rendering:pixelated}.no td{color:#999}
.bar button{margin-right:6px}.bar{margin:8px 0}h2{margin-top:32px}
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


def _layer_html(layer: dict) -> list[str]:
    name, e = layer["layer"], html.escape
    tid = _table_id(name)
    rank = next(r["score"] for r in layer["rankings"] if r["name"] == "label")
    out = [
        f"<h2>Layer {e(name)}</h2>",
        f"<p>{layer['interpretable']} of {len(layer['units'])} units interpretable.</p>",
        f'<img src="{_url(layer["dirname"], layer["bargraph"])}" alt="concepts of {e(name)}">',
        '<div class="bar">Sort by '
        f"<button onclick=\"sortUnits('{tid}','unit',false)\">unit</button>"
        f"<button onclick=\"sortUnits('{tid}','rank',false)\">label</button>"
        f"<button onclick=\"sortUnits('{tid}','iou',true)\">IoU</button>"
        f'<label><input type="checkbox" onchange="onlyInterp(\'{tid}\',this.checked)">'
        " interpretable only</label></div>",
        f'<table class="units" id="{tid}"><thead><tr>'
        f"<th class=\"sort\" onclick=\"sortUnits('{tid}','unit',false)\">unit</th>"
        f"<th class=\"sort\" onclick=\"sortUnits('{tid}','rank',false)\">label</th>"
        "<th>category</th>"
        f"<th class=\"sort\" onclick=\"sortUnits('{tid}','iou',true)\">IoU</th>"
        "<th>interp</th><th>top images / segmentation</th></tr></thead><tbody>",
    ]
    no = ' class="no"'
    for u in layer["units"]:
        n, iou = u["unit"], u["iou"] or 0.0
        top, seg = _url(name, "image", f"{n}-top.jpg"), _url(name, "image", f"{n}-seg.png")
        out.append(
            f'<tr data-unit="{n}" data-rank="{rank[n]}" data-iou="{iou:.6g}" '
            f'data-interp="{int(u["interp"])}"{"" if u["interp"] else no}>'
            f"<td>{n}</td><td>{e(u['iou_label'])}</td><td>{e(u['iou_cat'])}</td>"
            f"<td>{iou:.3f}</td><td>{'yes' if u['interp'] else 'no'}</td>"
            f'<td><a href="{top}"><img loading="lazy" src="{top}" alt="unit {n} top images"></a>'
            f'<a href="{seg}"><img loading="lazy" src="{seg}" alt="unit {n} segmentation"></a>'
            "</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def write_html(outdir: str, record: dict) -> str:
    """Write ``outdir/report.html``: self-contained (inline CSS/JS, no network), images by
    relative path. Summary (model, samples, settings, interpretable units per layer), then per
    layer the chart and every unit (number, label, category, IoU, interp, strips), sortable by
    unit, label (the ``label`` ranking) or IoU, with an "interpretable only" filter."""
    e = html.escape
    settings = record.get("settings") or {}
    body = [
        f"<h1>GAN dissection: {e(str(record.get('netname', '')))}</h1>",
        "<table><tr><th>layer</th><th>units</th><th>interpretable</th><th>top concepts</th></tr>",
    ]
    for layer in record["layers"]:
        top = ", ".join(f"{s['label']} ({len(s['units'])})" for s in layer["labels"][:6])
        body.append(
            f'<tr><td><a href="#{_table_id(layer["layer"])}">{e(layer["layer"])}</a></td>'
            f"<td>{len(layer['units'])}</td><td>{layer['interpretable']}</td><td>{e(top)}</td></tr>"
        )
    body.append("</table><h3>Settings</h3><table>")
    rows = {
        "quantile_threshold": record.get("quantile_threshold"),
        "iou_threshold": record.get("iou_threshold"),
        "iqr_threshold": record.get("iqr_threshold"),
        **settings,
        **(record.get("meta") or {}),
    }
    for k, v in rows.items():
        body.append(f"<tr><td>{e(str(k))}</td><td>{e(json.dumps(v))}</td></tr>")
    body.append("</table>")
    for layer in record["layers"]:
        body += _layer_html(layer)
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
