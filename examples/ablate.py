"""Ablate units of a layer and measure how much of a class disappears (reference §4.4).

    python examples/ablate.py --classname door                 # top-30 curves, IoU vs ACE
    python examples/ablate.py --classname door --units 12,40,7  # explicit units
    python examples/ablate.py --sweep                           # every unit alone, all classes

Curves: for n = 0…--n the first n units of each ranking ``<class>-<rank>`` of --dissect (by
default the main job's ``out/dissect/dissect.json``; ``<class>-ace`` exists once
``examples/ace.py`` ran) are ablated over the whole map on --size latents (seed --seed, the
reference's fullablate uses 3); writes ``<outdir>/<layer>/<class>-<rank>.json``,
``<class>-curve.png`` (99% bootstrap band) and ``<class>-grid.png`` under ``out/ablate``.
--sweep writes ``<outdir>/<layer>/sweep.{npz,json}``: a units x classes matrix of
pixel-fraction changes, computed as one compiled vmapped program per batch.
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import ablate, ace, compile_cache, demo, proggan, report  # noqa: E402
from gdjax import segmenter as seglib  # noqa: E402
from gdjax.errors import InputError  # noqa: E402
from gdjax.report import draw  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "demo", "'demo', 'random:R' or a gdjax generator directory")
flags.DEFINE_string("segmenter", "demo", "'demo' or a gdjax segmenter checkpoint directory")
flags.DEFINE_string("classname", "door", "class whose pixels are counted")
flags.DEFINE_string("layer", "layer4", "generator layer")
flags.DEFINE_string("dissect", cli.DISSECT_JSON, "dissect.json with rankings")
flags.DEFINE_list("rank", ["iou", "ace"], "rankings <class>-<rank> to compare (missing: skipped)")
flags.DEFINE_list("units", None, "explicit unit order instead of rankings")
flags.DEFINE_bool("mixed_units", False, "ablate ace-ranked units by their α, not fully")
flags.DEFINE_integer("n", 30, "largest number of units ablated")
flags.DEFINE_integer("size", 200, "latents")
flags.DEFINE_integer("seed", 3, "latent seed")
flags.DEFINE_integer("batch_size", 10, "images per batch")
flags.DEFINE_integer("downsample", 1, "segmentation downsampling (the reference: 2 at 256 px)")
flags.DEFINE_bool("sweep", False, "ablate every unit alone and record every class's change")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "ablate"), "output directory")
flags.DEFINE_string("xla_cache", compile_cache.DEFAULT,
                    "keep compiled programs here so reruns skip compiling ('' = off)")  # fmt: skip


def orders_from_flags(module, params) -> dict:
    """``{name: (unit order, alpha or None)}`` from --units or the rankings in --dissect."""
    if FLAGS.units:
        num_units = ablate.num_units(module, params, FLAGS.layer)
        return {"units": (cli.units(FLAGS.units, num_units), None)}
    rec = report.read(FLAGS.dissect)
    report.layer(rec, FLAGS.layer, FLAGS.dissect)
    iou = report.ranking(rec, FLAGS.layer, f"{FLAGS.classname}-iou")
    orders = {}
    for rank in FLAGS.rank:
        score = report.ranking(rec, FLAGS.layer, f"{FLAGS.classname}-{rank}")
        if score is None:
            print(f"no ranking {FLAGS.classname}-{rank} in {FLAGS.dissect}; skipped")
            continue
        alpha = -score if FLAGS.mixed_units and rank == "ace" else None
        orders[rank] = (ablate.order(score, tiebreak=iou), alpha)
    if not orders:
        raise InputError(
            f"{FLAGS.dissect} has no ranking {FLAGS.classname}-{{{','.join(FLAGS.rank)}}} for "
            f"{FLAGS.layer} (its class has no unit labelled with it): give --units"
        )
    return orders


def main(argv):
    del argv
    cli.positive(n=FLAGS.n, size=FLAGS.size, batch_size=FLAGS.batch_size,
                 downsample=FLAGS.downsample)  # fmt: skip
    (module, params), seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    cli.layer(FLAGS.layer, module)
    names = [name for name, _ in seg.labels]
    outdir = os.path.join(FLAGS.outdir, FLAGS.layer)
    z = proggan.sample_z(FLAGS.size, FLAGS.seed, module.sizes[0])

    def segment_fn(images):
        return seglib.segment(seg, images, FLAGS.downsample)

    compile_cache.enable(FLAGS.xla_cache)
    if FLAGS.sweep:
        base, ablated = ablate.sweep(module, params, segment_fn, z, FLAGS.layer, len(names),
                                     FLAGS.batch_size)  # fmt: skip
        path = ablate.save_sweep(os.path.join(outdir, "sweep"), base, ablated, names, FLAGS.layer)
        print(f"single-unit sweep ({ablated.shape[0]} units x {len(names)} labels): {path}")
        return

    label = cli.label(FLAGS.classname, names)
    orders = orders_from_flags(module, params)
    mask_fn = ace.segmenter_fns(seg, label, FLAGS.downsample).mask
    out = ablate.experiment(
        outdir, module, params, mask_fn, z, FLAGS.layer, FLAGS.classname, orders,
        n_max=FLAGS.n, batch_size=FLAGS.batch_size, grid_n=min(20, FLAGS.n),
        segment_fn=segment_fn, colorize=draw.colorize,
    )  # fmt: skip
    for rank in orders:
        r = out[rank]["removed"]
        marks = [n for n in (1, 5, 10, 20, 30) if n < len(r)]
        print(f"{rank}: " + ", ".join(f"top {n} removes {r[n]:.3f}" for n in marks))
    print("results: " + ", ".join(out["paths"]))


if __name__ == "__main__":
    cli.run(main)
