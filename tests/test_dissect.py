"""Dissection end to end: planted truth, files, resumption after kill -9, 1 vs 4 devices."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import dissect, proggan, scenes
from gdjax import segmenter as seglib
from gdjax.dissect import cache, layer, passes
from gdjax.dissect.result import LayerResult
from gdjax.dissect.settings import Settings
from gdjax.errors import InputError
from gdjax.world import train_segmenter

GEN_SIZES = (16, 16, 16, 8, 8, 8)  # 64x64 output; layer4 is 8x8 with 16 units
SEG_CONFIG = train_segmenter.demo_config(
    stem=(8, 8, 8), planes=(8, 8, 8, 8), depths=(1, 1, 1, 1), dim=8
)
WORKER = """
import sys, jax
from gdjax import dissect, proggan, segmenter as seglib
from gdjax.dissect.result import LayerResult
from gdjax.dissect.settings import Settings
from gdjax.errors import InputError
from gdjax.world import train_segmenter as segtrain
assert len(jax.local_devices()) == int(sys.argv[2])
seg = seglib.from_config(segtrain.demo_config(stem=(8, 8, 8), planes=(8, 8, 8, 8),
                                              depths=(1, 1, 1, 1), dim=8), key=jax.random.key(0))
gen = proggan.init({sizes}, seed=0)
settings = Settings(layers=("layer4", "layer6"), samples=int(sys.argv[3]), batch_size=16, micro=4)
from gdjax.dissect import passes
passes.stats_batch = lambda n, grid: 32  # several batches per pass (results do not depend on it)
{probe}
dissect.dissect(sys.argv[1], gen, seg, settings, overlap=sys.argv[4] == "1",
                checkpoint_seconds=float(sys.argv[5]))
