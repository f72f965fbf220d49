"""ACE for every class with enough interpretable units: top-n removal by ACE vs by IoU.

    python examples/ace_all.py                       # the demo GAN, every eligible class
    python examples/ace_all.py --classes tree,door --min_units 1 --outdir out/ace_all

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

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import ace_flags, cli  # noqa: E402
from gdjax import ace, causal, compile_cache, demo, report  # noqa: E402
from gdjax import segmenter as seglib  # noqa: E402
from gdjax.report import draw  # noqa: E402

FLAGS = flags.FLAGS
ace_flags.define()
flags.DEFINE_list("classes", None, "classes to run (default: every eligible class)")
flags.DEFINE_integer("min_units", 4, "interpretable units a class needs to be run")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "ace_all"), "output directory")
flags.DEFINE_integer("topn", 20, "units ablated")


def main(argv):
    del argv
    cfg = ace_flags.config(FLAGS)
    cli.positive(min_units=FLAGS.min_units, topn=FLAGS.topn)
    (module, params), seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    cli.layer(FLAGS.layer, module)
    names = [name for name, _ in seg.labels]
    for c in FLAGS.classes or ():
        cli.label(c, names, "classes")
    report.layer(report.read(FLAGS.dissect), FLAGS.layer, FLAGS.dissect)
    compile_cache.enable(FLAGS.xla_cache)
    summary = causal.run_all(
        FLAGS.outdir, module, params,
        lambda c: ace.segmenter_fns(seg, names.index(c), FLAGS.downsample),
        FLAGS.dissect, names, cfg, classes=FLAGS.classes, min_units=FLAGS.min_units,
        eval_images=FLAGS.eval_images, topn=FLAGS.topn,
        insertion_quantile=FLAGS.insertion_quantile, mixed_units=FLAGS.mixed_units,
        segment_fn=lambda im: seglib.segment(seg, im, FLAGS.downsample),
        colorize=draw.colorize,
        settings_extra={"generator": FLAGS.generator, "segmenter": FLAGS.segmenter,
                        "downsample": FLAGS.downsample, "dissect": FLAGS.dissect},
    )  # fmt: skip
    print(causal.table(summary), end="")
    root = os.path.join(FLAGS.outdir, FLAGS.layer)
    print(f"results: {', '.join(summary['paths'])}; per class in {root}/<class>/; "
          f"rankings added to {FLAGS.dissect}")  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
