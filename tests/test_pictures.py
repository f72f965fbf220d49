"""Pictures and the page explain themselves: settings as values, IQR and flags in the unit
table, the interpretability rule with numbers, captions and legends drawn where they belong
(and nowhere else), plot axes labelled without collisions."""

import html.parser
import math
import os

import jax.numpy as jnp
import numpy as np
import planted
import pytest
from PIL import Image

from gdjax import ablate, intervene, proggan
from gdjax.report import draw, page, plots

LAYER = "layer1"
DARK = 160  # a channel below this is ink, not background


# ---------------------------------------------------------------------------------- page


def _unit(n, iou, iqr, interp, label="tree", **extra):
    return dict(unit=n, interp=interp, level=1.0, iou=iou, iou_iqr=iqr, iou_label=label,
                iou_cat="object", lc=10.0, cc=5.0, ic=3.0, top=[], **extra)  # fmt: skip


def _record(flags=True):
    """A hand-built ``dissect.json`` record: two layers, the second with its own thresholds."""
    flag = (lambda f: {"flag": f}) if flags else (lambda f: {})
    units1 = [
        _unit(0, 0.30, 0.125, True, **flag(None)),
        _unit(1, 0.004, 0.0002, False, "-", **flag("IoU ≈ 0")),
        _unit(2, 0.02, 0.0031, False, "sky", **flag("below chance")),
    ]
    units2 = [_unit(0, 0.125, 0.05, True, **flag(None)), _unit(1, 0.2, 0.015, False, **flag(None))]

    def layer(name, units, iou_t, iqr_t):
        rank = {"name": "label", "score": list(range(len(units)))}
        return dict(layer=name, units=units, rankings=[rank], labels=[], dirname=name,
                    interpretable=sum(u["interp"] for u in units), bargraph="bargraph.png",
                    iou_threshold=iou_t, iqr_threshold=iqr_t)  # fmt: skip

    settings = {
        "layers": ["layer3", "layer4"], "threshold": "iqr", "label0_quirk": False,
        "ties_quirk": True, "lr": 1e-4, "frac": 0.1 + 0.2, "samples": 100, "none": None,
        "nested": {"a": 1, "b": "x", "c": [2, 3]}, "tiny": 2.5e-7, "big": 3.0e6, "empty": [],
    }  # fmt: skip
    layers = [layer("layer1", units1, 0.05, 0.01), layer("layer2", units2, 0.1, 0.02)]
    return dict(netname="demo", settings=settings, quantile_threshold="iqr", iou_threshold=0.05,
                iqr_threshold=0.01, meta={}, layers=layers)  # fmt: skip


class _Page(html.parser.HTMLParser):
    """Cells of the settings table and of each unit table (text and attributes), and all text."""

    def __init__(self):
        super().__init__()
        self.table, self.row, self.cell = None, None, None
        self.settings, self.units, self.heads, self.text = {}, {}, {}, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = a.get("id") or a.get("class")
        elif tag == "tr":
            self.row = {"attrs": a, "cells": []}
        elif tag in ("td", "th"):
            self.cell = {"attrs": a, "text": ""}

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row["cells"].append(self.cell)
            self.cell = None
        elif tag == "tr" and self.row is not None:
            cells = self.row["cells"]
            if self.table == "settings":
                self.settings[cells[0]["text"]] = cells[1]["text"]
            elif self.table and self.table.startswith("units-"):
                if cells[0]["attrs"] == {} and self.row["attrs"]:
                    self.units.setdefault(self.table, []).append(self.row)
                else:
                    self.heads[self.table] = [c["text"] for c in cells]
            self.row = None

    def handle_data(self, data):
        self.text.append(data)
        if self.cell is not None:
            self.cell["text"] += data


def _parse(tmp_path, record) -> _Page:
    with open(page.write_html(str(tmp_path), record), encoding="utf-8") as f:
        text = f.read()
    assert "http" not in text
    p = _Page()
    p.feed(text)
    p.close()
    return p


