"""The paint server's model side: one generator split at the edited layer, a cache of each
image's activation there, and the rest of the network compiled once per batch size.

A stroke changes only the two planes ``(alpha, value) [H, W, C]`` that
:func:`gdjax.app.api.planes` composes, so every request with the same number of images runs
the same compiled program whatever its strokes and units. Images are identified by a key: a
latent id of the seed-1 set (as the dissection and the reference server), an explicit latent,
or any activation put there with :meth:`Engine.put` (e.g. an inverted real image), so the
engine can start from a layer representation rather than only a latent. An activation put with
the picture it was inverted from is shown as that picture wherever an edit changes nothing
(:mod:`gdjax.invert.blend`, as :func:`gdjax.invert.edit`); integer keys from
:data:`gdjax.app.api.UPLOAD_ID0` up are accepted as ``ids`` like latent ids.
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
from gdjax.invert import blend
from gdjax.invert import image as imagelib
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


def _entry(h, carry):
    """What the tail resumes from: ``h`` alone when there is no carry (PGGAN), else the pair."""
    return h if carry is None else (h, carry)


def _resume(entry, layer: str, edit):
    """``edits.tail``'s arguments after ``(module, params)`` for an :func:`_entry`."""
    h, carry = entry if isinstance(entry, tuple) else (entry, None)
    return h, layer, edit, carry


def _bucket(n: int) -> int:
    for b in BATCHES:
        if n <= b:
            return b
    raise InputError(f"at most {BATCHES[-1]} images per request, got {n}")


