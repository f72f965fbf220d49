"""Write a grid of generated images.

python examples/sample.py                                  # the demo GAN, 16 images
python examples/sample.py --generator models/church --n 16 --out out/church.png
python examples/sample.py --generator random:256           # random weights, 256x256 images
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import demo, proggan  # noqa: E402
from gdjax.report import draw  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "generator", "demo", "'demo', a converted checkpoint directory, or random:R (R x R images)"
)
flags.DEFINE_integer("n", 16, "number of images")
flags.DEFINE_integer("seed", 1, "latent seed (the original tools' z dataset)")
flags.DEFINE_string("out", os.path.join(cli.OUT, "samples.png"), "output PNG")


def main(argv):
    del argv
    cli.positive(n=FLAGS.n)
    module, params = demo.load_generator(FLAGS.generator)
    z = proggan.sample_z(FLAGS.n, FLAGS.seed, module.sizes[0])
    images, _ = module.apply({"params": params}, z)
    tiles = draw.to_uint8(images)
    scale = max(1, 128 // tiles.shape[1])
    out = draw.save_png(FLAGS.out, draw.enlarge(draw.grid(tiles, min(8, FLAGS.n)), scale))
    size = f"{tiles.shape[1]}x{tiles.shape[2]}"
    print(f"wrote {out}: {FLAGS.n} images of {size} from {FLAGS.generator}")


if __name__ == "__main__":
    cli.run(main)
