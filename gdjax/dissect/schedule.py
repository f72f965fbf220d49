"""When a dissection's statistics run: after the networks, or beside them on a worker thread.

A dissection is five jobs (:class:`Jobs`): compile the statistics programs, make the threshold
set (IQR mode) and the main set with the networks, find each unit's level on the threshold
set, and count the main set at those levels. :func:`sequential` runs them one after another
on the calling thread; :func:`overlapped` gives the statistics to a worker thread so that they
run while the networks work: the programs compile while the first set is made, the threshold
set is counted while the main set is made, and the main set's pass follows the networks batch
by batch (:class:`gdjax.dissect.cache.Watch`). Both give the same bytes (tested).

Either side stops the other: when a network batch fails (or Ctrl-C), the worker stops at its
next batch; when the worker fails, the networks stop before their next batch and its error is
raised on the calling thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from gdjax.dissect.cache import Cache, Watch

__all__ = ["Jobs", "overlapped", "sequential"]


class Jobs(NamedTuple):
    """The jobs of one dissection.

    iqr: whether the levels come from a separate threshold set.
    compile: compiles every statistics program ahead (may be skipped: they compile on use).
    collect(name, watch, check) -> Cache: makes the ``'train'`` or ``'main'`` set, telling
      ``watch`` of every batch and calling ``check()`` before each (it raises to stop).
    levels(cache, ready) -> levels: each unit's level from the threshold set; ``ready(stop)``
      is called before each batch (it raises to stop).
    results(levels, watch) -> None: counts the main set (``watch.wait(stop)`` before each
      batch) and keeps the results.
    """

    iqr: bool
    compile: Callable[[], None]
    collect: Callable[[str, Watch, Callable[[], None] | None], Cache]
    levels: Callable[[Cache, Callable[[int], object] | None], object]
    results: Callable[[object, Watch], None]


def sequential(jobs: Jobs) -> Cache:
    """Every job on the calling thread, in order (programs compile when first used)."""
    train = jobs.collect("train", Watch(), None) if jobs.iqr else None
    watch = Watch()
    main = jobs.collect("main", watch, None)
    jobs.results(jobs.levels(train if jobs.iqr else main, None), watch)
    return main


def overlapped(jobs: Jobs) -> Cache:
    """The statistics on a worker thread beside the networks (see the module docstring)."""
    watch = Watch()
    futures: list[Future] = []

    def worker_ok() -> None:
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()

    with ThreadPoolExecutor(max_workers=1, initializer=_lower_priority) as pool:
        try:
            futures.append(pool.submit(jobs.compile))
            if jobs.iqr:
                train = jobs.collect("train", Watch(), worker_ok)
                levels = pool.submit(jobs.levels, train, lambda _: watch.check())
                scored = pool.submit(lambda: jobs.results(levels.result(), watch))
                futures += [levels, scored]
                main = jobs.collect("main", watch, worker_ok)
                scored.result()
            else:
                main = jobs.collect("main", watch, worker_ok)
                futures[0].result()
                jobs.results(jobs.levels(main, None), watch)
            worker_ok()
        except BaseException:
            watch.fail()  # the worker stops at its next batch instead of finishing its passes
            for f in futures:
                f.cancel()
            raise
    return main


def _lower_priority() -> None:
    """Gives the calling thread a lower CPU priority (Linux threads have their own nice value):
    its Python work and its XLA compilations (whose LLVM threads inherit it) yield to the
    networks. The statistics programs themselves run on XLA's shared CPU thread pool, which no
    thread priority reaches (measured per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority
        pass
