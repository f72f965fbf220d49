"""The built-in demo world's trained models, shipped inside the package (no download).

    from gdjax import demo

    seg = demo.segmenter()  # gdjax.segmenter.Segmenter over scenes.LABELS
    module, params = demo.generator()  # gdjax.proggan generator trained on scenes.render

Both were trained on :func:`gdjax.world.scenes.render` scenes by ``examples/train_demo.py``; how is
recorded in each checkpoint's ``config.json`` (``recipe``, steps, seconds).
"""

from __future__ import annotations

import functools
import os

from gdjax.models import proggan
from gdjax.models import segmenter as seglib

__all__ = ["ASSETS", "GENERATOR", "SEGMENTER", "generator", "load_models", "segmenter"]

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")
GENERATOR = os.path.join(ASSETS, "generator")
SEGMENTER = os.path.join(ASSETS, "segmenter")


def _missing(path: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"the demo {what} is not shipped in this checkout ({path} is missing); make it with "
        f"`python examples/train_demo.py --what={what} --export gdjax/world/assets/demo/{what}`"
    )


@functools.lru_cache(maxsize=1)
def segmenter() -> seglib.Segmenter:
    """The demo segmenter (cached): 64x64 scenes -> the 11 ``scenes.LABELS`` classes."""
    if not os.path.isdir(SEGMENTER):
        raise _missing(SEGMENTER, "segmenter")
    return seglib.load(SEGMENTER)


@functools.lru_cache(maxsize=1)
def generator():
    """``(module, params)`` of the demo GAN's generator (cached; EMA weights, 64x64 output)."""
    if not os.path.isdir(GENERATOR):
        raise _missing(GENERATOR, "generator")
    return proggan.load(GENERATOR)


def load_models(gen: str = "demo", seg: str = "demo"):
    """``((module, params), segmenter)`` from ``'demo'`` or checkpoint directories, as the
    example scripts' ``--generator`` / ``--segmenter`` flags give them."""
    generator_ = generator() if gen == "demo" else proggan.load(gen)
    segmenter_ = segmenter() if seg == "demo" else seglib.load(seg)
    return generator_, segmenter_
