"""Inception-v3 as the FID network (pytorch-fid's ``pt_inception-2015-12-05``), NHWC.

The Fréchet Inception Distance is computed on the 2048-d average-pooled output of the last
Inception block ("pool3") of the 2015 TensorFlow Inception graph. pytorch-fid ports that graph
as torchvision's ``Inception3`` (1008 classes, no auxiliary head) with four patched block types,
reproduced here:

* ``Mixed_5b/5c/5d`` (A), ``Mixed_6b…6e`` (C) and ``Mixed_7b`` (E, first): the pooling branch's
  3x3 average pool ignores the zero padding (``count_include_pad=False``, TensorFlow's
  behaviour);
* ``Mixed_7c`` (E, second): the pooling branch uses a 3x3 *max* pool instead.

Submodules are named after the PyTorch state-dict paths (``Mixed_6b.branch7x7_2.conv.weight``
-> ``Mixed_6b/branch7x7_2/conv/kernel``; BN ``weight/bias`` -> ``scale/bias``, running
statistics in ``batch_stats``), so conversion (``converters/inception.py``) is a rename plus a
layout transform. Inference only: batch norm always uses its running statistics (eps 1e-3).

    module, variables = inception.load("models/inception")
    feats = inception.features(module, variables, images)  # [N, 2048], images in [-1, 1]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gdjax.models import checkpoint
from gdjax.models.resample import resize

__all__ = ["KIND", "SIZE", "InceptionV3", "abstract_variables", "features", "load", "save"]

KIND = "inception"
SIZE = 299  # the FID extractor resizes every image to 299 x 299
MIN_SIZE = 75  # the smallest input that leaves the last blocks a 1x1 map


class BasicConv2d(nn.Module):
    """torchvision ``BasicConv2d``: conv (no bias) -> BN (eps 1e-3) -> ReLU; children
    ``conv`` and ``bn``."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        (ph, pw), s = self.padding, self.stride
        x = nn.Conv(self.features, self.kernel, (s, s), ((ph, ph), (pw, pw)), use_bias=False,
                    precision="highest", name="conv")(x)  # fmt: skip
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _conv(features, kernel, stride=1, padding=0, name=None) -> BasicConv2d:
    k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    p = padding if isinstance(padding, tuple) else (padding, padding)
    return BasicConv2d(features, k, stride, p, name=name)


