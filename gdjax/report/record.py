"""The one owner of ``dissect.json``: building its records, writing, reading, and the
questions other commands ask of it (rankings, adding a ranking, classes with enough units).

Field names follow the reference's ``generate_report`` (reference §3.6, §3.7) so its readers
work on ours. Deliberate differences from the reference:

* ``iou_threshold`` is a plain float (the reference writes a 1-element list, a trailing-comma
  bug, reference §9 item 16).
* Ranking scores keep the reference's convention: **lower is better**, so metric rankings hold
  negated metrics (``'max iou'`` is ``-iou``) and the ``'label'`` ranking holds each unit's
  position (0 = first) in the label order.
* Each unit record has a ``flag`` that warns about a label a person should not trust:
  ``'below chance'`` when the unit is active on the label's pixels less often than on the
  other pixels of the domain (its intersection is below ``label size x active size / domain``:
  the unit is anti-correlated with its label), ``'IoU ≈ 0'`` when its IoU is under 0.01;
  ``None`` otherwise.
"""

from __future__ import annotations

import collections
import json
import math
import os
import shutil

import numpy as np

from gdjax import rundir
from gdjax.errors import InputError
from gdjax.models.labels import label_categories

__all__ = [
    "CATEGORY_ORDER",
    "DISSECT_JSON",
    "add_ranking",
    "eligible",
    "layer",
    "layer_record",
    "ranking",
    "read",
    "report_record",
    "unit_records",
    "write_json",
]

DISSECT_JSON = "dissect.json"
CATEGORY_ORDER = ("object", "scene", "part", "piece", "material", "texture", "color")
_QUAD_SUFFIXES = ("-t", "-b", "-l", "-r")
NEAR_ZERO_IOU = 0.01
_UNFILLED = np.iinfo(np.int32).max  # a top-k slot no image filled (gdjax.dissect.topk)


def _num(x) -> float | None:
    """A JSON-safe float (non-finite -> ``None``)."""
    x = float(x)
    return x if math.isfinite(x) else None


