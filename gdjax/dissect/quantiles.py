"""Streaming per-unit statistics: exact quantiles in bounded memory.

An ``(init, update, finalize)`` triple over fixed-shape pytrees of ``jnp`` arrays, like an optax
transformation: ``update`` is pure, jit-able once per shape, and every accumulation is an
integer sum, so results are bit-identical however the data are split into batches or shards (a
data-parallel caller ``psum``s the histograms). Top-k images are :mod:`.topk`; the
per-unit loop every pass runs is :mod:`.units`.

**Exact quantiles.** The original keeps a randomised KLL sketch whose random bits come from the
unseeded global torch RNG (reference §0.3, §3.2); here quantiles are exact, equal to
``numpy.quantile(values, q, method='hazen')`` (the sketch's own no-compaction closed form),
deterministic, and in memory independent of the number of values. Method: radix selection on
the 32-bit order-preserving key of each float32 value, over several passes of the same data.
Pass 0 histograms the top ``bits[0]`` key bits per unit and counts the values ``n``, which fixes
the wanted order statistics (two per ``q``: the hazen neighbours). Each later pass histograms
the next ``bits[i]`` bits of just the values whose resolved high bits equal a wanted statistic's
prefix, found by one table lookup per earlier pass (:func:`lookup_tables`; no search). After
``sum(bits) == 32`` bits every wanted statistic is known exactly, and the hazen interpolation is
done as NumPy does it. Memory per pass: ``C * R * 2**bits[i]`` int32 counters and as many table
entries (``R = 2 * len(qs)`` targets; ``C * 2**bits[0]`` in pass 0), e.g. 104 MB for C=512,
100 qs, 8 bits. Units are histogrammed one after another in a loop (:func:`.units.fold_units`),
each into its own contiguous row.
Limits: fewer than ``2**31`` values per unit; values float32, not NaN (``-0.0`` and subnormals
count as ``0.0``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from gdjax.dissect.units import fold_units, over_units, unit_slices, unit_values

__all__ = [
    "QuantilePass",
    "QuantileSearch",
    "compile_quantiles",
    "exact_quantiles",
    "float_key",
    "host_float_key",
    "key_to_float",
    "lookup_tables",
    "pass_shapes",
    "quantile_finalize",
    "quantile_init",
    "quantile_refine",
    "quantile_start",
    "quantile_update",
]

DEFAULT_BITS = (16, 8, 8)


def float_key(x: jax.Array) -> jax.Array:
    """Order-preserving uint32 key of float32 values (``a < b`` iff ``key(a) < key(b)``).

    ``-0.0`` and subnormals are mapped to ``+0.0`` first, so that ReLU zeros of either sign are
    one tie and the key does not depend on whether a backend flushes subnormals.
    """
    x = x.astype(jnp.float32)
    x = jnp.where(jnp.abs(x) < np.finfo(np.float32).tiny, jnp.float32(0), x)
    b = jax.lax.bitcast_convert_type(x, jnp.uint32)
    negative = (b >> 31) == 1
    return jnp.where(negative, ~b, b | jnp.uint32(0x80000000))


def host_float_key(x: np.ndarray) -> np.ndarray:
    """:func:`float_key` in NumPy (host side)."""
    x = np.asarray(x, np.float32)
    b = np.where(np.abs(x) < np.finfo(np.float32).tiny, np.float32(0), x).view(np.uint32)
    return np.where((b >> 31) == 1, ~b, b | np.uint32(0x80000000)).astype(np.uint32)


def key_to_float(key: np.ndarray) -> np.ndarray:
    """Inverse of :func:`float_key` (NumPy, host side): uint32 keys -> float32 values."""
    key = np.asarray(key, np.uint32)
    b = np.where((key >> 31) == 1, key & np.uint32(0x7FFFFFFF), ~key).astype(np.uint32)
    return b.view(np.float32)


class QuantilePass(NamedTuple):
    """Device state of one radix pass.

    hist: int32 ``[C, G, 2**bits]``; ``hist[u, g, d]`` counts unit ``u``'s values whose resolved
      high key bits equal the ``g``-th distinct wanted prefix of the unit and whose next ``bits``
      bits are ``d`` (``G = 1`` in pass 0, where nothing is resolved yet).
    count: int32 ``[]``, values seen per unit (the same for every unit).
    """

    hist: jax.Array
    count: jax.Array


class QuantileSearch(NamedTuple):
    """Host state between passes: what is known about each wanted order statistic.

    ranks: int64 ``[R]``, sorted 0-based ranks wanted (the same for every unit).
    prefix: uint32 ``[C, R]``, the resolved high bits of each statistic's key (right-aligned).
    below: int64 ``[C, R]``, number of values whose key's high bits are below ``prefix``.
    widths: bit widths of the passes done so far (``sum(widths) == 32`` when finished).
    n: number of values per unit.
    """

    ranks: np.ndarray
    prefix: np.ndarray
    below: np.ndarray
    widths: tuple[int, ...]
    n: int

    @property
    def done(self) -> int:
        """Key bits resolved so far."""
        return sum(self.widths)


UNITS = PartitionSpec("units")  # a leading unit axis
PASS = QuantilePass(UNITS, PartitionSpec())


def quantile_init(num_units: int, num_groups: int, bits: int) -> QuantilePass:
    """Zero state for a pass with ``num_groups`` prefix groups per unit (1 in pass 0)."""
    if num_units * num_groups * 2**bits >= 2**31:
        raise ValueError(
            f"{num_units} units x {num_groups} prefixes x 2**{bits} bins exceeds int32 indexing;"
            " use fewer bits per pass"
        )
    return QuantilePass(
        hist=jax.device_put(np.zeros((num_units, num_groups, 2**bits), np.int32)),
        count=jax.device_put(np.zeros((), np.int32)),
    )


def _group_ids(prefix: np.ndarray) -> np.ndarray:
    """Index of each (per-unit sorted) prefix among the unit's distinct prefixes: ``[C, R]``."""
    new = np.ones(prefix.shape, bool)
    new[:, 1:] = prefix[:, 1:] != prefix[:, :-1]
    return np.cumsum(new, axis=1) - 1


