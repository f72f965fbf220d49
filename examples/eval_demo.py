"""Evaluate a segmenter on held-out rendered scenes: pixel accuracy, mean IoU, per-class IoU.

python examples/eval_demo.py                                   # the shipped demo segmenter
python examples/eval_demo.py --segmenter out/train_segmenter/export --n 2000 --seed 7777
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import demo  # noqa: E402
from gdjax.world import train_segmenter  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("segmenter", "demo", "'demo' or a gdjax segmenter checkpoint directory")
flags.DEFINE_integer("n", 2000, "held-out scenes")
flags.DEFINE_integer("seed", train_segmenter.EVAL_SEED, "scene seed (training uses 0)")


def main(argv):
    del argv
    cli.positive(n=FLAGS.n)
    seg = demo.load_segmenter(FLAGS.segmenter)
    result = train_segmenter.evaluate(seg, FLAGS.n, FLAGS.seed)
    print(f"{FLAGS.segmenter}: {FLAGS.n} scenes of seed {FLAGS.seed}")
    print(train_segmenter.format_evaluation(result))
    print(f"segment(): {result['images_per_second']:.0f} images/s (batches of 200)")


if __name__ == "__main__":
    cli.run(main)
