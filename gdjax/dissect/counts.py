"""Counts behind IoU and the information quality ratio (IQR), streamed over images.

One state serves both stages of the reference (reference §3.4, §3.5): the IQR threshold search
(``T = 100`` candidate thresholds per unit) and the final IoU (``T = 1``: the unit's level).
Per image, each pixel's upsampled activation ``a[p, u]`` is reduced to ``k[p, u]``, the number of
the unit's thresholds it exceeds (strict ``>``, as the reference). Thresholds are non-increasing
along ``T`` (``tau[u, j] = Q_u(1 - f_j)`` for increasing ``f_j``), so "exceeds threshold ``j``"
is ``k >= T - j``, and counting ``k`` in ``T + 1`` bins replaces ``T`` indicator counts: the work
per image is ``P * K * C`` scatter-adds instead of ``P * K * C * T`` (or a ``[P, L]`` by
``[P, C * T]`` matmul). Threshold counts are recovered by a reverse cumulative sum in the
finalize (:mod:`.scores`). With many thresholds, ``k`` comes from three lookups in a radix
table on the value's order key (:func:`threshold_table`). A batch is counted unit by unit in a
``fori_loop``: the unit's activations are upsampled there (``transform``), and its counters
(a contiguous ``[L, T + 1]`` row of the unit-major ``label_hist``) stay in cache while every
pixel of the batch is added; on CPU this is several times faster than one scatter over all
units, and no upsampled batch of all units is ever materialised.

Category semantics reproduced (reference §3.4.2, §3.5, §9b.21-22): a pixel counts for label
``l`` if *any* segmentation channel equals ``l`` (once per pixel); the reference's "label
counts" count every (pixel, channel) occurrence; a category is present in an image if some
label present anywhere in it (label 0 included) maps to it, and then *all* of the image's
pixels count for the category. Labels outside ``[0, L)`` are ignored.

All counts are int32 and sums, so they are exact and bit-identical under any batching or
sharding (``psum`` the states). Overflow: every count is at most ``K * pixels`` seen, so keep
``K * N * H * W < 2**31`` (e.g. 10,000 images of 128x128 with K <= 13 channels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdjax.dissect.quantiles import float_key, host_float_key
from gdjax.dissect.units import fold_units, unit_slices, unit_values

__all__ = [
    "ThresholdCounts",
    "ThresholdTable",
    "counts_init",
    "counts_update",
    "threshold_table",
    "threshold_table_shape",
]


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
    """Many thresholds per unit prepared for lookup (:func:`threshold_table`): a three-level
    radix table on the value's 32-bit order key (16 + 8 + 8 bits).

    Every entry is either a final count ``k >= 0`` (thresholds strictly below any value whose
    key has that prefix) or ``-(b + 1)``: the prefix is shared with a threshold, look in block
    ``b`` of the next level with the next 8 bits.

    top: int32 ``[C, 2**16]``, indexed by the key's top 16 bits.
    mid: int32 ``[C, T, 256]``, blocks for 16-bit prefixes holding a threshold.
    low: int32 ``[C, T, 256]``, blocks for 24-bit prefixes holding a threshold (all final).
    """

    top: jax.Array
    mid: jax.Array
    low: jax.Array


def counts_init(
    num_labels: int, num_categories: int, num_units: int, num_thresholds: int
) -> ThresholdCounts:
    """Zero counts (``L * C * (T + 1)`` must stay below ``2**31``)."""
    bins = num_thresholds + 1
    if num_labels * num_units * bins >= 2**31:
        raise ValueError("label x unit x threshold counters exceed int32 indexing")
    zeros = lambda *shape: jax.device_put(np.zeros(shape, np.int32))  # no compilation
    return ThresholdCounts(
        label_hist=zeros(num_units, num_labels, bins),
        cat_hist=zeros(num_categories, num_units, bins),
        all_hist=zeros(num_units, bins),
        label_channels=zeros(num_labels),
        label_pixels=zeros(num_labels),
        cat_pixels=zeros(num_categories),
        num_pixels=zeros(),
    )


def threshold_table_shape(num_units: int, num_thresholds: int) -> ThresholdTable:
    """The shapes (``jax.ShapeDtypeStruct``) of :func:`threshold_table`'s result, e.g. to
    compile a counting pass before the thresholds are known."""
    block = jax.ShapeDtypeStruct((num_units, num_thresholds, 256), jnp.int32)
    return ThresholdTable(jax.ShapeDtypeStruct((num_units, 2**16), jnp.int32), block, block)


def threshold_table(thresholds: np.ndarray) -> ThresholdTable:
    """Host-side preparation of ``thresholds`` (float32 ``[C, T]``, any order) for
    :func:`counts_update`: a value's exceeded count becomes three table lookups (no search)."""
    keys = np.sort(host_float_key(thresholds), axis=1).astype(np.int64)  # [C, T]
    num_units, num = keys.shape
    top = np.empty((num_units, 2**16), np.int32)
    mid = np.zeros((num_units, num, 256), np.int32)
    low = np.zeros((num_units, num, 256), np.int32)
    digits = np.arange(256, dtype=np.int64)
    for u, k in enumerate(keys):
        below = lambda q, k=k: np.searchsorted(k, q, side="left")  # noqa: E731
        top[u] = below(np.arange(2**16, dtype=np.int64) << 16)
        p16 = np.unique(k >> 16)
        top[u, p16] = -1 - np.arange(p16.size)
        mid[u, : p16.size] = below((p16[:, None] << 16) | (digits << 8))
        p24 = np.unique(k >> 8)
        mid[u, np.searchsorted(p16, p24 >> 8), p24 & 255] = -1 - np.arange(p24.size)
        low[u, : p24.size] = below((p24[:, None] << 8) | digits)
    return ThresholdTable(top, mid, low)


