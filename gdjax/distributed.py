"""Many processes (hosts) under ``jax.distributed``: shares of the work, barriers, reductions.

A run started on ``P`` processes (one per host, each with its local devices) splits its
latents into ``P`` contiguous shares (:func:`share`); each process computes its share on its
own devices, and the results are combined with integer sums or total-order merges, so the
bytes equal a one-process run's (STYLE rule 11). The dissection's cache, its statistics
passes, ACE's present and candidate sets and the single-unit sweep work this way; with one
process every function here does nothing.

Launch one process per host, all with the same command and output directory (on a file
system every host sees)::

    python -m gdjax.launch --coordinator host0:1234 --num_processes 2 --process_id 0 \
        examples/dissect.py --outdir /shared/out/dissect
    python -m gdjax.launch --coordinator host0:1234 --num_processes 2 --process_id 1 \
        examples/dissect.py --outdir /shared/out/dissect

(or with no flags under SLURM, Open MPI or on Cloud TPU, where JAX reads them from the
environment; ``examples/slurm_dissect.sh``).

A process that stops (killed, preempted, crashed) stops the others: they raise
:class:`ProcessLost` at their next synchronisation point (process 0 holds JAX's coordination
service; when it dies JAX's runtime stops the others at once with its own message). Every
process keeps its own progress, so relaunching every process with the same command resumes
where each one stopped.
"""

from __future__ import annotations

import atexit
import io
import itertools
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gdjax.errors import InputError

__all__ = [
    "ProcessLost",
    "allgather",
    "barrier",
    "concat",
    "count",
    "first",
    "index",
    "initialize",
    "is_main",
    "reduce",
    "share",
    "share_lengths",
]

CHUNK = 2**21  # bytes per key-value entry (well below gRPC's message limit)
_seq = itertools.count()  # every process calls the synchronising functions in the same order


class ProcessLost(RuntimeError):
    """Another process of the run stopped: this one stops too (relaunch all to resume)."""


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_seconds: int = 100,
) -> None:
    """``jax.distributed.initialize`` for a gdjax run (call before anything else uses JAX).

    Arguments left ``None`` come from the environment (SLURM, Open MPI, Cloud TPU, or
    ``JAX_COORDINATOR_ADDRESS`` and friends). A process that sends no heartbeat for
    ``heartbeat_seconds`` counts as stopped. The processes are made recoverable, so that a
    survivor ends with :class:`ProcessLost` (a clear message) instead of being aborted by the
    runtime, and CPU processes use gloo collectives.
    """
    jax.config.update("jax_enable_recoverability", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator, num_processes, process_id, heartbeat_timeout_seconds=heartbeat_seconds
    )
    atexit.register(_leave)  # runs before JAX's own shutdown (registered earlier)


