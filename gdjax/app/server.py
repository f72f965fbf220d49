"""The paint server: a FastAPI app speaking the original GANPaint API (reference §6) over one
:class:`gdjax.app.engine.Engine` and its dissection record, plus the single page client.

Routes (``project`` is the dissection directory's name; every answer is
``{"request": ..., "res": ...}`` as the reference):

* ``GET /`` the page; ``GET /api/all_projects`` (``info.upload``, ours: whether pictures can
  be uploaded);
* ``GET /api/layers?project=`` -> ``[{layer, channels, shape: [H, W]}]`` (the served layer);
* ``GET /api/units?project=&layer=`` -> ``[{unit, img, label}]`` (``img``: its top images
  from the dissection, ``None`` if absent);
* ``GET /api/rankings?project=&layer=`` -> ``[{name, metric, scores}]`` (lower is better);
* ``GET /api/levels?project=&layer=&quantiles=0.99`` -> ``[C][Q]`` each unit's activation
  quantiles;
* ``GET /api/labels?project=`` (ours) -> ``[{label, color: [r, g, b]}]``, the segmentation
  palette;
* ``POST /api/generate`` -> ``[{d: "data:image/png;base64,..."}]`` (plus ``seg``, the
  colour-coded segmentation, when ``segmentation`` is true). The header ``Server-Timing``
  carries the time spent inside the handler. Ids from ``10000`` up are uploaded pictures:
  their images are the picture itself outside what the edit changes (the painted region grown
  by at most 8 px, :mod:`gdjax.invert.blend`) and the regenerated image inside;
* ``POST /api/upload`` (ours) ``{project, image: PNG/JPEG data URL}`` -> ``{id, d, psnr}``:
  inverts the picture into the layer (:class:`gdjax.app.upload.Inverter`) and registers it
  under a new ``id`` for ``/api/generate``; ``d`` is the reconstruction, ``psnr`` its PSNR
  against the picture (dB). Without an encoder for the layer it is a 400.

A malformed request is answered 422 (schema) or 400 (values: layer, unit, mask, latents) with
a ``detail`` message before the model is touched; an unknown project is 404. Requests share
one model lock (handlers run in the threadpool).
"""

from __future__ import annotations

import base64
import io
import itertools
import os
import time

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from gdjax.app import api
from gdjax.app.engine import Engine
from gdjax.errors import InputError
from gdjax.invert import image as imagelib
from gdjax.report import draw

__all__ = ["STATIC", "create_app", "data_url"]

