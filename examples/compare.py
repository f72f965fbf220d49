"""Compare dissections: interpretable units per concept and category, per layer or per model.

    python examples/compare.py                                   # every layer of out/dissect
    python examples/compare.py --runs out/depth                  # one run, all its layers
    python examples/compare.py --runs out/depth --layers layer3,layer4,layer5
    python examples/compare.py --runs out/dissect,out/church --layers layer4

Reads only the ``dissect.json`` of each run (a directory or the file itself); no network runs.
Writes ``--outdir`` (``out/compare``): ``compare.json`` (per column its unit counts per concept
and per category, with the category's distinct concepts and mean IoU), ``compare.png`` and
``compare.html``, and prints the table.
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax.report import compare  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", [cli.DISSECT_DIR], "dissection directories (or dissect.json files)")
flags.DEFINE_list("layers", [], "layers compared in each run (default: every dissected layer)")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "compare"), "output directory")


def main(argv):
    del argv
    out = compare.write(FLAGS.outdir, FLAGS.runs, FLAGS.layers)
    print(compare.text(out), end="")
    print("results: " + ", ".join(out["paths"]))


if __name__ == "__main__":
    cli.run(main)