def test_format_value():
    f = page.format_value
    assert [f(None), f(True), f(False), f(3), f(0.05), f(0.001), f(1e-4), f(2.5e-7)] == [
        "—", "yes", "no", "3", "0.05", "0.001", "1e-4", "2.5e-7"
    ]  # fmt: skip
    assert [f(0.1 + 0.2), f(100.0), f(3.0e6), f(0.0), f(math.inf), f("a b")] == [
        "0.3", "100", "3e6", "0", "inf", "a b"
    ]  # fmt: skip
    assert f([1, "x", None]) == "1, x, —" and f({"k": [1, 2], "v": False}) == "k: 1, 2; v: no"
    assert f([]) == "—" and f(np.float32(0.25)) == "0.25" and f(np.int64(7)) == "7"


def test_settings_table_shows_values(tmp_path):
    p = _parse(tmp_path, _record())
    assert p.settings == {
        "quantile_threshold": "iqr", "iou_threshold": "0.05", "iqr_threshold": "0.01",
        "layers": "layer3, layer4", "threshold": "iqr", "label0_quirk": "no", "ties_quirk": "yes",
        "lr": "1e-4", "frac": "0.3", "samples": "100", "none": "—", "nested": "a: 1; b: x; c: 2, 3",
        "tiny": "2.5e-7", "big": "3e6", "empty": "—",
    }  # fmt: skip


def test_unit_table_iqr_and_flags(tmp_path):
    rec = _record()
    p = _parse(tmp_path, rec)
    assert set(p.units) == {"units-layer1", "units-layer2"}
    for layer in rec["layers"]:
        tid = "units-" + layer["layer"]
        head = p.heads[tid]
        assert head[:6] == ["unit", "label", "category", "IoU", "IQR", "interp"]
        rows = p.units[tid]
        assert len(rows) == len(layer["units"])
        for row, u in zip(rows, layer["units"], strict=True):
            cells = [c["text"] for c in row["cells"]]
            assert cells[0] == str(u["unit"])
            assert cells[3] == f"{u['iou']:.3f}" and cells[4] == f"{u['iou_iqr']:.3f}"
            assert float(row["attrs"]["data-iqr"]) == pytest.approx(u["iou_iqr"], rel=1e-6)
            assert float(row["attrs"]["data-iou"]) == pytest.approx(u["iou"], rel=1e-6)
            label = row["cells"][1]
            if u["flag"]:
                assert label["text"] == f"{u['iou_label']} ⚠ {u['flag']}"
                assert label["attrs"]["title"].startswith(u["flag"] + ": ")
                assert "flagged" in row["attrs"]["class"].split()
            else:
                assert label["text"] == u["iou_label"] and "⚠" not in "".join(cells)
                assert "title" not in label["attrs"]
                assert "flagged" not in row["attrs"].get("class", "").split()
    titles = [row["cells"][1]["attrs"].get("title", "") for row in p.units["units-layer1"]]
    assert "anti-correlated" in titles[2] and "under 0.01" in titles[1]
    text = "".join(p.text)
    assert "⚠ below chance" in text and "⚠ IoU ≈ 0" in text  # the legend explains both
    assert "1 of 3 units interpretable, 2 labels flagged ⚠." in text
    with open(tmp_path / "report.html", encoding="utf-8") as f:
        assert "sortUnits('units-layer1','iqr',true)" in f.read()


def test_page_without_flags(tmp_path):
    p = _parse(tmp_path, _record(flags=False))
    for rows in p.units.values():
        for row in rows:
            assert "⚠" not in "".join(c["text"] for c in row["cells"])
    text = "".join(p.text)
    assert "flagged ⚠" not in text and "labels flagged" not in text  # no column, no count


def test_rule_sentence_with_layer_thresholds(tmp_path):
    text = "".join(_parse(tmp_path, _record()).text)
    assert "interpretable: IoU > 0.05 and IQR > 0.01 — 1 of 3 units interpretable" in text
    assert "interpretable: IoU > 0.1 and IQR > 0.02 — 1 of 2 units interpretable." in text


# ---------------------------------------------------------------------------------- drawing


def _ink(a):
    return (np.asarray(a)[..., :3] < DARK).any(-1)