def _unit_exceeded(values: jax.Array, thresholds) -> jax.Array:
    """Thresholds of one unit each value strictly exceeds: int32 ``[P]``. ``values`` float32
    ``[P]``; ``thresholds`` float32 ``[T]`` or one unit's rows of a :class:`ThresholdTable`."""
    if not isinstance(thresholds, ThresholdTable):
        return jnp.sum(values[:, None] > thresholds[None, :], axis=-1, dtype=jnp.int32)
    key = float_key(values)
    entry = jnp.take(thresholds.top, (key >> 16).astype(jnp.int32), mode="clip")
    for table, shift in ((thresholds.mid, 8), (thresholds.low, 0)):
        digit = ((key >> shift) & jnp.uint32(255)).astype(jnp.int32)
        block = jnp.maximum(-1 - entry, 0)
        entry = jnp.where(entry < 0, table.at[block, digit].get(mode="clip"), entry)
    return entry


def exceeded(acts: jax.Array, thresholds) -> jax.Array:
    """Number of thresholds each activation strictly exceeds: int32 ``[C, P]`` (unit-major).

    ``acts`` float32 ``[P, C]``; ``thresholds``: float32 ``[C, T]`` (direct comparisons, for a
    few thresholds; the final pass has one) or a :class:`ThresholdTable`.
    """
    return jax.vmap(_unit_exceeded)(acts.T, thresholds)


