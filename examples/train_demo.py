"""Train the built-in demo world's models: the demo GAN (and, later, the demo segmenter).

    python examples/train_demo.py --what=generator --outdir runs/demo_gan --images 400000
    python examples/train_demo.py --what=generator --export gdjax/assets/demo/generator

Resumes from the latest checkpoint in --outdir; Ctrl-C saves one. --export writes the EMA
generator of the latest checkpoint as a gdjax proggan checkpoint (no training if --images is
already reached).
"""

import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gdjax import gan, proggan, scenes  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("what", "generator", ["generator"], "which demo model to train")
flags.DEFINE_string("outdir", "runs/demo_gan", "run directory (checkpoints, log, samples)")
flags.DEFINE_integer("images", 400_000, "train until this many real images have been seen")
flags.DEFINE_integer("seed", 0, "initialization and latent seed")
flags.DEFINE_integer("data_seed", 1000, "seed of the rendered scenes stream")
flags.DEFINE_integer("batch_size", 16, "images per step")
flags.DEFINE_integer("checkpoint_every", 500, "steps between checkpoints")
flags.DEFINE_string("export", None, "write the EMA generator here when done")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    cfg = gan.Config(batch_size=FLAGS.batch_size)

    def data(start, n):
        return scenes.render(FLAGS.data_seed, n, start=start)[0]

    state = gan.train(FLAGS.outdir, data, FLAGS.images, cfg, FLAGS.seed, FLAGS.checkpoint_every)
    if FLAGS.export:
        module = proggan.Generator(tuple(cfg.sizes))
        images = int(state.step) * cfg.batch_size
        proggan.save(FLAGS.export, module, state.ema_params, trained_images=images,
                     recipe="examples/train_demo.py --what=generator")  # fmt: skip
        print(f"exported the EMA generator ({images} images) to {FLAGS.export}")
    print(f"run directory: {FLAGS.outdir} (samples.png, log.jsonl, checkpoints/)")


if __name__ == "__main__":
    app.run(main)
