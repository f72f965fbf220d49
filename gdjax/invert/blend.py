"""Showing an edit on the user's own picture: the original outside what the edit changed, the
regenerated image inside, joined by a soft mask.

The generator only approximates a real photo, so the edited picture is the *original* wherever
the edit did not act. :func:`change_mask` finds where it acted: where the edited image differs
from the unedited reconstruction by more than ``threshold`` (mean over channels, images in
``[-1, 1]``), together with the painted ``region``, softened by a box blur of ``feather``
pixels and confined to the region grown by ``halo`` pixels (a layer edit reaches a little
beyond its cells through the later convolutions). :func:`blend` then mixes; where the mask is
0 the result is the original, bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["blend", "box_blur", "change_mask", "dilate"]


def box_blur(m: jax.Array, radius: int) -> jax.Array:
    """Mean over a ``(2r+1)^2`` window of ``[N, H, W]`` (edges: window clipped to the image)."""
    if radius <= 0:
        return m
    k = 2 * radius + 1
    pad = [(0, 0), (radius, radius), (radius, radius)]
    ones = jnp.ones_like(m)
    total = jax.lax.reduce_window(jnp.pad(m, pad), 0.0, jax.lax.add, (1, k, k), (1, 1, 1), "VALID")
    count = jax.lax.reduce_window(jnp.pad(ones, pad), 0.0, jax.lax.add, (1, k, k), (1, 1, 1),
                                  "VALID")  # fmt: skip
    return total / count


def dilate(m: jax.Array, radius: int) -> jax.Array:
    """Max over a ``(2r+1)^2`` window of ``[N, H, W]``."""
    if radius <= 0:
        return m
    k = 2 * radius + 1
    pad = [(0, 0), (radius, radius), (radius, radius)]
    return jax.lax.reduce_window(jnp.pad(m, pad), -jnp.inf, jax.lax.max, (1, k, k), (1, 1, 1),
                                 "VALID")  # fmt: skip


def change_mask(
    edited,
    reconstruction,
    region=None,
    *,
    threshold: float = 0.06,
    softness: float = 0.06,
    feather: int = 2,
    halo: int = 8,
) -> jax.Array:
    """Soft mask ``[N, R, R]`` in ``[0, 1]`` of where an edit changed the picture.

    ``edited``, ``reconstruction``: ``[N, R, R, 3]`` in ``[-1, 1]``; ``region``: the painted
    pixels ``[N, R, R]`` or ``[R, R]`` (bool or ``[0, 1]``), or ``None`` for edits over the
    whole map. A pixel's change ``d`` (mean absolute difference over channels) counts as
    ``clip((d - threshold) / softness, 0, 1)``; the painted region counts fully. The mask is
    box-blurred by ``feather`` and, with a region, zero farther than ``halo`` pixels from it.
    """
    edited = jnp.asarray(edited, jnp.float32)
    d = jnp.mean(jnp.abs(edited - jnp.asarray(reconstruction, jnp.float32)), axis=-1)
    m = jnp.clip((d - threshold) / softness, 0.0, 1.0)
    if region is None:
        return box_blur(m, feather)
    region = jnp.broadcast_to(jnp.asarray(region, jnp.float32), m.shape)
    m = jnp.maximum(box_blur(jnp.maximum(m, region), feather), region)
    return jnp.where(dilate(region, halo) > 0, m, 0.0)


def blend(original, edited, mask) -> np.ndarray:
    """``mask * edited + (1 - mask) * original`` ``[N, R, R, 3]``; exactly ``original`` where
    ``mask == 0`` and exactly ``edited`` where ``mask == 1``."""
    original = np.asarray(original, np.float32)
    edited = np.asarray(edited, np.float32)
    m = np.asarray(mask, np.float32)[..., None]
    mixed = m * edited + (1.0 - m) * original
    return np.where(m == 0, original, np.where(m == 1, edited, mixed))
