"""The generate-once cache: device-count independence, resumption, clear errors."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import proggan
from gdjax.dissect import cache

SIZES = (16, 32, 16, 8)
WORKER = """
import sys, numpy as np, jax, jax.numpy as jnp
from gdjax import proggan
from gdjax.dissect import cache
module, params = proggan.init({sizes}, seed=1)
def fn(z):
    images, acts = module.apply({{"params": params}}, z, capture=("layer2", "layer4"))
    labels = (images[:, ::2, ::2, :2] > 0).astype(jnp.int16) + 1
    return acts, labels
z = proggan.sample_z(40, 1, {zdim})
assert len(jax.local_devices()) == int(sys.argv[2]), jax.local_devices()
cache.collect(sys.argv[1], z, fn, batch_size=16, micro=4)
"""


def run_worker(directory, devices):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    code = WORKER.format(sizes=SIZES, zdim=SIZES[0])
    subprocess.run([sys.executable, "-c", code, str(directory), str(devices)], env=env, check=True)
    return cache.open_cache(str(directory), ["layer2", "layer4"])


@pytest.mark.slow
def test_one_and_four_devices_give_identical_bytes(tmp_path):
    one, four = run_worker(tmp_path / "one", 1), run_worker(tmp_path / "four", 4)
    assert one.size == 40 and one.acts["layer4"].shape == (40, 8, 8, 16)
    assert one.labels.shape == (40, 8, 8, 2) and one.labels.dtype == np.int16
    for k in one.acts:
        np.testing.assert_array_equal(one.acts[k], four.acts[k])
    np.testing.assert_array_equal(one.labels, four.labels)
    # The cache holds what a plain run computes.
    module, params = proggan.init(SIZES, seed=1)
    _, acts = module.apply({"params": params}, proggan.sample_z(40, 1, 16), capture=("layer4",))
    np.testing.assert_allclose(one.acts["layer4"], acts["layer4"], rtol=1e-5, atol=1e-5)


class _Recorder(cache.Watch):
    """Remembers every progress report of cache.collect: the batches it computed."""

    def __init__(self):
        super().__init__()
        self.reports = []

    def _publish(self, c, done):
        self.reports.append(done)
        super()._publish(c, done)


def _layer4_model():
    """A small generator and ``fn`` mapping latents to its layer4 and a one-channel label."""
    module, params = proggan.init(SIZES, seed=2)

    def fn(z):
        images, acts = module.apply({"params": params}, z, capture=("layer4",))
        return acts, (images[..., :1] > 0).astype(jnp.int16)

    return module, params, fn


def test_resume_recomputes_only_unfinished_batches(tmp_path):
    _, _, fn = _layer4_model()
    z = proggan.sample_z(24, 3, 16)
    full = cache.collect(str(tmp_path / "a"), z, fn, batch_size=8, micro=8)
    cache.collect(str(tmp_path / "b"), z, fn, batch_size=8, micro=8)
    # Pretend the run was killed after the first batch, with garbage written after it, and
    # mark the finished batch's rows: a resumed run must not compute them again.
    progress = tmp_path / "b" / "progress.json"
    progress.write_text(json.dumps({"done": 8, "n": 24, "batch_size": 8}))
    arr = np.load(tmp_path / "b" / "act_layer4.npy", mmap_mode="r+")
    arr[:8] = 7.0
    arr[8:] = np.nan
    arr.flush()
    watch = _Recorder()
    resumed = cache.collect(str(tmp_path / "b"), z, fn, batch_size=8, micro=8, watch=watch)
    assert watch.reports == [8, 16, 24]  # started at 8: two batches computed, not three
    assert np.all(resumed.acts["layer4"][:8] == 7.0)  # the finished batch was left alone
    np.testing.assert_array_equal(resumed.acts["layer4"][8:], full.acts["layer4"][8:])
    np.testing.assert_array_equal(resumed.labels, full.labels)
    with pytest.raises(ValueError, match="holds a cache of 24 images in batches of 8"):
        cache.collect(str(tmp_path / "b"), z[:16], fn, batch_size=8, micro=8)


def test_any_batch_size_and_fewer_samples_than_a_batch(tmp_path):
    module, params, fn = _layer4_model()
    z = proggan.sample_z(5, 3, 16)
    want = module.apply({"params": params}, z, capture=("layer4",))[1]["layer4"]
    assert cache.step_size(3, micro=4, devices=[None]) == 4
    assert cache.step_size(9, micro=4, devices=[None, None]) == 16
    for batch_size, micro in ((8, 8), (3, 4), (1, 2), (64, 8)):
        c = cache.collect(str(tmp_path / f"{batch_size}-{micro}"), z, fn, batch_size, micro)
        assert c.size == 5
        np.testing.assert_allclose(c.acts["layer4"], want, rtol=1e-5, atol=1e-5)
