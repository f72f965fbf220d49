"""Generate once, segment once: the per-latent-set cache that dissection passes read.

For one latent set, :func:`collect` runs the generator and the segmenter over every latent
exactly once and keeps the raw activations of the dissected layers (``[N, h, w, C]`` float32,
at the layer's own resolution), the label channels (``[N, H/d, W/d, K]`` int16) and optionally
the images (uint8, for the report's strips) in ``.npy`` memory maps. Every statistics pass
then reads these files instead of re-running the networks.

Batches are spread over all local devices with ``shard_map``; each device runs fixed-size
micro-batches in a ``lax.map``, so an image is computed by the same program whatever the number
of devices, and 1 or 4 devices give the same bytes. After each batch the maps are flushed and
``progress.json`` is replaced atomically, so a run killed at any point (even ``kill -9``)
resumes at the first unfinished batch and ends with the same files.

Under ``jax.distributed`` (:mod:`gdjax.distributed`) the batches are split into one contiguous
share per process; every process writes its rows into the same files (on a file system every
process sees) and keeps its own ``progress-<p>-of-<P>.json``; the files are complete when every
process has finished its share, and equal a one-process run's byte for byte.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gdjax import distributed, progress

PROGRESS = "progress.json"
# Steps each networks program was compiled for in this process (dropped with the program).
_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Cache(NamedTuple):
    """Activations per layer ``{name: [N, h, w, C] float32}``, labels ``[N, H, W, K]`` and,
    when the model function returns them, the generated images (uint8 ``[N, H, W, 3]``)."""

    acts: dict[str, np.ndarray]
    labels: np.ndarray
    images: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


def model_fn(
    module, params, seg, layers: Sequence[str], downsample: int, images: bool = False
) -> Callable:
    """``z [B, Z] -> ({layer: act [B, h, w, C]}, labels [B, H/d, W/d, K] int16)``, plus the
    images as uint8 ``[B, H, W, 3]`` (as :func:`gdjax.report.draw.to_uint8`) when ``images``."""
    from gdjax.models import segmenter

    def fn(z):
        out, acts = module.apply({"params": params}, z, capture=tuple(layers))
        labels = segmenter.segment(seg, out, downsample)
        result = ({k: acts[k] for k in layers}, labels.astype(jnp.int16))
        if images:
            pixels = jnp.clip((out.astype(jnp.float32) + 1.0) / 2.0 * 255.0, 0, 255)
            result += (pixels.astype(jnp.uint8),)
        return result

    return fn


@functools.lru_cache(maxsize=4)
def _sharded(fn: Callable, micro: int, devices: tuple) -> Callable:
    """Run ``fn`` over a batch split across ``devices``, ``micro`` images at a time per device."""
    mesh = Mesh(np.asarray(devices), ("batch",))
    spec = PartitionSpec("batch")

    def per_device(z):
        zs = z.reshape(z.shape[0] // micro, micro, *z.shape[1:])
        out = jax.lax.map(fn, zs)
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    mapped = jax.shard_map(per_device, mesh=mesh, in_specs=spec, out_specs=spec)
    return jax.jit(mapped, in_shardings=NamedSharding(mesh, spec))


class Watch:
    """How far :func:`collect` has got, for a reader on another thread that processes images
    as soon as they are written (:meth:`wait`)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._cache: Cache | None = None
        self._done = 0
        self._failed = False

    def _publish(self, cache: Cache, done: int) -> None:
        with self._cond:
            self._cache, self._done = cache, done
            self._cond.notify_all()

    def fail(self) -> None:
        """Marks the cache as never to be completed: waiting readers raise."""
        with self._cond:
            self._failed = True
            self._cond.notify_all()

    def check(self) -> None:
        """Raises if the watched :func:`collect` has stopped with an error (lets a reader on
        another thread give up early)."""
        if self._failed:
            raise RuntimeError("the cache being watched stopped before it was complete")

    def wait(self, count: int) -> Cache:
        """Blocks until the first ``count`` images are on disk; returns the (filling) cache."""
        with self._cond:
            self._cond.wait_for(lambda: self._failed or (self._cache and self._done >= count))
            self.check()
            return self._cache


