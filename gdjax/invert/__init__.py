"""Editing a picture the generator did not make: invert it into a layer, edit the units, blend.

    from gdjax import demo, invert

    module, params = demo.generator()
    rep = invert.invert(photo, module, params, demo.segmenter())  # photo [64, 64, 3] in [-1, 1]
    recon = invert.generate(module, params, rep)                  # [1, 64, 64, 3]
    out = invert.edit(module, params, rep, edit, photo, region)   # .blended: photo + the edit

Inversion finds a :class:`Representation` of one generator layer (``layer4`` by default, where
dissection labels the units) whose regenerated image matches the target: the shipped
``encoder`` predicts it in one pass, ``optimize`` refines it with Adam on a pixel loss plus a
loss on the demo segmenter's features. :func:`edit` regenerates the representation under
:mod:`gdjax.intervene` edits and keeps the original picture wherever the edit changed nothing
(``blend``). ``image`` reads a user's file; ``evaluate`` measures reconstructions.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np

from gdjax.errors import InputError
from gdjax.intervene import edits as edlib
from gdjax.invert import blend, encoder, image, optimize, train
from gdjax.invert.optimize import Config, Representation, generate
from gdjax.models import proggan

__all__ = [
    "Config",
    "EditResult",
    "Representation",
    "blend",
    "edit",
    "encode",
    "encoder",
    "generate",
    "image",
    "insertion",
    "invert",
    "optimize",
    "resolve_encoder",
    "train",
]


def resolve_encoder(module: proggan.Generator, layer: str, spec="auto"):
    """``(encoder module, params)`` or ``None`` from ``spec``.

    ``'auto'``: the shipped demo encoder when it was trained for ``layer`` of a generator of
    these sizes, else ``None``; ``'demo'``: that encoder or :class:`InputError`; a directory:
    an encoder checkpoint, checked likewise; ``(module, params)``: used as given; ``None``:
    no encoder (inversion starts from a seeded latent's activation).
    """
    if spec is None or isinstance(spec, tuple):
        return spec[:2] if spec else None
    if spec == "auto":
        try:
            spec = encoder.DEMO
            enc_module, enc_params, config = encoder.demo()
        except FileNotFoundError:
            return None
        fits = config["layer"] == layer and list(config["generator_sizes"]) == list(module.sizes)
        return (enc_module, enc_params) if fits else None
    path = encoder.DEMO if spec == "demo" else spec
    try:
        enc_module, enc_params, config = encoder.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise InputError(f"encoder {spec}: {str(e).splitlines()[0]}") from None
    if config["layer"] != layer or list(config["generator_sizes"]) != list(module.sizes):
        raise InputError(
            f"encoder {spec}: trained for {config['layer']} of a generator of sizes "
            f"{config['generator_sizes']}, not {layer} of {list(module.sizes)}"
        )
    return enc_module, enc_params


def encode(
    images, module: proggan.Generator, params, layer: str = "layer4", enc="auto", seed: int = 0
) -> Representation:
    """The starting :class:`Representation` of ``images [N, R, R, 3]``: the encoder's
    prediction, or without one the activation of ``sample_z(N, seed)``."""
    images = image.check_array(images, module.resolution)
    optimize._check_layers(module, layer, ())
    found = resolve_encoder(module, layer, enc)
    if found is None:
        z = jax.device_put(proggan.sample_z(len(images), seed, module.sizes[0]))
        return Representation(layer, edlib.prefix(module, params, z, layer))
    return Representation(layer, train.predict(*found, jax.device_put(images)))


def invert(
    images,
    module: proggan.Generator,
    params,
    seg,
    layer: str = "layer4",
    enc="auto",
    cfg: Config | None = None,
    *,
    seed: int = 0,
    workdir: str | None = None,
    show_progress: bool = False,
) -> Representation:
    """Invert ``images`` (``[R, R, 3]`` or ``[N, R, R, 3]`` RGB in ``[-1, 1]``, e.g. from
    :func:`gdjax.invert.image.load`) into ``layer``: encoder start (:func:`encode`), then
    ``cfg.steps`` steps of :func:`gdjax.invert.optimize.optimize` (``steps=0``: the encoder's
    prediction alone). Bad images raise :class:`InputError`."""
    images = image.check_array(images, module.resolution)
    start = encode(images, module, params, layer, enc, seed)
    cfg = cfg or Config()
    if cfg.steps == 0 and not cfg.residuals:
        return start
    rep, _ = optimize.optimize(
        module, params, seg, images, start, cfg, workdir=workdir, show_progress=show_progress
    )
    return rep


def insertion(rep: Representation, units, value, region) -> edlib.Edit:
    """Insert ``units`` at ``value [C]`` in the layer cells the painted ``region`` (``[R, R]``
    or ``[N, R, R]`` pixels) touches, as :func:`gdjax.intervene.pool_mask` pools it."""
    grid = tuple(np.shape(rep.h)[1:3])
    return edlib.insertion(rep.layer, units, value, mask=edlib.pool_mask(region, grid))


@functools.lru_cache(maxsize=8)
def _edit_fn(module: proggan.Generator):
    return jax.jit(lambda p, r, e: (generate(module, p, r), generate(module, p, r, e)))


class EditResult(NamedTuple):
    reconstruction: np.ndarray  # [N, R, R, 3] the representation regenerated, unedited
    edited: np.ndarray  # [N, R, R, 3] regenerated under the edits
    mask: np.ndarray  # [N, R, R] the soft mask of blend.change_mask
    blended: np.ndarray  # [N, R, R, 3] the original outside the mask, the edit inside


def edit(
    module: proggan.Generator, params, rep: Representation, edits, original, region=None, **mask
) -> EditResult:
    """Apply ``edits`` to an inverted picture and blend the result into ``original``.

    ``region``: the painted pixels (``[R, R]`` / ``[N, R, R]``) or ``None``; ``mask``: keyword
    arguments of :func:`gdjax.invert.blend.change_mask`.
    """
    original = image.check_array(original, module.resolution, "original")
    recon, edited = _edit_fn(module)(params, rep, edits)
    m = blend.change_mask(edited, recon, region, **mask)
    out = blend.blend(original, edited, m)
    return EditResult(np.asarray(recon), np.asarray(edited), np.asarray(m), out)