def _avg_pool_same(x: jax.Array) -> jax.Array:
    """3x3, stride 1, padding 1, padded zeros not counted (TensorFlow's "SAME" average)."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_same(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))


def _max_pool_down(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 64 + 64 + 96 + ``pool_features`` channels."""

    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = _conv(64, 1, name="branch1x1")(x)
        b5 = _conv(48, 1, name="branch5x5_1")(x)
        b5 = _conv(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = _conv(64, 1, name="branch3x3dbl_1")(x)
        b3 = _conv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = _conv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = _conv(self.pool_features, 1, name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction): 384 + 96 + input channels, stride 2."""

    @nn.compact
    def __call__(self, x):
        b3 = _conv(384, 3, stride=2, name="branch3x3")(x)
        bd = _conv(64, 1, name="branch3x3dbl_1")(x)
        bd = _conv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = _conv(96, 3, stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_down(x)], axis=-1)


class InceptionC(nn.Module):
    """Mixed_6b…6e: factorised 7x7 convolutions, 4 x 192 channels."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        b1 = _conv(192, 1, name="branch1x1")(x)
        b7 = _conv(c, 1, name="branch7x7_1")(x)
        b7 = _conv(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = _conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = _conv(c, 1, name="branch7x7dbl_1")(x)
        bd = _conv(c, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = _conv(c, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = _conv(c, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = _conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = _conv(192, 1, name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction): 320 + 192 + input channels, stride 2."""

    @nn.compact
    def __call__(self, x):
        b3 = _conv(192, 1, name="branch3x3_1")(x)
        b3 = _conv(320, 3, stride=2, name="branch3x3_2")(b3)
        b7 = _conv(192, 1, name="branch7x7x3_1")(x)
        b7 = _conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = _conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = _conv(192, 3, stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_down(x)], axis=-1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: 320 + 768 + 768 + 192 = 2048 channels; ``max_pool`` for Mixed_7c."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        b1 = _conv(320, 1, name="branch1x1")(x)
        b3 = _conv(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate([_conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              _conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)],
                             axis=-1)  # fmt: skip
        bd = _conv(448, 1, name="branch3x3dbl_1")(x)
        bd = _conv(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([_conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              _conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)],
                             axis=-1)  # fmt: skip
        pooled = _max_pool_same(x) if self.max_pool else _avg_pool_same(x)
        bp = _conv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


# (name, constructor) in order; maxpool1/maxpool2 end pytorch-fid's blocks 0 and 1.
_STEM = (
    ("Conv2d_1a_3x3", lambda: _conv(32, 3, stride=2, name="Conv2d_1a_3x3")),
    ("Conv2d_2a_3x3", lambda: _conv(32, 3, name="Conv2d_2a_3x3")),
    ("Conv2d_2b_3x3", lambda: _conv(64, 3, padding=1, name="Conv2d_2b_3x3")),
    ("maxpool1", lambda: _max_pool_down),
    ("Conv2d_3b_1x1", lambda: _conv(80, 1, name="Conv2d_3b_1x1")),
    ("Conv2d_4a_3x3", lambda: _conv(192, 3, name="Conv2d_4a_3x3")),
    ("maxpool2", lambda: _max_pool_down),
    ("Mixed_5b", lambda: InceptionA(32, name="Mixed_5b")),
    ("Mixed_5c", lambda: InceptionA(64, name="Mixed_5c")),
    ("Mixed_5d", lambda: InceptionA(64, name="Mixed_5d")),
    ("Mixed_6a", lambda: InceptionB(name="Mixed_6a")),
    ("Mixed_6b", lambda: InceptionC(128, name="Mixed_6b")),
    ("Mixed_6c", lambda: InceptionC(160, name="Mixed_6c")),
    ("Mixed_6d", lambda: InceptionC(160, name="Mixed_6d")),
    ("Mixed_6e", lambda: InceptionC(192, name="Mixed_6e")),
    ("Mixed_7a", lambda: InceptionD(name="Mixed_7a")),
    ("Mixed_7b", lambda: InceptionE(False, name="Mixed_7b")),
    ("Mixed_7c", lambda: InceptionE(True, name="Mixed_7c")),
)
LAYERS = tuple(name for name, _ in _STEM) + ("pool", "logits")


class InceptionV3(nn.Module):
    """The FID Inception-v3 on ``x [N, H, W, 3]`` (the network's input range, about
    ``[-1, 1]``; ``H, W >= 75``). Returns ``(pool [N, 2048], acts)`` where ``acts`` holds the
    layers named in ``capture`` (any of :data:`LAYERS`: the blocks NHWC, ``pool`` the 2048-d
    features, ``logits [N, num_classes]``)."""

    num_classes: int = 1008

    @nn.compact
    def __call__(self, x: jax.Array, capture: Sequence[str] = ()):
        unknown = set(capture) - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown Inception layers {sorted(unknown)}; layers: {LAYERS}")
        if min(x.shape[1:3]) < MIN_SIZE:
            raise ValueError(f"Inception needs images of at least {MIN_SIZE} px, got {x.shape}")
        acts = {}
        for name, make in _STEM:
            x = make()(x)
            if name in capture:
                acts[name] = x
        pool = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, name="fc")(pool)
        if "pool" in capture:
            acts["pool"] = pool
        if "logits" in capture:
            acts["logits"] = logits
        return pool, acts


def prepare(images: jax.Array, size: int = SIZE) -> jax.Array:
    """pytorch-fid's input transform for images ``[N, H, W, 3]`` in ``[-1, 1]``.

    pytorch-fid takes images in ``[0, 1]`` (as read from files), resizes them to ``size``
    with ``F.interpolate(mode='bilinear', align_corners=False)`` (no antialiasing) and maps
    them to ``[-1, 1]`` by ``2x - 1``. Generated images are first clipped to ``[-1, 1]``, as
    saving them as image files would; the resize is the same operator as torch's.
    """
    x = (jnp.clip(images, -1.0, 1.0) + 1.0) * 0.5
    return 2.0 * resize(x, (size, size), "bilinear") - 1.0


def features(module: InceptionV3, variables, images: jax.Array, size: int = SIZE) -> jax.Array:
    """FID features ``[N, 2048]`` of images ``[N, H, W, 3]`` in ``[-1, 1]``: :func:`prepare`
    then the pool3 output."""
    return module.apply(variables, prepare(images, size))[0]


@functools.cache
def abstract_variables(num_classes: int = 1008) -> dict:
    """Shapes of ``{'params', 'batch_stats'}`` for :class:`InceptionV3` (no compute)."""
    x = jax.ShapeDtypeStruct((1, MIN_SIZE, MIN_SIZE, 3), jnp.float32)
    return jax.eval_shape(InceptionV3(num_classes).init, jax.random.key(0), x)


def save(directory: str, module: InceptionV3, variables, **extra) -> str:
    """Write a gdjax Inception checkpoint (orbax variables + ``config.json``)."""
    config = {"kind": KIND, "num_classes": module.num_classes, **extra}
    return checkpoint.save(directory, variables, config)


def load(directory: str) -> tuple[InceptionV3, dict]:
    """``(module, variables)`` of a converted Inception (``python -m converters.inception``)."""
    config = checkpoint.read_config(directory, KIND)
    module = InceptionV3(int(config.get("num_classes", 1008)))
    return module, checkpoint.restore(directory, abstract_variables(module.num_classes))
