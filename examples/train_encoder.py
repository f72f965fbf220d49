"""Train the inversion encoder: image -> a generator layer's activation (see gdjax.invert).

    python examples/train_encoder.py                                   # out/train_encoder
    python examples/train_encoder.py --export gdjax/world/assets/demo/encoder

Trains on (latent, generated image) pairs of --generator, resuming from the latest checkpoint
in --outdir (Ctrl-C saves one); --export writes the encoder as a checkpoint directory that
``examples/invert.py --encoder`` reads (the shipped demo encoder was made by the second line).
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import demo  # noqa: E402
from gdjax.invert import encoder, train  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "demo", "'demo', 'random:R' or a gdjax generator directory")
flags.DEFINE_string("layer", "layer4", "generator layer the encoder predicts")
flags.DEFINE_integer("steps", train.Config().steps, "train until this step")
flags.DEFINE_integer("batch_size", train.Config().batch_size, "latents per step")
flags.DEFINE_float("pixel_weight", train.Config().pixel_weight, "weight of the image loss")
flags.DEFINE_integer("seed", 0, "initialization and latent seed")
flags.DEFINE_integer("stop_at", None, "stop after this step (the schedule stays --steps')")
flags.DEFINE_integer("checkpoint_every", 250, "steps between checkpoints")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "train_encoder"), "run directory")
flags.DEFINE_string("export", None, "write the trained encoder here when done")


def main(argv):
    del argv
    cli.positive(steps=FLAGS.steps, batch_size=FLAGS.batch_size,
                 checkpoint_every=FLAGS.checkpoint_every)  # fmt: skip
    gen = demo.load_generator(FLAGS.generator)
    cli.layer(FLAGS.layer, gen[0])
    cfg = train.Config(layer=FLAGS.layer, steps=FLAGS.steps, batch_size=FLAGS.batch_size,
                       pixel_weight=FLAGS.pixel_weight)  # fmt: skip
    module, params, step = train.train(FLAGS.outdir, gen, cfg, FLAGS.seed, FLAGS.checkpoint_every,
                                       stop_at=FLAGS.stop_at)  # fmt: skip
    if FLAGS.export:
        encoder.save(FLAGS.export, module, params, FLAGS.layer, gen[0].sizes,
                     recipe="python examples/train_encoder.py", train=cfg._asdict(), step=step,
                     seed=FLAGS.seed, generator=FLAGS.generator)  # fmt: skip
        print(f"exported the {FLAGS.layer} encoder (step {step} of {cfg.steps}) to {FLAGS.export}")
    print(f"run directory: {FLAGS.outdir} (log.jsonl, checkpoints/)")


if __name__ == "__main__":
    cli.run(main)
