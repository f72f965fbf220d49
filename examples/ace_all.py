"""ACE for every class with enough interpretable units: top-n removal by ACE vs by IoU.

    python examples/ace_all.py                       # the demo GAN, every eligible class
    python examples/ace_all.py --classes tree,door --min_units 1 --outdir runs/demo_ace

Runs ``examples/ace.py``'s experiment (learn α, ablate the top --topn units by α and by
IoU over --eval_images latents of seed 3) for each class that labels at least --min_units
interpretable units of --layer in --dissect, one class after another. Writes
``<outdir>/<layer>/<class>/`` per class (``result.json`` last: a rerun skips finished
classes, so an interruption loses at most one), ``summary.json`` and ``summary.txt`` (the
table printed here) in ``<outdir>/<layer>``, and a ``<class>-ace`` ranking per class into
--dissect. A rerun with other settings on the same --outdir is refused. At the defaults one
class takes ~5.5 min on 2 CPU cores.
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
flags.DEFINE_string("dissect", "runs/demo_dissect/dissect.json", "dissect.json to read/extend")
flags.DEFINE_string("layer", "layer4", "generator layer")
flags.DEFINE_list("classes", None, "classes to run (default: every eligible class)")
flags.DEFINE_integer("min_units", 4, "interpretable units a class needs to be run")
flags.DEFINE_string("outdir", "runs/demo_ace_all", "output directory")
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
flags.DEFINE_float("insertion_quantile", None, "insert each unit's level at this quantile")
flags.DEFINE_integer("eval_images", 200, "latents (seed 3) for the removal curves")
flags.DEFINE_integer("topn", 20, "units ablated")
flags.DEFINE_bool("mixed_units", True, "ablate ACE-ranked units by their α (the reference)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    (module, params), seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    names = [name for name, _ in seg.labels]
    cfg = ace.Config(
        layer=FLAGS.layer, search_size=FLAGS.search_size, train_size=FLAGS.train_size,
        eval_size=FLAGS.eval_size, inference_batch_size=FLAGS.inference_batch_size,
        train_batch_size=FLAGS.train_batch_size, train_update_freq=FLAGS.train_update_freq,
        train_epochs=FLAGS.train_epochs, l2_lambda=FLAGS.l2_lambda, lr=FLAGS.lr,
        shuffle_seed=FLAGS.shuffle_seed, ploc_bug=FLAGS.ploc_bug,
    )  # fmt: skip
    summary = causal.run_all(
        FLAGS.outdir, module, params,
        lambda c: ace.segmenter_fns(seg, names.index(c), FLAGS.downsample),
        FLAGS.dissect, names, cfg, classes=FLAGS.classes, min_units=FLAGS.min_units,
        eval_images=FLAGS.eval_images, topn=FLAGS.topn,
        insertion_quantile=FLAGS.insertion_quantile, mixed_units=FLAGS.mixed_units,
        segment_fn=lambda im: seglib.segment(seg, im, FLAGS.downsample),
        colorize=scenes.colorize,
        settings_extra={"generator": FLAGS.generator, "segmenter": FLAGS.segmenter,
                        "downsample": FLAGS.downsample, "dissect": FLAGS.dissect},
    )  # fmt: skip
    print(causal.table(summary), end="")
    root = os.path.join(FLAGS.outdir, FLAGS.layer)
    print(f"results: {', '.join(summary['paths'])}; per class in {root}/<class>/; "
          f"rankings added to {FLAGS.dissect}")  # fmt: skip


if __name__ == "__main__":
    app.run(main)
