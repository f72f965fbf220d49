"""Every statistics pass gives the same bytes on 1, 2 and 8 devices, and the all-units vmapped
path (the one meant for accelerators) the same bytes as the unit-by-unit loop."""

import os
import subprocess
import sys

import numpy as np
import pytest

from gdjax.dissect import units

# Runs every pass of a layer (exact quantiles of raw and of upsampled values, IQR counts on
# 100 thresholds, IoU counts and top-k) on a random cache; saves every result's arrays.
WORKER = """
import sys, numpy as np, jax
from gdjax.dissect import cache, layer, units
from gdjax.dissect.settings import Settings
out, devices, group = sys.argv[1], int(sys.argv[2]), sys.argv[3]
assert len(jax.local_devices()) == devices, jax.local_devices()
assert len(units.unit_devices(8)) == devices  # the passes split their 8 units over them
if group == "all":  # every unit of a device in one vmapped step
    units.units_per_step = lambda num_units, requested=None: num_units
rng = np.random.default_rng(0)
n, units_ = 40, 8
cells = rng.integers(0, 6, (n, 8, 8))  # labels in 2x2 blocks, one per activation cell
labels = rng.integers(0, 6, (n, 16, 16, 2)).astype(np.int16)
labels[..., 0] = cells.repeat(2, axis=1).repeat(2, axis=2)
acts = rng.gamma(1.0, 1.0, (n, 8, 8, units_)).astype(np.float32)
acts[..., 1] += 6.0 * (cells == 3)  # a unit that follows label 3
acts[..., 2] = np.where(acts[..., 2] < 1, 0.0, acts[..., 2])  # ReLU-like ties at 0
c = cache.Cache({"x": acts}, labels)
label_category = np.array([0, 0, 0, 1, 1, 1])
saved = {}
for tag, settings in {
    "iqr": Settings(layers=("x",)),
    "raw": Settings(layers=("x",), threshold=0.05),
    "pnas": Settings(layers=("x",), preset="pnas", downsample=2),
}.items():
    res = layer.dissect_layer("x", c, c, label_category, 2, settings,
                              workdir=f"{out}-{tag}", batch_size=16)
    for k, v in res._asdict().items():
        for kk, vv in (v.items() if isinstance(v, dict) else [("", v)]):
            if vv is not None:
                saved[f"{tag}/{k}/{kk}"] = np.asarray(vv)
np.savez(out, **saved)
"""


def run(tmp_path, devices: int, group: str = "default") -> dict:
    out = str(tmp_path / f"d{devices}-{group}.npz")
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               GDJAX_PROGRESS="0")  # fmt: skip
    argv = [sys.executable, "-c", WORKER, out, str(devices), group]
    subprocess.run(argv, env=env, check=True, stderr=subprocess.DEVNULL)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def assert_same_bytes(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


def test_one_two_and_eight_devices_and_all_units_vmapped_give_identical_bytes(tmp_path):
    one = run(tmp_path, 1)
    assert {k.split("/")[0] for k in one} == {"iqr", "raw", "pnas"}
    assert one["iqr/label/"][1] == 3  # the planted unit found its label: the passes ran
    assert np.unique(one["raw/levels/"]).size == 8  # one level per unit, all distinct
    assert_same_bytes(one, run(tmp_path, 2))
    assert_same_bytes(one, run(tmp_path, 8))
    assert_same_bytes(one, run(tmp_path, 1, group="all"))


@pytest.mark.parametrize("num_units, devices, expect", [(8, 8, 8), (12, 8, 6), (7, 8, 7),
                                                        (5, 2, 1), (16, 1, 1)])  # fmt: skip
def test_units_are_split_over_the_largest_dividing_device_count(num_units, devices, expect):
    assert len(units.unit_devices(num_units, list(range(devices)))) == expect
