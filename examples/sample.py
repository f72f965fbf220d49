"""Write a grid of generated images from a gdjax generator.

python examples/sample.py --generator models/church --n 16 --out out/samples.png
python examples/sample.py --generator random:256  # random weights at the LSUN-256 sizes
"""

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gdjax import proggan  # noqa: E402
from gdjax.report import draw  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "generator", "random:64", "a converted checkpoint directory, or random:R for random weights"
)
flags.DEFINE_integer("n", 16, "number of images")
flags.DEFINE_integer("seed", 1, "latent seed (the original tools' z dataset)")
flags.DEFINE_string("out", "out/samples.png", "output PNG")


def load(spec: str):
    if spec.startswith("random:"):
        res = int(spec.split(":", 1)[1])
        if res not in proggan.SIZES:
            raise app.UsageError(f"--generator random:R needs R in {sorted(proggan.SIZES)}")
        return proggan.init([512, *proggan.SIZES[res]])
    return proggan.load(spec)


def main(argv):
    del argv
    module, params = load(FLAGS.generator)
    z = proggan.sample_z(FLAGS.n, FLAGS.seed, module.sizes[0])
    images, _ = module.apply({"params": params}, z)
    tiles = draw.to_uint8(images)
    scale = max(1, 128 // tiles.shape[1])
    out = draw.save_png(FLAGS.out, draw.enlarge(draw.grid(tiles, 8), scale))
    print(
        f"wrote {out}: {FLAGS.n} images of {tiles.shape[1]}x{tiles.shape[2]} from {FLAGS.generator}"
    )


if __name__ == "__main__":
    app.run(main)
