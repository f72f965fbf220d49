"""Comparing dissections: the table's numbers on two small planted runs written with the
same record functions a dissection uses."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from gdjax.dissect.result import LayerResult
from gdjax.dissect.settings import Settings
from gdjax.errors import InputError
from gdjax.report import compare, record

LABELS = [("-", "object"), ("sky", "object"), ("tree", "object"), ("window", "part"),
          ("wood", "material")]  # fmt: skip
CATEGORIES = ["object", "part", "material"]


def _result(label, iou, iqr):
    """A layer whose unit ``u`` has label ``label[u]`` with IoU ``iou[u]`` and IQR ``iqr[u]``."""
    c = len(label)
    big_iou = np.zeros((len(LABELS), c))
    big_iou[label, np.arange(c)] = iou
    big_iqr = np.zeros((len(LABELS), c))
    big_iqr[label, np.arange(c)] = iqr
    return LayerResult(
        levels=np.ones(c, np.float32), label=np.asarray(label, np.int64), iou=big_iou,
        iqr=big_iqr, top_values=np.ones((2, c), np.float32),
        top_indices=np.tile(np.arange(2)[:, None], (1, c)),
        intersection=np.full((len(LABELS), c), 10.0), active=np.full((len(CATEGORIES), c), 20.0),
        label_size=np.full(len(LABELS), 20.0), domain=np.full(len(CATEGORIES), 100.0),
    )  # fmt: skip


def _run(path, layers):
    """Write ``path/dissect.json`` with ``layers``: ``{name: (label, iou, iqr)}``."""
    settings = Settings(layers=tuple(layers))
    recs = [
        record.layer_record(name, _result(*spec), LABELS, CATEGORIES)
        for name, spec in layers.items()
    ]
    colors = np.arange(len(LABELS) * 3).reshape(-1, 3)
    record.write_json(str(path), record.report_record(settings, recs, LABELS, colors))
    return str(path)


@pytest.fixture
def runs(tmp_path):
    # Interpretable: IoU > 0.05 and IQR > 0.01 (the gandissect thresholds).
    a = _run(tmp_path / "alpha", {
        # sky .3, sky .1, tree .2, window (IQR too low), wood .5, no label
        "layer3": ([1, 1, 2, 3, 4, 0], [0.3, 0.1, 0.2, 0.06, 0.5, 0.01],
                   [0.1, 0.1, 0.1, 0.005, 0.1, 0.1]),
        # window .2, window .4, sky (IoU too low), tree .07
        "layer4": ([3, 3, 1, 2], [0.2, 0.4, 0.04, 0.07], [0.1] * 4),
    })  # fmt: skip
    b = _run(tmp_path / "beta", {"layer4": ([2, 2, 2], [0.1, 0.2, 0.3], [0.1] * 3)})
    return a, b


def test_table_of_two_runs(runs, tmp_path):
    a, b = runs
    tab = compare.table(compare.columns([a, b]))
    cols = tab["columns"]
    assert [c["name"] for c in cols] == ["alpha/layer3", "alpha/layer4", "beta/layer4"]
    assert [(c["interpretable"], c["units"]) for c in cols] == [(4, 6), (3, 4), (3, 3)]
    # object first (tree has more units over all columns than sky), then part, then material
    assert [(x["label"], x["cat"], x["units"]) for x in tab["concepts"]] == [
        ("tree", "object", [1, 1, 3]),
        ("sky", "object", [2, 0, 0]),
        ("window", "part", [0, 2, 0]),
        ("wood", "material", [1, 0, 0]),
    ]
    cats = {c["cat"]: c for c in tab["categories"]}
    assert list(cats) == ["object", "part", "material"]
    assert cats["object"]["units"] == [3, 1, 3] and cats["object"]["concepts"] == [2, 1, 1]
    np.testing.assert_allclose(cats["object"]["mean_iou"], [0.2, 0.07, 0.2])
    assert cats["part"]["units"] == [0, 2, 0] and cats["part"]["concepts"] == [0, 1, 0]
    assert cats["part"]["mean_iou"][0] is None and cats["part"]["mean_iou"][2] is None
    assert cats["part"]["mean_iou"][1] == pytest.approx(0.3)
    assert cats["material"]["units"] == [1, 0, 0]
    assert cats["material"]["mean_iou"][0] == pytest.approx(0.5)
    window = cols[1]["concepts"]["window"]
    assert window["cat"] == "part" and window["units"] == 2
    assert window["mean_iou"] == pytest.approx(0.3)


def test_names_and_layer_choice(runs):
    a, b = runs
    # one layer from each run: named by run; one run: named by layer
    tab = compare.table(compare.columns([a, os.path.join(b, "dissect.json")], ["layer4"]))
    assert [c["name"] for c in tab["columns"]] == ["alpha", "beta"]
    assert [x["units"] for x in tab["concepts"]] == [[1, 3], [2, 0]]  # tree, window
    tab = compare.table(compare.columns([a]))
    assert [c["name"] for c in tab["columns"]] == ["layer3", "layer4"]
    with pytest.raises(InputError, match=r"has no layer 'layer3' \(layers dissected: layer4\)"):
        compare.columns([a, b], ["layer3"])
    with pytest.raises(InputError, match="no dissection there"):
        compare.columns([a, a + "-missing"])


def test_write_files(runs, tmp_path):
    a, b = runs
    out = compare.write(str(tmp_path / "cmp"), [a, b])
    js, png, page = out["paths"]
    with open(js) as f:
        saved = json.load(f)
    assert saved["concepts"][0] == {"label": "tree", "cat": "object", "units": [1, 1, 3]}
    img = Image.open(png)
    assert img.size[1] > 3 * compare._ROW_H  # one row per column
    text = open(page, encoding="utf-8").read()
    assert "alpha/layer3" in text and "<td>4/6</td>" in text and 'src="compare.png"' in text
    table = compare.text(out).splitlines()
    assert table[1].split() == ["interpretable", "4/6", "3/4", "3/3"]
    rows = {line[:20].strip(): line[20:].split() for line in table}
    assert rows["object mean IoU"] == ["0.200", "0.070", "0.200"]
    assert rows["part mean IoU"] == ["-", "0.300", "-"]
    assert rows["tree"] == ["1", "1", "3"]
