"""The dissection's schedule: each side stops the other, and the programs compiled ahead on the
worker are the ones the passes run (the same bytes either way: tests/test_dissect.py)."""

import threading
import time

import jax
import numpy as np
import pytest
from jax import monitoring

from gdjax.dissect import cache, layer, passes, schedule
from gdjax.dissect.settings import Settings
from gdjax.world import scenes

BATCHES = 6


def _fake_cache(n=BATCHES):
    return cache.Cache({"x": np.zeros((n, 1, 1, 1), np.float32)}, np.zeros((n, 1, 1, 1), np.int16))


def _collector(made: dict, fail_main_at=None, before_batch=None):
    """A fake network pass: one image per batch, published to the watch like cache.collect."""

    def collect(name, watch, check):
        c = _fake_cache()
        watch._publish(c, 0)
        try:
            for i in range(BATCHES):
                if before_batch is not None:
                    before_batch(name, i)
                if check is not None:
                    check()
                if name == "main" and i == fail_main_at:
                    raise ValueError("network failed")
                made[name] = made.get(name, 0) + 1
                watch._publish(c, i + 1)
                time.sleep(0.01)
        except BaseException:
            watch.fail()
            raise
        return c

    return collect


def test_a_failing_worker_stops_the_networks_at_their_next_batch():
    made, go, failed = {}, threading.Event(), threading.Event()

    def levels(c, ready):
        assert go.wait(10)
        failed.set()
        raise RuntimeError("statistics failed")

    def before_batch(name, i):
        if name == "main" and i == 2:  # the worker fails while the third main batch starts
            go.set()
            assert failed.wait(10)
            time.sleep(0.1)  # its future is marked done right after the exception

    jobs = schedule.Jobs(True, lambda: None, _collector(made, None, before_batch), levels,
                         lambda lv, watch: None)  # fmt: skip
    with pytest.raises(RuntimeError, match="statistics failed"):
        schedule.overlapped(jobs)
    assert made == {"train": BATCHES, "main": 2}  # stopped before its third batch


def test_a_failing_network_stops_the_worker():
    made, counted, finished = {}, [], []

    def results(lv, watch):
        for stop in range(1, BATCHES + 1):
            watch.wait(stop)  # raises once the networks failed
            counted.append(stop)
        finished.append(True)

    jobs = schedule.Jobs(True, lambda: None, _collector(made, fail_main_at=3),
                         lambda c, ready: {}, results)  # fmt: skip
    with pytest.raises(ValueError, match="network failed"):
        schedule.overlapped(jobs)
    assert made["main"] == 3 and counted == [1, 2, 3] and not finished


def test_sequential_runs_every_job_on_the_calling_thread():
    made, seen = {}, []
    main_thread = threading.get_ident()

    def results(lv, watch):
        seen.append((lv, watch.wait(BATCHES).size, threading.get_ident() == main_thread))

    jobs = schedule.Jobs(True, lambda: None, _collector(made),
                         lambda c, ready: "levels", results)  # fmt: skip
    schedule.sequential(jobs)
    assert made == {"train": BATCHES, "main": BATCHES} and seen == [("levels", BATCHES, True)]


@pytest.mark.parametrize(
    "preset,threshold", [("gandissect", "iqr"), ("gandissect", 0.1), ("pnas", 0.1)]
)
def test_programs_compiled_ahead_are_the_ones_the_passes_use(tmp_path, preset, threshold):
    n, batch = 48, 16
    _, labels = scenes.render(5, n, 32)
    labels = labels[..., None].astype(np.int16)
    acts = np.random.default_rng(0).normal(size=(n, 8, 8, 6)).astype(np.float32)
    c = cache.Cache({"x": acts}, labels)
    num_labels = len(scenes.LABELS)
    label_category = np.zeros(num_labels, np.int64)
    settings = Settings(layers=("x",), preset=preset, threshold=threshold)
    shapes = (
        {"x": jax.ShapeDtypeStruct((8, 8, 8, 6), np.float32)},
        jax.ShapeDtypeStruct((8, 32, 32, 1), np.int16),
    )
    passes.compile_passes(shapes, ["x"], num_labels, 1, batch, settings)
    compiles = []

    def listen(name, secs, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(secs)

    monitoring.register_event_duration_secs_listener(listen)
    try:
        common = dict(workdir=str(tmp_path), batch_size=batch)
        lv = layer.levels("x", c, label_category, 1, settings, **common)
        res = layer.result("x", c, lv, label_category, 1, settings, **common)
    finally:
        monitoring.unregister_event_duration_listener(listen)
    assert compiles == []  # every program the passes ran was compiled ahead
    assert res.iou.shape == (num_labels, 6)
