"""Dissect generator layers: label every unit with a concept and write a report.

    python examples/dissect.py                      # the built-in demo GAN's layer4
    python examples/dissect.py --generator models/church --segmenter models/upp \
        --layers layer4,layer7 --samples 1000 --outdir out/church
    python examples/dissect.py --preset pnas --outdir out/dissect-pnas  # as the successor

Writes ``--outdir`` (``out/dissect``): ``report.html`` (open it in a browser), ``dissect.json``,
per-layer ``stats.npz``, image strips and bar charts. A rerun with the same flags resumes an
interrupted run (Ctrl-C or a killed process); other flags on the same directory are refused
unless ``--overwrite``. With the demo models it also writes ``world.png``: generated scenes
beside rendered ones, each with its segmentation. Compiled programs are kept in
``--xla_cache`` (``~/.cache/gdjax/xla``), so a rerun starts sooner.
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import compile_cache, demo, dissect  # noqa: E402
from gdjax.dissect.settings import PRESET, PRESETS, Settings  # noqa: E402
from gdjax.errors import InputError  # noqa: E402
from gdjax.world import quality  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "demo", "'demo', 'random:R' or a gdjax generator directory")
flags.DEFINE_string("segmenter", "demo", "'demo' or a gdjax segmenter checkpoint directory")
flags.DEFINE_list("layers", None, "generator layers to dissect (default: the last 8x8 layer, "
                  "layer4 of a PGGAN, b8.conv1 of a StyleGAN2)")  # fmt: skip
flags.DEFINE_integer("samples", 1000, "latents dissected (and, for iqr, threshold latents)")
flags.DEFINE_integer("seed", 1, "latent seed of the dissected set (the reference's: 1)")
flags.DEFINE_integer("train_seed", 2, "latent seed of the IQR threshold set (reference: 2)")
flags.DEFINE_enum("preset", "gandissect", list(PRESETS),
                  "what the original computes: gandissect (ICLR) or pnas (its successor); "
                  "the flags below left unset take the preset's values")  # fmt: skip
flags.DEFINE_string("threshold", None, "'iqr' or a top fraction such as 0.01")
flags.DEFINE_enum("quantile_of", None, ["raw", "upsampled"],
                  "a fixed threshold's quantile over raw or upsampled activations")  # fmt: skip
flags.DEFINE_enum("padding", None, ["edge", "zeros"], "upsampling at the border")
flags.DEFINE_integer("downsample", None, "segmentation at image size / downsample")
flags.DEFINE_enum("iou", None, ["category", "all"], "IoU denominators")
flags.DEFINE_float("iou_threshold", None, "interpretable when the label's IoU is above")
flags.DEFINE_string("iqr_threshold", None, "... and its IQR above ('none': no IQR condition)")
flags.DEFINE_integer("batch_size", 32, "images per network step")
flags.DEFINE_integer("strips", 5, "top images shown per unit in the report")
flags.DEFINE_bool("label0_quirk", False, "let label 0 compete for a unit's label (reference)")
flags.DEFINE_bool("ties_quirk", False, "argmax ties go to the last index (reference)")
flags.DEFINE_string("outdir", cli.DISSECT_DIR, "output directory")
flags.DEFINE_bool("overwrite", False, "replace a run with other settings in --outdir")
flags.DEFINE_string("xla_cache", compile_cache.DEFAULT,
                    "keep compiled programs here so reruns skip compiling ('' = off)")  # fmt: skip


def _number_or_none(name: str, text: str):
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--{name} must be a number or 'none', got {text!r}") from None


def _default_layers(module) -> list[str]:
    """The original's usual choice, ``layer4`` (the last 8x8 layer of a PGGAN), or the last
    8x8 layer of another generator."""
    at8 = [name for name in module.layers if name.startswith("b8.conv")]
    return ["layer4"] if "layer4" in module.layers or not at8 else at8[-1:]


def main(argv):
    del argv
    gen, seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    layers = FLAGS.layers if FLAGS.layers is not None else _default_layers(gen[0])
    chosen = {name: getattr(FLAGS, name) for name in PRESETS[FLAGS.preset]}
    if chosen["iqr_threshold"] is not None:
        chosen["iqr_threshold"] = _number_or_none("iqr_threshold", chosen["iqr_threshold"])
    settings = Settings(
        layers=tuple(layers), preset=FLAGS.preset, samples=FLAGS.samples, seed=FLAGS.seed,
        train_seed=FLAGS.train_seed, batch_size=FLAGS.batch_size, strips=FLAGS.strips,
        label0_quirk=FLAGS.label0_quirk, ties_quirk=FLAGS.ties_quirk,
        netname=FLAGS.generator, generator=FLAGS.generator, segmenter=FLAGS.segmenter,
        **{name: PRESET if value is None else value for name, value in chosen.items()},
    )  # fmt: skip
    compile_cache.enable(FLAGS.xla_cache)
    record = dissect.dissect(FLAGS.outdir, gen, seg, settings, overwrite=FLAGS.overwrite)
    for layer in record["layers"]:
        concepts = ", ".join(f"{x['label']} {len(x['units'])}" for x in layer["labels"])
        print(f"{layer['layer']}: {layer['interpretable']}/{len(layer['units'])} units "
              f"interpretable ({concepts})")  # fmt: skip
    if FLAGS.generator == "demo" and FLAGS.segmenter == "demo":
        path = quality.write_world_grid(os.path.join(FLAGS.outdir, "world.png"), gen, seg)
        print(f"wrote {path}")
    print(f"open {os.path.join(FLAGS.outdir, 'report.html')}")


if __name__ == "__main__":
    cli.run(main)
