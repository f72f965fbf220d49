"""Measure how well a generator draws the demo world (issue-4 quality bars).

    python examples/eval_gan.py                          # the shipped demo GAN, 1000 samples
    python examples/eval_gan.py --generator out/train_gan/export --n 2000

Per class: pixel frequency of generated vs rendered scenes (read by the demo segmenter) and the
share of generated images containing it; then the Fréchet distance on the segmenter's pooled
encoder features against rendered scenes, with the same distance between two rendered sets as
the floor. Writes the numbers as JSON to --out.
"""

import json
import os
import sys

import numpy as np
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import demo, proggan, scenes  # noqa: E402
from gdjax.world import quality  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "demo", "'demo' or a gdjax generator checkpoint directory")
flags.DEFINE_integer("n", 1000, "images per set")
flags.DEFINE_integer("seed", 1, "latent seed of the generated set")
flags.DEFINE_string("out", os.path.join(cli.OUT, "gan_quality.json"), "where to write the numbers")


def main(argv):
    del argv
    cli.positive(n=FLAGS.n)
    (module, params), seg = demo.load_models(FLAGS.generator, "demo")
    z = proggan.sample_z(FLAGS.n, FLAGS.seed, module.sizes[0])
    gen = lambda s, k: np.asarray(module.apply({"params": params}, z[s : s + k])[0])  # noqa: E731
    r = quality.compare(
        seg, gen, lambda s, k: scenes.render(101, k, start=s)[0],
        lambda s, k: scenes.render(202, k, start=s)[0], n=FLAGS.n,
    )  # fmt: skip
    print(f"{'class':10} {'generated':>9} {'rendered':>9} {'rel.err':>8} {'present':>8}")
    for i, name in enumerate(r["labels"]):
        if i == 0:
            continue
        fg, fr = r["frequency_generated"][i], r["frequency_rendered"][i]
        print(f"{name:10} {fg:9.4f} {fr:9.4f} {r['relative_error'][i]:+8.2f} "
              f"{r['presence_generated'][i]:8.3f}")  # fmt: skip
    print(f"Fréchet distance {r['fd']:.3f}; floor (rendered vs rendered) {r['fd_floor']:.3f}; "
          f"ratio {r['fd_ratio']:.2f}")  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(r, f, indent=1)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main)
