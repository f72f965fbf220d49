"""Bilinear upsampling of unit activations to the segmentation grid, as two small matrices.

GAN Dissection scores a unit on its activation map resampled to the segmentation grid
(REFERENCE §0.1, §3.3). The original calls ``grid_sample(padding_mode='border')`` on a grid that,
with the torch <= 1.2 the authors used, equals ``F.interpolate(mode='bilinear',
align_corners=False)``: half-pixel centres, source coordinate ``(t + 0.5) * in / out - 0.5``
clamped to ``[0, in - 1]``. That is the default here. ``align_corners=True`` (source coordinate
``t * (in - 1) / (out - 1)``) is the PNAS successor's ``upsample.upsampler`` (REFERENCE §12.3).
The modern-torch reading of the original grid (misregistered by up to half a feature pixel) is
deliberately not offered.

Resampling is separable and depends only on the sizes, so it is ``einsum`` with a ``[out_h,
in_h]`` and a ``[out_w, in_w]`` matrix, built in NumPy (float64, stored float32) and constant
under ``jit``. Rows sum to 1; each has at most two non-zeros.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["interpolation_matrix", "upsample"]


@functools.lru_cache(maxsize=64)
def interpolation_matrix(out: int, size: int, align_corners: bool = False) -> np.ndarray:
    """Linear interpolation from ``size`` samples to ``out`` samples: float32 ``[out, size]``.

    ``align_corners=False``: ``src = max((t + 0.5) * size / out - 0.5, 0)``; the neighbour
    above ``size - 1`` is clamped to the edge, as torch's ``upsample_bilinear2d`` does.
    ``align_corners=True``: ``src = t * (size - 1) / (out - 1)`` (0 when ``out == 1``).
    """
    t = np.arange(out, dtype=np.float64)
    if align_corners:
        src = t * ((size - 1) / (out - 1)) if out > 1 else np.zeros_like(t)
    else:
        src = np.maximum((t + 0.5) * (size / out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
    i1 = np.minimum(i0 + 1, size - 1)
    w1 = src - i0
    m = np.zeros((out, size), np.float64)
    np.add.at(m, (np.arange(out), i0), 1.0 - w1)
    np.add.at(m, (np.arange(out), i1), w1)
    m = m.astype(np.float32)
    m.flags.writeable = False
    return m


def upsample(x: jax.Array, size: tuple[int, int], align_corners: bool = False) -> jax.Array:
    """Bilinear resize of ``[..., h, w, C]`` (NHWC or unbatched HWC) to ``[..., H, W, C]``.

    ``size = (H, W)``. Works for shrinking too (no antialiasing, like torch: 256 -> 128 is a
    2x2 average). Full float32 precision on every backend (no TF32/bf16 matmul passes).
    """
    h, w = x.shape[-3], x.shape[-2]
    mh = jnp.asarray(interpolation_matrix(size[0], h, align_corners))
    mw = jnp.asarray(interpolation_matrix(size[1], w, align_corners))
    return jnp.einsum(
        "Hh,...hwc,Ww->...HWc", mh, x, mw, precision=jax.lax.Precision.HIGHEST
    ).astype(x.dtype)
