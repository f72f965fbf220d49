"""Dissection results as files a person can open: JSON, statistics, unit strips, chart and (with
:mod:`gdjax.report.page`) the HTML report.

Field names follow the reference's ``generate_report`` (reference §3.6, §3.7) so its readers
work on ours. Layout under ``outdir``::

    dissect.json  report.html
    <layer>/stats.npz  <layer>/bargraph.png  <layer>/image/<u>-top.jpg  <layer>/image/<u>-seg.png

Deliberate differences from the reference:

* ``iou_threshold`` is a plain float (the reference writes a 1-element list, a trailing-comma
  bug, reference §9.16).
* Ranking scores keep the reference's convention: **lower is better**, so metric rankings hold
  negated metrics (``'max iou'`` is ``-iou``) and the ``'label'`` ranking holds each unit's
  position (0 = first) in the label order.
* Top-image strips are JPEG at quality 90 (the reference: 80), segmentation strips PNG, as the
  reference; the chart is PNG (not SVG) and ``report.html`` is self-contained (inline CSS/JS;
  the reference's viewers load Vue/jQuery/bootstrap from CDNs).
* The strip mask is the IoU's own mask (bilinear, edge clamp, strict ``>``), not the
  reference's zero-padded spline with ``>=`` (reference §9.18), so pictures and IoU agree.
"""

from __future__ import annotations

import collections
import json
import math
import os

import numpy as np

from gdjax.report import chart, page, strips

__all__ = [
    "CATEGORY_ORDER",
    "layer_record",
    "report_record",
    "save_stats",
    "unit_records",
    "write_json",
    "write_report",
]

CATEGORY_ORDER = ("object", "scene", "part", "piece", "material", "texture", "color")
_QUAD_SUFFIXES = ("-t", "-b", "-l", "-r")


# ---------------------------------------------------------------------------------- records


def _num(x) -> float | None:
    """A JSON-safe float (non-finite -> ``None``)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _category_index(labels, categories) -> np.ndarray:
    """int ``[L]``: index of each label's category; unknown categories fall into 0 (§9b.21)."""
    index = {c: i for i, c in enumerate(categories)}
    return np.array([index.get(cat, 0) for _, cat in labels], np.int64)


def unit_records(
    labels, categories, iou, iqr, best, levels, top_values, top_indices, lc, cc, ic,
    interp=None, max_iqr=None, max_iqr_level=None, max_iqr_quantile=None, max_iqr_iou=None,
    iou_threshold=0.05, iqr_threshold=0.01,
) -> list[dict]:  # fmt: skip
    """One reference unit record per unit (reference §3.6, §3.7).

    ``labels``: ``[(name, category)] * L`` (label 0 is ``'-'``); ``iou``, ``iqr`` (IQR scores),
    ``ic``: ``[L, C]``; ``best``: int ``[C]`` label per unit (argmax of ``max_iqr`` in IQR mode,
    of ``iou`` otherwise; chosen by the caller); ``levels``: ``[C]``; ``top_values``,
    ``top_indices``: ``[k, C]`` (max activation, image number; best first); ``lc``: ``[L]``;
    ``cc``: ``[ncat, C]``. ``interp``: bool ``[C]``, default ``iou > iou_threshold and iou_iqr >
    iqr_threshold`` of the unit's label. With ``max_iqr`` (and the other ``max_iqr_*``, all
    ``[L, C]``) the ``iqr*`` fields are added: the label of largest ``max_iqr`` after zeroing
    entries whose ``max_iqr_quantile > 0.5`` (first index on ties, label 0 competing).
    """
    cat = _category_index(labels, categories)
    best = np.asarray(best, np.int64)
    units = np.arange(best.shape[0])
    u_iou = np.asarray(iou, np.float64)[best, units]
    u_iqr = np.asarray(iqr, np.float64)[best, units]
    if interp is None:
        interp = (u_iou > iou_threshold) & (u_iqr > iqr_threshold)
    if max_iqr is not None:
        masked = np.where(np.asarray(max_iqr_quantile) > 0.5, 0.0, np.asarray(max_iqr))
        q_best = np.argmax(masked, axis=0)
    records = []
    for u in units:
        b = int(best[u])
        r = {
            "unit": int(u),
            "interp": bool(interp[u]),
            "level": _num(levels[u]),
            "top": [
                {"imgnum": int(i), "maxact": _num(v)}
                for i, v in zip(
                    np.asarray(top_indices)[:, u], np.asarray(top_values)[:, u], strict=True
                )
            ],
            "iou": _num(u_iou[u]),
            "iou_iqr": _num(u_iqr[u]),
            "lc": _num(np.asarray(lc)[b]),
            "cc": _num(np.asarray(cc)[cat[b], u]),
            "ic": _num(np.asarray(ic)[b, u]),
            "iou_labelnum": b,
            "iou_label": labels[b][0],
            "iou_cat": categories[cat[b]],
        }
        if max_iqr is not None:
            q = int(q_best[u])
            r.update(
                iqr=_num(masked[q, u]),
                iqr_label=labels[q][0],
                iqr_cat=categories[cat[q]],
                iqr_level=_num(np.asarray(max_iqr_level)[q, u]),
                iqr_quantile=_num(np.asarray(max_iqr_quantile)[q, u]),
                iqr_iou=_num(np.asarray(max_iqr_iou)[q, u]),
            )
        records.append(r)
    return records