_QUANTILES = Query(default=["0.99"])
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def data_url(image: np.ndarray) -> str:
    """A uint8 ``[H, W, 3]`` image as a PNG data URL (lossless, fast compression)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "png", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def create_app(engine: Engine, record: dict, *, project: str, dissect_dir: str | None = None,
               colors=None, inverter=None) -> FastAPI:  # fmt: skip
    """The app serving ``engine`` with the rankings and units of ``record`` (a dissect.json
    record holding ``engine.layer``) as project ``project``. ``dissect_dir``: where the
    dissection's unit images are (``<layer>/image/<u>-top.jpg``); ``colors``: uint8 ``[L, 3]``
    segmentation palette (default :func:`gdjax.report.draw.palette`); ``inverter``: a
    :class:`gdjax.app.upload.Inverter` for the engine's layer, or ``None`` (no uploads)."""
    layer = engine.layer
    lrec = next((r for r in record.get("layers", []) if r.get("layer") == layer), None)
    if lrec is None:
        raise InputError(f"the dissection has no layer {layer!r}")
    labels = [u.get("iou_label") for u in lrec.get("units", [])]
    seg_labels = [name for name, _ in engine.seg.labels] if engine.seg is not None else []
    if colors is None:
        colors = draw.palette(max(len(seg_labels), 1))
    colors = np.asarray(colors, np.uint8)

    # No interactive docs pages: they load scripts from a CDN; the schema is served.
    app = FastAPI(title="gdjax paint", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")  # fmt: skip
    image_dir = os.path.join(dissect_dir, layer, "image") if dissect_dir else None
    if image_dir and os.path.isdir(image_dir):
        app.mount(f"/data/{layer}/image", StaticFiles(directory=image_dir), name="unit-images")

    @app.exception_handler(InputError)
    async def _bad_input(request: Request, exc: InputError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    def check(p: str, lay: str | None = None) -> None:
        if p != project:
            raise HTTPException(404, f"unknown project {p!r}; this server has {project!r}")
        if lay is not None and lay != layer:
            raise HTTPException(404, f"unknown layer {lay!r}; this server edits {layer!r}")

    def answer(request: dict, res):
        return {"request": request, "res": res}

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(os.path.join(STATIC, "index.html"))

    @app.get("/api/all_projects")
    def all_projects():
        return [{"project": project, "info": {"layers": [layer], "upload": inverter is not None}}]

    @app.get("/api/layers")
    def layers(project: str):
        check(project)
        res = [{"layer": layer, "channels": engine.spec.num_units, "shape": list(engine.spec.size)}]
        return answer({"project": project}, res)

    @app.get("/api/units")
    def units(project: str, layer: str):
        check(project, layer)
        res = []
        for u, label in enumerate(labels):
            img = f"{image_dir}/{u}-top.jpg" if image_dir else None
            url = f"/data/{layer}/image/{u}-top.jpg" if img and os.path.isfile(img) else None
            res.append({"unit": u, "img": url, "label": label})
        return answer({"project": project, "layer": layer}, res)

    @app.get("/api/rankings")
    def rankings(project: str, layer: str):
        check(project, layer)
        res = [{"name": r["name"], "metric": r.get("metric"), "scores": r["score"]}
               for r in lrec.get("rankings", [])]  # fmt: skip
        return answer({"project": project, "layer": layer}, res)

    @app.get("/api/levels")
    def levels(project: str, layer: str, quantiles: list[str] = _QUANTILES):
        check(project, layer)
        try:  # repeated (?quantiles=0.5&quantiles=0.99) or comma-separated
            qs = [float(q) for item in quantiles for q in item.split(",") if q.strip()]
        except ValueError:
            raise InputError(f"quantiles: not numbers: {quantiles}") from None
        if not qs or not all(0.0 <= q <= 1.0 for q in qs):
            raise InputError(f"quantiles must be numbers in [0, 1], got {quantiles}")
        res = engine.levels.at(qs).tolist()
        return answer({"project": project, "layer": layer, "quantiles": qs}, res)

    @app.get("/api/labels")
    def seg_palette(project: str):
        check(project)
        res = [{"label": name, "color": colors[min(i, len(colors) - 1)].tolist()}
               for i, name in enumerate(seg_labels)]  # fmt: skip
        return answer({"project": project}, res)

    @app.post("/api/generate")
    def generate(req: api.GenerateRequest):
        t0 = time.perf_counter()
        check(req.project)
        alpha, value = api.planes(req.interventions, engine.spec)  # checked before the model
        region = api.region(req.interventions, engine.resolution)
        if req.segmentation and engine.seg is None:
            raise InputError("segmentation: this server has no segmenter")
        zs = None if req.zs is None else np.asarray(req.zs, np.float32)
        images, segs = engine.generate(req.ids, zs, alpha, value, req.segmentation, region)
        res = []
        for i, image in enumerate(images):
            item = {"d": data_url(image)}
            if segs is not None:
                item["seg"] = data_url(draw.colorize(segs[i], colors))
            res.append(item)
        ms = (time.perf_counter() - t0) * 1e3
        body = answer(req.model_dump(mode="json"), res)
        return JSONResponse(body, headers={"Server-Timing": f"generate;dur={ms:.2f}"})

    uploads = itertools.count(api.UPLOAD_ID0)

    @app.post("/api/upload")
    def upload(req: api.UploadRequest):
        t0 = time.perf_counter()
        check(req.project)
        if inverter is None:
            raise InputError(
                f"upload: no encoder for this generator/layer ({layer}), so pictures cannot be "
                "inverted; the demo generator's layer4 has one"
            )
        picture = api.decode_picture(req.image, engine.resolution)  # checked before the model
        with engine.lock:
            h = inverter(picture)
            uid = next(uploads)
        original = imagelib.to_uint8(picture)
        recon = engine.put(uid, h, original)
        mse = np.mean(np.square(recon.astype(np.float64) - original.astype(np.float64)))
        psnr = float(10 * np.log10(255.0**2 / max(mse, 1e-10)))
        ms = (time.perf_counter() - t0) * 1e3
        res = {"id": uid, "d": data_url(recon), "psnr": round(psnr, 2)}
        body = answer({"project": req.project}, res)
        return JSONResponse(body, headers={"Server-Timing": f"upload;dur={ms:.2f}"})

    return app
