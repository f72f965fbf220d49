"""Measure inversion on held-out rendered scenes, and a door painted into each of them.

    python examples/eval_invert.py                    # 100 scenes, out/eval_invert
    python examples/eval_invert.py --n 20 --steps 50  # quicker

Inverts --n rendered scenes of seed 1616 (neither demo model saw that seed) with the encoder
and --steps of optimization, and writes ``<outdir>/eval.json``: PSNR and the share of pixels
whose segmenter label in the reconstruction equals the one in the target (``agreement``; and
with the scene's true labels, ``agreement_truth``), for the encoder alone and after
optimization; then the top --units units of --classname inserted in the lowest 16 px square
on a wall without a door in each scene: the class's share of the square before and after,
and how much of the picture outside it is still the original's. ``<outdir>/invert.png``: a
few scenes as target / encoder / optimized / edited. Optimized batches are kept, so a rerun resumes.
"""

import os
import sys
import time

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import compile_cache, demo, invert, report, rundir  # noqa: E402
from gdjax.errors import InputError  # noqa: E402
from gdjax.invert import evaluate, image  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("n", 100, "held-out scenes")
flags.DEFINE_integer("steps", invert.Config().steps, "optimization steps")
flags.DEFINE_integer("batch_size", 50, "scenes optimized together")
flags.DEFINE_string("encoder", "demo", "'demo', 'none' or an encoder checkpoint directory")
flags.DEFINE_string("classname", "door", "class whose top units are inserted")
flags.DEFINE_integer("units", 20, "number of top units of the class inserted")
flags.DEFINE_string("rank", "iou", "ranking <class>-<rank> of --dissect")
flags.DEFINE_string("dissect", cli.DISSECT_JSON, "dissect.json with the rankings")
flags.DEFINE_integer("show", 8, "scenes in the picture")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "eval_invert"), "output directory")
flags.DEFINE_string("xla_cache", compile_cache.DEFAULT,
                    "keep compiled programs here so reruns skip compiling ('' = off)")  # fmt: skip


def main(argv):
    del argv
    cli.positive(n=FLAGS.n, steps=FLAGS.steps, batch_size=FLAGS.batch_size, units=FLAGS.units)
    (module, params), seg = demo.load_models()
    layer = "layer4"
    label = cli.label(FLAGS.classname, [n for n, _ in seg.labels])
    rec = report.read(FLAGS.dissect)
    score = report.ranking(rec, layer, f"{FLAGS.classname}-{FLAGS.rank}")
    if score is None:
        raise InputError(f"{FLAGS.dissect} has no ranking {FLAGS.classname}-{FLAGS.rank}")
    units = evaluate.top_units(score, FLAGS.units)
    enc = invert.resolve_encoder(module, layer, None if FLAGS.encoder == "none" else FLAGS.encoder)
    cfg = invert.Config(steps=FLAGS.steps)
    settings = {**cfg._asdict(), "n": FLAGS.n, "batch_size": FLAGS.batch_size,
                "encoder": FLAGS.encoder}  # fmt: skip
    rundir.check_run(FLAGS.outdir, settings, "inversion evaluation")
    compile_cache.enable(FLAGS.xla_cache)
    t0 = time.time()
    value = evaluate.insertion_value(module, params, layer)
    record, arrays = evaluate.held_out(module, params, seg, enc, cfg, FLAGS.outdir, layer=layer,
                                       n=FLAGS.n, batch_size=FLAGS.batch_size, label=label,
                                       units=units, value=value)  # fmt: skip
    record |= {"units": units, "ranking": f"{FLAGS.classname}-{FLAGS.rank}",
               "steps": FLAGS.steps, "seconds_this_run": round(time.time() - t0, 1)}  # fmt: skip
    path = rundir.write_json(os.path.join(FLAGS.outdir, "eval.json"), record)
    k = min(FLAGS.show, FLAGS.n)
    edited = evaluate.outline(image.to_uint8(arrays["blended"][:k]), arrays["region"][:k])
    rows = [("target (rendered)", image.to_uint8(arrays["targets"][:k])),
            ("encoder", image.to_uint8(arrays["encoder"][:k])),
            (f"+ {FLAGS.steps} steps", image.to_uint8(arrays["optimized"][:k])),
            (f"{FLAGS.classname} painted", edited)]  # fmt: skip
    pic = evaluate.picture(os.path.join(FLAGS.outdir, "invert.png"), rows)
    for key in ("encoder", "optimized"):
        r = record[key]
        print(f"{key}: PSNR {r['psnr']['mean']:.2f} dB (median {r['psnr']['median']:.2f}), "
              f"agreement {r['agreement']['mean']:.3f}, with true labels "
              f"{r['agreement_truth']['mean']:.3f}")  # fmt: skip
    e = record["edit"]
    print(
        f"{FLAGS.classname} in the painted square: {e['inside_before']['mean']:.3f} -> "
        f"{e['inside_after']['mean']:.3f}; outside it {e['outside_same']['mean']:.3f} of pixels "
        f"are the original's ({e['beyond_mask_same']['min']:.3f} where the mask is 0)"
    )
    print(f"wrote {path}, {pic}")


if __name__ == "__main__":
    cli.run(main)