def _strip_quad(name: str) -> str:
    """``'tree-t'`` -> ``'tree'``; ``'-'`` and plain names unchanged."""
    if len(name) > 2 and name.endswith(_QUAD_SUFFIXES):
        return name[:-2]
    return name


def _category_rank(cat: str) -> int:
    return CATEGORY_ORDER.index(cat) if cat in CATEGORY_ORDER else len(CATEGORY_ORDER)


def layer_record(
    layer, labels, categories, iou, iqr, best, levels, top_values, top_indices, lc, cc, ic,
    interp=None, max_iqr=None, max_iqr_level=None, max_iqr_quantile=None, max_iqr_iou=None,
    iou_threshold=0.05, iqr_threshold=0.01, rank_all_labels=False,
) -> dict:  # fmt: skip
    """The reference's layer record: ``layer, units, rankings, iou_threshold, iqr_threshold,
    labels, interpretable, bargraph, dirname`` (arguments as :func:`unit_records`).

    Rankings (each ``{name, [metric, concept], score: [C floats]}``, lower = better):

    * ``unit``: the unit number;
    * ``label``: position in the order interpretable first, then label popularity (number of
      interpretable units with the label), the label's best IoU among them, label number, and
      the unit's IoU (higher first);
    * ``max iou``: ``-iou`` (the unit's labelled IoU); ``max iqr``: ``-iqr`` (IQR mode);
    * ``<label>-iou``: ``-iou[l]`` and, in IQR mode, ``<label>-iqr``: ``-max_iqr[l]``, for every
      label that is some unit's ``iou_label`` (quad suffixes ``-t/-b/-l/-r`` stripped; most
      frequent first, then label number), or for every label with ``rank_all_labels``.

    ``labels`` (summary): ``[{label, labelnum, units, cat}]`` for labels with interpretable
    units (``units`` best IoU first), sorted by category (``CATEGORY_ORDER``, others last),
    then unit count (more first), then best IoU (higher first).
    """
    units = unit_records(
        labels, categories, iou, iqr, best, levels, top_values, top_indices, lc, cc, ic,
        interp, max_iqr, max_iqr_level, max_iqr_quantile, max_iqr_iou,
        iou_threshold, iqr_threshold,
    )  # fmt: skip
    iou = np.asarray(iou, np.float64)
    n = len(units)
    good = [u for u in units if u["interp"]]
    count = collections.Counter(u["iou_labelnum"] for u in good)
    top_iou = collections.defaultdict(float)
    for u in good:
        top_iou[u["iou_labelnum"]] = max(top_iou[u["iou_labelnum"]], u["iou"] or 0.0)

    def label_key(u):
        b = u["iou_labelnum"]
        return (not u["interp"], -count[b], -top_iou[b], b, -(u["iou"] or 0.0), u["unit"])

    position = np.empty(n)
    position[[u["unit"] for u in sorted(units, key=label_key)]] = np.arange(n)
    rankings = [
        {"name": "unit", "score": [float(u) for u in range(n)]},
        {"name": "label", "score": position.tolist()},
        {"name": "max iou", "metric": "iou", "score": [-(u["iou"] or 0.0) for u in units]},
    ]
    if max_iqr is not None:
        rankings.append(
            {"name": "max iqr", "metric": "iqr", "score": [-(u["iqr"] or 0.0) for u in units]}
        )
    number = {name: i for i, (name, _) in enumerate(labels)}
    if rank_all_labels:
        ranked = list(range(len(labels)))
    else:
        freq = collections.Counter(_strip_quad(u["iou_label"]) for u in units)
        names = sorted((f for f in freq if f in number), key=lambda f: (-freq[f], number[f]))
        ranked = [number[f] for f in names]
    for lab in ranked:
        name = labels[lab][0]
        rankings.append(
            {"name": f"{name}-iou", "concept": name, "metric": "iou", "score": (-iou[lab]).tolist()}
        )
        if max_iqr is not None:
            score = (-np.asarray(max_iqr, np.float64)[lab]).tolist()
            rankings.append(
                {"name": f"{name}-iqr", "concept": name, "metric": "iqr", "score": score}
            )
    summary = []
    for b in count:
        mine = [u["unit"] for u in sorted(good, key=lambda u: -u["iou"]) if u["iou_labelnum"] == b]
        cat = units[mine[0]]["iou_cat"]
        summary.append({"label": labels[b][0], "labelnum": b, "units": mine, "cat": cat})
    rank = lambda s: (_category_rank(s["cat"]), -len(s["units"]), -top_iou[s["labelnum"]])
    summary.sort(key=lambda s: (*rank(s), s["labelnum"]))
    return {
        "layer": layer,
        "units": units,
        "rankings": rankings,
        "iou_threshold": float(iou_threshold),
        "iqr_threshold": float(iqr_threshold),
        "labels": summary,
        "interpretable": len(good),
        "bargraph": "bargraph.png",  # relative to dirname, as the reference
        "dirname": layer,
    }


