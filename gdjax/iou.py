"""Counts behind IoU and the information quality ratio (IQR), streamed over images.

One state serves both stages of the reference (REFERENCE §3.4, §3.5): the IQR threshold search
(``T = 100`` candidate thresholds per unit) and the final IoU (``T = 1``: the unit's level).
Per image, each pixel's upsampled activation ``a[p, u]`` is reduced to ``k[p, u]``, the number of
the unit's thresholds it exceeds (strict ``>``, as the reference). Thresholds are non-increasing
along ``T`` (``tau[u, j] = Q_u(1 - f_j)`` for increasing ``f_j``), so "exceeds threshold ``j``"
is ``k >= T - j``, and counting ``k`` in ``T + 1`` bins replaces ``T`` indicator counts: the work
per image is ``P * K * C`` scatter-adds instead of ``P * K * C * T`` (or a ``[P, L]`` by
``[P, C * T]`` matmul). Threshold counts are recovered by a reverse cumulative sum in the
finalize (:mod:`gdjax.scores`). With many thresholds, ``k`` comes from a lookup table on the
value's top 16 key bits and a search among the few thresholds in that bin
(:func:`threshold_table`), and scatters run unit by unit into a unit-major ``label_hist``.

Category semantics reproduced (REFERENCE §3.4.2, §3.5, §9b.21-22): a pixel counts for label
``l`` if *any* segmentation channel equals ``l`` (once per pixel); the reference's "label
counts" count every (pixel, channel) occurrence; a category is present in an image if some
label present anywhere in it (label 0 included) maps to it, and then *all* of the image's
pixels count for the category. Labels outside ``[0, L)`` are ignored.

All counts are int32 and sums, so they are exact and bit-identical under any batching or
sharding (``psum`` the states). Overflow: every count is at most ``K * pixels`` seen, so keep
``K * N * H * W < 2**31`` (e.g. 10,000 images of 128x128 with K <= 13 channels).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdjax.stats import float_key, host_float_key

__all__ = ["ThresholdCounts", "ThresholdTable", "counts_init", "counts_update", "threshold_table"]


class ThresholdCounts(NamedTuple):
    """Fixed-shape counts for ``L`` labels, ``G`` categories, ``C`` units, ``T`` thresholds.

    label_hist: int32 ``[C, L, T + 1]`` (unit-major, so each unit's counters are contiguous),
      pixels carrying label ``l`` (in any channel) whose unit-``u`` activation exceeds exactly
      ``k`` of the unit's thresholds.
    cat_hist: int32 ``[G, C, T + 1]``, the same over all pixels of images where category ``g``
      is present.
    all_hist: int32 ``[C, T + 1]``, the same over all pixels.
    label_channels: int32 ``[L]``, (pixel, channel) occurrences of each label (the reference's
      ``label_counts`` / ``label_fracs`` numerator; label 0 usually exceeds the pixel count).
    label_pixels: int32 ``[L]``, pixels where any channel equals ``l``.
    cat_pixels: int32 ``[G]``, pixels of images where category ``g`` is present
      (the reference's ``total_counts``).
    num_pixels: int32 ``[]``, all pixels seen.
    """

    label_hist: jax.Array
    cat_hist: jax.Array
    all_hist: jax.Array
    label_channels: jax.Array
    label_pixels: jax.Array
    cat_pixels: jax.Array
    num_pixels: jax.Array


class ThresholdTable(NamedTuple):
    """Many thresholds per unit prepared for lookup (:func:`threshold_table`).

    lo: int32 ``[C, 2**16]``, per top-16-bit key bin, the number of distinct threshold keys
      below the bin.
    keys: uint32 ``[C, D + W]``, each unit's distinct threshold keys ascending (``D <= T`` the
      most of any unit), padded with ``0xFFFFFFFF``; ``W = 2**m - 1`` covers the most distinct
      keys sharing one bin, searched with ``m`` probes per value.
    below: int32 ``[C, D + 1]``, ``below[u, i]``: thresholds whose key is below ``keys[u, i]``
      (``T`` past the unit's last distinct key).
    """

    lo: jax.Array
    keys: jax.Array
    below: jax.Array


def counts_init(
    num_labels: int, num_categories: int, num_units: int, num_thresholds: int
) -> ThresholdCounts:
    """Zero counts (``L * C * (T + 1)`` must stay below ``2**31``)."""
    bins = num_thresholds + 1
    if num_labels * num_units * bins >= 2**31:
        raise ValueError("label x unit x threshold counters exceed int32 indexing")
    zeros = lambda *shape: jnp.asarray(np.zeros(shape, np.int32))  # no compilation per shape
    return ThresholdCounts(
        label_hist=zeros(num_units, num_labels, bins),
        cat_hist=zeros(num_categories, num_units, bins),
        all_hist=zeros(num_units, bins),
        label_channels=zeros(num_labels),
        label_pixels=zeros(num_labels),
        cat_pixels=zeros(num_categories),
        num_pixels=zeros(),
    )


def threshold_table(thresholds: np.ndarray) -> ThresholdTable:
    """Host-side preparation of ``thresholds`` (float32 ``[C, T]``, any order) for
    :func:`counts_update`: a value's exceeded count becomes one table lookup and a binary search
    among the few distinct thresholds sharing its 16-bit key bin, instead of a search over
    ``T``."""
    keys = np.sort(host_float_key(thresholds), axis=1)  # [C, T]
    num_units, num = keys.shape
    distinct = [np.unique(k) for k in keys]
    bins = [np.bincount((d >> 16).astype(np.int64), minlength=2**16) for d in distinct]
    most = max(1, max(int(b.max()) for b in bins))
    window = 2 ** (most + 1).bit_length() - 1  # a binary search of log2(window + 1) probes
    size = max(d.size for d in distinct)
    padded = np.full((num_units, size + window), 0xFFFFFFFF, np.uint32)
    below = np.full((num_units, size + 1), num, np.int32)
    lo = np.empty((num_units, 2**16), np.int32)
    for u, (d, b) in enumerate(zip(distinct, bins, strict=True)):
        padded[u, : d.size] = d
        below[u, : d.size] = np.searchsorted(keys[u], d, side="left")
        lo[u, 0], lo[u, 1:] = 0, np.cumsum(b)[:-1]
    return ThresholdTable(lo, padded, below)


def exceeded(acts: jax.Array, thresholds) -> jax.Array:
    """Number of thresholds each activation strictly exceeds: int32 ``[C, P]`` (unit-major).

    ``acts`` float32 ``[P, C]``; ``thresholds``: float32 ``[C, T]`` (direct comparisons, for a
    few thresholds; the final pass has one) or a :class:`ThresholdTable`.
    """
    if not isinstance(thresholds, ThresholdTable):
        return jnp.sum(acts.T[:, :, None] > thresholds[:, None, :], axis=-1, dtype=jnp.int32)
    key = float_key(acts).T  # [C, P]
    units = jnp.arange(key.shape[0], dtype=jnp.int32)[:, None]
    window = thresholds.keys.shape[1] - (thresholds.below.shape[1] - 1)
    base = thresholds.lo[units, (key >> 16).astype(jnp.int32)]
    # Binary search among the (sorted, padded) keys of the value's bin.
    index = base
    for probe in reversed(range((window + 1).bit_length() - 1)):
        step = 1 << probe
        index = index + jnp.where(thresholds.keys[units, index + step - 1] < key, step, 0)
    return thresholds.below[units, index]


def _add_image(
    state: ThresholdCounts,
    acts: jax.Array,
    seg: jax.Array,
    thresholds,
    label_category: jax.Array,
) -> ThresholdCounts:
    """Adds one image: ``acts`` float32 ``[H, W, C]``, ``seg`` int32 ``[H, W, K]``."""
    num_units, num_labels, bins = state.label_hist.shape
    num_cats = state.cat_pixels.shape[0]
    height, width, channels = seg.shape
    pixels = height * width
    k = exceeded(acts.reshape(pixels, num_units), thresholds)  # [C, P]
    seg = seg.reshape(pixels, channels)
    in_range = (seg >= 0) & (seg < num_labels)
    seg = jnp.where(in_range, seg, 0)
    # A pixel counts once for a label however many channels carry it.
    first = in_range
    for ch in range(1, channels):
        dup = jnp.any((seg[:, :ch] == seg[:, ch : ch + 1]) & in_range[:, :ch], axis=1)
        first = first.at[:, ch].set(in_range[:, ch] & ~dup)

    units = jnp.arange(num_units, dtype=jnp.int32)[:, None]
    unit_bin = units * (num_labels * bins) + k  # [C, P]
    label_hist = state.label_hist.reshape(-1)
    for ch in range(channels):
        # Scatter channel by channel, unit by unit: one unit's counters stay in cache.
        flat = unit_bin + seg[None, :, ch] * bins
        flat = jnp.where(first[None, :, ch], flat, label_hist.size)
        label_hist = label_hist.at[flat.reshape(-1)].add(1, mode="drop")

    if bins == 2:  # one threshold: a sum, no scatter
        above = jnp.sum(k, axis=1, dtype=jnp.int32)
        hist = jnp.stack([pixels - above, above], axis=1)
    else:
        hist = jnp.zeros(num_units * bins, jnp.int32).at[(units * bins + k).reshape(-1)].add(1)
        hist = hist.reshape(num_units, bins)
    flat_seg = seg.reshape(-1)
    cats = label_category[flat_seg]
    present = jnp.zeros(num_cats, jnp.int32).at[cats].add(in_range.reshape(-1).astype(jnp.int32))
    present = present > 0
    cat_add = jnp.where(present[:, None, None], hist[None, :, :], 0)
    return ThresholdCounts(
        label_hist=label_hist.reshape(state.label_hist.shape),
        cat_hist=state.cat_hist + cat_add,
        all_hist=state.all_hist + hist,
        label_channels=state.label_channels.at[flat_seg].add(
            in_range.reshape(-1).astype(jnp.int32)
        ),
        label_pixels=state.label_pixels.at[flat_seg].add(first.reshape(-1).astype(jnp.int32)),
        cat_pixels=state.cat_pixels + present.astype(jnp.int32) * pixels,
        num_pixels=state.num_pixels + pixels,
    )


def counts_update(
    state: ThresholdCounts,
    acts: jax.Array,
    seg: jax.Array,
    thresholds: jax.Array | ThresholdTable,
    label_category: jax.Array,
) -> ThresholdCounts:
    """Adds a batch.

    acts: float32 ``[B, H, W, C]``, activations already upsampled to the segmentation grid
      (:func:`gdjax.upsample.upsample`).
    seg: int32 ``[B, H, W, K]``, label per pixel and channel (0 = none), labels in ``[0, L)``.
    thresholds: float32 ``[C, T]``, non-increasing along ``T`` (``[C, 1]`` levels for the
      final IoU), or for many thresholds their :func:`threshold_table` (same counts, faster).
    label_category: int32 ``[L]``, category of each label in ``[0, G)`` (label 0 and labels of
      unknown category: category 0, as the reference).

    Images are folded in one at a time with ``lax.scan`` rather than ``vmap``: a per-image
    partial ``label_hist`` would cost ``B`` times its (possibly 350 MB) size.
    """

    def step(carry, image):
        return _add_image(carry, image[0], image[1], thresholds, label_category), None

    state, _ = jax.lax.scan(step, state, (acts, seg))
    return state
