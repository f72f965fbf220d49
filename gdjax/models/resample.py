"""Fixed linear resampling operators, precomputed per size and applied with an einsum.

Every spatial resampling that the segmenters and the dissection need is separable and depends
only on the input and output sizes, so it is a pair of small matrices ``(out_h, in_h)`` and
``(out_w, in_w)``:

* :func:`prroi_matrix` — the *precise RoI pooling* of the UPerNet pyramid pooling module over the
  whole feature map (reference §13): the exact integral of the bilinearly interpolated map over
  each bin, divided by the nominal bin area. No CUDA extension, same numbers on every backend.
* :func:`bilinear_matrix` — ``torch.nn.functional.interpolate(mode='bilinear',
  align_corners=False)`` (half-pixel centres, edge clamp, *no* antialiasing when shrinking,
  unlike ``jax.image.resize``).
* :func:`adaptive_avg_matrix` — ``torch.nn.AdaptiveAvgPool2d``.
* :func:`upsample` — bilinear resampling of unit activations to the segmentation grid, which
  GAN Dissection scores units on (reference §0.1, §3.3). The original calls
  ``grid_sample(padding_mode='border')`` on a grid that, with the torch <= 1.2 the authors
  used, equals ``F.interpolate(mode='bilinear', align_corners=False)``: half-pixel centres,
  source coordinate ``(t + 0.5) * in / out - 0.5`` clamped to ``[0, in - 1]``. That is the
  default. ``padding='zeros'`` is the PNAS successor's upsampler (reference §12.3): the same
  half-pixel grid, read with zero padding, so values fade towards 0 at the border (its
  ``align_corners=True`` only says how its grid's -1..1 coordinates are read). The modern-torch
  reading of the original grid (misregistered by up to half a feature pixel) is deliberately
  not offered.

Matrices are built in NumPy (float64 arithmetic, float32 result) and cached, so under ``jit``
they are constants.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "adaptive_avg_matrix",
    "bilinear_matrix",
    "interpolation_matrix",
    "prroi_matrix",
    "resample",
    "resize",
    "upsample",
]


@functools.lru_cache(maxsize=64)
def interpolation_matrix(
    out: int, size: int, align_corners: bool = False, padding: str = "edge"
) -> np.ndarray:
    """Linear interpolation from ``size`` samples to ``out`` samples: float32 ``[out, size]``.

    ``align_corners=False``: source position ``src = (t + 0.5) * size / out - 0.5`` (half-pixel
    centres). ``padding='edge'``: a position outside ``[0, size - 1]`` reads the edge sample,
    as torch's ``upsample_bilinear2d`` and gandissect's ``grid_sample(padding_mode='border')``
    do; ``padding='zeros'``: the neighbour outside reads 0, so values fade towards 0 within
    half a source pixel of the border, as the PNAS successor's ``grid_sample`` with its default
    zero padding (reference §12.3). ``align_corners=True``: ``src = t * (size - 1) / (out -
    1)`` (0 when ``out == 1``; ``F.interpolate(align_corners=True)``), never outside.
    """
    if padding not in ("edge", "zeros"):
        raise ValueError(f"padding must be 'edge' or 'zeros', got {padding!r}")
    t = np.arange(out, dtype=np.float64)
    if align_corners:
        src = t * ((size - 1) / (out - 1)) if out > 1 else np.zeros_like(t)
    else:
        src = (t + 0.5) * (size / out) - 0.5
    if padding == "edge":
        src = np.clip(src, 0.0, size - 1)
    i0 = np.floor(src).astype(np.int64)
    w1 = src - i0
    m = np.zeros((out, size + 2), np.float64)  # columns 0 and size + 1: the zero padding
    np.add.at(m, (np.arange(out), i0 + 1), 1.0 - w1)
    np.add.at(m, (np.arange(out), np.minimum(i0 + 2, size + 1)), w1)
    m = m[:, 1 : size + 1].astype(np.float32)
    m.flags.writeable = False
    return m


def upsample(
    x: jax.Array, size: tuple[int, int], align_corners: bool = False, padding: str = "edge"
) -> jax.Array:
    """Bilinear resize of ``[..., h, w, C]`` (NHWC or unbatched HWC) to ``[..., H, W, C]``
    (:func:`interpolation_matrix` per axis).

    ``size = (H, W)``. Works for shrinking too (no antialiasing, like torch: 256 -> 128 is a
    2x2 average). Full float32 precision on every backend (no TF32/bf16 matmul passes).
    """
    h, w = x.shape[-3], x.shape[-2]
    mh = jnp.asarray(interpolation_matrix(size[0], h, align_corners, padding))
    mw = jnp.asarray(interpolation_matrix(size[1], w, align_corners, padding))
    return jnp.einsum(
        "Hh,...hwc,Ww->...HWc", mh, x, mw, precision=jax.lax.Precision.HIGHEST
    ).astype(x.dtype)


def _tri_integral(t: np.ndarray) -> np.ndarray:
    """Antiderivative of the hat function ``max(0, 1 - |t|)``, equal to 0 at -inf."""
    t = np.clip(t, -1.0, 1.0)
    return np.where(t < 0, 0.5 * (t + 1.0) ** 2, 1.0 - 0.5 * (1.0 - t) ** 2)


@functools.cache
def prroi_matrix(pooled: int, size: int) -> np.ndarray:
    """``[pooled, size]`` float32: one axis of PrRoIPool over the whole map ``[0, size]``.

    Sample ``i`` sits at the integer coordinate ``i`` and the continuous map is the hat-function
    (bilinear) interpolant with zeros outside, so it fades to 0 between ``size - 1`` and ``size``.
    Bin ``p`` covers ``[bin*p, bin*(p+1)]`` with ``bin = size / pooled`` computed in float32 as
    the reference kernel does; entry ``[p, i]`` is the integral of the hat at ``i`` over that bin
    divided by the nominal bin length. A constant map therefore pools to ``c*(1 - 0.5/size)``
    per axis, not to ``c`` — that is the reference behaviour.
    """
    bin_ = np.float32(np.float32(size) / np.float32(pooled))
    p = np.arange(pooled, dtype=np.float32)
    lo = (bin_ * p).astype(np.float64)[:, None]
    hi = (bin_ * p + bin_).astype(np.float64)[:, None]
    i = np.arange(size, dtype=np.float64)[None, :]
    return ((_tri_integral(hi - i) - _tri_integral(lo - i)) / float(bin_)).astype(np.float32)


def bilinear_matrix(out: int, size: int) -> np.ndarray:
    """``[out, size]`` float32: torch bilinear resize with ``align_corners=False`` (half-pixel
    source coordinates, edge clamp; shrinking samples two pixels per output, no antialiasing).
    The same operator that upsamples activations for dissection."""
    return interpolation_matrix(out, size, align_corners=False)


@functools.cache
def adaptive_avg_matrix(out: int, size: int) -> np.ndarray:
    """``[out, size]`` float32: ``AdaptiveAvgPool``, bin ``p`` = ``[floor(p*size/out),
    ceil((p+1)*size/out))``."""
    m = np.zeros((out, size), np.float64)
    for p in range(out):
        lo, hi = (p * size) // out, -((-(p + 1) * size) // out)
        m[p, lo:hi] = 1.0 / (hi - lo)
    return m.astype(np.float32)


def resample(x: jax.Array, mh: np.ndarray, mw: np.ndarray) -> jax.Array:
    """Apply separable matrices to ``x [N, H, W, C]`` -> ``[N, mh.shape[0], mw.shape[0], C]``.

    Uses ``precision='highest'`` so that accelerators with reduced-precision matmuls (TF32,
    bf16 passes) still reproduce the float32 reference.
    """
    y = jnp.einsum("oh,nhwc->nowc", jnp.asarray(mh, x.dtype), x, precision="highest")
    return jnp.einsum("pw,nowc->nopc", jnp.asarray(mw, x.dtype), y, precision="highest")


def resize(x: jax.Array, size: tuple[int, int], method: str = "bilinear") -> jax.Array:
    """Resize ``x [N, H, W, C]`` to ``size = (h, w)`` like torch; identity when sizes agree.

    ``method``: ``'bilinear'`` (``align_corners=False``), ``'area'`` (adaptive average pool) or
    ``'prroi'`` (whole-map precise RoI pooling).
    """
    make = {"bilinear": bilinear_matrix, "area": adaptive_avg_matrix, "prroi": prroi_matrix}
    h, w = x.shape[1:3]
    if (h, w) == tuple(size) and method != "prroi":
        return x
    return resample(x, make[method](size[0], h), make[method](size[1], w))
