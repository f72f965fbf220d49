"""Server time per uploaded picture (``POST /api/upload``) after warm-up, on the default backend.

    python -m benchmarks.paint_upload                      # 200 steps (examples/paint.py's default)
    python -m benchmarks.paint_upload --steps 0 50 200

Uploads held-out rendered scenes (seed 1616, pictures the demo GAN never made; scene ``k`` of
each row, ``k = 0 .. --repeats - 1``) as PNG data URLs through the framework's test client to
the demo GAN's ``layer4`` with the shipped encoder and ``--steps`` Adam steps. Columns: the
handler's own time (``Server-Timing``: decoding, the inversion, the reconstruction, PNG
encoding), median and 90th percentile, and the reconstructions' PSNR against the pictures
(mean, min). The first upload of a row compiles and is not counted.
"""

import argparse
import base64
import io
import re

import numpy as np
from PIL import Image

from gdjax import demo, scenes
from gdjax.app import engine, server, upload
from gdjax.invert import evaluate, image

LAYER = "layer4"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[upload.DEFAULT_STEPS])
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args(argv)
    from fastapi.testclient import TestClient

    module, params = demo.generator()
    seg = demo.segmenter()
    levels = engine.level_table(module, params, LAYER, samples=50)
    eng = engine.Engine(module, params, LAYER, levels=levels, seg=seg)
    units = [{"unit": u, "iou_label": "-"} for u in range(eng.spec.num_units)]
    record = {"layers": [{"layer": LAYER, "units": units, "rankings": []}]}
    pics = image.to_uint8(scenes.render(evaluate.EVAL_SEED, a.repeats, size=64)[0])
    urls = []
    for p in pics:
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, "png")
        urls.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    print("| steps | handler time, median / p90 | PSNR mean (min) |")
    print("| --- | --- | --- |")
    for steps in a.steps:
        inv = upload.Inverter.find(module, params, seg, LAYER, steps)
        client = TestClient(server.create_app(eng, record, project="bench", inverter=inv))
        times, psnrs = [], []
        for k, url in enumerate([urls[0], *urls]):
            r = client.post("/api/upload", json={"project": "bench", "image": url})
            r.raise_for_status()
            if k == 0:
                continue  # compiles
            times.append(float(re.search(r"dur=([\d.]+)", r.headers["server-timing"])[1]))
            psnrs.append(r.json()["res"]["psnr"])
        t = np.asarray(times) / 1e3
        print(f"| {steps} | {np.median(t):.2f} / {np.percentile(t, 90):.2f} s | "
              f"{np.mean(psnrs):.1f} dB ({np.min(psnrs):.1f}) |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
