"""Learn which units of a layer cause a class (ACE α, reference §4.2) and evaluate them.

    python examples/ace.py --classname door
    python examples/ace.py --classname door --generator models/gen --segmenter models/seg \
        --dissect out/gen/dissect.json --search_size 10000 --train_size 1000 --eval_size 200

Reads the dissection --dissect (default: the main job's ``out/dissect/dissect.json``), writes
``<outdir>/<layer>/<class>/`` (``out/ace``: alpha.npy, snapshots/, summary.json, result.json,
curves of the top units by ACE and by IoU, before/after grid) and adds a ``<class>-ace``
ranking to --dissect. α starts from that file's ``<class>-iou`` ranking when present, else at
0.5. Interrupted, a rerun resumes after the last finished phase or epoch. Defaults are the
demo world at a reduced size; the reference's sizes are 10000 / 1000 / 200.
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import ace_flags, cli  # noqa: E402
from gdjax import ace, causal, compile_cache, demo, report  # noqa: E402
from gdjax import segmenter as seglib  # noqa: E402
from gdjax.report import draw  # noqa: E402

FLAGS = flags.FLAGS
ace_flags.define()
flags.DEFINE_string("classname", "door", "class to learn α for")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "ace"), "output directory")
flags.DEFINE_integer("topn", 20, "units in the removal curves and the grid")
flags.DEFINE_bool("overwrite", False, "replace a run with other settings in the output directory")


def main(argv):
    del argv
    cfg = ace_flags.config(FLAGS)
    cli.positive(topn=FLAGS.topn)
    (module, params), seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    cli.layer(FLAGS.layer, module)
    names = [name for name, _ in seg.labels]
    label = cli.label(FLAGS.classname, names)
    report.layer(report.read(FLAGS.dissect), FLAGS.layer, FLAGS.dissect)
    fns = ace.segmenter_fns(seg, label, FLAGS.downsample)
    compile_cache.enable(FLAGS.xla_cache)
    outdir = os.path.join(FLAGS.outdir, FLAGS.layer, FLAGS.classname)
    r = causal.run_class(
        outdir, module, params, fns, FLAGS.dissect, FLAGS.classname, cfg,
        eval_images=FLAGS.eval_images, topn=FLAGS.topn,
        insertion_quantile=FLAGS.insertion_quantile, mixed_units=FLAGS.mixed_units,
        segment_fn=lambda im: seglib.segment(seg, im, FLAGS.downsample),
        colorize=draw.colorize, overwrite=FLAGS.overwrite, label=label,
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
    cli.run(main)