class Engine:
    """Generates edited images from cached activations of ``layer``; thread-safe (one lock).

    ``module, params``: a PGGAN or StyleGAN2 generator; ``seg``: an optional
    :class:`gdjax.models.segmenter.Segmenter` for segmentation overlays; ``levels``: the
    layer's :class:`LevelTable`; ``cache_size``: latents' activations kept (least recently
    used go); ``stored``: activations kept from :meth:`put` (the oldest go).
    """

    def __init__(self, module, params, layer: str, *, levels: LevelTable, seg=None,
                 cache_size: int = 1024, stored: int = 256):  # fmt: skip
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
        # put(): key -> (h [H, W, C], original picture uint8 [R, R, 3] or None,
        #                unedited reconstruction [R, R, 3] in [-1, 1] or None)
        self._stored: collections.OrderedDict[object, tuple] = collections.OrderedDict()
        self._stored_size = stored
        self._change = jax.jit(blend.change_mask)
        # An "entry" is what the tail resumes from: the activation, or for a generator that
        # needs more (a StyleGAN2: its latents and skip image) the pair (activation, carry).
        self._prefix = jax.jit(
            lambda p, z: _entry(*edits.prefix(module, p, z, layer, with_carry=True))
        )
        self._tail = jax.jit(
            lambda p, e, a, v: edits.tail(module, p, *_resume(e, layer, edits.make(layer, a, v)))
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
            e = jax.tree.map(np.asarray, self._prefix(self.params, jax.device_put(z)))
            for j, i in enumerate(missing):
                self._remember(keys[i], jax.tree.map(lambda x, j=j: x[j], e))
        out = []
        for k in keys:
            self._cache.move_to_end(k)
            out.append(self._cache[k])
        return out

    def activations(self, ids=None, zs=None) -> list[np.ndarray]:
        """The layer's activation ``[H, W, C]`` for each latent id (or each latent of ``zs``
        ``[N, Z]``), cached per id (per latent's bytes). Ids from ``MAX_ID`` up name
        activations stored with :meth:`put` (uploaded pictures)."""
        if ids is not None:
            ids = [int(i) for i in ids]
            unknown = sorted({i for i in ids if i >= MAX_ID and i not in self._stored})
            if unknown:
                raise InputError(
                    f"ids {unknown}: no uploaded picture has this id (ids below {MAX_ID} are "
                    f"latents; the last {self._stored_size} uploads are kept)"
                )
            lat = sorted({i for i in ids if i < MAX_ID})
            got = dict(zip(lat, self._prefixes([("id", i) for i in lat], self._z(lat)) if lat
                           else [], strict=True))  # fmt: skip
            return [got[i] if i < MAX_ID else self._stored[i][0] for i in ids]
        zs = np.asarray(zs, np.float32)
        if zs.ndim != 2 or zs.shape[1] != self.spec.zdim or not np.all(np.isfinite(zs)):
            raise InputError(
                f"zs: expected finite latents of {self.spec.zdim} numbers each, got shape "
                f"{list(zs.shape)}"
            )
        keys = [("z", hashlib.sha1(z.tobytes()).hexdigest()) for z in zs]
        return self._prefixes(keys, zs)

    def put(self, key, h, original=None, carry=None) -> np.ndarray | None:
        """Store activation ``h [H, W, C]`` (or ``[1, H, W, C]``) under ``key`` (any hashable,
        e.g. an uploaded image's id) for :meth:`render` and :meth:`activation`.

        ``carry``: for a generator that resumes from more than the activation (a StyleGAN2),
        what ``edits.prefix(..., with_carry=True)`` returns with it, for this one image
        (leading axis 1).

        ``original``: the picture ``h`` was inverted from (uint8 ``[R, R, 3]``, or floats in
        ``[-1, 1]``); :meth:`generate` then shows it wherever an edit changes nothing. Returns
        the unedited reconstruction (uint8 ``[R, R, 3]``) when ``original`` is given."""
        h = np.asarray(h, np.float32).reshape(-1, *self._hshape())
        if h.shape[0] != 1:
            raise InputError(f"put: one activation of shape {self._hshape()} expected")
        if edits.needs_carry(self.module) and carry is None:
            raise InputError("put: this generator resumes from an activation and its carry")
        entry = _entry(h[0], None if carry is None else jax.tree.map(lambda x: x[0], carry))
        if original is not None:
            original = np.asarray(original)
            if original.dtype != np.uint8:
                original = imagelib.to_uint8(imagelib.check_array(original, self.resolution)[0])
            if original.shape != (self.resolution, self.resolution, 3):
                raise InputError(f"put: original of shape {original.shape}; expected "
                                 f"[{self.resolution}, {self.resolution}, 3]")  # fmt: skip
        with self.lock:
            recon = None
            if original is not None:
                zero = np.zeros(self._hshape(), np.float32)
                recon = np.asarray(self._tail_padded([entry], zero, zero))[0]
            self._stored[key] = (entry, original, recon)
            self._stored.move_to_end(key)
            while len(self._stored) > self._stored_size:
                self._stored.popitem(last=False)
        return None if recon is None else draw.to_uint8(recon)

    def activation(self, key) -> np.ndarray:
        """What :meth:`put` stored under ``key``, as :meth:`render` takes it (the activation
        ``[H, W, C]``, or with a carry the pair ``(activation, carry)``)."""
        try:
            return self._stored[key][0]
        except KeyError:
            raise InputError(f"no activation stored under {key!r}") from None

    def _hshape(self) -> tuple[int, int, int]:
        return (*self.spec.size, self.spec.num_units)

    # ----------------------------------------------------------------------------- render

    def _tail_padded(self, hs, alpha, value) -> jax.Array:
        n, b = len(hs), _bucket(len(hs))

        def pad(*xs):
            x = np.stack(xs)
            return np.concatenate([x, np.zeros((b - n, *x.shape[1:]), x.dtype)])

        put = jax.device_put
        return self._tail(self.params, put(jax.tree.map(pad, *hs)), put(alpha), put(value))

    def render(self, hs, alpha: np.ndarray, value: np.ndarray, segmentation: bool = False,
               originals=None, region=None):  # fmt: skip
        """uint8 images ``[N, R, R, 3]`` from activations ``hs`` (``N`` arrays ``[H, W, C]``, or
        ``(activation, carry)`` pairs for a generator that needs them, as :meth:`activations`)
        under the planes ``alpha, value [H, W, C]``, and with ``segmentation`` the label maps
        ``[N, R, R]`` (object channel) of the edited images, else ``None``.

        ``originals``: per image ``None`` or ``(picture uint8 [R, R, 3], reconstruction
        [R, R, 3])`` as :meth:`put` keeps them; such an image is the picture outside
        :func:`gdjax.invert.blend.change_mask` of the edit (with the painted ``region [R, R]``,
        ``None`` for edits over the whole map) and the regenerated image inside."""
        n = len(hs)
        images = self._tail_padded(hs, alpha, value)
        rows = [i for i, o in enumerate(originals or ()) if o is not None]
        out = draw.to_uint8(np.asarray(images)[:n])
        if rows:
            edited = np.asarray(images)
            recon = edited.copy()
            for i in rows:
                recon[i] = originals[i][1]
            put = jax.device_put
            reg = None if region is None else put(np.asarray(region, np.float32))
            mask = np.asarray(self._change(images, put(recon), reg))
            for i in rows:
                pic = originals[i][0]
                mixed = blend.blend(pic.astype(np.float32) / 127.5 - 1.0, edited[i : i + 1],
                                    mask[i : i + 1])[0]  # fmt: skip
                # Where the mask is 0 the picture's own bytes, not a float round trip.
                out[i] = np.where(mask[i, :, :, None] == 0, pic, draw.to_uint8(mixed))
            shown = edited.copy()  # segment what is shown
            shown[rows] = out[rows].astype(np.float32) / 127.5 - 1.0
            images = put(shown)
        labels = None
        if segmentation:
            if self._segment is None:
                raise InputError("segmentation: this server has no segmenter")
            labels = np.asarray(self._segment(images))[:n]
        return out, labels

    def generate(self, ids=None, zs=None, alpha=None, value=None, segmentation=False,
                 region=None):  # fmt: skip
        """:meth:`activations` then :meth:`render` under the lock (zero planes: no edit);
        ``region [R, R]``: the painted pixels, for images put with their picture."""
        if alpha is None:
            alpha = value = np.zeros(self._hshape(), np.float32)
        with self.lock:
            hs = self.activations(ids, zs)
            originals = None
            if ids is not None:
                originals = [self._stored[int(i)][1:] if int(i) >= MAX_ID
                             and self._stored[int(i)][1] is not None else None
                             for i in ids]  # fmt: skip
            return self.render(hs, alpha, value, segmentation, originals, region)

    def warmup(self, show: bool = True) -> None:
        """Compile every batch size's programs now, so no request waits for a compile."""
        zero = np.zeros(self._hshape(), np.float32)
        for b in _progress.bar(BATCHES, "paint: compiling per batch size", disable=not show):
            z = np.zeros((b, self.spec.zdim), np.float32)
            e = self._prefix(self.params, jax.device_put(z))
            images = self._tail(self.params, e, jax.device_put(zero), jax.device_put(zero))
            if self._segment is not None and b == 1:
                self._segment(images).block_until_ready()
            images.block_until_ready()
