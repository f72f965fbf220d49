"""The StyleGAN2 generator (Karras et al. 2020, config F, "skip" outputs) in Flax, NHWC.

Parameters are named as the official stylegan2-ada-pytorch state dict (``mapping/fc0/weight``,
``synthesis/b8/conv0/affine/bias``, ``synthesis/b4/const`` …) so a converted checkpoint is a
rename plus a layout change: dense weights ``[in, out]``, conv weights HWIO, ``const``
``[4, 4, C]``. Equalized-learning-rate gains are derived from shapes, never stored.

* Mapping: ``z`` normalized by its second moment, ``mapping_layers`` dense layers with
  learning-rate multiplier ``lr_multiplier`` and LeakyReLU(0.2)·√2, broadcast to ``num_ws``
  copies, then truncation ``w_avg + psi * (w - w_avg)`` on the first ``truncation_cutoff``.
* Synthesis blocks ``b4 … bR``: ``b4`` has a learned constant and ``conv1``; every other block
  ``conv0`` (x2 up: transposed conv then the [1,3,3,1] blur) and ``conv1``. A conv layer is a
  modulated convolution with demodulation, ``+ noise_const * noise_strength`` (``noise_mode``
  ``'const'``, the deterministic default; ``'none'``; or ``'random'`` from the ``'noise'`` rng),
  ``+ bias``, LeakyReLU(0.2)·√2, clamped to ``±conv_clamp·√2`` when set. Each block's ``torgb``
  (1x1, modulated, not demodulated) is added to the x2-upsampled running image.

Layers and split runs
---------------------
``layers`` are the synthesis conv outputs ``'b4.conv1', 'b8.conv0', 'b8.conv1', …`` (``[N, H,
W, C]``, post-activation) and the image ``output_RxR``, in order; ``style_layers`` the style
vectors ``'b8.conv0.style'``, ``'b8.torgb.style'`` … (``[N, C_in]``: the affine outputs, the
"StyleSpace" coordinates). Any of them may be captured and edited. Unlike PGGAN, the rest of
the synthesis after a layer needs more than its activation: the latents ``w`` and the running
skip image. ``capture=('carry',)`` returns them as a :class:`Carry` at ``stop``, and a run with
``start=layer`` takes it back as ``carry=``; ``apply(z, stop=k, capture=('carry',))`` then
``apply(h, start=k, carry=acts['carry'])`` equals the full run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from gdjax.models import checkpoint

KIND = "stylegan2"
CARRY = "carry"
SQRT2 = math.sqrt(2.0)
# The [1, 3, 3, 1] resampling filter as a normalized outer product (sum 1).
FILTER = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0]).astype(np.float32) / 64.0


class Carry(NamedTuple):
    """What a synthesis run resumed after a layer needs besides its activation.

    ``ws``: ``[N, num_ws, w_dim]`` latents after truncation; ``img``: ``[N, r, r, 3]`` running
    skip image of the blocks before the layer's block (``None`` inside ``b4``).
    """

    ws: jax.Array
    img: jax.Array | None


def channels_for(resolution: int, channel_base: int = 32768, channel_max: int = 512):
    """Official channel counts ``min(channel_base // r, channel_max)`` for r = 4 … resolution."""
    return tuple(min(channel_base // r, channel_max) for r in _resolutions(resolution))


def _resolutions(resolution: int) -> list[int]:
    if resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    return [2**i for i in range(2, int(math.log2(resolution)) + 1)]


def conv_names(resolution: int) -> list[str]:
    """Synthesis conv layer names in order: ``b4.conv1``, ``b8.conv0``, ``b8.conv1``, …"""
    names = ["b4.conv1"]
    for r in _resolutions(resolution)[1:]:
        names += [f"b{r}.conv0", f"b{r}.conv1"]
    return names


def style_names(resolution: int) -> list[str]:
    """Style vector names in the order their ``w`` index grows (torgb after each block)."""
    names = []
    for r in _resolutions(resolution):
        names += [f"b{r}.conv0.style"] if r > 4 else []
        names += [f"b{r}.conv1.style", f"b{r}.torgb.style"]
    return names


def upfirdn2d(x, f, up: int = 1, down: int = 1, pad=(0, 0, 0, 0), gain: float = 1.0):
    """Upsample by zero insertion, pad (negative: crop), FIR filter, keep every ``down``-th.

    ``x [N, H, W, C]``; ``f [fh, fw]`` (a true convolution, i.e. flipped before correlating);
    ``pad = (x0, x1, y0, y1)``; the filter is scaled by ``gain``. Output side
    ``(H * up + y0 + y1 - fh) // down + 1``, as the official ``upfirdn2d``.
    """
    x0, x1, y0, y1 = pad
    zero = jnp.zeros((), x.dtype)
    cfg = [(0, 0, 0), (y0, y1 + up - 1, up - 1), (x0, x1 + up - 1, up - 1), (0, 0, 0)]
    x = jax.lax.pad(x, zero, cfg)
    c = x.shape[-1]
    k = jnp.asarray(np.asarray(f, np.float32)[::-1, ::-1] * gain, x.dtype)
    k = jnp.tile(k[:, :, None, None], (1, 1, 1, c))
    x = jax.lax.conv_general_dilated(
        x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
    )
    return x[:, ::down, ::down, :]


def upsample2d(x):
    """x2 upsampling with the [1,3,3,1] filter (the skip images' resampling)."""
    return upfirdn2d(x, FILTER, up=2, pad=(2, 1, 2, 1), gain=4.0)


def _conv(x, w, up: bool):
    """Plain conv (padding k//2) or the official x2 up-conv: a stride-2 transposed conv
    (output ``2H + k - 2``) then the blur with gain 4, padded back to ``2H``."""
    k = w.shape[0]
    dn = ("NHWC", "HWIO", "NHWC")
    if not up:
        p = k // 2
        return jax.lax.conv_general_dilated(x, w, (1, 1), [(p, p), (p, p)], dimension_numbers=dn)
    x = jax.lax.conv_general_dilated(
        x, w[::-1, ::-1], (1, 1), [(k - 1, k - 1)] * 2, lhs_dilation=(2, 2), dimension_numbers=dn
    )
    # conv2d_resample's padding for up=2 and a 4-tap filter: k//2 + (2, 1) - (k - 1, k - 2).
    p0, p1 = k // 2 + 2 - (k - 1), k // 2 + 1 - (k - 2)
    return upfirdn2d(x, FILTER, pad=(p0, p1, p0, p1), gain=4.0)


def _rank(a, x):
    a = jnp.asarray(a, x.dtype)
    return a.reshape((1,) * (x.ndim - a.ndim) + a.shape)


def apply_edit(x, alpha, value):
    """``x * (1 - alpha) + value * alpha``; ``alpha``/``value`` broadcast from the right, so
    ``[C]`` edits every position of a feature map ``[N, H, W, C]`` or a style ``[N, C]``."""
    return x * (1 - _rank(alpha, x)) + _rank(value, x) * _rank(alpha, x)


class Dense(nn.Module):
    """FullyConnectedLayer: ``x @ (weight * lr / sqrt(in)) + bias * lr`` [+ LReLU·√2]."""

    features: int
    lr_multiplier: float = 1.0
    bias_init: float = 0.0
    activation: bool = False

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        init = nn.initializers.normal(1.0 / self.lr_multiplier)
        w = self.param("weight", init, (fan_in, self.features))
        b = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
        b = (b * self.lr_multiplier).reshape((1,) * (x.ndim - 1) + b.shape)
        x = x @ (w * (self.lr_multiplier / math.sqrt(fan_in))) + b
        return nn.leaky_relu(x, 0.2) * SQRT2 if self.activation else x


class ModConv(nn.Module):
    """A synthesis layer (``demodulate``) or a torgb layer; returns ``(y, style)``."""

    features: int
    kernel: int
    resolution: int
    up: bool = False
    demodulate: bool = True
    conv_clamp: float | None = None
    noise_mode: str = "const"

    @nn.compact
    def __call__(self, x, w, edit=None):
        cin = x.shape[-1]
        style = Dense(cin, bias_init=1.0, name="affine")(w)  # [N, I]
        if edit is not None:
            style = apply_edit(style, *edit)
        k = self.kernel
        weight = self.param("weight", nn.initializers.normal(1.0), (k, k, cin, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        s = style if self.demodulate else style / math.sqrt(cin * k * k)
        y = _conv(x * s[:, None, None, :], weight, self.up)
        if self.demodulate:
            # Per image and output channel: rsqrt(sum over (i, kh, kw) of (W * s_i)^2 + 1e-8).
            d = jax.lax.rsqrt(jnp.square(s) @ jnp.square(weight).sum(axis=(0, 1)) + 1e-8)
            y = y * d[:, None, None, :]
            r = self.resolution
            noise_const = self.param("noise_const", nn.initializers.normal(1.0), (r, r))
            strength = self.param("noise_strength", nn.initializers.zeros, ())
            if self.noise_mode == "const":
                y = y + (noise_const * strength)[None, :, :, None]
            elif self.noise_mode == "random":
                n = jax.random.normal(self.make_rng("noise"), (y.shape[0], r, r, 1), y.dtype)
                y = y + n * strength
            elif self.noise_mode != "none":
                raise ValueError(f"noise_mode must be const, random or none, got {self.noise_mode}")
        y = y + bias.reshape(1, 1, 1, -1)
        if self.demodulate:
            y = nn.leaky_relu(y, 0.2) * SQRT2
        if self.conv_clamp is not None:
            c = self.conv_clamp * (SQRT2 if self.demodulate else 1.0)
            y = jnp.clip(y, -c, c)
        return y, style


class MappingNetwork(nn.Module):
    """``z [N, z_dim]`` -> ``ws [N, num_ws, w_dim]`` (broadcast, then truncated)."""

    w_dim: int
    layers: int
    lr_multiplier: float
    num_ws: int
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None

    @nn.compact
    def __call__(self, z):
        x = z * jax.lax.rsqrt(jnp.mean(jnp.square(z), axis=-1, keepdims=True) + 1e-8)
        for i in range(self.layers):
            x = Dense(self.w_dim, self.lr_multiplier, activation=True, name=f"fc{i}")(x)
        # The running mean of w that truncation pulls towards (a buffer in the original).
        w_avg = self.param("w_avg", nn.initializers.zeros, (self.w_dim,))
        ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], self.num_ws, self.w_dim))
        if self.truncation_psi != 1.0:
            cut = self.num_ws if self.truncation_cutoff is None else self.truncation_cutoff
            avg = w_avg[None, None, :]
            t = avg + self.truncation_psi * (ws - avg)
            ws = jnp.where((jnp.arange(self.num_ws) < cut)[None, :, None], t, ws)
        return ws


class Block(nn.Module):
    """Synthesis block ``b{resolution}``: [const] [conv0 (x2 up)] conv1, then torgb."""

    resolution: int
    features: int
    conv_clamp: float | None = None
    noise_mode: str = "const"

    @nn.compact
    def __call__(self, x, img, ws, run: Sequence[str], out, wi: int):
        """Runs the steps in ``run`` (of ``conv0``, ``conv1``, ``torgb``) in order.

        ``ws [N, num_ws, w_dim]``, ``wi`` the index of this block's first conv in it; ``out``
        records / edits each named value (style vectors, conv outputs) as it is made.
        """
        r, b = self.resolution, f"b{self.resolution}"
        kw = dict(conv_clamp=self.conv_clamp, noise_mode=self.noise_mode)
        if r == 4:
            const = self.param("const", nn.initializers.normal(1.0), (4, 4, self.features))
            if "conv1" in run and x is None:
                x = jnp.broadcast_to(const[None], (ws.shape[0], *const.shape))
        convs = ["conv1"] if r == 4 else ["conv0", "conv1"]
        for j, conv in enumerate(convs):
            if conv in run:
                layer = ModConv(self.features, 3, r, up=conv == "conv0", name=conv, **kw)
                x, style = layer(x, ws[:, wi + j], out.edit(f"{b}.{conv}.style"))
                out.record(f"{b}.{conv}.style", style)
                x = out(f"{b}.{conv}", x)
        if "torgb" in run:
            layer = ModConv(3, 1, r, demodulate=False, conv_clamp=self.conv_clamp, name="torgb")
            y, style = layer(x, ws[:, wi + len(convs)], out.edit(f"{b}.torgb.style"))
            out.record(f"{b}.torgb.style", style)
            img = y if img is None else upsample2d(img) + y
        return x, img


class _Out:
    """Captures a named value (before its edit) and applies its edit."""

    def __init__(self, capture, edits):
        self.capture, self.edits, self.acts = set(capture), edits, {}

    def record(self, name, y):
        if name in self.capture:
            self.acts[name] = y

    def edit(self, name):
        return self.edits.get(name)

    def __call__(self, name, y):
        self.record(name, y)
        return apply_edit(y, *self.edits[name]) if name in self.edits else y


class Synthesis(nn.Module):
    """The blocks ``b4 … bR`` (a container, so parameters sit under ``synthesis/bR``)."""

    resolution: int
    channels: Sequence[int]
    conv_clamp: float | None = None
    noise_mode: str = "const"

    @nn.compact
    def __call__(self, x, img, ws, first: int, last: int, out: _Out):
        names = conv_names(self.resolution)
        wi = 0
        for r, c in zip(_resolutions(self.resolution), self.channels, strict=True):
            convs = ["conv1"] if r == 4 else ["conv0", "conv1"]
            run = [v for v in convs if first <= names.index(f"b{r}.{v}") <= last]
            # torgb follows conv1: it runs when conv1's output is this run's input or made by
            # it, and the run goes on past conv1 (to a later layer or the image).
            i1 = names.index(f"b{r}.conv1")
            if first - 1 <= i1 < last:
                run.append("torgb")
            if run:
                block = Block(r, c, self.conv_clamp, self.noise_mode, name=f"b{r}")
                x, img = block(x, img, ws, run, out, wi)
            wi += len(convs)
        return x, img


class Generator(nn.Module):
    """StyleGAN2 generator; ``channels`` are the depths at resolutions 4, 8, …, ``resolution``.

    Call: ``module.apply({'params': p}, x, start=None, stop=None, capture=(), edits=None,
    carry=None)`` returns ``(y, acts)`` as :class:`gdjax.models.proggan.Generator` does:

    * ``x``: the latent ``[N, z_dim]`` when ``start`` is None, else the activation of layer
      ``start`` (``carry`` then required, see the module docstring);
    * ``y``: the output of layer ``stop`` (after its edit) or the image ``[N, R, R, 3]``
      (about ``[-1, 1]``, unclamped);
    * ``acts``: the captured layers, style vectors and ``'carry'`` that this run made, taken
      before their edits;
    * ``edits``: ``{name: (alpha, value)}`` on layers (``[N, H, W, C]``) or style vectors
      (``[N, C]``), ``x * (1 - alpha) + value * alpha`` (see :func:`apply_edit`).
    """

    z_dim: int
    w_dim: int
    resolution: int
    channels: Sequence[int]
    mapping_layers: int = 8
    lr_multiplier: float = 0.01
    conv_clamp: float | None = None
    truncation_psi: float = 1.0
    truncation_cutoff: int | None = None
    noise_mode: str = "const"

    @property
    def sizes(self) -> tuple[int, ...]:
        """``(z_dim, depth@4x4, depth@8x8, …)`` as PGGAN's ``sizes`` (``sizes[0]``: latent)."""
        return (self.z_dim, *self.channels)

    @property
    def layers(self) -> list[str]:
        """Conv outputs in order, then the image ``output_RxR``."""
        return [*conv_names(self.resolution), f"output_{self.resolution}x{self.resolution}"]

    @property
    def style_layers(self) -> list[str]:
        return style_names(self.resolution)

    @property
    def num_ws(self) -> int:
        return len(conv_names(self.resolution)) + 1

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        start: str | None = None,
        stop: str | None = None,
        capture: Sequence[str] = (),
        edits: Mapping[str, tuple[jax.Array, jax.Array]] | None = None,
        carry: Carry | None = None,
    ):
        names, styles = self.layers, self.style_layers
        edits = dict(edits or {})
        for name in [start, stop, *capture, *edits]:
            if name is not None and name not in names and name not in styles and name != CARRY:
                raise ValueError(
                    f"unknown generator layer {name!r}; valid layers: {names}; "
                    f"style vectors: {styles}"
                )
        for what, name in (("start", start), ("stop", stop)):
            if name is not None and name not in names:
                raise ValueError(f"{what}={name!r}: runs split at layers only: {names}")
        if len(self.channels) != len(_resolutions(self.resolution)):
            raise ValueError(
                f"channels needs one depth per resolution 4..{self.resolution}, "
                f"got {list(self.channels)}"
            )
        first = 0 if start is None else names.index(start) + 1
        last = len(names) - 1 if stop is None else names.index(stop)
        if last < first and start != names[-1]:
            raise ValueError(f"stop={stop!r} comes before the layer after start={start!r}")
        if start is None:
            if x.ndim != 2 or x.shape[-1] != self.z_dim:
                raise ValueError(f"latent must be [N, {self.z_dim}], got shape {tuple(x.shape)}")
            mapping = MappingNetwork(
                self.w_dim, self.mapping_layers, self.lr_multiplier, self.num_ws,
                self.truncation_psi, self.truncation_cutoff, name="mapping",
            )  # fmt: skip
            ws, img, x = mapping(x), None, None
        elif carry is None:
            raise ValueError(
                f"a StyleGAN2 run from start={start!r} needs carry=: capture {CARRY!r} at "
                f"stop={start!r} (the latents and the skip image are not in the activation)"
            )
        else:
            ws, img = carry
        out = _Out(capture, edits)
        synthesis = Synthesis(
            self.resolution, tuple(self.channels), self.conv_clamp, self.noise_mode,
            name="synthesis",
        )  # fmt: skip
        x, img = synthesis(x, img, ws, first, last, out)
        if last == len(names) - 1 and first <= last:
            x = out(names[-1], img)
        if CARRY in capture:
            out.acts[CARRY] = Carry(ws, img)
        return x, out.acts


def init(module: Generator, seed: int = 0):
    """Fresh parameters: weights ~ N(0, 1) (N(0, 1/lr) in the mapping), zero biases, affine
    biases 1, zero noise strengths."""
    z = jnp.zeros((1, module.z_dim), jnp.float32)
    return module.init(jax.random.PRNGKey(seed), z)["params"]


def abstract_params(module: Generator):
    """The expected parameter tree as ``jax.ShapeDtypeStruct`` leaves (no computation)."""
    z = jax.ShapeDtypeStruct((1, module.z_dim), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), z)["params"]