def counts_update(
    state: ThresholdCounts,
    acts: jax.Array,
    seg: jax.Array,
    thresholds: jax.Array | ThresholdTable,
    label_category: jax.Array,
    transform: Callable[[jax.Array], jax.Array] | None = None,
    group: int | None = None,
) -> ThresholdCounts:
    """Adds a batch.

    acts: float32 ``[B, H, W, C]``, activations upsampled to the segmentation grid; or raw
      ``[B, h, w, C]`` with ``transform`` the upsampling of one unit's ``[B, h, w, 1]``
      (:func:`gdjax.dissect.units.unit_values`), so only one unit is ever upsampled at a time.
    seg: int32 ``[B, H, W, K]``, label per pixel and channel (0 = none), labels in ``[0, L)``.
    thresholds: float32 ``[C, T]``, non-increasing along ``T`` (``[C, 1]`` levels for the
      final IoU), or for many thresholds their :func:`threshold_table` (same counts, faster).
    label_category: int32 ``[L]``, category of each label in ``[0, G)`` (label 0 and labels of
      unknown category: category 0, as the reference).

    Units are counted in a loop, ``group`` per step (:func:`.units.fold_units`; on CPU one
    at a time), each into its own contiguous counters.
    """
    num_units, num_labels, bins = state.label_hist.shape
    num_cats = state.cat_pixels.shape[0]
    batch, height, width, channels = seg.shape
    pixels = height * width
    seg = seg.reshape(batch * pixels, channels)
    in_range = (seg >= 0) & (seg < num_labels)
    seg = jnp.where(in_range, seg, 0)
    # A pixel counts once for a label however many channels carry it.
    first = in_range
    for ch in range(1, channels):
        dup = jnp.any((seg[:, :ch] == seg[:, ch : ch + 1]) & in_range[:, :ch], axis=1)
        first = first.at[:, ch].set(in_range[:, ch] & ~dup)
    # Label bins of every (pixel, channel); pixels not counted for a channel go past the end.
    label_bin = jnp.where(first, seg * bins, num_labels * bins)  # [P, K]
    # Categories present in each image (any label in any channel, label 0 included).
    cats = label_category[seg].reshape(batch, pixels * channels)
    present = jax.vmap(
        lambda c, m: jnp.zeros(num_cats, jnp.int32).at[c].add(m.astype(jnp.int32)) > 0
    )(cats, in_range.reshape(batch, pixels * channels))  # [B, G]
    image_bin = jnp.repeat(jnp.arange(batch, dtype=jnp.int32) * bins, pixels)  # [P]
    slices = unit_slices(acts)

    def one_unit(u, rows):
        label_row, cat_row, all_row = rows  # [L, T + 1], [G, T + 1], [T + 1]
        unit_t = jax.tree.map(
            lambda a: jax.lax.dynamic_index_in_dim(a, u, keepdims=False), thresholds
        )
        k = _unit_exceeded(unit_values(slices, u, transform), unit_t)  # [P]
        label_row = label_row.reshape(-1)
        for ch in range(channels):
            label_row = label_row.at[label_bin[:, ch] + k].add(1, mode="drop")
        if bins == 2:  # one threshold: a sum per image, no scatter
            above = jnp.sum(k.reshape(batch, pixels), axis=1, dtype=jnp.int32)
            hist = jnp.stack([pixels - above, above], axis=1)  # [B, 2]
        else:
            hist = jnp.zeros(batch * bins, jnp.int32).at[image_bin + k].add(1)
            hist = hist.reshape(batch, bins)
        cat_add = jnp.sum(jnp.where(present[:, :, None], hist[:, None, :], 0), axis=0)
        return (
            label_row.reshape(num_labels, bins),
            cat_row + cat_add,
            all_row + jnp.sum(hist, axis=0),
        )

    label_hist, cat_hist, all_hist = fold_units(
        num_units,
        one_unit,
        (state.label_hist, jnp.swapaxes(state.cat_hist, 0, 1), state.all_hist),
        group,
    )
    cat_hist = jnp.swapaxes(cat_hist, 0, 1)
    flat_seg = seg.reshape(-1)
    return ThresholdCounts(
        label_hist=label_hist,
        cat_hist=cat_hist,
        all_hist=all_hist,
        label_channels=state.label_channels.at[flat_seg].add(
            in_range.reshape(-1).astype(jnp.int32)
        ),
        label_pixels=state.label_pixels.at[flat_seg].add(first.reshape(-1).astype(jnp.int32)),
        cat_pixels=state.cat_pixels + jnp.sum(present, axis=0, dtype=jnp.int32) * pixels,
        num_pixels=state.num_pixels + batch * pixels,
    )