def report_record(
    netname, layers, labels, colors, *, meta=None, settings=None, quantile_threshold="iqr",
    iou_threshold=0.05, iqr_threshold=0.01,
) -> dict:  # fmt: skip
    """The ``dissect.json`` top level (reference §3.7).

    ``layers``: layer records (:func:`layer_record`); ``labels``: ``[(name, category)]``;
    ``colors``: uint8 ``[L, 3]`` palette, written as ``segcolors {"r,g,b": "name/name..."}``
    (labels sharing a colour joined by ``/``); ``quantile_threshold``: ``'iqr'`` or a float.
    ``default_ranking`` is ``'label'`` (as the reference when labels exist).
    """
    segcolors: dict[str, str] = {}
    for (name, _), rgb in zip(labels, np.asarray(colors)[: len(labels)], strict=True):
        key = ",".join(str(int(c)) for c in rgb)
        segcolors[key] = f"{segcolors[key]}/{name}" if key in segcolors else name
    qt = quantile_threshold if isinstance(quantile_threshold, str) else float(quantile_threshold)
    return {
        "netname": netname,
        "meta": meta or {},
        "default_ranking": "label",
        "quantile_threshold": qt,
        "settings": settings or {},
        "iou_threshold": float(iou_threshold),
        "iqr_threshold": float(iqr_threshold),
        "segcolors": segcolors,
        "layers": list(layers),
    }


# ---------------------------------------------------------------------------------- files


def write_json(outdir: str, record: dict) -> str:
    """Write ``outdir/dissect.json`` (strict JSON: NaN is rejected); returns its path."""
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "dissect.json")
    with open(path, "w") as f:
        json.dump(record, f, indent=1, allow_nan=False)
    return path


def save_stats(outdir: str, layer: str, **arrays) -> str:
    """Write the layer's statistics (``iou, iqr, best, levels, lc, cc, ic, top_values, ...``,
    as given) to ``outdir/<layer>/stats.npz``; returns its path."""
    path = os.path.join(outdir, layer, "stats.npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def write_report(outdir: str, record: dict, unit_strips=()) -> str:
    """Write everything for ``record`` (:func:`report_record`): ``unit_strips`` (iterable of
    ``(layer, unit, top_strip, seg_strip)``, via :func:`save_strip`), each layer's
    ``bargraph.png``, ``dissect.json`` and ``report.html``; returns the HTML path."""
    for layer, unit, top, seg in unit_strips:
        strips.save_strip(outdir, layer, unit, top, seg)
    categories = sorted({s["cat"] for layer in record["layers"] for s in layer["labels"]})
    for layer in record["layers"]:
        path = os.path.join(outdir, layer["layer"], "bargraph.png")
        chart.bar_chart(layer["labels"], categories, path)
    write_json(outdir, record)
    return page.write_html(outdir, record)