def with_mean_w(module: Generator, params, n: int = 10_000, seed: int = 0):
    """``params`` with ``mapping/w_avg`` (the truncation centre) set to the mean ``w`` of ``n``
    latents ``N(0, 1)`` drawn from ``jax.random.PRNGKey(seed)``."""
    mapping = MappingNetwork(module.w_dim, module.mapping_layers, module.lr_multiplier, 1)

    @jax.jit
    def mean_w(p):
        z = jax.random.normal(jax.random.PRNGKey(seed), (n, module.z_dim))
        return jnp.mean(mapping.apply({"params": p}, z)[:, 0], axis=0)

    return {**params, "mapping": {**params["mapping"], "w_avg": mean_w(params["mapping"])}}


_CONFIG = ("z_dim", "w_dim", "resolution", "channels", "mapping_layers", "lr_multiplier",
           "conv_clamp", "truncation_psi", "truncation_cutoff", "noise_mode")  # fmt: skip


def config(module: Generator) -> dict:
    return {k: list(v) if k == "channels" else v for k in _CONFIG for v in [getattr(module, k)]}


def save(directory: str, module: Generator, params, **extra) -> str:
    """Write a generator checkpoint readable by :func:`load`; ``extra`` goes into config.json."""
    return checkpoint.save(directory, params, {"kind": KIND, **config(module), **extra})


def from_config(cfg: Mapping, **overrides) -> Generator:
    kw = {k: cfg[k] for k in _CONFIG if k in cfg} | overrides
    kw["channels"] = tuple(int(c) for c in kw["channels"])
    return Generator(**kw)


def load(directory: str, **overrides):
    """``(module, params)`` from a directory written by :func:`save` or the converter;
    ``overrides`` (e.g. ``truncation_psi=0.7``) replace config fields."""
    module = from_config(checkpoint.read_config(directory, KIND), **overrides)
    return module, checkpoint.restore(directory, abstract_params(module))
