"""A small convolutional encoder: image -> the generator's activation at one layer.

The encoder is the fast half of inversion: one forward pass gives a representation ``h`` of
the layer (``[N, H, W, C]``, the generator's post-LeakyReLU activation) that
:func:`gdjax.intervene.edits.tail` turns back into an image; :mod:`gdjax.invert.optimize` then
refines it. Predicting the layer directly rather than the latent ``z`` keeps the spatial
detail the latent cannot hold (an 8x8x128 map has 64x the numbers of a 128-d latent).

Shape: ``[N, R, R, 3]`` images in ``[-1, 1]`` -> strided convolutions down to the layer's grid
and one step below it, a global summary (mean over space, dense) added back at the layer's grid,
residual blocks there, and a 1x1 convolution to the layer's channels. A checkpoint directory
holds ``config.json`` (``kind: "encoder"``, the layer, the generator's sizes, the encoder's
widths) and ``params/`` (orbax), like the generator's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from gdjax.errors import InputError
from gdjax.models import checkpoint, proggan

__all__ = ["DEMO", "Encoder", "abstract_params", "demo", "for_layer", "init", "load", "save"]

KIND = "encoder"
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(_PACKAGE, "world", "assets", "demo", "encoder")


class Encoder(nn.Module):
    """``[N, R, R, 3]`` images -> ``[N, H, W, C]`` predicted activations of ``layer``.

    ``grid`` = the layer's ``H = W``, ``channels`` = its ``C``; ``widths`` are the channels
    after each stride-2 convolution from ``R`` down to ``grid / 2`` (``log2(2R / grid)`` of
    them); ``blocks`` residual blocks of ``width`` channels run at the layer's grid.
    """

    resolution: int
    grid: int
    channels: int
    widths: Sequence[int] = (32, 64, 128, 128)
    width: int = 128
    blocks: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        down = int(round(math.log2(2 * self.resolution / self.grid)))
        if len(self.widths) != down:
            raise ValueError(f"widths needs {down} entries for {self.resolution} -> {self.grid}")
        x = nn.leaky_relu(nn.Conv(self.widths[0] // 2, (3, 3), name="stem")(x), 0.2)
        skip = None
        for i, w in enumerate(self.widths):
            x = nn.leaky_relu(nn.Conv(w, (4, 4), strides=2, name=f"down{i}")(x), 0.2)
            if x.shape[1] == self.grid:
                skip = x
        # One step below the layer's grid for context, plus a global summary of the image.
        ctx = jax.image.resize(x, (x.shape[0], self.grid, self.grid, x.shape[-1]), "nearest")
        summary = nn.Dense(self.width, name="summary")(jnp.mean(x, axis=(1, 2)))
        x = jnp.concatenate([skip, ctx], axis=-1)
        x = nn.Conv(self.width, (1, 1), name="merge")(x) + summary[:, None, None, :]
        for i in range(self.blocks):
            y = nn.Conv(self.width, (3, 3), name=f"block{i}_conv0")(nn.leaky_relu(x, 0.2))
            y = nn.Conv(self.width, (3, 3), name=f"block{i}_conv1")(nn.leaky_relu(y, 0.2))
            x = x + y
        return nn.Conv(self.channels, (1, 1), name="out")(nn.leaky_relu(x, 0.2))


def for_layer(gen_module, layer: str, **kwargs) -> Encoder:
    """The :class:`Encoder` for ``layer`` of the generator ``gen_module`` (shapes read from it)."""
    if layer not in gen_module.layers[:-1]:
        raise InputError(
            f"layer {layer!r}: not a generator layer; valid layers: {', '.join(gen_module.layers)}"
        )
    z = jax.ShapeDtypeStruct((1, gen_module.sizes[0]), jnp.float32)
    run = lambda p, z: gen_module.apply({"params": p}, z, stop=layer)[0]  # noqa: E731
    h = jax.eval_shape(run, proggan.abstract_params(gen_module), z)  # shapes only
    _, grid, _, channels = h.shape
    if grid < 4 or gen_module.resolution % grid:
        raise InputError(f"layer {layer!r}: a {grid}x{grid} grid cannot be encoded")
    down = int(round(math.log2(2 * gen_module.resolution / grid)))
    widths = kwargs.pop("widths", None) or tuple(min(32 * 2**i, 128) for i in range(down))
    return Encoder(gen_module.resolution, grid, channels, tuple(widths), **kwargs)


def init(module: Encoder, seed: int = 0):
    """Fresh encoder parameters (Flax defaults: lecun-normal kernels, zero biases)."""
    x = jnp.zeros((1, module.resolution, module.resolution, 3), jnp.float32)
    return module.init(jax.random.PRNGKey(seed), x)["params"]


def abstract_params(module: Encoder):
    x = jax.ShapeDtypeStruct((1, module.resolution, module.resolution, 3), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), x)["params"]


def save(directory: str, module: Encoder, params, layer: str, sizes, **extra) -> str:
    """Write an encoder checkpoint for ``layer`` of a generator of ``sizes`` (see :func:`load`)."""
    config = {
        "kind": KIND, "layer": layer, "generator_sizes": [int(s) for s in sizes],
        "resolution": module.resolution, "grid": module.grid, "channels": module.channels,
        "widths": list(module.widths), "width": module.width, "blocks": module.blocks,
    }  # fmt: skip
    return checkpoint.save(directory, params, {**config, **extra})


def load(directory: str):
    """``(module, params, config)`` of an encoder checkpoint written by :func:`save`."""
    config = checkpoint.read_config(directory, KIND)
    module = Encoder(
        config["resolution"], config["grid"], config["channels"], tuple(config["widths"]),
        config["width"], config["blocks"],
    )  # fmt: skip
    return module, checkpoint.restore(directory, abstract_params(module)), config


def demo():
    """``(module, params, config)`` of the shipped encoder for the demo GAN's ``layer4``."""
    if not os.path.isdir(DEMO):
        raise FileNotFoundError(
            f"the demo encoder is not shipped in this checkout ({DEMO} is missing); make it with "
            f"`python examples/train_encoder.py --export {os.path.relpath(DEMO)}`"
        )
    return load(DEMO)