def unit_records(
    result, labels, categories, *, iou_threshold: float = 0.05, iqr_threshold: float | None = 0.01
) -> list[dict]:
    """One reference unit record per unit (reference §3.6, §3.7), plus ``flag``.

    ``result``: a :class:`gdjax.dissect.result.LayerResult`; ``labels``: ``[(name, category)]
    * L`` (label 0 is ``'-'``); ``categories``: names. A unit is ``interp`` when its label's
    IoU exceeds ``iou_threshold`` and its IQR ``iqr_threshold`` (``None``: no IQR condition,
    as the PNAS successor). With ``result.search`` (IQR
    mode) the ``iqr*`` fields are added: the label of largest ``max_iqr`` after zeroing entries
    whose ``max_iqr_quantile > 0.5`` (first index on ties, label 0 competing).
    """
    cat = label_categories(labels, categories)
    best = np.asarray(result.label, np.int64)
    units = np.arange(best.shape[0])
    u_iou = np.asarray(result.iou, np.float64)[best, units]
    u_iqr = np.asarray(result.iqr, np.float64)[best, units]
    interp = u_iou > iou_threshold
    if iqr_threshold is not None:
        interp &= u_iqr > iqr_threshold
    lc = np.asarray(result.label_size, np.float64)[best]
    cc = np.asarray(result.active, np.float64)[cat[best], units]
    ic = np.asarray(result.intersection, np.float64)[best, units]
    domain = np.asarray(result.domain, np.float64)[cat[best]]
    chance = lc * cc / np.maximum(domain, 1.0)
    search = result.search
    if search is not None:
        masked = np.where(search["max_iqr_quantile"] > 0.5, 0.0, search["max_iqr"])
        q_best = np.argmax(masked, axis=0)
    top_indices, top_values = np.asarray(result.top_indices), np.asarray(result.top_values)
    records = []
    for u in units:
        b = int(best[u])
        flag = None
        if b > 0 and ic[u] < chance[u]:
            flag = "below chance"
        elif u_iou[u] < NEAR_ZERO_IOU:
            flag = "IoU ≈ 0"
        r = {
            "unit": int(u),
            "interp": bool(interp[u]),
            "level": _num(result.levels[u]),
            "top": [  # slots never filled (fewer images than k) are left out
                {"imgnum": int(i), "maxact": _num(v)}
                for i, v in zip(top_indices[:, u], top_values[:, u], strict=True)
                if i != _UNFILLED
            ],
            "iou": _num(u_iou[u]),
            "iou_iqr": _num(u_iqr[u]),
            "lc": _num(lc[u]),
            "cc": _num(cc[u]),
            "ic": _num(ic[u]),
            "iou_labelnum": b,
            "iou_label": labels[b][0],
            "iou_cat": categories[cat[b]],
            "flag": flag,
        }
        if search is not None:
            q = int(q_best[u])
            r.update(
                iqr=_num(masked[q, u]),
                iqr_label=labels[q][0],
                iqr_cat=categories[cat[q]],
                iqr_level=_num(search["max_iqr_level"][q, u]),
                iqr_quantile=_num(search["max_iqr_quantile"][q, u]),
                iqr_iou=_num(search["max_iqr_iou"][q, u]),
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
    name: str,
    result,
    labels,
    categories,
    *,
    iou_threshold: float = 0.05,
    iqr_threshold: float | None = 0.01,
    rank_all_labels: bool = False,
) -> dict:
    """The reference's layer record: ``layer, units, rankings, iou_threshold, iqr_threshold,
    labels, interpretable, bargraph, dirname`` of layer ``name`` (arguments as
    :func:`unit_records`).

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
        result, labels, categories, iou_threshold=iou_threshold, iqr_threshold=iqr_threshold
    )
    iou = np.asarray(result.iou, np.float64)
    max_iqr = None if result.search is None else result.search["max_iqr"]
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
    number = {label: i for i, (label, _) in enumerate(labels)}
    if rank_all_labels:
        ranked = list(range(len(labels)))
    else:
        freq = collections.Counter(_strip_quad(u["iou_label"]) for u in units)
        names = sorted((f for f in freq if f in number), key=lambda f: (-freq[f], number[f]))
        ranked = [number[f] for f in names]
    for lab in ranked:
        concept = labels[lab][0]
        score = (-iou[lab]).tolist()
        rankings.append(
            {"name": f"{concept}-iou", "concept": concept, "metric": "iou", "score": score}
        )
        if max_iqr is not None:
            score = (-np.asarray(max_iqr, np.float64)[lab]).tolist()
            rankings.append(
                {"name": f"{concept}-iqr", "concept": concept, "metric": "iqr", "score": score}
            )
    summary = []
    for b in count:
        mine = [u["unit"] for u in sorted(good, key=lambda u: -u["iou"]) if u["iou_labelnum"] == b]
        cat = units[mine[0]]["iou_cat"]
        summary.append({"label": labels[b][0], "labelnum": b, "units": mine, "cat": cat})
    rank = lambda s: (_category_rank(s["cat"]), -len(s["units"]), -top_iou[s["labelnum"]])
    summary.sort(key=lambda s: (*rank(s), s["labelnum"]))
    return {
        "layer": name,
        "units": units,
        "rankings": rankings,
        "iou_threshold": float(iou_threshold),
        "iqr_threshold": None if iqr_threshold is None else float(iqr_threshold),
        "labels": summary,
        "interpretable": len(good),
        "bargraph": "bargraph.png",  # relative to dirname, as the reference
        "dirname": name,
    }


def report_record(settings, layers, labels, colors, meta=None) -> dict:
    """The ``dissect.json`` top level (reference §3.7).

    ``settings``: the run's :class:`gdjax.dissect.settings.Settings` (its ``netname``,
    ``threshold``, ``iou_threshold`` and ``iqr_threshold`` fill the reference's fields, all of
    it goes into ``settings``); ``layers``: layer records (:func:`layer_record`); ``labels``:
    ``[(name, category)]``; ``colors``: uint8 ``[L, 3]`` palette, written as ``segcolors
    {"r,g,b": "name/name..."}`` (labels sharing a colour joined by ``/``). ``default_ranking``
    is ``'label'`` (as the reference when labels exist).
    """
    segcolors: dict[str, str] = {}
    for (name, _), rgb in zip(labels, np.asarray(colors)[: len(labels)], strict=True):
        key = ",".join(str(int(c)) for c in rgb)
        segcolors[key] = f"{segcolors[key]}/{name}" if key in segcolors else name
    return {
        "netname": settings.netname,
        "meta": meta or {},
        "default_ranking": "label",
        "quantile_threshold": settings.threshold,
        "settings": settings.to_json(),
        "iou_threshold": settings.iou_threshold,
        "iqr_threshold": settings.iqr_threshold,
        "segcolors": segcolors,
        "layers": list(layers),
    }


def write_json(outdir: str, record: dict) -> str:
    """Write ``outdir/dissect.json`` (strict JSON: NaN is rejected) atomically; returns its
    path."""
    return rundir.write_json(os.path.join(outdir, DISSECT_JSON), record)


def read(path: str) -> dict:
    """A ``dissect.json`` (or the directory holding one), or :class:`InputError` saying how to
    make it."""
    if os.path.isdir(path):
        path = os.path.join(path, DISSECT_JSON)
    if not os.path.isfile(path):
        raise InputError(
            f"{path} not found: dissect first (python examples/dissect.py), or pass --dissect"
        )
    with open(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            raise InputError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("layers"), list):
        raise InputError(f"{path} is not a dissect.json: it has no 'layers' list")
    return record


def layer(record: dict, name: str, source: str = "dissect.json") -> dict:
    """The layer record of layer ``name``, or :class:`InputError` listing the layers there."""
    for lrec in record.get("layers", []):
        if lrec.get("layer") == name:
            return lrec
    have = ", ".join(str(r.get("layer")) for r in record.get("layers", [])) or "none"
    raise InputError(f"{source} has no layer {name!r} (layers dissected: {have})")


def ranking(record: dict, layer_name: str, name: str) -> np.ndarray | None:
    """The ``score`` list (float32 ``[C]``, lower = better) of ranking ``name`` of a layer, or
    ``None`` if the layer has no such ranking."""
    for r in layer(record, layer_name).get("rankings", []):
        if r.get("name") == name:
            return np.asarray(r["score"], np.float32)
    return None


def add_ranking(path: str, layer_name: str, name: str, score, metric: str, position: int = 2):
    """Insert ``{name, score, metric}`` into a layer's ``rankings`` in ``dissect.json`` at
    ``path`` (a ranking of that name is replaced). ``score``: one float per unit, lower =
    better (the reference stores ``-alpha`` for ACE). The file is backed up once to ``.bak``
    (as the reference) and rewritten atomically. Returns ``path``."""
    record = read(path)
    if not os.path.exists(path + ".bak"):
        shutil.copyfile(path, path + ".bak")
    lrec = layer(record, layer_name, path)
    rankings = [r for r in lrec.setdefault("rankings", []) if r.get("name") != name]
    entry = {"name": name, "score": [float(s) for s in np.asarray(score).ravel()]}
    rankings.insert(min(position, len(rankings)), {**entry, "metric": metric})
    lrec["rankings"] = rankings
    write_json(os.path.dirname(os.path.abspath(path)), record)
    return path


def eligible(
    record: dict, layer_name: str, labels, classes=None, min_units: int = 4
) -> tuple[list[str], dict[str, str], dict[str, int]]:
    """Classes worth an experiment: ``(names, skipped {name: why}, units {name: count})``.

    Candidates are ``classes`` or every label but label 0 (no label); one is eligible if at
    least ``min_units`` interpretable units of the layer carry its label. Unknown ``classes``
    raise :class:`InputError` naming them."""
    lrec = layer(record, layer_name)
    unknown = [c for c in classes or () if c not in labels]
    if unknown:
        raise InputError(f"unknown class {unknown[0]!r}; classes are {', '.join(labels[1:])}")
    units = {name: 0 for name in labels}
    units.update({s["label"]: len(s["units"]) for s in lrec.get("labels", [])})
    names, skipped = [], {}
    for c in list(classes) if classes else list(labels[1:]):
        if units.get(c, 0) >= min_units:
            names.append(c)
        else:
            skipped[c] = f"{units.get(c, 0)} interpretable units < min_units {min_units}"
    return names, skipped, {c: units.get(c, 0) for c in [*names, *skipped]}
