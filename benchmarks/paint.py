"""Server time per paint stroke (``POST /api/generate``) after warm-up, on the default backend.

    python -m benchmarks.paint                          # demo GAN, out/dissect's door units
    python -m benchmarks.paint --generator random:256   # PGGAN-256, random weights, random units

Each request repaints one image (seed 0, its activation cached as in a session) under ``n``
strokes, as the page sends them: every stroke is a 256 x 256 PNG brush mask with the top 10
units of a concept at their 0.99 levels; the last stroke of each request is new (its mask is
decoded), the earlier ones repeat (memoised). Columns: the handler's own time (the
``Server-Timing`` header: decoding, planes, the compiled generator, PNG encoding), the
round trip through the framework's test client (adds request parsing and validation), and
the engine alone (planes + generate, no HTTP). Median and 90th percentile over --repeats
requests per row, after --warmup requests.
"""

import argparse
import base64
import io
import os
import statistics
import time

import jax
import numpy as np
from PIL import Image, ImageDraw

from gdjax import demo, report
from gdjax.app import api, engine, server

LAYER = "layer4"


def stroke_png(rs: np.random.RandomState) -> str:
    """A random brush stroke (a few round segments, 40 px wide) on a transparent 256 canvas."""
    im = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    pts = [tuple(rs.randint(20, 236, 2).tolist())]
    for _ in range(3):
        pts.append(tuple(np.clip(np.array(pts[-1]) + rs.randint(-40, 41, 2), 0, 255).tolist()))
    d.line(pts, fill=(0, 0, 0, 255), width=40, joint="curve")
    buf = io.BytesIO()
    im.save(buf, "png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _percentiles(xs):
    xs = np.asarray(xs)
    return float(np.median(xs)), float(np.percentile(xs, 90))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", default="demo", help="'demo', 'random:R' or a directory")
    ap.add_argument("--dissect", default="out/dissect/dissect.json",
                    help="rankings of the demo (door units); else random units")  # fmt: skip
    ap.add_argument("--strokes", type=int, nargs="+", default=[1, 10, 40])
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--level_samples", type=int, default=200)
    a = ap.parse_args(argv)
    os.environ.setdefault("GDJAX_PROGRESS", "0")
    from fastapi.testclient import TestClient

    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    module, params = demo.load_generator(a.generator)
    t = time.perf_counter()
    levels = engine.level_table(module, params, LAYER, a.level_samples)
    eng = engine.Engine(module, params, LAYER, levels=levels)
    eng.warmup(show=False)
    h, w = eng.spec.size
    print(f"{a.generator}: {LAYER} {h}x{w}x{eng.spec.num_units}, {eng.resolution} px images; "
          f"levels + warm-up {time.perf_counter() - t:.1f} s")  # fmt: skip
    num = eng.spec.num_units
    rec = None
    if a.generator == "demo" and os.path.exists(a.dissect):
        rec = report.read(a.dissect)
        score = report.ranking(rec, LAYER, "door-iou")
        units = np.argsort(score, kind="stable")[:10]
        print(f"units: door-iou top 10 of {a.dissect}")
    else:
        units = np.random.RandomState(0).choice(num, 10, replace=False)
        print("units: 10 random units")
    if rec is None:
        rec = {"layers": [{"layer": LAYER, "units": [], "rankings": []}]}
    client = TestClient(server.create_app(eng, rec, project="bench"))
    vals = eng.levels.at([0.99])[:, 0]
    ablations = [{"layer": LAYER, "unit": int(u), "value": float(vals[u])} for u in units]
    rs = np.random.RandomState(1)
    pool = [stroke_png(rs) for _ in range(max(a.strokes))]

    def body(n):
        masks = pool[: n - 1] + [stroke_png(rs)]
        ivs = [{"ablations": ablations, "mask": {"bitstring": m}} for m in masks]
        return {"project": "bench", "ids": [0], "interventions": ivs}

    rows = []
    for n in a.strokes:
        handler, trip, direct = [], [], []
        for i in range(a.warmup + a.repeats):
            b = body(n)
            t = time.perf_counter()
            r = client.post("/api/generate", json=b)
            wall = time.perf_counter() - t
            assert r.status_code == 200, r.text
            dur = float(r.headers["server-timing"].split("dur=")[1])
            b = body(n)
            req = api.GenerateRequest.model_validate(b)
            t = time.perf_counter()
            alpha, value = api.planes(req.interventions, eng.spec)
            eng.generate(req.ids, None, alpha, value)
            eng_s = time.perf_counter() - t
            if i >= a.warmup:
                handler.append(dur)
                trip.append(wall * 1e3)
                direct.append(eng_s * 1e3)
        rows.append((n, _percentiles(handler), _percentiles(trip), _percentiles(direct)))

    print(f"\n{a.repeats} requests per row after {a.warmup} warm-up; ms (median / p90)")
    print("| strokes | handler (Server-Timing) | test-client round trip | engine only |")
    print("| --- | --- | --- | --- |")
    for n, h, w, d in rows:
        print(
            f"| {n} | {h[0]:.1f} / {h[1]:.1f} | {w[0]:.1f} / {w[1]:.1f} | {d[0]:.1f} / {d[1]:.1f} |"
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f} "
          f"(1 min), {statistics.mean(os.getloadavg()):.2f} (mean of 1/5/15 min)")  # fmt: skip


if __name__ == "__main__":
    main()
