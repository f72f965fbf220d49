"""Train the built-in demo world's models: the demo GAN and the demo segmenter.

    python examples/train_demo.py --what=generator --outdir out/train_gan --images 400000
    python examples/train_demo.py --what=generator --export gdjax/world/assets/demo/generator
    python examples/train_demo.py --what=segmenter --export gdjax/world/assets/demo/segmenter

Resumes from the latest checkpoint in --outdir (default out/train_gan or out/train_segmenter);
Ctrl-C saves one. --export writes the EMA generator (or the segmenter) of the latest checkpoint
as a gdjax checkpoint (no training if --images / --steps is already reached).
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import proggan, scenes  # noqa: E402
from gdjax import segmenter as seglib  # noqa: E402
from gdjax.world import train_gan, train_segmenter  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("what", "generator", ["generator", "segmenter"], "which demo model to train")
flags.DEFINE_string("outdir", None, "run directory (default out/train_gan, out/train_segmenter)")
flags.DEFINE_integer("images", 400_000, "train until this many real images have been seen")
flags.DEFINE_integer("seed", 0, "initialization and latent seed")
flags.DEFINE_integer("data_seed", 1000, "generator: seed of the rendered scenes stream")
flags.DEFINE_integer("batch_size", 16, "images per step")
flags.DEFINE_integer("steps", train_segmenter.Config().steps, "segmenter: train until this step")
flags.DEFINE_integer("checkpoint_every", 500, "steps between checkpoints")
flags.DEFINE_string("export", None, "write the EMA generator (or the segmenter) here when done")


def segmenter():
    outdir = FLAGS.outdir or "out/train_segmenter"
    cfg = train_segmenter.Config(steps=FLAGS.steps, batch_size=FLAGS.batch_size)
    seg, info = train_segmenter.train(
        outdir, cfg=cfg, seed=FLAGS.seed, checkpoint_every=FLAGS.checkpoint_every
    )
    print(train_segmenter.format_evaluation(train_segmenter.evaluate(seg)))
    if FLAGS.export:
        seglib.save(FLAGS.export, seg, recipe="examples/train_demo.py --what=segmenter",
                    train=cfg._asdict(), seed=FLAGS.seed, **info)  # fmt: skip
        print(f"exported the segmenter ({info['steps']} steps) to {FLAGS.export}")
    print(f"run directory: {outdir} (log.jsonl, checkpoints/)")


def main(argv):
    del argv
    cli.positive(images=FLAGS.images, batch_size=FLAGS.batch_size, steps=FLAGS.steps,
                 checkpoint_every=FLAGS.checkpoint_every)  # fmt: skip
    if FLAGS.what == "segmenter":
        return segmenter()
    FLAGS.outdir = FLAGS.outdir or "out/train_gan"
    cfg = train_gan.Config(batch_size=FLAGS.batch_size)

    def data(start, n):
        return scenes.render(FLAGS.data_seed, n, start=start)[0]

    state = train_gan.train(
        FLAGS.outdir, data, FLAGS.images, cfg, FLAGS.seed, FLAGS.checkpoint_every
    )
    if FLAGS.export:
        module = proggan.Generator(tuple(cfg.sizes))
        images = int(state.step) * cfg.batch_size
        proggan.save(FLAGS.export, module, state.ema_params, trained_images=images,
                     recipe="examples/train_demo.py --what=generator")  # fmt: skip
        print(f"exported the EMA generator ({images} images) to {FLAGS.export}")
    print(f"run directory: {FLAGS.outdir} (samples.png, log.jsonl, checkpoints/)")


if __name__ == "__main__":
    cli.run(main)
