"""Learn which units of a layer cause a class (ACE α, REFERENCE §4.2) and evaluate them.

    python examples/ace.py --classname tree
    python examples/ace.py --classname door --generator runs/gen --segmenter runs/seg \
        --dissect runs/dissect/dissect.json --search_size 10000 --train_size 1000 --eval_size 200

Writes ``<outdir>/<layer>/<class>/`` (alpha.npy, snapshots/, summary.json, result.json, curves of
the top units by ACE and by IoU, before/after grid) and adds a ``<class>-ace`` ranking to
``--dissect`` (created if missing). α starts from that file's ``<class>-iou`` ranking when
present, else at 0.5. Defaults are the demo world at a reduced size; the reference's sizes are
10000 / 1000 / 200.
"""

import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gdjax import ace, causal, demo, scenes  # noqa: E402
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
flags.DEFINE_bool("mixed_units", True, "ablate ACE-ranked units by their α (the reference)")


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
    outdir = os.path.join(FLAGS.outdir, FLAGS.layer, FLAGS.classname)
    r = causal.run_class(
        outdir, module, params, fns, FLAGS.dissect, FLAGS.classname, cfg,
        eval_images=FLAGS.eval_images, topn=FLAGS.topn,
        insertion_quantile=FLAGS.insertion_quantile, mixed_units=FLAGS.mixed_units,
        segment_fn=lambda im: seglib.segment(seg, im, FLAGS.downsample),
        colorize=scenes.colorize, label=label,
    )  # fmt: skip
    print(f"{FLAGS.classname} (label {label}): α started at {r['alpha_start']}")
    print("top units by α: " + ", ".join(
        f"{u} ({a:.2f})" for u, a in zip(r["top_units"], r["top_alpha"], strict=True)))  # fmt: skip
    print("eval loss per epoch: " + " ".join(f"{v:.3f}" for v in r["eval_loss"]))
    for m, b in r["removed"].items():
        print(f"top {r['topn']} by {m}: {b['removed']:.3f} [{b['low']:.3f}, {b['high']:.3f}] "
              f"of {FLAGS.classname} pixels removed")  # fmt: skip
    print(f"results: {', '.join(r['paths'])}; ranking added to {FLAGS.dissect}")


if __name__ == "__main__":
    app.run(main)
