"""The multi-class ACE driver on the planted generator: eligibility, summary, resumption."""

import json
import os

import jax
import planted
import pytest

from gdjax import ace, causal, report
from gdjax.errors import InputError

LABELS = ["-", "red", "green", "blue"]
CFG = ace.Config(
    layer="layer1",
    search_size=32,
    train_size=8,
    eval_size=4,
    inference_batch_size=8,
    train_batch_size=2,
    train_update_freq=2,
    train_epochs=4,
    lr=0.1,  # Adam moves each α by ~lr a step: 8 steps carry it anywhere in [0, 1]
)
# "green" reads the units the red channel ignores (planted.G is zero on units 1 and 3).
FNS = {
    "red": planted.FNS,
    "green": ace.ClassFns(lambda im: jax.nn.sigmoid(10 * im[..., 1]), lambda im: im[..., 1] > 0),
}


def _dissect(path):
    # IoU ranks non-causal units first for red, so its top 2 by IoU remove nothing.
    iou = {"red": [0.05, 0.01, 0.04, 0.02, 0.0, 0.0], "green": [0.03, 0.0, 0.05, 0.0, 0.02, 0.01]}
    layer = {
        "layer": "layer1",
        "labels": [
            {"label": "red", "labelnum": 1, "units": [1, 3]},
            {"label": "green", "labelnum": 2, "units": [0, 2, 4]},
            {"label": "blue", "labelnum": 3, "units": [5]},
        ],
        "rankings": [
            {"name": f"{c}-iou", "metric": "iou", "score": [-v for v in s]} for c, s in iou.items()
        ],
    }
    with open(path, "w") as f:
        json.dump({"layers": [layer]}, f)
    return str(path)


def test_eligible(tmp_path):
    path = _dissect(tmp_path / "dissect.json")
    rec = report.read(path)
    names, skipped, units = report.eligible(rec, "layer1", LABELS, min_units=2)
    assert names == ["red", "green"]
    assert list(skipped) == ["blue"] and "1 interpretable units < min_units 2" in skipped["blue"]
    assert units == {"red": 2, "green": 3, "blue": 1}
    names, skipped, _ = report.eligible(rec, "layer1", LABELS, ["green", "blue"], min_units=3)
    assert names == ["green"] and list(skipped) == ["blue"]
    with pytest.raises(InputError, match="unknown class 'purple'; classes are red, green, blue"):
        report.eligible(rec, "layer1", LABELS, ["purple"])


def test_run_all_resumes(tmp_path, monkeypatch):
    module, params = planted.make()
    dissect = _dissect(tmp_path / "dissect.json")
    out = str(tmp_path / "out")
    kw = dict(min_units=2, eval_images=8, topn=2, progress=False, log=None)
    first = causal.run_all(out, module, params, FNS.get, dissect, LABELS, CFG, **kw)

    rows = {r["classname"]: r for r in first["classes"]}
    assert list(rows) == ["red", "green"] and first["skipped"].keys() == {"blue"}
    for r in rows.values():
        assert r["topn"] == 2 and r["iou"] is not None
        for m in ("ace", "iou"):
            assert r[m]["low"] <= r[m]["removed"] + 1e-9 <= r[m]["high"] + 2e-9
    assert rows["red"]["iou"]["removed"] == 0.0  # units 0 and 2 do not touch red
    assert rows["red"]["ace"]["removed"] > 0.2 and rows["red"]["ace_beats_iou"]  # unit 1 found
    checks = first["checks"]
    assert checks["ace_beats_iou"]["of"] == checks["half_removed"]["of"] == 2
    beats = sum(r["ace"]["removed"] > r["iou"]["removed"] for r in rows.values())
    assert checks["ace_beats_iou"]["count"] == beats and checks["ace_beats_iou"]["pass"] == (
        beats == 2
    )
    with open(dissect) as f:
        names = [r["name"] for r in json.load(f)["layers"][0]["rankings"]]
    assert {"red-ace", "green-ace"} <= set(names)
    with open(first["paths"][1]) as f:
        text = f.read()
    assert "red" in text and "skipped blue" in text

    # A rerun computes nothing; with one result lost it recomputes just that class.
    ran = []
    run_class = causal.run_class
    monkeypatch.setattr(causal, "run_class", lambda *a, **k: ran.append(a[5]) or run_class(*a, **k))
    again = causal.run_all(out, module, params, FNS.get, dissect, LABELS, CFG, **kw)
    assert ran == [] and again == first
    os.remove(os.path.join(out, "layer1", "green", causal.RESULT))
    again = causal.run_all(out, module, params, FNS.get, dissect, LABELS, CFG, **kw)
    assert ran == ["green"]
    for a, b in zip(again["classes"], first["classes"], strict=True):
        assert a == b  # deterministic: the same numbers
    with pytest.raises(ValueError, match="with other settings"):
        causal.run_all(out, module, params, FNS.get, dissect, LABELS, CFG, **{**kw, "topn": 3})