"""


def worker(outdir, devices=1, samples=64, overlap=True, checkpoint_seconds=30.0, probe=""):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    code = WORKER.format(sizes=GEN_SIZES, probe=probe)
    argv = [sys.executable, "-c", code, str(outdir), str(devices), str(samples),
            str(int(overlap)), str(checkpoint_seconds)]  # fmt: skip
    return subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)


def outputs(outdir):
    out = {"json": (outdir / "dissect.json").read_bytes()}
    for name in ("layer4", "layer6"):
        with np.load(outdir / name / "stats.npz") as f:
            out |= {f"{name}/{k}": f[k] for k in f.files}
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k == "json":
            assert a[k] == b[k]
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def planted_cache(n=48):
    """Labels from rendered scenes (32x32 grid); units 0-2 are the sky/grass/building masks:
    in [1, 2] on the class, in [0, 0.5) elsewhere. Units 3-5 are uniform noise."""
    _, labels = scenes.render(5, n)
    labels = labels[:, ::2, ::2, None].astype(np.int16)
    rng = np.random.default_rng(0)
    acts = rng.uniform(0, 1, (n, 32, 32, 6)).astype(np.float32)
    for u, c in enumerate([scenes.SKY, scenes.GRASS, scenes.BUILDING]):
        acts[..., u] = np.where(labels[..., 0] == c, 1 + acts[..., u], acts[..., u] / 2)
    return cache.Cache({"x": acts}, labels)


@pytest.mark.parametrize("threshold", ["iqr", 0.2])
def test_planted_units_get_iou_one_and_their_label(tmp_path, threshold):
    main = planted_cache()
    label_category = np.zeros(len(scenes.LABELS), int)
    settings = Settings(layers=("x",), threshold=threshold)
    res = layer.dissect_layer(
        "x", main, main, label_category, 1, settings, workdir=str(tmp_path), batch_size=16
    )
    units = np.arange(3)
    want = [scenes.SKY, scenes.GRASS, scenes.BUILDING]
    np.testing.assert_array_equal(res.label[:3], want)
    if threshold == "iqr":
        # The best of 100 log-spaced top fractions lands within a few % of the class size.
        np.testing.assert_allclose(res.iou[want, units], 1.0, atol=0.08)
        assert res.iou[:, 3:].max() < 0.5  # uniform noise units match nothing well
    else:  # top-20% level: IoU is the overlap of the top 20% with the class mask
        freq = scenes.class_frequencies(main.labels, len(scenes.LABELS))[want]
        np.testing.assert_allclose(
            res.iou[want, units], np.minimum(freq, 0.2) / np.maximum(freq, 0.2), rtol=0.02
        )
    saved = res.save(str(tmp_path / "stats.npz"))
    back = LayerResult.load(saved)
    for field, value in res._asdict().items():
        if field == "search":
            assert (value is None) == (threshold != "iqr")
            for k in value or {}:
                np.testing.assert_array_equal(back.search[k], value[k])
        else:
            np.testing.assert_array_equal(getattr(back, field), value, err_msg=field)


def _newest_checkpoint_step(directory):
    steps = [int(p.name) for p in directory.glob("*") if p.name.isdigit()]
    return max(steps, default=0)


@pytest.mark.slow
def test_dissect_writes_report_and_resumes_identically_after_kill(tmp_path):
    full = tmp_path / "full"
    assert worker(full, samples=96).wait() == 0
    record = json.loads((full / "dissect.json").read_text())
    assert [lrec["layer"] for lrec in record["layers"]] == ["layer4", "layer6"]
    unit = record["layers"][0]["units"][0]
    for field in ("unit", "iou", "iou_label", "iou_cat", "iou_iqr", "level", "interp", "top"):
        assert field in unit
    for path in ("report.html", "layer4/bargraph.png", "layer4/image/0-top.jpg",
                 "layer6/image/7-seg.png", "layer4/stats.npz", "settings.json"):  # fmt: skip
        assert (full / path).exists(), path
    assert not list(full.glob("*/result.npz"))  # one file per layer's result
    # Kill -9 in the middle of a statistics pass, after it wrote a checkpoint (every batch:
    # checkpoint_seconds=0); tests/test_cache.py covers a kill while generating. The resumed
    # pass starts from that checkpoint.
    killed = tmp_path / "killed"
    proc = worker(killed, samples=96, checkpoint_seconds=0, probe=SLOW_PROBE)
    passes_dir = killed / "layer4" / "passes" / "iou_counts"
    deadline = time.time() + 300
    while (
        _newest_checkpoint_step(passes_dir) == 0 and proc.poll() is None
        and time.time() < deadline
    ):  # fmt: skip
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    step = _newest_checkpoint_step(passes_dir)
    assert 0 < step < 96, step  # killed mid-pass, after a checkpoint
    assert not (killed / "dissect.json").exists() and not (killed / "layer4/stats.npz").exists()
    log = killed / "resume.log"
    code = WORKER.format(sizes=GEN_SIZES, probe=RESUME_PROBE)
    argv = [sys.executable, "-c", code, str(killed), "1", "96", "1", "0", str(log)]
    assert subprocess.run(argv, stderr=subprocess.DEVNULL).returncode == 0
    starts = json.loads(log.read_text())
    assert starts["layer4 IoU counts, top-k"] == step  # resumed where the checkpoint was
    assert_same(outputs(full), outputs(killed))
    # Four devices, and the statistics after the networks instead of beside them: same bytes.
    four = tmp_path / "four"
    assert worker(four, devices=4, samples=96).wait() == 0
    assert_same(outputs(full), outputs(four))
    plain = tmp_path / "sequential"
    assert worker(plain, samples=96, overlap=False).wait() == 0
    assert_same(outputs(full), outputs(plain))


# Inserted into WORKER's code: a pause before each batch after the first of layer4's IoU pass,
# so the test's kill lands mid-pass (with compiled programs cached the pass takes milliseconds
# and could finish, and the layer's stats.npz be written, between two polls).
SLOW_PROBE = """
import time
fast_batches = passes.batches
def slow(arrays, batch_size, desc, start_at=0, ready=None):
    for i, item in enumerate(fast_batches(arrays, batch_size, desc, start_at, ready)):
        if i and desc.startswith("layer4 IoU counts"):
            time.sleep(1.0)
        yield item
passes.batches = slow
"""

# Inserted into WORKER's code: records where each pass over the cache started.
RESUME_PROBE = """
import atexit, json
starts, plain_batches = {}, passes.batches
def logged(arrays, batch_size, desc, start_at=0, ready=None):
    starts.setdefault(desc, start_at)
    return plain_batches(arrays, batch_size, desc, start_at, ready)
