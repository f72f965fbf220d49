"""The paint server's model side: one generator split at the edited layer, a cache of each
image's activation there, and the rest of the network compiled once per batch size.

A stroke changes only the two planes ``(alpha, value) [H, W, C]`` that
:func:`gdjax.app.api.planes` composes, so every request with the same number of images runs
the same compiled program whatever its strokes and units. Images are identified by a key: a
latent id of the seed-1 set (as the dissection and the reference server), an explicit latent,
or any activation put there with :meth:`Engine.put` (e.g. an inverted real image), so the
engine can start from a layer representation rather than only a latent.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdjax import progress as _progress
from gdjax.app.api import MAX_ID, Spec
from gdjax.errors import InputError
from gdjax.intervene import ace, edits
from gdjax.models import proggan
from gdjax.models import segmenter as seglib
from gdjax.report import draw

__all__ = ["BATCHES", "Engine", "LevelTable", "level_table"]

BATCHES = (1, 4, 16)  # compiled batch sizes; a request is padded up to the next one
QUANTILE_GRID = np.linspace(0.0, 1.0, 1001)  # levels are kept at every 0.001


class LevelTable(NamedTuple):
    """Per-unit activation quantiles of the layer: ``levels [Q, C]`` at ``quantiles [Q]``
    (hazen definition, exact over the sampled activations)."""

    quantiles: np.ndarray
    levels: np.ndarray

    def at(self, qs) -> np.ndarray:
        """Levels ``[C, len(qs)]`` (the reference's ``/api/levels`` layout), linear between
        the table's quantiles (exact at multiples of 0.001, 0.99 included)."""
        qs = np.asarray(qs, np.float64)
        cols = [
            np.interp(qs, self.quantiles, self.levels[:, c]) for c in range(self.levels.shape[1])
        ]
        return np.stack(cols).astype(np.float32)


def level_table(module, params, layer: str, samples: int = 1000, seed: int = 1) -> LevelTable:
    """The quantile table of ``layer`` over ``samples`` latents of ``seed`` (the dissection's
    main set by default; GANPaint inserts each unit's 0.99 quantile, reference §6)."""
    z = proggan.sample_z(samples, seed, module.sizes[0])
    levels = ace.unit_quantiles(module, params, z, layer, QUANTILE_GRID, batch_size=50)
    return LevelTable(QUANTILE_GRID, np.asarray(levels, np.float32))


def _bucket(n: int) -> int:
    for b in BATCHES:
        if n <= b:
            return b
    raise InputError(f"at most {BATCHES[-1]} images per request, got {n}")


class Engine:
    """Generates edited images from cached activations of ``layer``; thread-safe (one lock).

    ``module, params``: a :class:`gdjax.models.proggan.Generator`; ``seg``: an optional
    :class:`gdjax.models.segmenter.Segmenter` for segmentation overlays; ``levels``: the
    layer's :class:`LevelTable`; ``cache_size``: activations kept (least recently used go).
    """

    def __init__(self, module, params, layer: str, *, levels: LevelTable, seg=None,
                 cache_size: int = 1024):  # fmt: skip
        if layer not in module.layers:
            raise InputError(f"unknown layer {layer!r}; valid layers: {', '.join(module.layers)}")
        self.module, self.params, self.layer, self.seg = module, params, layer, seg
        self.levels = levels
        zdim = module.sizes[0]
        shape = jax.eval_shape(
            lambda z: edits.prefix(module, params, z, layer),
            jax.ShapeDtypeStruct((1, zdim), jnp.float32),
        ).shape
        self.spec = Spec(layer, int(shape[3]), (int(shape[1]), int(shape[2])), zdim)
        self.resolution = module.resolution
        self.lock = threading.Lock()
        self._cache: collections.OrderedDict[object, np.ndarray] = collections.OrderedDict()
        self._cache_size = cache_size
        self._prefix = jax.jit(lambda p, z: edits.prefix(module, p, z, layer))
        self._tail = jax.jit(
            lambda p, h, a, v: edits.tail(module, p, h, layer, edits.make(layer, a, v))
        )
        self._segment = None
        if seg is not None:
            self._segment = jax.jit(lambda im: seglib.segment(seg, im)[..., 0])
        self._zs = np.zeros((0, zdim), np.float32)

    # ------------------------------------------------------------------------ activations

    def _z(self, ids) -> np.ndarray:
        """Latents of ``ids`` in the seed-1 set (prefix-stable, grown on demand)."""
        need = max(ids) + 1
        if need > len(self._zs):
            n = max(need, min(2 * len(self._zs), MAX_ID), 64)
            self._zs = proggan.sample_z(n, 1, self.spec.zdim)
        return self._zs[list(ids)]

    def _remember(self, key, h: np.ndarray) -> None:
        self._cache[key] = h
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _prefixes(self, keys, zs: np.ndarray) -> list[np.ndarray]:
        """Activations for ``keys`` with latents ``zs``, computing only the uncached ones."""
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            b = _bucket(len(missing))
            z = np.zeros((b, self.spec.zdim), np.float32)
            z[: len(missing)] = zs[missing]
            h = np.asarray(self._prefix(self.params, jax.device_put(z)))
            for j, i in enumerate(missing):
                self._remember(keys[i], h[j])
        out = []
        for k in keys:
            self._cache.move_to_end(k)
            out.append(self._cache[k])
        return out

    def activations(self, ids=None, zs=None) -> list[np.ndarray]:
        """The layer's activation ``[H, W, C]`` for each latent id (or each latent of ``zs``
        ``[N, Z]``), cached per id (per latent's bytes)."""
        if ids is not None:
            return self._prefixes([("id", int(i)) for i in ids], self._z(ids))
        zs = np.asarray(zs, np.float32)
        if zs.ndim != 2 or zs.shape[1] != self.spec.zdim or not np.all(np.isfinite(zs)):
            raise InputError(
                f"zs: expected finite latents of {self.spec.zdim} numbers each, got shape "
                f"{list(zs.shape)}"
            )
        keys = [("z", hashlib.sha1(z.tobytes()).hexdigest()) for z in zs]
        return self._prefixes(keys, zs)

    def put(self, key, h) -> None:
        """Store activation ``h [H, W, C]`` (or ``[1, H, W, C]``) under ``key`` (any hashable,
        e.g. an uploaded image's id) for :meth:`render` and :meth:`activation`."""
        h = np.asarray(h, np.float32).reshape(-1, *self._hshape())
        if h.shape[0] != 1:
            raise InputError(f"put: one activation of shape {self._hshape()} expected")
        with self.lock:
            self._remember(("key", key), h[0])

    def activation(self, key) -> np.ndarray:
        """The activation stored with :meth:`put` under ``key``."""
        try:
            return self._cache[("key", key)]
        except KeyError:
            raise InputError(f"no activation stored under {key!r}") from None

    def _hshape(self) -> tuple[int, int, int]:
        return (*self.spec.size, self.spec.num_units)

    # ----------------------------------------------------------------------------- render

    def render(self, hs, alpha: np.ndarray, value: np.ndarray, segmentation: bool = False):
        """uint8 images ``[N, R, R, 3]`` from activations ``hs`` (``N`` arrays ``[H, W, C]``)
        under the planes ``alpha, value [H, W, C]``, and with ``segmentation`` the label maps
        ``[N, R, R]`` (object channel) of the edited images, else ``None``."""
        n = len(hs)
        b = _bucket(n)
        h = np.zeros((b, *self._hshape()), np.float32)
        h[:n] = np.stack(hs)
        put = jax.device_put
        images = self._tail(self.params, put(h), put(alpha), put(value))
        labels = None
        if segmentation:
            if self._segment is None:
                raise InputError("segmentation: this server has no segmenter")
            labels = np.asarray(self._segment(images))[:n]
        return draw.to_uint8(np.asarray(images)[:n]), labels

    def generate(self, ids=None, zs=None, alpha=None, value=None, segmentation=False):
        """:meth:`activations` then :meth:`render` under the lock (zero planes: no edit)."""
        if alpha is None:
            alpha = value = np.zeros(self._hshape(), np.float32)
        with self.lock:
            hs = self.activations(ids, zs)
            return self.render(hs, alpha, value, segmentation)

    def warmup(self, show: bool = True) -> None:
        """Compile every batch size's programs now, so no request waits for a compile."""
        zero = np.zeros(self._hshape(), np.float32)
        for b in _progress.bar(BATCHES, "paint: compiling per batch size", disable=not show):
            z = np.zeros((b, self.spec.zdim), np.float32)
            h = self._prefix(self.params, jax.device_put(z))
            images = self._tail(self.params, h, jax.device_put(zero), jax.device_put(zero))
            if self._segment is not None and b == 1:
                self._segment(images).block_until_ready()
            images.block_until_ready()