def test_caption_rows_draws_only_in_the_band():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20 + 2 + 30, 50, 3), dtype=np.uint8)
    out = draw.caption_rows(image, ["alpha", "b"], [20, 30], pad=2, width=70)
    assert out.shape == (52, 120, 3)
    np.testing.assert_array_equal(out[:, 70:], image)
    ink = _ink(out[:, :70])
    rows = np.flatnonzero(ink.any(1))
    assert ink[:20].sum() > 20 and ink[22:].sum() > 5  # each row's name in its own span
    assert not ink[20:22].any() and rows.min() >= 2 and rows.max() < 52 - 2
    # right-aligned 8 px from the image; "alpha" wider than "b"
    cols = [np.flatnonzero(ink[:20].any(0)), np.flatnonzero(ink[22:].any(0))]
    assert 70 - 8 - 3 <= cols[0].max() < 70 - 8 and 70 - 8 - 3 <= cols[1].max() < 70 - 8
    assert cols[0].max() - cols[0].min() > 3 * (cols[1].max() - cols[1].min())
    # the default band: the widest name plus 8 px each side
    auto = draw.caption_rows(image[:20], ["alpha"], 20)
    assert auto.shape[1] - 50 == math.ceil(draw.font().getlength("alpha")) + 16
    with pytest.raises(ValueError, match="2 names for 1 rows"):
        draw.caption_rows(image, ["a", "b"], [20])


def test_caption_rows_wraps_and_cuts():
    image = np.zeros((40, 10, 3), np.uint8)
    out = draw.caption_rows(image, ["one two three four five six seven"], 40, width=80)
    ink = _ink(out[:, :80])
    lines = np.flatnonzero(np.diff(ink.any(1).astype(int)) == 1)  # starts of ink runs
    assert len(lines) == 2  # 40 px hold two 16 px lines, the rest is cut
    assert draw.wrap_text("one two three", 1000, draw.font()) == ["one two three"]
    assert draw.fit_text("abcdefghijkl", 40, draw.font()).endswith("...")


def test_legend_swatches():
    colors = np.array([[10, 200, 30], [200, 20, 180], [0, 0, 0]], np.uint8)
    key = draw.legend(["sky", "tree", "none"], colors)
    s = draw.CAPTION_SIZE
    for c in colors[:2]:  # interior of the outlined square, exact colour
        assert np.all(key == c, axis=-1).sum() == (s - 2) ** 2
    narrow = draw.legend(["sky", "tree", "none"], colors, width=80)
    assert narrow.shape[1] == 80 and narrow.shape[0] > key.shape[0]
    assert np.all(narrow == colors[1], axis=-1).sum() == (s - 2) ** 2
    stacked = draw.vstack([np.zeros((3, 5, 3), np.uint8), key], gap=2)
    assert stacked.shape == (3 + 2 + key.shape[0], key.shape[1], 3)
    np.testing.assert_array_equal(stacked[:3, 5:], 255)


@pytest.fixture(scope="module")
def gen():
    return planted.make()


def _segment(images):
    return jnp.stack([(images[..., 0] > 0.2).astype(jnp.int32)] * 2, axis=-1)


def test_edit_grid_captions(gen):
    module, params = gen
    z = proggan.sample_z(3, 3, 4)
    rows = {"units 1, 3 off": intervene.make(LAYER, intervene.unit_alpha([1, 3], 6), 0.0)}
    plain, names = ablate.edit_grid(module, params, z, rows, _segment, draw.colorize,
                                    captions=False)  # fmt: skip
    out, names2 = ablate.edit_grid(module, params, z, rows, _segment, draw.colorize)
    assert names == names2 == [
        "original", "original (segmentation)", "units 1, 3 off", "units 1, 3 off (segmentation)"
    ]  # fmt: skip
    assert plain.shape == (4 * 18 - 2, 3 * 18 - 2, 3)
    band = out.shape[1] - plain.shape[1]
    assert out.shape[0] == plain.shape[0] and band > 40
    np.testing.assert_array_equal(out[:, band:], plain)
    first = draw.to_uint8(intervene.generate(module, params, jnp.asarray(z[:1])))[0]
    np.testing.assert_array_equal(plain[:16, :16], draw.enlarge(first, 2))
    ink = _ink(out[:, :band])
    for r in range(4):
        assert ink[r * 18 : r * 18 + 16].sum() > 10, names[r]
        assert not ink[r * 18 + 16 : r * 18 + 18].any()


