"""Counting passes over a :mod:`gdjax.dissect.cache`: batches, checkpoints, compiled programs.

Every dissection statistic is a fold of a jitted ``update`` over the cache's batches
(:func:`counting_pass`), checkpointed at most every few seconds so a killed run resumes
mid-pass with the same bytes. Programs are jitted once per shape at module level
(:func:`threshold_counts`, :func:`main_update`) so :func:`compile_passes` can compile them all
ahead, on a thread, while the networks still run.

Scale-out, with the same bytes as one device in one process: within a process the units are
split over the local devices (:func:`gdjax.dissect.units.over_units`: each device counts its
own units, every unit by the same per-unit program); under ``jax.distributed`` each process
folds its share of the batches (:func:`share_rows`) and the states are combined with integer
sums (and :func:`gdjax.dissect.topk.topk_merge`, a total-order merge). Each process keeps its
own checkpoints: plain ``.npz`` files (orbax's checkpoint manager would make every save a
collective step of all processes).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from gdjax import distributed, progress, rundir
from gdjax.dissect import counts, quantiles, scores
from gdjax.dissect.topk import TopK, topk_init, topk_merge, topk_update
from gdjax.dissect.units import over_units
from gdjax.models.resample import upsample


def batches(arrays: dict, batch_size: int, desc: str, start_at: int = 0, ready=None):
    """``(start, {name: batch})`` from ``start_at`` on; ``ready(stop)`` (optional) is called
    first: it blocks until the rows before ``stop`` exist (arrays still being written on another
    thread), or raises to stop the pass."""
    n = next(iter(arrays.values())).shape[0]
    starts = range(start_at, n, batch_size)
    for start in progress.bar(starts, desc, warmup=start_at == 0):
        stop = min(start + batch_size, n)
        if ready is not None:
            ready(stop)
        yield start, {k: jax.device_put(np.array(v[start:stop])) for k, v in arrays.items()}


def even_batch(n: int, target: int) -> int:
    """The divisor of ``n`` in ``[target / 2, target]`` closest to ``target`` (so every batch of
    a pass has one shape and compiles once), else ``target``; ``n`` itself when it is smaller."""
    if n <= target:
        return max(n, 1)
    for size in range(target, max(target // 2, 1) - 1, -1):
        if n % size == 0:
            return size
    return target


def stats_batch(n: int, grid: tuple[int, int]) -> int:
    """Images per statistics batch for ``n`` images whose units are counted on a ``grid``
    (the segmentation's ``(H, W)``): about ``2**18`` values per unit and batch, so that copying
    a unit's counters in and out of a step (up to ``2**16`` of them) stays small beside its
    scatter; 64 to 256 images, a divisor of ``n`` where one is near (:func:`even_batch`)."""
    return even_batch(n, max(64, min(256, 2**18 // (grid[0] * grid[1]))))


def _named_leaves(state) -> dict:
    """``{"field__subfield": leaf}`` of a pytree of NamedTuples, the keys of a saved state."""
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    name = lambda k: getattr(k, "name", getattr(k, "idx", getattr(k, "key", k)))  # noqa: E731
    return {"__".join(str(name(k)) for k in path): leaf for path, leaf in flat}


def share_rows(n: int, batch_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``n`` whose batches of ``batch_size`` this process folds (all
    of them with one process): a contiguous share of the batches
    (:func:`gdjax.distributed.share`)."""
    first, last = distributed.share(-(-n // batch_size))
    return min(first * batch_size, n), min(last * batch_size, n)


def add(a, b):
    """Leaf-wise sum of two count states (integers: any order gives the same bytes)."""
    return jax.tree.map(lambda x, y: np.asarray(x) + np.asarray(y), a, b)


def _checkpoint_steps(directory: str) -> list[int]:
    if not os.path.isdir(directory):
        return []
    names = os.listdir(directory)
    return sorted(int(d) for d in names if d.isdigit() and os.path.exists(
        os.path.join(directory, d, "state.npz")))  # fmt: skip


def _save(directory: str, step: int, state) -> None:
    """``directory/<step>/state.npz``, made under another name and renamed (a killed save
    leaves no step), then older steps removed."""
    tmp = os.path.join(directory, f".{step}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rundir.write_npz(os.path.join(tmp, "state.npz"), jax.device_get(_named_leaves(state)))
    final = os.path.join(directory, str(step))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in _checkpoint_steps(directory):
        if old != step:
            shutil.rmtree(os.path.join(directory, str(old)), ignore_errors=True)


def _restore(directory: str, step: int, state):
    names = _named_leaves(state)
    with np.load(os.path.join(directory, str(step), "state.npz")) as f:
        leaves = [jax.device_put(f[k]) for k in names]
    return jax.tree.unflatten(jax.tree.structure(state), leaves)


def counting_pass(
    directory, state, update, arrays, batch_size, desc, every, ready=None, combine=add
):
    """Fold ``update(state, start, batch)`` over ``arrays``, saving the state in ``directory``
    after a batch once ``every`` seconds have passed since the last save (0: after every
    batch). ``ready``: see :func:`batches`. Under ``jax.distributed`` each process folds its
    share (:func:`share_rows`, checkpoints in ``directory/process-<p>-of-<P>``) and the
    processes' states are folded with ``combine`` (default :func:`add`)."""
    n = next(iter(arrays.values())).shape[0]
    lo, hi = share_rows(n, batch_size)
    procs = distributed.count()
    if procs > 1:
        directory = os.path.join(directory, f"process-{distributed.index()}-of-{procs}")
        arrays = {k: v[lo:hi] for k, v in arrays.items()}
        if ready is not None:
            ready = (lambda r: lambda stop: r(lo + stop))(ready)
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    steps = _checkpoint_steps(directory)
    done = steps[-1] if steps else 0
    if done:
        state = _restore(directory, done, state)
    last = time.monotonic()
    for start, batch in batches(arrays, batch_size, desc, done, ready):
        # At most two batches in memory: this one, read while the last one is counted.
        state = update(jax.block_until_ready(state), lo + start, batch)
        finished = min(start + batch_size, hi - lo)
        if finished < hi - lo and time.monotonic() - last >= every:
            _save(directory, finished, state)
            last = time.monotonic()
    if procs > 1:
        state = distributed.reduce(jax.device_get(state), combine, desc)
    return state


@functools.cache
def upsampler(grid: tuple[int, int], padding: str = "edge"):
    """Upsampling to ``grid`` (:func:`gdjax.models.resample.upsample` with ``padding``): one
    function object per grid and padding, so jitted passes of equal shapes hit one
    compilation."""
    return functools.partial(upsample, size=grid, padding=padding)


U = PartitionSpec("units")  # leading unit axis
ACTS = PartitionSpec(None, None, None, "units")  # [B, h, w, C]
REPLICATED = PartitionSpec()
COUNTS = counts.ThresholdCounts(
    U, PartitionSpec(None, "units"), U, REPLICATED, REPLICATED, REPLICATED, REPLICATED
)
TOP = TopK(PartitionSpec(None, "units"), PartitionSpec(None, "units"))


@functools.partial(jax.jit, static_argnames="transform", donate_argnums=0)
def _count(state, acts, labels, thresholds, label_category, transform):
    def update(state, acts, labels, thresholds, label_category):
        return counts.counts_update(
            state, acts, labels.astype(jnp.int32), thresholds, label_category, transform
        )

    specs = (COUNTS, ACTS, REPLICATED, U, REPLICATED)
    return over_units(update, acts.shape[-1], specs, COUNTS)(
        state, acts, labels, thresholds, label_category
    )


class MainPass(NamedTuple):
    """State of the main set's one pass: IoU counts at each unit's level, and top-k images."""

    counts: counts.ThresholdCounts
    top: TopK


@functools.partial(jax.jit, static_argnames="transform", donate_argnums=0)
def main_update(state, start, acts, labels, levels, label_category, transform):
    def update(state, start, acts, labels, levels, label_category):
        index = start + jnp.arange(acts.shape[0], dtype=jnp.int32)
        return MainPass(
            counts.counts_update(state.counts, acts, labels.astype(jnp.int32), levels,
                                 label_category, transform),
            topk_update(state.top, acts, index),
        )  # fmt: skip

    spec = MainPass(COUNTS, TOP)
    specs = (spec, REPLICATED, ACTS, REPLICATED, U, REPLICATED)
    return over_units(update, acts.shape[-1], specs, spec)(
        state, start, acts, labels, levels, label_category
    )


def merge_main(a: MainPass, b: MainPass) -> MainPass:
    """Two processes' main-pass states as one: counts added, top-k merged."""
    return MainPass(add(a.counts, b.counts), jax.device_get(topk_merge(a.top, b.top)))


def threshold_counts(
    c, layer: str, thresholds: np.ndarray, label_category: np.ndarray, num_categories: int, *,
    directory: str, batch_size: int, every: float, ready=None, padding: str = "edge",
) -> counts.ThresholdCounts:  # fmt: skip
    """Counts of ``layer``'s upsampled activations over cache ``c`` against ``thresholds``
    (float32 ``[C, T]``), in one checkpointed pass (state in ``directory``); ``ready``: see
    :func:`batches`."""
    up = upsampler(tuple(c.labels.shape[1:3]), padding)
    t = jax.device_put(thresholds) if thresholds.shape[1] <= 4 else jax.tree.map(
        jax.device_put, counts.threshold_table(thresholds)
    )  # fmt: skip
    state = counts.counts_init(len(label_category), num_categories, c.acts[layer].shape[-1],
                            thresholds.shape[1])  # fmt: skip
    cat_of = jax.device_put(np.asarray(label_category, np.int32))
    return counting_pass(
        directory, state, lambda s, _, b: _count(s, b["a"], b["l"], t, cat_of, transform=up),
        {"a": c.acts[layer], "l": c.labels}, batch_size, f"{layer} IQR counts", every, ready,
    )  # fmt: skip


def main_pass(
    c, layer: str, levels: np.ndarray, label_category: np.ndarray, num_categories: int,
    topk: int, *, directory: str, batch_size: int, every: float, ready=None,
    padding: str = "edge",
) -> MainPass:  # fmt: skip
    """IoU counts at each unit's level (float32 ``[C]``) and the top-k images of ``layer`` over
    cache ``c``, in one checkpointed pass; ``ready``: see :func:`batches`."""
    num_units = c.acts[layer].shape[-1]
    state = MainPass(
        counts.counts_init(len(label_category), num_categories, num_units, 1),
        topk_init(topk, num_units),
    )
    up = upsampler(tuple(c.labels.shape[1:3]), padding)
    args = (jax.device_put(np.asarray(levels, np.float32)[:, None]),
            jax.device_put(np.asarray(label_category, np.int32)))  # fmt: skip

    def update(s, start, b):
        return main_update(s, np.int32(start), b["a"], b["l"], *args, transform=up)

    return counting_pass(
        directory, state, update, {"a": c.acts[layer], "l": c.labels}, batch_size,
        f"{layer} IoU counts, top-k", every, ready, merge_main,
    )  # fmt: skip


def compile_passes(shapes, layers, num_labels, num_categories, batch_size, settings):
    """Compiles every statistics pass of ``layers`` ahead (e.g. on a thread while the networks
    run), from :func:`.cache.output_shapes`: quantiles, IQR counts, top-k, IoU counts, as
    ``settings`` (:class:`.settings.Settings`) will run them."""
    acts_shapes, labels = shapes[0], shapes[1]
    labels = jax.ShapeDtypeStruct((batch_size, *labels.shape[1:]), labels.dtype)
    up = upsampler(tuple(labels.shape[1:3]), settings.padding)
    cats = jax.ShapeDtypeStruct((num_labels,), jnp.int32)
    for layer in layers:
        acts = jax.ShapeDtypeStruct((batch_size, *acts_shapes[layer].shape[1:]), jnp.float32)
        num_units = acts.shape[-1]
        init = functools.partial(counts.counts_init, num_labels, num_categories, num_units)
        if settings.iqr_mode:
            num = len(scores.iqr_fractions())
            quantiles.compile_quantiles(acts, num, transform=up)
            t = counts.threshold_table_shape(num_units, num)
            state = jax.eval_shape(functools.partial(init, num))
            _count.lower(state, acts, labels, t, cats, transform=up).compile()
        else:
            raw = settings.quantile_of == "raw"
            quantiles.compile_quantiles(acts, 1, transform=None if raw else up)
        state = jax.eval_shape(
            lambda: MainPass(init(1), topk_init(settings.topk, num_units))  # noqa: B023
        )
        levels = jax.ShapeDtypeStruct((num_units, 1), jnp.float32)
        start = jax.ShapeDtypeStruct((), jnp.int32)
        main_update.lower(state, start, acts, labels, levels, cats, transform=up).compile()
