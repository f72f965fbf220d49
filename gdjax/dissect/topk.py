"""Per-unit top-k images by spatial max, as an ``(init, update, merge)`` triple.

Every update is a total-order merge, so the result is bit-identical however the images are split
into batches or shards (a data-parallel caller ``topk_merge``s the states).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TopK", "topk_init", "topk_merge", "topk_update"]


class TopK(NamedTuple):
    """Per-unit top-k images by spatial max.

    values: float32 ``[k, C]``, descending per unit (``-inf`` in unfilled slots).
    index: int32 ``[k, C]``, global image index of each value (``2**31 - 1`` when unfilled).
    Order: larger value first, ties to the lower image index, so the result is a pure function
    of the multiset of (value, index) pairs and :func:`topk_merge` is associative.
    """

    values: jax.Array
    index: jax.Array


def topk_init(k: int, num_units: int) -> TopK:
    """Empty top-k state."""
    return TopK(
        values=jax.device_put(np.full((k, num_units), -np.inf, np.float32)),
        index=jax.device_put(np.full((k, num_units), np.iinfo(np.int32).max, np.int32)),
    )


def topk_merge(a: TopK, b: TopK) -> TopK:
    """Top-k of the union of two states (or of a state and a batch's candidates)."""
    k = a.values.shape[0]
    values = jnp.concatenate([a.values, b.values], axis=0)
    values = jnp.where(values == 0, jnp.float32(0), values)
    index = jnp.concatenate([a.index, b.index], axis=0)
    neg, index = jax.lax.sort((-values, index), dimension=0, num_keys=2)
    return TopK(-neg[:k], index[:k])


def topk_update(state: TopK, acts: jax.Array, index: jax.Array) -> TopK:
    """Adds a batch: ``acts`` float32 ``[B, h, w, C]`` (raw, not upsampled, as the reference's
    ``RunningTopK`` on ``value.view(N, C, -1).max(2)``), ``index`` int32 ``[B]`` global image
    indices. Batches smaller than ``k`` are fine; padding images can be given value ``-inf``.
    """
    peak = jnp.max(acts, axis=(1, 2)).astype(jnp.float32)  # [B, C]
    cand = TopK(peak, jnp.broadcast_to(index.astype(jnp.int32)[:, None], peak.shape))
    return topk_merge(state, cand)
