"""GANPaint in the browser: paint concepts into generated scenes (needs the ``[app]`` extra).

    python examples/paint.py                  # the main job's dissection, http://127.0.0.1:8000
    python examples/paint.py --dissect out/church/dissect.json --layer layer4 --port 8001

Reads the dissection (--dissect, by default the main job's ``out/dissect/dissect.json``; make
it with ``python examples/dissect.py``) for the concepts' unit rankings (``<class>-ace`` from
``examples/ace.py`` where present, else ``<class>-iou``), loads the generator and segmenter it
was made with (or --generator / --segmenter), measures each unit's activation quantiles on
--level_samples latents, compiles the edited generator and serves the page and the API
(``/api/generate`` etc., see ``gdjax.app.server``) on --host:--port, loopback by default.
Where the generator has an encoder for the layer (the demo's layer4), the page also takes an
uploaded picture: it is inverted (the encoder, then --invert_steps Adam steps) and painted on
like a seed, the picture itself kept outside what a stroke changes.
"""

import os
import socket
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import compile_cache, demo, report  # noqa: E402
from gdjax.errors import InputError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dissect", cli.DISSECT_JSON, "dissect.json whose rankings give the concepts")
flags.DEFINE_string("generator", "", "'demo', 'random:R' or a generator directory "
                    "('': the one the dissection used)")  # fmt: skip
flags.DEFINE_string("segmenter", "", "'demo', a segmenter directory ('': the dissection's), "
                    "or 'none' (no segmentation overlay)")  # fmt: skip
flags.DEFINE_string("layer", "", "layer to paint ('': the dissection's first layer)")
flags.DEFINE_string("host", "127.0.0.1", "address to bind (loopback by default)")
flags.DEFINE_integer("port", 8000, "port to bind")
flags.DEFINE_integer("level_samples", 1000, "latents (seed 1) giving the units' quantiles")
flags.DEFINE_integer("invert_steps", 200, "Adam steps inverting an uploaded picture after the "
                     "encoder (0: the encoder alone; 200: about 2 s on 2 CPU cores)")  # fmt: skip
flags.DEFINE_string("xla_cache", compile_cache.DEFAULT,
                    "keep compiled programs here, restarts skip compiling ('' = off)")  # fmt: skip


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise InputError(f"--port must be in 1..65535, got {port}")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise InputError(f"--host {host} --port {port}: cannot bind ({e.strerror})") from None


def main(argv):
    del argv
    try:
        import uvicorn

        from gdjax.app import server
    except ImportError as e:
        raise InputError(
            f"the paint app needs the [app] extra: pip install -e '.[app]' ({e})"
        ) from None
    cli.positive(level_samples=FLAGS.level_samples)
    if FLAGS.invert_steps < 0:
        raise InputError(f"--invert_steps must be >= 0, got {FLAGS.invert_steps}")
    _check_port(FLAGS.host, FLAGS.port)
    rec = report.read(FLAGS.dissect)
    settings = rec.get("settings", {})
    layers = [r.get("layer") for r in rec["layers"]]
    layer = FLAGS.layer or layers[0]
    report.layer(rec, layer, FLAGS.dissect)
    gen_spec = FLAGS.generator or settings.get("generator", "demo")
    seg_spec = FLAGS.segmenter or settings.get("segmenter", "demo")
    module, params = demo.load_generator(gen_spec)
    cli.layer(layer, module)
    seg = None if seg_spec == "none" else demo.load_segmenter(seg_spec)
    compile_cache.enable(FLAGS.xla_cache)

    from gdjax.app import engine as paint
    from gdjax.app import upload

    levels = paint.level_table(module, params, layer, FLAGS.level_samples)
    eng = paint.Engine(module, params, layer, levels=levels, seg=seg)
    eng.warmup()
    inverter = upload.Inverter.find(module, params, seg, layer, FLAGS.invert_steps)
    if inverter is not None:
        print(f"paint: compiling the inversion of uploaded pictures ({FLAGS.invert_steps} steps)")
        inverter.warmup()
    dissect_dir = os.path.dirname(os.path.abspath(FLAGS.dissect))
    if os.path.isdir(FLAGS.dissect):
        dissect_dir = os.path.abspath(FLAGS.dissect)
    project = os.path.basename(dissect_dir)
    app = server.create_app(eng, rec, project=project, dissect_dir=dissect_dir, inverter=inverter)
    uploads = "uploads on" if inverter else f"no uploads (no encoder for {layer})"
    print(f"paint: {gen_spec} generator, {layer}, project {project!r}, {uploads}")
    print(f"open http://{FLAGS.host}:{FLAGS.port}/  (Ctrl-C stops)")
    uvicorn.run(app, host=FLAGS.host, port=FLAGS.port, log_level="warning")


if __name__ == "__main__":
    cli.run(main)