def _leave(limit: float = 30.0) -> None:
    """At exit: the other processes disconnect first, then process 0, which holds the
    coordination service (a process still connected when it goes is aborted by the runtime)."""
    if count() == 1:
        return
    try:
        barrier("exit", timeout=limit)
        if not is_main():
            jax.distributed.shutdown()
            return
        client, procs = _client(), list(range(count()))
        deadline = time.monotonic() + limit
        while len(client.get_live_nodes(procs)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    except Exception:  # another process stopped: nothing to wait for
        pass


def count() -> int:
    """Processes in the run (1 without ``jax.distributed``)."""
    return jax.process_count()


def index() -> int:
    """This process's number in ``[0, count())``."""
    return jax.process_index()


def is_main() -> bool:
    """Whether this process writes the run's shared files (process 0)."""
    return index() == 0


def share(n: int, process: int | None = None) -> tuple[int, int]:
    """The contiguous share ``[start, stop)`` of ``n`` items (batches) that ``process``
    (default: this one) computes: the first ``n // P`` or ``n // P + 1`` after the earlier
    processes' shares."""
    p = index() if process is None else process
    return n * p // count(), n * (p + 1) // count()


def _client():
    from jax._src import distributed as _state

    return _state.global_state.client


def _lost(what: str, detail: str = "") -> ProcessLost:
    return ProcessLost(
        f"process {index()} of {count()}: {what}{detail}; stopping. Relaunch every process "
        "with the same command to resume: finished work is kept"
    )


def barrier(name: str, timeout: float | None = None, poll: float = 0.05) -> None:
    """Waits until every process reached the barrier ``name`` (nothing with one process).

    Raises :class:`ProcessLost` naming the processes that stopped (no heartbeat) while this
    one waited, or when ``timeout`` seconds pass (``None``: wait as long as they live).
    """
    if count() == 1:
        return
    client, procs = _client(), list(range(count()))
    key = f"gdjax/{next(_seq)}/{name}/"
    client.key_value_set(key + str(index()), "1")
    start = last_check = time.monotonic()
    while True:
        if len(client.key_value_dir_get(key)) >= len(procs):
            return
        now = time.monotonic()
        if now - last_check >= 1.0:
            last_check = now
            live = client.get_live_nodes(procs)
            if len(live) < len(procs):
                gone = ", ".join(str(p) for p in procs if p not in live)
                raise _lost(f"process {gone} stopped", f" (at {name!r})")
        if timeout is not None and now - start > timeout:
            raise _lost(f"other processes did not reach {name!r} within {timeout:.0f} s")
        time.sleep(poll)
        poll = min(poll * 1.5, 0.5)


def allgather(tree: Any, name: str = "allgather") -> Any:
    """Every process's ``tree`` (arrays of equal shapes on all processes), stacked on a new
    leading axis ``[P, ...]`` as NumPy arrays, in process order. Collective: every process
    calls it. With one process, ``tree`` with a leading axis of 1.

    The arrays travel through JAX's coordination service (its key-value store, in pieces of
    ``CHUNK`` bytes), not through a compiled collective: nothing to compile, the same on every
    platform, and a stopped process is reported (:func:`barrier`) instead of hanging a
    collective. The states gathered are counters (tens of MB at most)."""
    tree = jax.tree.map(np.asarray, tree)
    if count() == 1:
        return jax.tree.map(lambda x: x[None], tree)
    leaves, treedef = jax.tree.flatten(tree)
    client = _client()
    key = f"gdjax/{next(_seq)}/{name}/data/"
    buf = io.BytesIO()
    np.savez(buf, *leaves)
    data = buf.getvalue()
    pieces = range(0, max(len(data), 1), CHUNK)
    for i, start in enumerate(pieces):
        client.key_value_set_bytes(f"{key}{index()}/{i}", data[start : start + CHUNK])
    client.key_value_set(f"{key}{index()}/pieces", str(len(pieces)))
    barrier(name)  # every piece of every process is stored
    parts = []
    for p in range(count()):
        get = lambda k: client.blocking_key_value_get_bytes(k, 600_000)  # noqa: E731
        n = int(client.blocking_key_value_get(f"{key}{p}/pieces", 600_000))
        blob = b"".join(get(f"{key}{p}/{i}") for i in range(n))
        with np.load(io.BytesIO(blob)) as f:
            parts.append([f[f"arr_{i}"] for i in range(len(leaves))])
    barrier(name + " read")
    client.key_value_delete(f"{key}{index()}/")  # this process's pieces (a directory)
    stacked = [np.stack([part[i] for part in parts]) for i in range(len(leaves))]
    return jax.tree.unflatten(treedef, stacked)


def concat(x: np.ndarray, lengths: list[int], name: str = "concat") -> np.ndarray:
    """Every process's rows ``x [lengths[p], ...]`` concatenated in process order (the same
    array on every process; ``lengths`` as every process knows them, e.g. from
    :func:`share`). Collective. ``x`` itself with one process."""
    x = np.asarray(x)
    if count() == 1:
        return x
    if len(x) != lengths[index()]:
        raise ValueError(f"process {index()} has {len(x)} rows, expected {lengths[index()]}")
    padded = np.zeros((max(lengths), *x.shape[1:]), x.dtype)
    padded[: len(x)] = x
    stacked = allgather(padded, name)
    return np.concatenate([stacked[p, :n] for p, n in enumerate(lengths)])


def share_lengths(n: int) -> list[int]:
    """Items (:func:`share`) of ``n`` each process computes."""
    return [b - a for a, b in (share(n, p) for p in range(count()))]


def reduce(tree: Any, combine: Callable[[Any, Any], Any], name: str = "reduce") -> Any:
    """``combine`` folded over every process's ``tree`` in process order (same result on
    every process). With integer sums or total-order merges the result equals one process
    computing all shares."""
    if count() == 1:
        return tree
    stacked = allgather(tree, name)
    parts = [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(count())]
    out = parts[0]
    for part in parts[1:]:
        out = combine(out, part)
    return out


def first(fn: Callable[[], Any], name: str = "first") -> Any:
    """``fn()`` on process 0 while the others wait; its :class:`InputError` (or failure) is
    raised on every process. Returns ``fn()``'s value on process 0, ``None`` elsewhere. For a
    step that writes shared files once (a run's ``settings.json``, a report)."""
    if count() == 1:
        return fn()
    client = _client()
    key = f"gdjax/{next(_seq)}/{name}/outcome"
    if is_main():
        try:
            value = fn()
        except InputError as e:
            client.key_value_set(key, "input:" + str(e))
            raise
        except BaseException as e:
            client.key_value_set(key, f"failed:{type(e).__name__}: {e}")
            raise
        client.key_value_set(key, "ok")
        return value
    prefix = key.rsplit("/", 1)[0] + "/"
    while True:
        outcome = dict(client.key_value_dir_get(prefix)).get(key)
        if outcome is not None:
            break
        if 0 not in client.get_live_nodes(list(range(count()))):
            raise _lost("process 0 stopped", f" (at {name!r})")
        time.sleep(0.05)
    if outcome.startswith("input:"):
        raise InputError(outcome[len("input:") :])
    if outcome.startswith("failed:"):
        raise RuntimeError(f"process 0 failed at {name!r}: {outcome[len('failed:') :]}")
    return None


def main(argv: list[str] | None = None) -> None:
    """``python -m gdjax.launch [--coordinator H:P --num_processes N --process_id I]
    [--heartbeat_seconds S] script.py [script flags]``: initialize, then run the script."""
    import argparse
    import os
    import runpy
    import sys

    ap = argparse.ArgumentParser(prog="python -m gdjax.launch", description=main.__doc__)
    ap.add_argument("--coordinator", help="host:port of process 0 (default: environment)")
    ap.add_argument("--num_processes", type=int)
    ap.add_argument("--process_id", type=int)
    ap.add_argument("--heartbeat_seconds", type=int, default=100)
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    initialize(a.coordinator, a.num_processes, a.process_id, heartbeat_seconds=a.heartbeat_seconds)
    sys.argv = [a.script, *a.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(a.script)))  # as `python script.py`
    runpy.run_path(a.script, run_name="__main__")
