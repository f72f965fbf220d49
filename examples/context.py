"""Where can a class go? Insert its top units at one cell at a time, by context.

    python examples/context.py --classname door                # demo: 200 latents x 64 cells
    python examples/context.py --classname door --units 44,33,27 --near 0
    python examples/context.py --classname tree --insertion_quantile 0.99

The top --topn units of the class's ``<class>-ace`` ranking in --dissect (once
``examples/ace.py`` added it), else of ``<class>-iou``, are set to the class's insertion value
(ACE's k: the activation mean weighted by the class's coverage of each cell, over
--value_size latents of seed 10, as ``examples/ace.py``; or each unit's level at
--insertion_quantile) at a single cell of --layer, in turn at every cell of --size latents.
Each insertion's class pixels created within --near cells are grouped by the cell's label
before it. Writes ``<outdir>/<layer>/<class>-<ranking>/`` (``out/context``): context.json,
context.png (pixels created per insertion by context, with intervals) and context-grid.png
(example insertions). Interrupted, a rerun resumes after the last finished batch.
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import compile_cache, demo, report  # noqa: E402
from gdjax import segmenter as seglib  # noqa: E402
from gdjax.intervene import ablate, context  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "demo", "'demo', 'random:R' or a gdjax generator directory")
flags.DEFINE_string("segmenter", "demo", "'demo' or a gdjax segmenter checkpoint directory")
flags.DEFINE_string("classname", "door", "class whose units are inserted")
flags.DEFINE_string("layer", "layer4", "generator layer")
flags.DEFINE_string("dissect", cli.DISSECT_JSON, "dissect.json with the class's ranking")
flags.DEFINE_list("units", None, "explicit units instead of the ranking's top --topn")
flags.DEFINE_integer("topn", 20, "units inserted")
flags.DEFINE_integer("size", 200, "latents; every cell of each is one insertion")
flags.DEFINE_integer("seed", 4, "latent seed")
flags.DEFINE_integer("near", 1, "count created pixels within this many cells of the insertion")
flags.DEFINE_integer("value_size", 1000, "latents (seed 10) for the insertion value k")
flags.DEFINE_float("insertion_quantile", None, "insert each unit's level at this quantile")
flags.DEFINE_integer("downsample", 1, "segmentation downsampling")
flags.DEFINE_integer("batch_size", 10, "latents per compiled program")
flags.DEFINE_integer("edit_chunk", 16, "single-cell edits run at once")
flags.DEFINE_integer("min_insertions", 20, "contexts with fewer insertions are left off the chart")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "context"), "output directory")
flags.DEFINE_bool("overwrite", False, "replace a run with other settings in the output directory")
flags.DEFINE_string("xla_cache", compile_cache.DEFAULT,
                    "keep compiled programs here so reruns skip compiling ('' = off)")  # fmt: skip


def main(argv):
    del argv
    cli.positive(downsample=FLAGS.downsample, min_insertions=FLAGS.min_insertions)
    cfg = context.check_config(context.Config(
        layer=FLAGS.layer, topn=FLAGS.topn, size=FLAGS.size, seed=FLAGS.seed, near=FLAGS.near,
        batch_size=FLAGS.batch_size, edit_chunk=FLAGS.edit_chunk, value_size=FLAGS.value_size,
        insertion_quantile=FLAGS.insertion_quantile,
    ))  # fmt: skip
    (module, params), seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    cli.layer(FLAGS.layer, module)
    names = [name for name, _ in seg.labels]
    cli.label(FLAGS.classname, names)
    if FLAGS.units:
        units = cli.units(FLAGS.units, ablate.num_units(module, params, FLAGS.layer))
        ranking = None
    else:
        rec = report.read(FLAGS.dissect)
        report.layer(rec, FLAGS.layer, FLAGS.dissect)
        units, ranking = context.top_units(rec, FLAGS.layer, FLAGS.classname, FLAGS.topn)
    tag = ranking.split("-")[-1] if ranking else "units"
    outdir = os.path.join(FLAGS.outdir, FLAGS.layer, f"{FLAGS.classname}-{tag}")

    def segment_fn(images):
        return seglib.segment(seg, images, FLAGS.downsample)

    compile_cache.enable(FLAGS.xla_cache)
    out = context.run(
        outdir, module, params, segment_fn, names, FLAGS.classname, units, cfg,
        ranking=ranking, min_insertions=FLAGS.min_insertions, overwrite=FLAGS.overwrite,
        extra={"generator": FLAGS.generator, "segmenter": FLAGS.segmenter,
               "downsample": FLAGS.downsample, "dissect": FLAGS.dissect},
    )  # fmt: skip
    print(f"{FLAGS.classname}: units {', '.join(map(str, units))} ({ranking or '--units'}), "
          f"value {out['value']}")  # fmt: skip
    print(f"{'context':<12}{'insertions':>11}{'created':>9}  interval        appeared")
    for c in out["contexts"]:
        print(f"{c['label']:<12}{c['insertions']:>11}{c['created']:>9.2f}  "
              f"[{c['low']:.2f}, {c['high']:.2f}]".ljust(50) + f"{c['appeared']:.3f}")  # fmt: skip
    print("results: " + ", ".join(out["paths"]))


if __name__ == "__main__":
    cli.run(main)
