"""Counts behind IoU and the information quality ratio (IQR), streamed over images.

One state serves both stages of the reference (REFERENCE §3.4, §3.5): the IQR threshold search
(``T = 100`` candidate thresholds per unit) and the final IoU (``T = 1``: the unit's level).
Per image, each pixel's upsampled activation ``a[p, u]`` is reduced to ``k[p, u]``, the number of
the unit's thresholds it exceeds (strict ``>``, as the reference). Thresholds are non-increasing
along ``T`` (``tau[u, j] = Q_u(1 - f_j)`` for increasing ``f_j``), so "exceeds threshold ``j``"
is ``k >= T - j``, and counting ``k`` in ``T + 1`` bins replaces ``T`` indicator counts: the work
per image is ``P * K * C`` scatter-adds instead of ``P * K * C * T`` (or a ``[P, L]`` by
``[P, C * T]`` matmul). Threshold counts are recovered by a reverse cumulative sum in the
finalize (:mod:`gdjax.scores`).

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

__all__ = ["ThresholdCounts", "counts_init", "counts_update"]


class ThresholdCounts(NamedTuple):
    """Fixed-shape counts for ``L`` labels, ``G`` categories, ``C`` units, ``T`` thresholds.

    label_hist: int32 ``[L, C, T + 1]``, pixels carrying label ``l`` (in any channel) whose
      unit-``u`` activation exceeds exactly ``k`` of the unit's thresholds.
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


def counts_init(
    num_labels: int, num_categories: int, num_units: int, num_thresholds: int
) -> ThresholdCounts:
    """Zero counts (``L * C * (T + 1)`` must stay below ``2**31``)."""
    bins = num_thresholds + 1
    if num_labels * num_units * bins >= 2**31:
        raise ValueError("label x unit x threshold counters exceed int32 indexing")
    zeros = lambda *shape: jnp.zeros(shape, jnp.int32)
    return ThresholdCounts(
        label_hist=zeros(num_labels, num_units, bins),
        cat_hist=zeros(num_categories, num_units, bins),
        all_hist=zeros(num_units, bins),
        label_channels=zeros(num_labels),
        label_pixels=zeros(num_labels),
        cat_pixels=zeros(num_categories),
        num_pixels=zeros(),
    )


def exceeded(acts: jax.Array, thresholds: jax.Array) -> jax.Array:
    """Number of thresholds each activation exceeds: int32 ``[P, C]``.

    ``acts`` float32 ``[P, C]``; ``thresholds`` float32 ``[C, T]``, non-increasing along ``T``.
    """
    if thresholds.shape[1] <= 8:
        # A few thresholds (the final pass has one): direct comparisons beat a binary search.
        return jnp.sum(acts[:, :, None] > thresholds[None, :, :], axis=-1, dtype=jnp.int32)
    ascending = thresholds[:, ::-1]
    # side='left' counts thresholds strictly below the value: the reference's strict ``>``.
    k = jax.vmap(lambda t, a: jnp.searchsorted(t, a, side="left", method="scan"), in_axes=(0, 1))(
        ascending, acts
    )
    return k.T.astype(jnp.int32)


def _add_image(
    state: ThresholdCounts,
    acts: jax.Array,
    seg: jax.Array,
    thresholds: jax.Array,
    label_category: jax.Array,
) -> ThresholdCounts:
    """Adds one image: ``acts`` float32 ``[H, W, C]``, ``seg`` int32 ``[H, W, K]``."""
    num_labels, num_units, bins = state.label_hist.shape
    num_cats = state.cat_pixels.shape[0]
    height, width, channels = seg.shape
    pixels = height * width
    k = exceeded(acts.reshape(pixels, num_units), thresholds)  # [P, C]
    seg = seg.reshape(pixels, channels)
    in_range = (seg >= 0) & (seg < num_labels)
    seg = jnp.where(in_range, seg, 0)
    # A pixel counts once for a label however many channels carry it.
    first = in_range
    for ch in range(1, channels):
        dup = jnp.any((seg[:, :ch] == seg[:, ch : ch + 1]) & in_range[:, :ch], axis=1)
        first = first.at[:, ch].set(in_range[:, ch] & ~dup)

    units = jnp.arange(num_units, dtype=jnp.int32)[None, :]
    unit_bin = units * bins + k  # [P, C]
    label_hist = state.label_hist.reshape(-1)
    for ch in range(channels):
        # Scatter channel by channel: only a [P, C] index array is alive at a time.
        flat = seg[:, ch : ch + 1] * (num_units * bins) + unit_bin
        flat = jnp.where(first[:, ch : ch + 1], flat, label_hist.size)
        label_hist = label_hist.at[flat.reshape(-1)].add(1, mode="drop")

    hist = jnp.zeros(num_units * bins, jnp.int32).at[unit_bin.reshape(-1)].add(1)
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
    thresholds: jax.Array,
    label_category: jax.Array,
) -> ThresholdCounts:
    """Adds a batch.

    acts: float32 ``[B, H, W, C]``, activations already upsampled to the segmentation grid
      (:func:`gdjax.upsample.upsample`).
    seg: int32 ``[B, H, W, K]``, label per pixel and channel (0 = none), labels in ``[0, L)``.
    thresholds: float32 ``[C, T]``, non-increasing along ``T``; ``[C, 1]`` levels for the
      final IoU.
    label_category: int32 ``[L]``, category of each label in ``[0, G)`` (label 0 and labels of
      unknown category: category 0, as the reference).

    Images are folded in one at a time with ``lax.scan`` rather than ``vmap``: a per-image
    partial ``label_hist`` would cost ``B`` times its (possibly 350 MB) size.
    """

    def step(carry, image):
        return _add_image(carry, image[0], image[1], thresholds, label_category), None

    state, _ = jax.lax.scan(step, state, (acts, seg))
    return state