def step_size(batch_size: int, micro: int = 8, devices=None) -> int:
    """Images :func:`collect` computes per step for ``batch_size``: rounded up to a multiple of
    ``micro`` x the number of devices (the padding repeats latents and is dropped)."""
    if batch_size < 1 or micro < 1:
        raise ValueError(f"batch_size {batch_size} and micro {micro} must be positive")
    unit = micro * len(jax.local_devices() if devices is None else devices)
    return -(-batch_size // unit) * unit


def output_shapes(
    fn: Callable, z_dim: int, batch_size: int = 32, micro: int = 8, devices=None
) -> tuple:
    """Shapes (``jax.ShapeDtypeStruct``) of one step of :func:`collect`'s outputs:
    ``(acts dict, labels[, images])``, known before anything runs; the trace is reused by
    :func:`collect` with the same arguments."""
    devices = tuple(jax.local_devices() if devices is None else devices)
    run = _sharded(fn, micro, devices)
    step = step_size(batch_size, micro, devices)
    return run.eval_shape(jax.ShapeDtypeStruct((step, z_dim), jnp.float32))


def collect(
    directory: str,
    z: np.ndarray,
    fn: Callable,
    batch_size: int = 32,
    micro: int = 8,
    devices=None,
    desc: str = "generating",
    watch: Watch | None = None,
    check: Callable[[], None] | None = None,
) -> Cache:
    """Fill (or resume filling) the cache in ``directory`` for latents ``z [N, Z]``.

    ``fn`` maps a micro-batch of latents to ``(acts dict, labels)`` (see :func:`model_fn`).
    About ``batch_size`` images are computed per step (:func:`step_size`), spread over
    ``devices`` (default: all local devices); the last step is padded with repeated latents
    whose results are dropped, so any ``batch_size`` and any sample count work. ``watch``
    (optional) is told of every finished batch; ``check`` (optional) is called before every
    batch and may raise to stop the run (e.g. when a reader on another thread failed).
    """
    watch = watch or Watch()
    try:
        return _collect(directory, z, fn, batch_size, micro, devices, desc, watch, check)
    except BaseException:
        watch.fail()  # readers on other threads stop waiting
        raise


def _collect(directory, z, fn, batch_size, micro, devices, desc, watch, check) -> Cache:
    devices = list(jax.local_devices() if devices is None else devices)
    n = int(z.shape[0])
    if n < 1:
        raise ValueError("no latents to generate")
    step = step_size(batch_size, micro, devices)
    run = _sharded(fn, micro, tuple(devices))  # one compilation per model and layout
    # Traced once here; the trace is reused by the first call.
    shapes = output_shapes(fn, z.shape[1], batch_size, micro, devices)
    acts_shape, labels_shape = shapes[:2]
    files = {k: (f"act_{k}.npy", (n, *s.shape[1:]), np.float32) for k, s in acts_shape.items()}
    files["__labels__"] = ("labels.npy", (n, *labels_shape.shape[1:]), np.int16)
    if len(shapes) == 3:
        files["__images__"] = ("images.npy", (n, *shapes[2].shape[1:]), np.uint8)
    os.makedirs(directory, exist_ok=True)
    done = _read_progress(directory, n, batch_size)
    procs = distributed.count()
    starts = range(0, n, step)
    first, last = distributed.share(len(starts))  # this process's batches (all of them: 1)
    starts = starts[first:last]
    if procs > 1:  # process 0 makes the files, each process fills its rows
        share_stop = min(starts.stop, n) if starts else 0
        distributed.first(lambda: _create(directory, files), f"create {directory}")
        mine = f"progress-{distributed.index()}-of-{procs}.json"
        done = n if done == n else _read_progress(directory, n, batch_size, mine)
        starts = range(max(done, starts.start), share_stop, step) if starts else starts
    maps = {
        key: np.lib.format.open_memmap(
            os.path.join(directory, name),
            mode="r+" if done or procs > 1 else "w+",
            dtype=dtype,
            shape=shape,
        )  # fmt: skip
        for key, (name, shape, dtype) in files.items()
    }
    for key, (name, shape, _) in files.items():
        if maps[key].shape != shape:
            raise ValueError(f"{directory}/{name} has shape {maps[key].shape}, expected {shape}")
    labels = maps.pop("__labels__")
    images = maps.pop("__images__", None)
    result = Cache(maps, labels, images)
    all_maps = [*maps.values(), labels] + ([] if images is None else [images])
    if procs == 1:
        watch._publish(result, done)
        starts = range(done, n, step)
    if starts and step not in _compiled.get(run, ()):  # apart, so the bar's rate is true
        with progress.status(f"{desc}: compiling"):
            run.lower(jax.ShapeDtypeStruct((step, z.shape[1]), jnp.float32)).compile()
        _compiled.setdefault(run, set()).add(step)
    for start in progress.bar(starts, desc, total=len(starts)):
        if check is not None:
            check()
        idx = np.minimum(np.arange(start, start + step), n - 1)
        acts, batch_labels, *batch_images = jax.device_get(run(jax.device_put(z[idx])))
        stop = min(start + step, n)
        for k, a in acts.items():
            maps[k][start:stop] = a[: stop - start]
        labels[start:stop] = batch_labels[: stop - start]
        if batch_images:
            images[start:stop] = batch_images[0][: stop - start]
        for m in all_maps:
            m.flush()
        if procs == 1:
            _write_progress(directory, stop, n, batch_size)
            watch._publish(result, stop)
        else:
            _write_progress(directory, stop, n, batch_size, mine)
    if procs > 1:  # complete once every process has finished its share
        distributed.barrier(f"cache {directory} complete")
        if distributed.is_main():
            _write_progress(directory, n, n, batch_size)
        watch._publish(result, n)
    return result


def _create(directory: str, files: dict) -> None:
    """Makes the cache's missing ``.npy`` files (a resumed cache's files are kept)."""
    for name, shape, dtype in files.values():
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()


def open_cache(directory: str, layers: Sequence[str]) -> Cache:
    """Read-only view of a finished cache."""
    with open(os.path.join(directory, PROGRESS)) as f:
        state = json.load(f)
    if state["done"] != state["n"]:
        raise ValueError(f"{directory}: cache unfinished ({state['done']}/{state['n']} images)")
    load = lambda name: np.load(os.path.join(directory, name), mmap_mode="r")  # noqa: E731
    acts = {k: load(f"act_{k}.npy") for k in layers}
    images = load("images.npy") if os.path.exists(os.path.join(directory, "images.npy")) else None
    return Cache(acts, load("labels.npy"), images)


def _read_progress(directory: str, n: int, batch_size: int, name: str = PROGRESS) -> int:
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        state = json.load(f)
    if (state["n"], state["batch_size"]) != (n, batch_size):
        raise ValueError(
            f"{directory} holds a cache of {state['n']} images in batches of "
            f"{state['batch_size']}, not {n} in batches of {batch_size}"
        )
    return int(state["done"])


def _write_progress(
    directory: str, done: int, n: int, batch_size: int, name: str = PROGRESS
) -> None:
    tmp = os.path.join(directory, name + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"done": done, "n": n, "batch_size": batch_size}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, name))
