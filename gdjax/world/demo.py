"""The built-in demo world's trained models, shipped inside the package (no download).

    from gdjax import demo

    seg = demo.segmenter()  # gdjax.segmenter.Segmenter over scenes.LABELS
    module, params = demo.generator()  # gdjax.proggan generator trained on scenes.render

Both were trained on :func:`gdjax.world.scenes.render` scenes by ``examples/train_demo.py``; how is
recorded in each checkpoint's ``config.json`` (``recipe``, steps, seconds).
"""

from __future__ import annotations

import functools
import json
import os

from gdjax.errors import InputError
from gdjax.models import proggan, stylegan2
from gdjax.models import segmenter as seglib

__all__ = [
    "ASSETS",
    "GENERATOR",
    "SEGMENTER",
    "STYLEGAN2",
    "generator",
    "load_generator",
    "load_models",
    "load_segmenter",
    "segmenter",
    "stylegan2_generator",
]

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")
GENERATOR = os.path.join(ASSETS, "generator")
STYLEGAN2 = os.path.join(ASSETS, "stylegan2")
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


@functools.lru_cache(maxsize=1)
def stylegan2_generator():
    """``(module, params)`` of the demo StyleGAN2 (cached; EMA weights, 64x64 output)."""
    if not os.path.isdir(STYLEGAN2):
        raise FileNotFoundError(
            f"the demo StyleGAN2 is not shipped in this checkout ({STYLEGAN2} is missing); make "
            f"it with `python examples/train_stylegan2.py --export {STYLEGAN2}`"
        )
    return stylegan2.load(STYLEGAN2)


def load_generator(spec: str = "demo"):
    """``(module, params)`` for a ``--generator`` flag: ``'demo'``, ``'demo-stylegan2'``,
    ``'random:R'`` (random PGGAN weights at the original's default sizes for ``R x R`` images,
    reference §1.2) or a gdjax generator checkpoint directory (PGGAN or StyleGAN2). Bad specs
    raise :class:`gdjax.errors.InputError`."""
    if spec == "demo":
        return generator()
    if spec == "demo-stylegan2":
        return stylegan2_generator()
    if spec.startswith("random:"):
        res = spec.split(":", 1)[1]
        if not res.isdigit() or int(res) not in proggan.SIZES:
            sizes = ", ".join(str(r) for r in sorted(proggan.SIZES))
            raise InputError(f"--generator {spec}: R must be one of {sizes}")
        return proggan.init(proggan.SIZES[int(res)])
    return _load(_generator_dir, spec, "generator")


def _generator_dir(path: str):
    """A PGGAN or StyleGAN2 checkpoint directory, by its config's ``kind`` (PGGAN's loader
    explains anything else)."""
    kind = None
    try:
        with open(os.path.join(path, "config.json")) as f:
            kind = json.load(f).get("kind")
    except (OSError, ValueError, AttributeError):
        pass
    return (stylegan2.load if kind == stylegan2.KIND else proggan.load)(path)


def load_segmenter(spec: str = "demo") -> seglib.Segmenter:
    """The segmenter for a ``--segmenter`` flag: ``'demo'`` or a gdjax segmenter checkpoint
    directory. Bad specs raise :class:`gdjax.errors.InputError`."""
    return segmenter() if spec == "demo" else _load(seglib.load, spec, "segmenter")


def load_models(gen: str = "demo", seg: str = "demo"):
    """``((module, params), segmenter)`` from the example scripts' ``--generator`` and
    ``--segmenter`` flags (:func:`load_generator`, :func:`load_segmenter`)."""
    return load_generator(gen), load_segmenter(seg)


def _load(load, path: str, what: str):
    if not os.path.exists(path):
        raise InputError(f"--{what} {path}: no such directory ('demo' is the built-in {what})")
    try:
        return load(path)
    except (FileNotFoundError, ValueError) as e:
        raise InputError(f"--{what} {path}: {e}") from None