passes.batches = logged
atexit.register(lambda: open(sys.argv[6], "w").write(json.dumps(starts)))
"""


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    seg = seglib.from_config(SEG_CONFIG, key=jax.random.key(0))
    gen = proggan.init(GEN_SIZES, seed=0)
    out = tmp_path / "a"
    bad = {
        "unknown layer 'layer99'; valid layers: layer1, ": dict(layers=("layer99",)),
        "downsample 3 does not divide the image size 64": dict(downsample=3),
    }
    for message, change in bad.items():
        with pytest.raises(InputError, match=message):
            dissect.dissect(str(out), gen, seg, Settings(samples=16, **change))
        assert not out.exists()
    for message, change in {
        "samples must be >= 1, got 0": dict(samples=0),
        "batch_size must be an integer, got 2.5": dict(batch_size=2.5),
        r"threshold must be 'iqr' or a fraction in \(0, 1\), got 1.5": dict(threshold=1.5),
        "threshold must be 'iqr' or a fraction in": dict(threshold="top"),
        "no layer to dissect": dict(layers=("", " ")),
        "iou must be 'category' or 'all'": dict(iou="pixels"),
    }.items():
        with pytest.raises(InputError, match=message):
            Settings(**change)
    assert Settings(layers=("layer4", "")).layers == ("layer4",)  # as from --layers=layer4,
    assert Settings(threshold="0.01").threshold == 0.01


def test_sample_count_below_the_batch_and_other_settings(tmp_path):
    seg = seglib.from_config(SEG_CONFIG, key=jax.random.key(0))
    gen = proggan.init(GEN_SIZES, seed=0)
    out = str(tmp_path / "b")
    few = Settings(samples=5, batch_size=12, micro=4, strips=2, threshold=0.1)
    rec = dissect.dissect(out, gen, seg, few)
    assert len(rec["layers"][0]["units"]) == 16
    assert rec["settings"]["samples"] == 5 and rec["settings"]["strips"] == 2
    assert all(t["imgnum"] < 5 for u in rec["layers"][0]["units"] for t in u["top"])
    before = sorted(os.listdir(out))
    other = Settings(samples=6, batch_size=12, micro=4, strips=2, threshold=0.1)
    with pytest.raises(InputError, match=r"holds a dissection with other settings \(samples=5\)"):
        dissect.dissect(out, gen, seg, other)
    assert sorted(os.listdir(out)) == before
    rec = dissect.dissect(out, gen, seg, other, overwrite=True)
    assert rec["settings"]["samples"] == 6
    module, params = gen
    broken = jax.tree.map(lambda p: p * np.nan, params)
    with pytest.raises(ValueError, match="layer 'layer4': NaN activations in image 0"):
        dissect.dissect(str(tmp_path / "c"), (module, broken), seg, Settings(samples=16))


class _Sum(NamedTuple):
    total: jax.Array


class _Pair(NamedTuple):  # nested, as the main set's pass state
    sums: _Sum
    count: jax.Array


def test_counting_pass_resumes_from_its_checkpoint(tmp_path):
    x = np.arange(40, dtype=np.int32).reshape(10, 4)
    add = jax.jit(lambda s, b: _Pair(_Sum(s.sums.total + b.sum(0)), s.count + b.shape[0]))
    seen = []

    def update(state, start, batch):
        seen.append(start)
        if len(seen) == 4 and interrupt:
            raise KeyboardInterrupt
        return add(state, batch["x"])

    zero = _Pair(_Sum(jnp.zeros(4, jnp.int32)), jnp.zeros((), jnp.int32))
    interrupt = True
    with pytest.raises(KeyboardInterrupt):  # saved after batches 0, 2 and 4 (every=0)
        passes.counting_pass(str(tmp_path), zero, update, {"x": x}, 2, "t", every=0)
    interrupt, seen[:] = False, []
    state = passes.counting_pass(str(tmp_path), zero, update, {"x": x}, 2, "t", every=0)
    assert seen == [6, 8]  # resumed after the last saved batch
    np.testing.assert_array_equal(state.sums.total, x.sum(0))
    assert int(state.count) == 10 and isinstance(state, _Pair)


def test_batches_wait_for_rows_still_being_written():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    watch, asked = cache.Watch(), []
    filler = cache.Cache({"x": x}, np.zeros((6, 1, 1, 1), np.int16))

    def ready(stop):
        asked.append(stop)
        return watch.wait(stop)

    def fill():
        for done in (0, 2, 4, 6):
            watch._publish(filler, done)
            time.sleep(0.05)

    thread = threading.Thread(target=fill)
    thread.start()
    got = [b["x"].sum() for _, b in passes.batches({"x": x}, 4, "t", ready=ready)]
    thread.join()
    assert asked == [4, 6] and [float(g) for g in got] == [x[:4].sum(), x[4:].sum()]
    failed = cache.Watch()
    failed.fail()
    with pytest.raises(RuntimeError, match="stopped before it was complete"):
        failed.wait(1)


def test_statistics_batches_divide_the_sample_count():
    # About 2**18 values per unit and batch, 64 to 256 images, a divisor of n where one is near.
    assert passes.stats_batch(1000, (32, 32)) == 250  # demo: 1024 values per image, 256 wanted
    assert passes.stats_batch(200, (128, 128)) == 50  # full size: 64 wanted, 50 divides 200
    assert passes.stats_batch(24, (32, 32)) == 24  # fewer images than a batch
    assert passes.stats_batch(997, (16, 16)) == 256  # a prime: no divisor, the last batch short
    assert [passes.even_batch(n, 64) for n in (1000, 640, 61)] == [50, 64, 61]