def test_plot_axis_labels(tmp_path):
    n = list(range(7))
    curve = lambda k: {"n": n, "removed": [min(1, k * i / 6) for i in n],
                       "low": [max(0, k * i / 6 - 0.1) for i in n],
                       "high": [min(1, k * i / 6 + 0.1) for i in n]}  # fmt: skip
    long = "a ranking with a very long name that would run off the picture"
    path = plots.plot({"iou": curve(1.0), long: curve(0.5)}, str(tmp_path / "c.png"), "t")
    img = np.asarray(Image.open(path).convert("RGB"))
    h, w = img.shape[:2]
    assert (w, h) == (640, 420)
    m = plots.layout(["iou", long])
    line = sum(draw.font().getmetrics())
    left, right, top, bottom = m["left"], m["right"], m["top"], m["bottom"]
    ink = _ink(img)
    # x label: its own band under the tick numbers, centred under the axis
    xl = ink[h - 8 - line : h - 4]
    cols = np.flatnonzero(xl.any(0))
    assert len(cols) and abs((cols.min() + cols.max()) / 2 - (left + w - right) / 2) <= 2
    width = draw.font().getlength(plots.X_LABEL)
    assert abs((cols.max() - cols.min()) - width) <= 3
    ticks = ink[h - bottom + 5 : h - 8 - line, left - 10 : w - right + 10]
    assert ticks.any() and not ticks[-4:].any()  # tick numbers end before the x label's band
    # y label: rotated in the left band, centred on the plot's height, clear of the ticks
    yl = ink[top : h - bottom, : 8 + line + 2]
    rows = np.flatnonzero(yl.any(1))
    height = draw.font().getlength(plots.Y_LABEL)
    assert abs((rows.max() - rows.min()) - height) <= 3
    assert abs(top + (rows.min() + rows.max()) / 2 - (top + h - bottom) / 2) <= 2
    assert not ink[top : h - bottom, 8 + line + 2 : 8 + line + 6].any()  # gap to tick numbers
    # the legend stays inside the picture: its long name is cut, 4 px from the edge are blank
    assert ink[top : top + 2 * (line + 6), w - right + 16 :].any()
    assert not ink[:, w - 6 :].any()
    assert np.all(img[top : top + line + 6, w - right + 16 :] == (31, 119, 180), axis=-1).sum() > 40


def test_world_grid_captions_and_legend(tmp_path):
    from gdjax.world import demo, quality

    if not (os.path.isdir(demo.GENERATOR) and os.path.isdir(demo.SEGMENTER)):
        pytest.skip("demo models not in this checkout")
    seg = demo.segmenter()
    img = np.asarray(Image.open(quality.write_world_grid(str(tmp_path / "w.png"),
                                                          demo.generator(), seg, n=2)))  # fmt: skip
    grid_w, grid_h = 2 * 132 - 4, 4 * 132 - 4  # 64 px tiles and 2 px gaps, enlarged x2
    band = img.shape[1] - grid_w
    assert 40 < band <= 120 and img.shape[0] > grid_h + 6 + draw.CAPTION_SIZE
    ink = _ink(img[:grid_h, :band])
    for r in range(4):  # one caption per row, none in the gaps
        assert ink[r * 132 : r * 132 + 128].sum() > 50
        assert not ink[r * 132 + 128 : r * 132 + 132].any()
    key = img[grid_h + 6 :]
    seg_rows = np.concatenate([img[132:260, band:], img[396:524, band:]]).reshape(-1, 3)
    colors = draw.palette(len(seg.labels))
    present = [i for i, c in enumerate(colors) if np.all(seg_rows == c, axis=-1).any()]
    assert len(present) >= 3
    for i in present:  # every colour the segmentations use has its swatch in the key
        assert np.all(key == colors[i], axis=-1).sum() >= (draw.CAPTION_SIZE - 2) ** 2, i
