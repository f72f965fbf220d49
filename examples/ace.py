"""Learn which units of a layer cause a class (ACE α, REFERENCE §4.2) and evaluate them.

    python examples/ace.py --classname tree
    python examples/ace.py --classname door --generator runs/gen --segmenter runs/seg \
        --dissect runs/dissect/dissect.json --search_size 10000 --train_size 1000 --eval_size 200

Writes ``<outdir>/<layer>/<class>/`` (alpha.npy, snapshots/, summary.json, removal curves of
the top units by ACE and by IoU, before/after grid) and adds a ``<class>-ace`` ranking to
``--dissect`` (created if missing). α starts from that file's ``<class>-iou`` ranking when
present, else at 0.5. Defaults are the demo world at a reduced size; the reference's sizes are
10000 / 1000 / 200.
"""

import os
import sys

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gdjax import ablate, ace, demo, proggan, scenes  # noqa: E402
from gdjax import segmenter as seglib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "demo", "'demo' or a gdjax proggan checkpoint directory")
flags.DEFINE_string("segmenter", "demo", "'demo' or a gdjax segmenter checkpoint directory")
flags.DEFINE_string("classname", "tree", "class to learn α for")
flags.DEFINE_string("layer", "layer4", "generator layer")
flags.DEFINE_string("dissect", "runs/demo_dissect/dissect.json", "dissect.json to read/extend")
flags.DEFINE_string("outdir", "runs/demo_ace", "output directory")
flags.DEFINE_integer("downsample", 1, "segmentation downsampling (the reference: 2 at 256 px)")
flags.DEFINE_integer("search_size", 1000, "latents searched for present and candidate sets")
flags.DEFINE_integer("train_size", 200, "training pairs")
flags.DEFINE_integer("eval_size", 40, "evaluation pairs")
flags.DEFINE_integer("inference_batch_size", 10, "images per inference batch")
flags.DEFINE_integer("train_batch_size", 2, "pairs per micro-batch")
flags.DEFINE_integer("train_update_freq", 10, "micro-batches per Adam step")
flags.DEFINE_integer("train_epochs", 10, "epochs")
flags.DEFINE_float("l2_lambda", 0.005, "L2 weight on α")
flags.DEFINE_float("lr", 0.01, "Adam learning rate")
flags.DEFINE_integer("shuffle_seed", 0, "seed of the pairing and order of training pairs")
flags.DEFINE_bool("ploc_bug", False, "read the insertion reward at ploc, as the reference")
flags.DEFINE_float(
    "insertion_quantile",
    None,
    "insert each unit's level at this quantile "
    "(e.g. 0.99, the reference's _h99) instead of the coverage-weighted mean",
)
flags.DEFINE_integer("eval_images", 200, "latents (seed 3) for the removal curves")
flags.DEFINE_integer("topn", 20, "units in the removal curves and the grid")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    (module, params), seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    names = [name for name, _ in seg.labels]
    label = names.index(FLAGS.classname)
    fns = ace.segmenter_fns(seg, label, FLAGS.downsample)
    cfg = ace.Config(
        layer=FLAGS.layer, search_size=FLAGS.search_size, train_size=FLAGS.train_size,
        eval_size=FLAGS.eval_size, inference_batch_size=FLAGS.inference_batch_size,
        train_batch_size=FLAGS.train_batch_size, train_update_freq=FLAGS.train_update_freq,
        train_epochs=FLAGS.train_epochs, l2_lambda=FLAGS.l2_lambda, lr=FLAGS.lr,
        shuffle_seed=FLAGS.shuffle_seed, ploc_bug=FLAGS.ploc_bug,
    )  # fmt: skip
    init = ace.init_from_dissect(FLAGS.dissect, FLAGS.layer, FLAGS.classname)
    start = "IoU / max IoU" if init is not None else "0.5 (no <class>-iou ranking found)"
    print(f"{FLAGS.classname} (label {label}): α starts at {start}")
    value = None
    if FLAGS.insertion_quantile is not None:
        zq = proggan.sample_z(min(FLAGS.search_size, 2000), cfg.present_seed, module.sizes[0])
        value = ace.unit_quantiles(module, params, zq, FLAGS.layer, [FLAGS.insertion_quantile])[0]
    result = ace.optimize(module, params, fns, cfg, init, value)
    outdir = os.path.join(FLAGS.outdir, FLAGS.layer, FLAGS.classname)

    orders = {"ace": (np.argsort(-result.alpha, kind="stable"), result.alpha)}
    iou = ablate.ranking(FLAGS.dissect, FLAGS.layer, f"{FLAGS.classname}-iou")
    if iou is not None:
        orders["ace"] = (ablate.order(-result.alpha, tiebreak=iou), result.alpha)
        orders["iou"] = (ablate.order(iou), None)
    z = proggan.sample_z(FLAGS.eval_images, 3, module.sizes[0])
    curves = ablate.experiment(
        outdir, module, params, fns.mask, z, FLAGS.layer, FLAGS.classname, orders,
        n_max=FLAGS.topn, batch_size=FLAGS.inference_batch_size, grid_n=FLAGS.topn,
        segment_fn=lambda im: seglib.segment(seg, im, FLAGS.downsample), colorize=scenes.colorize,
    )  # fmt: skip
    removed = {m: curves[m]["removed"][-1] for m in orders}
    summary = ace.save(outdir, result, cfg, FLAGS.classname, label=label, removed_top=removed,
                       topn=FLAGS.topn)  # fmt: skip
    ace.add_ranking(FLAGS.dissect, FLAGS.layer, f"{FLAGS.classname}-ace", -result.alpha)
    top = np.argsort(-result.alpha, kind="stable")[:10]
    print("top units by α: " + ", ".join(f"{u} ({result.alpha[u]:.2f})" for u in top))
    print("eval loss per epoch: " + " ".join(f"{v:.3f}" for v in result.eval_loss))
    for m, r in removed.items():
        print(f"top {FLAGS.topn} by {m}: {r:.3f} of {FLAGS.classname} pixels removed")
    print(f"results: {summary}, {', '.join(curves['paths'])}; ranking added to {FLAGS.dissect}")


if __name__ == "__main__":
    app.run(main)
