"""Report: strips against planted masks, records against brute force, files that parse."""

import html.parser
import json
import os

import numpy as np
import pytest
from PIL import Image

from gdjax import report
from gdjax.dissect.result import LayerResult
from gdjax.dissect.settings import Settings
from gdjax.errors import InputError
from gdjax.report import chart, draw

LABELS = [
    ("-", "object"),
    ("tree", "object"),
    ("sky", "object"),
    ("wood", "material"),
    ("leg", "part"),
    ("tree-t", "object"),
]
CATS = ["object", "part", "material"]


def _bilinear(a, size):
    """Brute-force half-pixel bilinear with edge clamp of one ``[h, w]`` map."""
    h, w = a.shape
    out = np.zeros((size, size))
    for y in range(size):
        for x in range(size):
            sy = min(max((y + 0.5) * h / size - 0.5, 0), h - 1)
            sx = min(max((x + 0.5) * w / size - 0.5, 0), w - 1)
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            top = a[y0, x0] * (1 - fx) + a[y0, x1] * fx
            bot = a[y1, x0] * (1 - fx) + a[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bot * fy
    return out


def test_unit_strip_planted_block():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    acts = np.zeros((2, 8, 8), np.float32)
    acts[0, 3:5, 3:5] = 1.0  # a 2x2 block of an 8x8 map: a rounded square at 64x64
    strip = report.unit_strip(images, acts, 0.5, gap=4)
    assert strip.shape == (64, 2 * 68 - 4, 3) and strip.dtype == np.uint8
    mask = _bilinear(acts[0], 64) > 0.5
    ring = np.zeros_like(mask)
    for y, x in zip(*np.nonzero(mask), strict=True):
        nb = [(y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)]
        ring[y, x] = any(0 <= i < 64 and 0 <= j < 64 and not mask[i, j] for i, j in nb)
    assert mask[24:40, 24:40].sum() == 16 * 16 - 4 * 6 and mask.sum() == 16 * 16 - 4 * 6
    first = strip[:, :64]
    np.testing.assert_array_equal(first[~mask], images[0][~mask] // 2)
    np.testing.assert_array_equal(first[ring], np.full((ring.sum(), 3), [255, 255, 0]))
    np.testing.assert_array_equal(first[mask & ~ring], images[0][mask & ~ring])
    np.testing.assert_array_equal(strip[:, 64:68], 255)  # white gap
    np.testing.assert_array_equal(strip[:, 68:], images[1] // 2)  # nothing active: all dimmed


def test_unit_strip_half_plane_by_hand():
    images = np.full((1, 64, 64, 3), 201, np.uint8)
    acts = np.zeros((1, 8, 8))
    acts[0, :, 4:] = 2.0  # value at column x: 2 * clip((x + 0.5) / 8 - 3.5, 0, 1) > 1 for x >= 32
    strip = report.unit_strip(images, acts, 1.0)
    np.testing.assert_array_equal(strip[:, :32], 100)  # uint8(201 * 0.5)
    np.testing.assert_array_equal(strip[:, 32], np.full((64, 3), [255, 255, 0]))
    np.testing.assert_array_equal(strip[:, 33:], 201)  # the image border is not an outline


def test_unit_strip_whole_image_active_has_no_outline():
    images = np.full((1, 16, 16, 3), 100, np.uint8)
    strip = report.unit_strip(images, np.ones((1, 4, 4)), 0.0, dim=0.25, outline=(1, 2, 3))
    np.testing.assert_array_equal(strip, images[0])


def test_seg_strip_colours():
    labels = np.array([[[0, 1], [2, 3]], [[3, 3], [1, 0]]])
    colors = draw.palette(4)
    strip = report.seg_strip(labels, colors, (8, 8), gap=2)
    assert strip.shape == (8, 18, 3)
    for i in range(2):
        tile = strip[:, i * 10 : i * 10 + 8]
        np.testing.assert_array_equal(tile, colors[np.repeat(np.repeat(labels[i], 4, 0), 4, 1)])
    np.testing.assert_array_equal(strip[:, 8:10], 255)


def test_saved_strips_read_back(tmp_path):
    # The photograph strip is JPEG (close), the segmentation strip PNG (exact).
    yy, xx = np.mgrid[:64, :160]
    top = np.stack([yy * 4, xx * 255 // 160, np.full_like(xx, 90)], -1).astype(np.uint8)
    seg = report.seg_strip(np.arange(12).reshape(3, 2, 2) % 5, draw.palette(5), (64, 48))
    paths = report.save_strip(str(tmp_path), "layer4", 7, top, seg)
    assert [os.path.relpath(p, tmp_path) for p in paths] == [
        os.path.join("layer4", "image", "7-top.jpg"), os.path.join("layer4", "image", "7-seg.png")
    ]  # fmt: skip
    back = np.asarray(Image.open(paths[0]).convert("RGB")).astype(int)
    assert back.shape == top.shape and np.abs(back - top).mean() < 2.0
    np.testing.assert_array_equal(np.asarray(Image.open(paths[1]).convert("RGB")), seg)


def _result(seed=0, c=12, k=3, iqr_mode=True, **change) -> LayerResult:
    rng = np.random.default_rng(seed)
    n = len(LABELS)
    max_iqr = rng.uniform(0, 0.1, (n, c))
    search = {
        "max_iqr": max_iqr,
        "max_iqr_level": rng.normal(size=(n, c)),
        "max_iqr_quantile": rng.uniform(0, 0.6, (n, c)),
        "max_iqr_iou": rng.uniform(size=(n, c)),
    }
    result = LayerResult(
        levels=rng.normal(size=c),
        label=np.argmax(max_iqr, 0),
        iou=rng.uniform(0, 0.12, (n, c)),
        iqr=rng.uniform(0, 0.02, (n, c)),
        top_values=-np.sort(-rng.uniform(size=(k, c)), 0),
        top_indices=rng.integers(0, 100, (k, c)),
        intersection=rng.integers(0, 100, (n, c)),
        active=rng.integers(100, 1000, (3, c)),
        label_size=rng.integers(100, 1000, n),
        domain=np.full(3, 2000),
        search=search if iqr_mode else None,
    )
    return result._replace(**change)


def test_unit_records_brute_force():
    a = _result()
    recs = report.unit_records(a, LABELS, CATS)
    cat_of = {"object": 0, "part": 1, "material": 2}
    for u, r in enumerate(recs):
        b = a.label[u]
        g = cat_of[LABELS[b][1]]
        assert r["unit"] == u and r["iou_labelnum"] == b and r["iou_label"] == LABELS[b][0]
        assert r["iou"] == a.iou[b, u] and r["iou_iqr"] == a.iqr[b, u]
        assert r["interp"] == (a.iou[b, u] > 0.05 and a.iqr[b, u] > 0.01)
        assert r["iou_cat"] == LABELS[b][1] and r["lc"] == a.label_size[b]
        assert r["ic"] == a.intersection[b, u] and r["cc"] == a.active[g, u]
        assert r["level"] == a.levels[u]
        assert [t["imgnum"] for t in r["top"]] == list(a.top_indices[:, u])
        assert [t["maxact"] for t in r["top"]] == list(a.top_values[:, u])
        ok = [j for j in range(len(LABELS)) if a.search["max_iqr_quantile"][j, u] <= 0.5]
        q = max(ok, key=lambda j: a.search["max_iqr"][j, u])
        assert r["iqr_label"] == LABELS[q][0] and r["iqr"] == a.search["max_iqr"][q, u]
        assert r["iqr_level"] == a.search["max_iqr_level"][q, u]
        assert r["iqr_iou"] == a.search["max_iqr_iou"][q, u]
        chance = a.label_size[b] * a.active[g, u] / a.domain[g]
        below = b > 0 and a.intersection[b, u] < chance
        want = "below chance" if below else ("IoU ≈ 0" if a.iou[b, u] < 0.01 else None)
        assert r["flag"] == want
    assert any(r["interp"] for r in recs) and not all(r["interp"] for r in recs)
    assert {r["flag"] for r in recs} == {"below chance", "IoU ≈ 0", None}
    strict = report.unit_records(a, LABELS, CATS, iou_threshold=0.1, iqr_threshold=0.015)
    for u, r in enumerate(strict):
        b = a.label[u]
        assert r["interp"] == (a.iou[b, u] > 0.1 and a.iqr[b, u] > 0.015)


def test_flags_by_hand():
    # Unit 0: its label 1 covers 100 of 1000 pixels, the unit 200: chance is 20, it has 5.
    # Unit 1: the same label, 60 in common: above chance, IoU 60 / 240 = 0.25, no flag.
    # Unit 2: active on 10 pixels, 1 in common: at chance (100 * 10 / 1000 = 1), IoU 1 / 109.
    n = len(LABELS)
    inter = np.zeros((n, 3))
    inter[1] = [5, 60, 1]
    res = LayerResult(
        levels=np.zeros(3), label=np.array([1, 1, 1]), iou=np.zeros((n, 3)), iqr=np.zeros((n, 3)),
        top_values=np.zeros((1, 3)), top_indices=np.zeros((1, 3), int), intersection=inter,
        active=np.array([[200, 200, 10]] * 3), label_size=np.full(n, 100),
        domain=np.full(3, 1000),
    )  # fmt: skip
    iou = res.iou.copy()
    iou[1] = inter[1] / (100 + res.active[0] - inter[1])
    recs = report.unit_records(res._replace(iou=iou), LABELS, CATS)
    assert [r["flag"] for r in recs] == ["below chance", None, "IoU ≈ 0"]
    # A top-k slot no image filled (fewer images than k) is left out of "top".
    top = res._replace(top_indices=np.array([[3, 2**31 - 1, 4]]))
    assert [len(r["top"]) for r in report.unit_records(top, LABELS, CATS)] == [1, 0, 1]


def test_layer_record_rankings_brute_force():
    a = _result(seed=1)
    rec = report.layer_record("layer4", a, LABELS, CATS)
    units = rec["units"]
    names = [r["name"] for r in rec["rankings"]]
    assert names[:4] == ["unit", "label", "max iou", "max iqr"]
    stripped = [u["iou_label"].removesuffix("-t") for u in units]
    expect = sorted(
        set(stripped), key=lambda s: (-stripped.count(s), [n for n, _ in LABELS].index(s))
    )
    assert names[4:] == [f"{s}-{m}" for s in expect for m in ("iou", "iqr")]
    score = {r["name"]: r["score"] for r in rec["rankings"]}
    assert score["unit"] == list(range(12)) and score["max iou"] == [-u["iou"] for u in units]
    np.testing.assert_array_equal(score["tree-iou"], -a.iou[1])
    np.testing.assert_array_equal(score["tree-iqr"], -a.search["max_iqr"][1])
    # 'label': interpretable first, then popularity, best IoU of the label, label, -iou.
    good = [u for u in units if u["interp"]]
    pop = {b: sum(u["iou_labelnum"] == b for u in good) for b in range(len(LABELS))}
    top = {b: max([u["iou"] for u in good if u["iou_labelnum"] == b], default=0.0) for b in pop}
    key = lambda u: (
        not u["interp"],
        -pop[u["iou_labelnum"]],
        -top[u["iou_labelnum"]],
        u["iou_labelnum"],
        -u["iou"],
    )
    order = [u["unit"] for u in sorted(units, key=key)]
    assert list(np.argsort(score["label"])) == order
    assert sorted(score["label"]) == list(range(12))
    assert rec["interpretable"] == len(good) and rec["layer"] == rec["dirname"] == "layer4"
    assert sorted(sum((s["units"] for s in rec["labels"]), [])) == [u["unit"] for u in good]
    # No interpretable unit at an impossible threshold.
    none = report.layer_record("layer4", a, LABELS, CATS, iou_threshold=1.0)
    assert none["interpretable"] == 0 and none["labels"] == []


def test_labels_summary_order_by_hand():
    # units:   0      1      2       3      4     5     6
    best = np.array([3, 3, 3, 1, 2, 2, 1])  # wood x3 (material), tree x2, sky x2 (object)
    c, n = 7, len(LABELS)
    iou = np.zeros((n, c))
    iou[best, np.arange(c)] = [0.3, 0.4, 0.2, 0.1, 0.2, 0.15, 0.08]
    iou[1, 6] = 0.04  # unit 6 not interpretable: tree has 1 unit, sky 2
    a = _result(c=c, iqr_mode=False, label=best, iou=iou, iqr=np.full((n, c), 0.5))
    rec = report.layer_record("l", a, LABELS, CATS)
    got = [(s["label"], s["cat"], s["units"]) for s in rec["labels"]]
    assert got == [
        ("sky", "object", [4, 5]),
        ("tree", "object", [3]),
        ("wood", "material", [1, 0, 2]),
    ]
    assert "max iqr" not in [r["name"] for r in rec["rankings"]]
    label_order = list(np.argsort([r["score"] for r in rec["rankings"] if r["name"] == "label"][0]))
    assert label_order == [1, 0, 2, 4, 5, 3, 6]  # popularity, not category, orders units


REQUIRED_TOP = "netname meta default_ranking quantile_threshold settings iou_threshold"
REQUIRED_TOP += " iqr_threshold segcolors layers"
REQUIRED_LAYER = "layer units rankings iou_threshold labels interpretable bargraph dirname"
REQUIRED_UNIT = "unit interp level top iou iou_iqr lc cc ic iou_labelnum iou_label iou_cat"
REQUIRED_UNIT += " iqr iqr_label iqr_cat iqr_level iqr_quantile iqr_iou flag"


def _record():
    layers = [report.layer_record(f"layer{i}", _result(seed=i), LABELS, CATS) for i in (1, 2)]
    settings = Settings(layers=("layer1", "layer2"), samples=100, netname="demo<&>")
    return report.report_record(settings, layers, LABELS, draw.palette(6))


def test_json_round_trip_and_rankings(tmp_path):
    rec = _record()
    path = report.write_json(str(tmp_path), rec)
    with open(path) as f:
        back = json.load(f)
    assert back == json.loads(json.dumps(rec))
    assert set(REQUIRED_TOP.split()) <= set(back)
    assert isinstance(back["iou_threshold"], float) and back["quantile_threshold"] == "iqr"
    assert back["default_ranking"] == "label" and back["segcolors"]["0,0,0"] == "-"
    assert back["settings"]["samples"] == 100 and back["settings"]["strips"] == 5
    for layer in back["layers"]:
        assert set(REQUIRED_LAYER.split()) <= set(layer) and len(layer["units"]) == 12
        for u in layer["units"]:
            assert set(REQUIRED_UNIT.split()) <= set(u)
            assert set(u["top"][0]) == {"imgnum", "maxact"}
    assert report.read(str(tmp_path)) == back
    tree = report.ranking(back, "layer1", "tree-iou")
    np.testing.assert_allclose(tree, -_result(seed=1).iou[1], rtol=1e-6)
    assert report.ranking(back, "layer1", "door-ace") is None
    report.add_ranking(path, "layer1", "tree-ace", [-1.0] * 12, "ace")
    report.add_ranking(path, "layer1", "tree-ace", [-0.5] * 12, "ace")  # replaced, not added
    names = [r["name"] for r in report.read(path)["layers"][0]["rankings"]]
    assert names[:3] == ["unit", "label", "tree-ace"] and names.count("tree-ace") == 1
    np.testing.assert_array_equal(report.ranking(report.read(path), "layer1", "tree-ace"), -0.5)
    assert json.load(open(path + ".bak")) == back  # backed up once, before the first change
    with pytest.raises(InputError, match=r"has no layer 'layer9' \(layers dissected: layer1, "):
        report.ranking(back, "layer9", "tree-iou")
    with pytest.raises(InputError, match="not found: dissect first"):
        report.read(str(tmp_path / "none"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="is not valid JSON"):
        report.read(str(tmp_path / "bad.json"))


class _Checker(html.parser.HTMLParser):
    """Checks nesting and counts body rows, images and text of the unit tables."""

    VOID = {"meta", "img", "input", "br", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.rows, self.srcs, self.text, self.ids = [], {}, [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        if tag == "table" and "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "tr" and "tbody" in self.stack:
            self.rows[self.ids[-1]] = self.rows.get(self.ids[-1], 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, tag

    def handle_data(self, data):
        self.text.append(data)


def test_html_structure(tmp_path):
    rec = _record()
    rec["layers"][0]["units"][0]["iou_label"] = '<b>&"x'
    out = str(tmp_path)
    top = np.zeros((8, 20, 3), np.uint8)
    strips = [(lay["layer"], u["unit"], top, top) for lay in rec["layers"] for u in lay["units"]]
    for layer, unit, top_strip, seg in strips:
        report.save_strip(out, layer, unit, top_strip, seg)
    path = report.write_report(out, rec)
    page = open(path, encoding="utf-8").read()
    assert "http" not in page and "<b>&" not in page
    p = _Checker()
    p.feed(page)
    p.close()
    assert p.stack == []
    assert p.rows == {"units-layer1": 12, "units-layer2": 12}
    assert '<b>&"x' in p.text and "demo<&>" in "".join(p.text)
    for src in p.srcs:
        assert os.path.exists(os.path.join(out, src)), src
    assert len([s for s in p.srcs if s.endswith("-top.jpg")]) == 24


def test_bar_chart_bars(tmp_path):
    summary = [
        {"label": "tree", "units": [1, 2, 3, 4], "cat": "object"},
        {"label": "sky", "units": [5, 6], "cat": "object"},
        {"label": "door", "units": [7], "cat": "object"},
        {"label": "wood", "units": [8, 9], "cat": "material"},
        {"label": "a-very-long-concept-name-indeed", "units": [0], "cat": "material"},
    ]
    path = chart.bar_chart(summary, ["object", "material"], str(tmp_path / "b.png"))
    img = np.asarray(Image.open(path).convert("RGB"))
    w = chart.LEFT + 5 * (chart.BAR_W + chart.BAR_GAP) + chart.GROUP_GAP + chart.RIGHT
    w = max(w, 280)
    assert img.shape == (chart.TOP + chart.PLOT_H + chart.LABEL_H + chart.CAPTION_H, w, 3)
    assert chart.chart_size(summary) == (w, img.shape[0])
    for cat, bars, heights in (("object", 3, [160, 80, 40]), ("material", 2, [80, 40])):
        hit = np.all(img == chart.CATEGORY_COLORS[cat], axis=-1)
        cols = np.flatnonzero(hit.any(axis=0))
        assert len(cols) == bars * chart.BAR_W
        per_bar = hit[:, cols].sum(0).reshape(bars, chart.BAR_W)
        np.testing.assert_array_equal(
            per_bar, np.repeat(np.array(heights)[:, None], chart.BAR_W, 1)
        )
    many = [{"label": "x", "units": [0], "cat": c} for c in ["object"] * 9 + ["color"] * 9]
    assert chart.chart_size(many)[0] == chart.LEFT + 18 * 22 + chart.GROUP_GAP + chart.RIGHT
    empty = np.asarray(Image.open(chart.bar_chart([], [], str(tmp_path / "e.png"))))
    assert empty.shape[1] == 280
