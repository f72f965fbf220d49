"""The Progressive GAN generator (Karras et al. 2018) studied by GAN Dissection.

Layout is NHWC throughout: latents ``[N, z]`` (or ``[N, 1, 1, z]``), activations
``[N, H, W, C]``, images ``[N, R, R, 3]`` with values roughly in ``[-1, 1]`` (unclamped unless
``output_tanh``). Blocks are named as the original's state dict (``layer1 … layerN``,
``output_RxR``) so a converted checkpoint is a rename plus a kernel transpose.

Each ``layerK`` block is PixelNorm -> (nearest x2 on odd K >= 3) -> conv -> ``*scale + b`` ->
LeakyReLU(0.2), with the equalized-learning-rate ``scale = sqrt(2) / sqrt(fan_in * k * k)``
derived from the shapes, never stored. The retained output of ``layerK`` is therefore
post-activation, pre-PixelNorm, exactly as the original (reference §1.1).

The module runs any contiguous slice of blocks: ``start`` names the block whose output the
input *is* (``None``: the input is the latent) and ``stop`` the last block to run (``None``:
the image). ``apply(x, stop=k)`` then ``apply(h, start=k)`` equals the full run, which is the
split point that interventions use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from gdjax.models import checkpoint

KIND = "proggan"

# Default `sizes` of the original constructor per output resolution (reference §1.2).
SIZES = {
    8: [512] * 3,
    16: [512] * 4,
    32: [512] * 4 + [256],
    64: [512] * 4 + [256, 128],
    128: [512] * 4 + [256, 128, 64],
    256: [512] * 4 + [256, 128, 64, 32],
    1024: [512] * 5 + [256, 128, 64, 32, 16],
}


def layer_names(sizes: Sequence[int]) -> list[str]:
    """Block names for ``sizes = [z, depth@4x4, depth@8x8, …]``: layer1…layerN, output_RxR."""
    if len(sizes) < 2:
        raise ValueError(f"sizes needs a latent size and at least one depth, got {list(sizes)}")
    n = 2 * (len(sizes) - 1)
    res = 4 * 2 ** (n // 2 - 1)
    return [f"layer{i}" for i in range(1, n + 1)] + [f"output_{res}x{res}"]


def _block_specs(sizes: Sequence[int]) -> list[tuple[str, int, int, int, bool]]:
    """``(name, in_ch, out_ch, kernel, upsample)`` for every block, output block last."""
    names = layer_names(sizes)
    specs = [(names[0], sizes[0], sizes[1], 4, False), (names[1], sizes[1], sizes[1], 3, False)]
    for si, so in zip(sizes[1:-1], sizes[2:], strict=True):
        specs.append((names[len(specs)], si, so, 3, True))
        specs.append((names[len(specs)], so, so, 3, False))
    specs.append((names[-1], sizes[-1], 3, 1, False))
    return specs


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``x / sqrt(mean(x**2 over channels) + eps)`` on ``[..., C]``."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def upsample_nearest(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 on ``[N, H, W, C]``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def apply_edit(x: jax.Array, alpha: jax.Array, value: jax.Array) -> jax.Array:
    """``x * (1 - alpha) + value * alpha`` on ``[N, H, W, C]``.

    ``alpha`` and ``value`` broadcast from the right: ``[C]`` is per channel over the whole map,
    ``[H, W, C]`` per channel and position, ``[N, H, W, C]`` per image.
    """

    def rank4(a):
        a = jnp.asarray(a, x.dtype)
        return a.reshape((1,) * (4 - a.ndim) + a.shape)

    alpha, value = rank4(alpha), rank4(value)
    return x * (1 - alpha) + value * alpha


class WScale(nn.Module):
    """Equalized learning rate: ``x * scale + b`` with a constant ``scale`` and bias ``b``."""

    features: int
    scale: float

    @nn.compact
    def __call__(self, x):
        b = self.param("b", nn.initializers.zeros, (self.features,))
        return x * self.scale + b.reshape((1,) * (x.ndim - 1) + b.shape)


class Block(nn.Module):
    """PixelNorm -> [nearest x2] -> conv (no bias) -> WScale -> LeakyReLU(0.2) or output."""

    features: int
    kernel: int
    gain: float
    upsample: bool = False
    activation: bool = True

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        x = pixel_norm(x)
        if self.upsample:
            x = upsample_nearest(x)
        pad = {4: 3, 3: 1, 1: 0}[self.kernel]
        x = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            padding=((pad, pad), (pad, pad)),
            use_bias=False,
            kernel_init=nn.initializers.normal(1.0),
            name="conv",
        )(x)
        x = WScale(self.features, self.gain / math.sqrt(fan_in), name="wscale")(x)
        return nn.leaky_relu(x, 0.2) if self.activation else x


class Generator(nn.Module):
    """Progressive GAN generator for ``sizes = [z, depth@4x4, depth@8x8, …]``.

    Call: ``module.apply({'params': p}, x, start=None, stop=None, capture=(), edits=None)``
    returns ``(y, acts)``:

    * ``x``: the latent ``[N, z]`` / ``[N, 1, 1, z]`` when ``start`` is None, else the
      activation ``[N, H, W, C]`` of block ``start``;
    * ``y``: the output of block ``stop`` (after its edit), or the image ``[N, R, R, 3]``;
    * ``acts``: ``{name: activation}`` for each name in ``capture`` that ran, taken *before*
      that layer's edit (as the original's ``retain_layer``);
    * ``edits``: ``{name: (alpha, value)}``; after block ``name`` the activation becomes
      ``x * (1 - alpha) + value * alpha`` (see :func:`apply_edit` for broadcasting).
    """

    sizes: Sequence[int]
    output_tanh: bool = False

    @property
    def layers(self) -> list[str]:
        return layer_names(self.sizes)

    @property
    def resolution(self) -> int:
        """Side of the output images: ``4 * 2**(len(sizes) - 2)``."""
        return 4 * 2 ** (len(self.sizes) - 2)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        start: str | None = None,
        stop: str | None = None,
        capture: Sequence[str] = (),
        edits: Mapping[str, tuple[jax.Array, jax.Array]] | None = None,
    ):
        names = self.layers
        edits = dict(edits or {})
        for name in [start, stop, *capture, *edits]:
            if name is not None and name not in names:
                raise ValueError(f"unknown generator layer {name!r}; valid layers: {names}")
        first = 0 if start is None else names.index(start) + 1
        last = len(names) - 1 if stop is None else names.index(stop)
        if last < first:
            raise ValueError(f"stop={stop!r} comes before the block after start={start!r}")
        if start is None:
            if x.ndim == 2:
                x = x[:, None, None, :]
            if x.ndim != 4 or x.shape[1:3] != (1, 1) or x.shape[-1] != self.sizes[0]:
                raise ValueError(
                    f"latent must be [N, {self.sizes[0]}] or [N, 1, 1, {self.sizes[0]}], "
                    f"got shape {tuple(x.shape)}"
                )
        acts = {}
        for i, (name, _, out, k, up) in enumerate(_block_specs(self.sizes)):
            if not first <= i <= last:
                continue
            is_output = i == len(names) - 1
            gain = 1.0 if is_output else math.sqrt(2) / k
            x = Block(out, k, gain, upsample=up, activation=not is_output, name=name)(x)
            if is_output and self.output_tanh:
                x = jnp.clip(x, -1.0, 1.0)
            if name in capture:
                acts[name] = x
            if name in edits:
                x = apply_edit(x, *edits[name])
        return x, acts


def init(sizes: Sequence[int], seed: int = 0, output_tanh: bool = False):
    """A fresh ``(module, params)``: conv kernels ~ N(0, 1) (equalized LR), zero biases."""
    module = Generator(tuple(int(s) for s in sizes), output_tanh)
    z = jnp.zeros((1, module.sizes[0]), jnp.float32)
    return module, module.init(jax.random.PRNGKey(seed), z)["params"]


def abstract_params(module: Generator):
    """The expected parameter tree as ``jax.ShapeDtypeStruct`` leaves (no computation)."""
    z = jax.ShapeDtypeStruct((1, module.sizes[0]), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), z)["params"]


def save(directory: str, module: Generator, params, **extra) -> str:
    """Write a generator checkpoint readable by :func:`load`; ``extra`` goes into config.json."""
    config = {"kind": KIND, "sizes": list(module.sizes), "output_tanh": module.output_tanh}
    return checkpoint.save(directory, params, {**config, **extra})


def load(directory: str):
    """``(module, params)`` from a directory written by :func:`save` or the converter."""
    config = checkpoint.read_config(directory, KIND)
    module = Generator(tuple(config["sizes"]), bool(config.get("output_tanh", False)))
    params = checkpoint.restore(directory, abstract_params(module))
    return module, params


def sample_z(n: int, seed: int = 1, dim: int = 512) -> np.ndarray:
    """The original tools' latent set: ``RandomState(seed).standard_normal(n*dim)`` as float32.

    Prefix-stable, so latent *i* here is latent *i* of the original for the same seed
    (dissection uses seed 1, thresholds seed 2). Returns ``[n, dim]``.
    """
    return np.random.RandomState(seed).standard_normal(n * dim).reshape(n, dim).astype(np.float32)
