"""Train the demo StyleGAN2 on the scenes world (resumable; Ctrl-C saves a checkpoint).

    python examples/train_stylegan2.py --outdir out/train_stylegan2 --images 200000
    python examples/train_stylegan2.py --export gdjax/world/assets/demo/stylegan2

Resumes from the latest checkpoint in --outdir; --export writes the EMA generator of the latest
checkpoint (with its mean w for truncation) as a gdjax checkpoint, training first if --images is
not reached yet.
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import scenes  # noqa: E402
from gdjax.world import train_stylegan2  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "train_stylegan2"), "run directory")
flags.DEFINE_integer("images", 200_000, "train until this many real images have been seen")
flags.DEFINE_integer("seed", 0, "initialization and latent seed")
flags.DEFINE_integer("data_seed", 1000, "seed of the rendered scenes stream")
flags.DEFINE_integer("batch_size", 16, "images per step")
flags.DEFINE_integer("checkpoint_every", 250, "steps between checkpoints")
flags.DEFINE_string("export", None, "write the EMA generator here when done")


def main(argv):
    del argv
    cli.positive(images=FLAGS.images, batch_size=FLAGS.batch_size,
                 checkpoint_every=FLAGS.checkpoint_every)  # fmt: skip
    cfg = train_stylegan2.Config(batch_size=FLAGS.batch_size)

    def data(start, n):
        return scenes.render(FLAGS.data_seed, n, start=start)[0]

    state = train_stylegan2.train(
        FLAGS.outdir, data, FLAGS.images, cfg, FLAGS.seed, FLAGS.checkpoint_every
    )
    if FLAGS.export:
        recipe = (f"python examples/train_stylegan2.py --images {FLAGS.images} (seed "
                  f"{FLAGS.seed}, data_seed {FLAGS.data_seed}, batch {FLAGS.batch_size}); "
                  "EMA weights")  # fmt: skip
        train_stylegan2.export(FLAGS.export, cfg, state, recipe=recipe)
        print(f"exported the EMA generator ({int(state.step) * cfg.batch_size} images) to "
              f"{FLAGS.export}")  # fmt: skip
    print(f"run directory: {FLAGS.outdir} (samples.png, log.jsonl, checkpoints/)")


if __name__ == "__main__":
    cli.run(main)