def lookup_tables(search: QuantileSearch) -> tuple[np.ndarray, ...]:
    """Per resolved pass, a table from that pass's digit to the wanted-prefix group (or -1).

    Level 0: int32 ``[C, 2**widths[0]]`` indexed by the top digit; level ``i > 0``: int32
    ``[C, R, 2**widths[i]]`` indexed by the level-``i-1`` group and the next digit. A value's
    group after the last level is its slot in the pass histogram; -1 (no wanted statistic
    shares its prefix) drops it. Empty before pass 0.
    """
    num_units, num_ranks = search.prefix.shape
    units = np.arange(num_units)[:, None]
    tables, done, group = [], 0, None
    for width in search.widths:
        done += width
        high = search.prefix.astype(np.uint64) >> np.uint64(search.done - done)
        digit = (high & np.uint64(2**width - 1)).astype(np.int64)
        new_group = _group_ids(high)
        if group is None:
            table = np.full((num_units, 2**width), -1, np.int32)
            table[units, digit] = new_group
        else:
            table = np.full((num_units, num_ranks, 2**width), -1, np.int32)
            table[units, group, digit] = new_group
        tables.append(table)
        group = new_group
    return tuple(tables)


def quantile_update(
    state: QuantilePass,
    values: jax.Array,
    tables: tuple[jax.Array, ...] = (),
    transform: Callable[[jax.Array], jax.Array] | None = None,
    group: int | None = None,
) -> QuantilePass:
    """Adds ``values`` (float32 ``[..., C]``, any leading shape) to a pass's histogram.

    ``tables``: :func:`lookup_tables` of the search so far (``()`` in pass 0). ``transform``
    (optional): see :func:`.units.unit_values`, e.g. upsampling raw activations. Bit
    positions follow from the shapes, so passes of equal shapes share one compilation. Units
    are done in a loop (:func:`.units.fold_units`, ``group`` units per step): on CPU one
    at a time, so that one unit's values, table rows and histogram row stay in cache, several
    times faster than one scatter over all units.
    """
    num_units, num_groups, num_bins = state.hist.shape
    bits = num_bins.bit_length() - 1
    slices = unit_slices(values)

    def one_unit(u, hist_row):
        key = float_key(unit_values(slices, u, transform))
        shift = 32
        group = None
        for table in tables:
            width = table.shape[-1].bit_length() - 1
            shift -= width
            digit = ((key >> shift) & jnp.uint32(2**width - 1)).astype(jnp.int32)
            entries = jax.lax.dynamic_index_in_dim(table, u, keepdims=False)
            if group is None:
                group = entries[digit]
            else:
                group = jnp.where(group >= 0, entries[jnp.maximum(group, 0), digit], -1)
        digit = ((key >> (shift - bits)) & jnp.uint32(num_bins - 1)).astype(jnp.int32)
        if group is not None:  # values no wanted statistic shares a prefix with are dropped
            digit = jnp.where(group >= 0, group * num_bins + digit, num_groups * num_bins)
        counts = hist_row.reshape(-1).at[digit].add(1, mode="drop")
        return counts.reshape(num_groups, num_bins)

    hist = fold_units(num_units, one_unit, state.hist, group)
    per_unit = int(np.prod(values.shape[:-1]))
    if transform is not None:
        per_unit = int(np.prod(jax.eval_shape(transform, slices[0][..., None]).shape[:-1]))
    return QuantilePass(hist, state.count + per_unit)


