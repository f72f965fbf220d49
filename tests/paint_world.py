"""The paint app on the demo world, built once per test process (shared by test_app.py and
test_app_browser.py).

The concepts' rankings come from the demo segmenter on the first ``SEEDS`` latents, not from
a full dissection (20 s): each unit's IoU, at layer resolution, between "activation above its
0.95 quantile" and "the class covers at least a quarter of the cell". For door this puts the
dissection's top units first (44, 33, ...).
"""

import functools
import types

import numpy as np

from gdjax import demo
from gdjax.app import engine

LAYER = "layer4"
PROJECT = "demo"
SEEDS = 128
DOOR, SKY, BUILDING = 11, 1, 8
GROUND = (5, 6)  # grass, road


def rankings(hs: np.ndarray, labels: np.ndarray, classes) -> list[dict]:
    """``<class>-iou`` rankings (lower = better) from activations ``[N, H, W, C]`` and label
    maps ``[N, R, R]``."""
    n, h, w, c = hs.shape
    r = labels.shape[1]
    active = hs > np.quantile(hs.reshape(-1, c), 0.95, axis=0)
    out = []
    for name, label in classes.items():
        cover = (labels == label).reshape(n, h, r // h, w, r // w).mean(axis=(2, 4)) >= 0.25
        cover = cover[..., None]
        iou = (active & cover).sum((0, 1, 2)) / np.maximum((active | cover).sum((0, 1, 2)), 1)
        out.append({"name": f"{name}-iou", "metric": "iou", "score": (-iou).tolist()})
    return out


@functools.lru_cache(maxsize=1)
def world():
    """``(eng, app, record, images [SEEDS, R, R, 3] uint8, labels [SEEDS, R, R])``."""
    from gdjax.app import server  # needs the [app] extra: the tests skip without it

    module, params = demo.generator()
    seg = demo.segmenter()
    levels = engine.level_table(module, params, LAYER, samples=50)
    eng = engine.Engine(module, params, LAYER, levels=levels, seg=seg)
    zero = np.zeros((*eng.spec.size, eng.spec.num_units), np.float32)
    hs, images, labels = [], [], []
    for s in range(0, SEEDS, 16):
        h = eng.activations(range(s, s + 16))
        im, lab = eng.render(h, zero, zero, segmentation=True)
        hs.append(np.stack(h))
        images.append(im)
        labels.append(lab)
    hs, images, labels = np.concatenate(hs), np.concatenate(images), np.concatenate(labels)
    names = {n: i for i, (n, _) in enumerate(seg.labels)}
    classes = {k: names[k] for k in ("door", "sky", "building", "grass")}
    units = [{"unit": u, "iou_label": "-"} for u in range(eng.spec.num_units)]
    record = {
        "layers": [{"layer": LAYER, "units": units, "rankings": rankings(hs, labels, classes)}]
    }
    app = server.create_app(eng, record, project=PROJECT)
    return types.SimpleNamespace(eng=eng, app=app, record=record, images=images, labels=labels,
                                 module=module, params=params, seg=seg)  # fmt: skip


def order(record: dict, name: str) -> np.ndarray:
    """Units of ranking ``name`` best first."""
    lrec = record["layers"][0]
    score = next(r["score"] for r in lrec["rankings"] if r["name"] == name)
    return np.argsort(np.asarray(score), kind="stable")
