"""Per-unit loops: every statistics pass visits the units of a batch one group at a time.

On CPU a pass is fastest one unit at a time: the unit's activations are upsampled (any
``transform``) inside the loop and its counters, a contiguous row, stay in cache while every
value of the batch is added; on accelerators all units go in one vectorised step. Any grouping
gives the same result (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

__all__ = [
    "fold_units",
    "over_units",
    "unit_devices",
    "unit_slices",
    "unit_values",
    "units_per_step",
]


def unit_slices(values: jax.Array) -> jax.Array:
    """``[..., C]`` -> ``[C, ...]``: the layout per-unit loops index by unit."""
    return jnp.moveaxis(values, -1, 0)


def unit_values(
    slices: jax.Array, unit: jax.Array, transform: Callable[[jax.Array], jax.Array] | None = None
) -> jax.Array:
    """Flat float32 values of one unit (``unit`` may be traced) from :func:`unit_slices`.

    ``transform`` maps a one-unit batch ``[..., 1]`` to its values ``[..., 1]`` (it must treat
    units independently, as upsampling does), so only one unit's values exist at a time.
    """
    x = jax.lax.dynamic_index_in_dim(slices, unit, keepdims=False)
    if transform is not None:
        x = transform(x[..., None])[..., 0]
    return x.reshape(-1).astype(jnp.float32)


def units_per_step(num_units: int, requested: int | None = None) -> int:
    """How many units a per-unit loop handles per step: ``requested``, else 1 on CPU (each
    unit's counters stay in cache) and all units on accelerators (few large kernels); always a
    divisor of ``num_units``."""
    group = requested or (1 if jax.default_backend() == "cpu" else num_units)
    group = max(1, min(group, num_units))
    while num_units % group:
        group -= 1
    return group


def fold_units(num_units: int, one_unit: Callable, rows, group: int | None = None):
    """``rows`` (a pytree of arrays whose leading axis is the unit) with row ``u`` replaced by
    ``one_unit(u, row_u)`` for every unit: a loop over groups of :func:`units_per_step` units,
    ``vmap`` within a group. Any grouping gives the same result (tested)."""
    group = units_per_step(num_units, group)
    if group == 1:

        def body(u, rows):
            row = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, u, keepdims=False), rows)
            new = one_unit(u, row)
            return jax.tree.map(
                lambda a, n: jax.lax.dynamic_update_index_in_dim(a, n, u, 0), rows, new
            )

        return jax.lax.fori_loop(0, num_units, body, rows)

    def group_body(i, rows):
        start = i * group
        part = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, group), rows)
        new = jax.vmap(one_unit)(start + jnp.arange(group, dtype=jnp.int32), part)
        return jax.tree.map(
            lambda a, n: jax.lax.dynamic_update_slice_in_dim(a, n, start, 0), rows, new
        )

    return jax.lax.fori_loop(0, num_units // group, group_body, rows)


def unit_devices(num_units: int, devices=None) -> list:
    """The local devices a pass of ``num_units`` units is split over: the first ``d`` of
    them, ``d`` the largest device count that divides ``num_units`` (so each device holds
    an equal number of whole units)."""
    devices = list(jax.local_devices() if devices is None else devices)
    d = len(devices)
    while num_units % d:
        d -= 1
    return devices[:d]


def over_units(fn: Callable, num_units: int, in_specs, out_specs, devices=None) -> Callable:
    """``fn`` with its unit axis (named ``'units'`` in the ``PartitionSpec`` pytrees
    ``in_specs`` and ``out_specs``) split over :func:`unit_devices` with ``shard_map``, for
    use inside ``jit``: each device runs ``fn`` on its own units, every unit by the same
    per-unit program as on one device, so any device count gives the same bytes. Fields
    without a unit axis (``PartitionSpec()``) are computed alike on every device. ``fn``
    itself with one device."""
    devices = unit_devices(num_units, devices)
    if len(devices) == 1:
        return fn
    mesh = Mesh(np.asarray(devices), ("units",))
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)