def hazen_positions(n: int, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy's ``method='hazen'`` neighbours: lower rank, upper rank, weight of the upper."""
    virtual = n * np.asarray(qs, np.float64) - 0.5
    lo = np.floor(virtual)
    gamma = virtual - lo
    hi = np.clip(lo + 1, 0, n - 1).astype(np.int64)
    lo = np.clip(lo, 0, n - 1).astype(np.int64)
    return lo, hi, gamma


def quantile_start(n: int, qs: np.ndarray, num_units: int) -> QuantileSearch:
    """The search before any bit is resolved, for ``n`` values per unit (known after pass 0)."""
    if n <= 0:
        raise ValueError("no values")
    lo, hi, _ = hazen_positions(n, qs)
    ranks = np.sort(np.concatenate([lo, hi]))
    shape = (num_units, ranks.size)
    return QuantileSearch(ranks, np.zeros(shape, np.uint32), np.zeros(shape, np.int64), (), n)


def quantile_refine(search: QuantileSearch, state: QuantilePass) -> QuantileSearch:
    """Finalizes a pass: resolves the next ``log2(bins)`` bits of every wanted statistic."""
    hist = np.asarray(state.hist)
    if int(state.count) != search.n:
        raise ValueError(f"pass saw {int(state.count)} values, expected {search.n}")
    num_units, num_groups, num_bins = hist.shape
    bits = num_bins.bit_length() - 1
    group = np.zeros(search.prefix.shape, np.int64) if not search.widths else None
    if group is None:
        group = _group_ids(search.prefix.astype(np.uint64))
    want = search.ranks[None, :] - search.below  # 0-based rank inside the prefix group
    digit = np.empty(want.shape, np.int64)
    before = np.empty(want.shape, np.int64)
    # Per unit, the cumulative counts of its group rows, offset so that they form one sorted
    # array: one search finds every wanted rank's digit.
    offset = (search.n + 1) * np.arange(num_groups, dtype=np.int64)
    for u in range(num_units):
        flat = (np.cumsum(hist[u], axis=-1, dtype=np.int64) + offset[:, None]).reshape(-1)
        pos = np.searchsorted(flat, want[u] + offset[group[u]], side="right")
        digit[u] = pos - group[u] * num_bins
        prev = flat[np.maximum(pos - 1, 0)] - offset[group[u]]
        before[u] = np.where(digit[u] > 0, prev, 0)
    if np.any(digit >= num_bins) or np.any(digit < 0):
        raise ValueError("order statistic not found: did the data change between passes?")
    prefix = (search.prefix.astype(np.uint64) << np.uint64(bits)) | digit.astype(np.uint64)
    return search._replace(
        prefix=prefix.astype(np.uint32),
        below=search.below + before,
        widths=(*search.widths, bits),
    )


def quantile_finalize(search: QuantileSearch, qs: np.ndarray) -> np.ndarray:
    """Exact hazen quantiles from a finished search: float32 ``[C, len(qs)]``."""
    if search.done != 32:
        raise ValueError(f"only {search.done} of 32 key bits resolved")
    values = key_to_float(search.prefix).astype(np.float64)  # [C, R]
    lo, hi, gamma = hazen_positions(search.n, qs)
    a = values[:, np.searchsorted(search.ranks, lo)]
    b = values[:, np.searchsorted(search.ranks, hi)]
    # NumPy's _lerp: interpolate from the nearer neighbour (bit-for-bit its rounding).
    with np.errstate(invalid="ignore"):  # inf - inf, as NumPy
        diff = b - a
        out = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return out.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _update_for(transform: Callable | None):
    """The jitted pass update for ``transform`` (one object per transform: a cache hit for
    every later pass of equal shapes)."""

    def update(state, values, tables):
        specs = (PASS, PartitionSpec(*[None] * (values.ndim - 1), "units"), UNITS)
        one = lambda s, x, t: quantile_update(s, x, t, transform)  # noqa: E731
        return over_units(one, values.shape[-1], specs, PASS)(state, values, tables)

    return jax.jit(update, donate_argnums=0)


def pass_shapes(num_units: int, num_quantiles: int, bits=DEFAULT_BITS) -> list:
    """Per radix pass, ``(state, tables)`` as ``jax.ShapeDtypeStruct`` pytrees."""
    ranks = 2 * num_quantiles
    out, tables = [], ()
    for i, b in enumerate(bits):
        groups = 1 if i == 0 else ranks
        state = QuantilePass(
            jax.ShapeDtypeStruct((num_units, groups, 2**b), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.int32),
        )
        out.append((state, tables))
        shape = (num_units, 2**b) if i == 0 else (num_units, ranks, 2**b)
        tables = (*tables, jax.ShapeDtypeStruct(shape, jnp.int32))
    return out


def compile_quantiles(
    batch: jax.ShapeDtypeStruct,
    num_quantiles: int,
    *,
    bits: tuple[int, ...] = DEFAULT_BITS,
    transform: Callable[[jax.Array], jax.Array] | None = None,
) -> None:
    """Compiles :func:`exact_quantiles`' passes for batches shaped ``batch`` ahead of time
    (e.g. on a thread while the data are still being made)."""
    update = _update_for(transform)
    for state, tables in pass_shapes(batch.shape[-1], num_quantiles, bits):
        update.lower(state, batch, tables).compile()


def exact_quantiles(
    batches_fn: Callable[[], Iterable[jax.Array]],
    qs,
    *,
    bits: tuple[int, ...] = DEFAULT_BITS,
    transform: Callable[[jax.Array], jax.Array] | None = None,
    combine: Callable[[QuantilePass], QuantilePass] | None = None,
) -> np.ndarray:
    """Exact per-unit ``hazen`` quantiles of a re-iterable stream: float32 ``[C, len(qs)]``.

    ``batches_fn()`` must yield the same batches (float32 ``[..., C]``, shapes may vary)
    every time it is called; it is called ``len(bits)`` times (``sum(bits)`` must be 32).
    ``transform`` (optional, traced into the jitted update) maps one unit's slice ``[..., 1]``
    of a yielded batch to its values (:func:`.units.unit_values`).
    Equals ``np.quantile(all_values.reshape(-1, C), qs, axis=0, method='hazen').T``.
    ``combine`` (optional) maps each pass's state to the state of all the data, e.g. the sum
    over processes that each saw a share (:func:`gdjax.distributed.reduce`); each process's
    ``batches_fn()`` then yields its share, and at least one batch.
    """
    if sum(bits) != 32:
        raise ValueError(f"bits {bits} must sum to 32")
    qs = np.atleast_1d(np.asarray(qs, np.float64))
    update = _update_for(transform)
    search = None
    for b in bits:
        state = None
        tables = () if search is None else tuple(jax.device_put(t) for t in lookup_tables(search))
        for batch in batches_fn():
            if state is None:
                num_units = batch.shape[-1]
                groups = 1 if search is None else search.ranks.size
                state = quantile_init(num_units, groups, b)
            # The next batch is read while the last one is counted, no further: dispatch is
            # asynchronous, and unbounded it would hold every batch of the pass in memory.
            state = update(jax.block_until_ready(state), batch, tables)
        if state is None:
            raise ValueError("batches_fn() yielded nothing")
        if combine is not None:
            state = combine(state)
        if search is None:
            search = quantile_start(int(state.count), qs, state.hist.shape[0])
        search = quantile_refine(search, state)
    return quantile_finalize(search, qs)
