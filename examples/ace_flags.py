"""Flags shared by examples/ace.py and examples/ace_all.py: the models, the layer, the
dissection to extend, and the ACE training and evaluation sizes.

Defaults are the demo world at a reduced size (the reference: search 10000, train 1000, eval 200).
"""

from absl import flags

from examples import cli
from gdjax import ace, compile_cache
from gdjax.errors import InputError


def define() -> None:
    """Define the shared flags (call once, at import of a script)."""
    flags.DEFINE_string("generator", "demo", "'demo', 'random:R' or a gdjax generator directory")
    flags.DEFINE_string("segmenter", "demo", "'demo' or a gdjax segmenter checkpoint directory")
    flags.DEFINE_string("layer", "layer4", "generator layer")
    flags.DEFINE_string("dissect", cli.DISSECT_JSON, "dissect.json to read and extend")
    flags.DEFINE_integer("downsample", 1, "segmentation downsampling (the reference: 2 at 256 px)")
    flags.DEFINE_integer("search_size", 1000, "latents searched for present and candidate sets")
    flags.DEFINE_integer("train_size", 200, "training pairs")
    flags.DEFINE_integer("eval_size", 40, "evaluation pairs")
    flags.DEFINE_integer("inference_batch_size", 10, "images per inference batch")
    flags.DEFINE_integer("train_batch_size", 2, "pairs per micro-batch")
    flags.DEFINE_integer("train_update_freq", 10, "micro-batches per Adam step")
    flags.DEFINE_integer("train_epochs", 10, "epochs")
    flags.DEFINE_float("l2_lambda", 0.005, "L2 weight on α")
    flags.DEFINE_float("lr", 0.01, "Adam learning rate")
    flags.DEFINE_integer("shuffle_seed", 0, "seed of the pairing and order of training pairs")
    flags.DEFINE_bool("ploc_bug", False, "read the insertion reward at ploc, as the reference")
    flags.DEFINE_float(
        "insertion_quantile",
        None,
        "insert each unit's level at this quantile "
        "(e.g. 0.99, the reference's _h99) instead of the coverage-weighted mean",
    )
    flags.DEFINE_integer("eval_images", 200, "latents (seed 3) for the removal curves")
    flags.DEFINE_bool("mixed_units", True, "ablate ACE-ranked units by their α (the reference)")
    flags.DEFINE_string(
        "xla_cache", compile_cache.DEFAULT, "keep compiled programs here ('' = off)"
    )


def config(f: flags.FlagValues) -> ace.Config:
    """The :class:`gdjax.intervene.ace.Config` the parsed flags describe (checked: bad values
    raise :class:`gdjax.errors.InputError`)."""
    cli.positive(downsample=f.downsample, eval_images=f.eval_images)
    if f.insertion_quantile is not None and not 0 < f.insertion_quantile < 1:
        raise InputError(f"--insertion_quantile must be in (0, 1), got {f.insertion_quantile}")
    return ace.check_config(ace.Config(
        layer=f.layer, search_size=f.search_size, train_size=f.train_size,
        eval_size=f.eval_size, inference_batch_size=f.inference_batch_size,
        train_batch_size=f.train_batch_size, train_update_freq=f.train_update_freq,
        train_epochs=f.train_epochs, l2_lambda=f.l2_lambda, lr=f.lr,
        shuffle_seed=f.shuffle_seed, ploc_bug=f.ploc_bug,
    ))  # fmt: skip
