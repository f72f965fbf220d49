"""Learn which units of a layer cause a class (ACE α, reference §4.2) and evaluate them.

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

from examples import ace_flags  # noqa: E402
from gdjax import (
    ace,  # noqa: E402
    causal,  # noqa: E402
    compile_cache,  # noqa: E402
    demo,  # noqa: E402
)
from gdjax import segmenter as seglib  # noqa: E402
from gdjax.report import draw  # noqa: E402

FLAGS = flags.FLAGS
ace_flags.define()
flags.DEFINE_string("classname", "tree", "class to learn α for")
flags.DEFINE_string("outdir", "runs/demo_ace", "output directory")
flags.DEFINE_integer("topn", 20, "units in the removal curves and the grid")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    compile_cache.enable(FLAGS.xla_cache)
    (module, params), seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    names = [name for name, _ in seg.labels]
    label = names.index(FLAGS.classname)
    fns = ace.segmenter_fns(seg, label, FLAGS.downsample)
    cfg = ace_flags.config(FLAGS)
    outdir = os.path.join(FLAGS.outdir, FLAGS.layer, FLAGS.classname)
    r = causal.run_class(
        outdir, module, params, fns, FLAGS.dissect, FLAGS.classname, cfg,
        eval_images=FLAGS.eval_images, topn=FLAGS.topn,
        insertion_quantile=FLAGS.insertion_quantile, mixed_units=FLAGS.mixed_units,
        segment_fn=lambda im: seglib.segment(seg, im, FLAGS.downsample),
        colorize=draw.colorize, label=label,
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
