"""Ablation experiments on the planted generator (class "red" caused by units 1 and 3)."""

import json

import jax.numpy as jnp
import numpy as np
import planted
import pytest
from PIL import Image

from gdjax import ablate, intervene, proggan
from gdjax.report import draw

LAYER = "layer1"


@pytest.fixture(scope="module")
def gen():
    return planted.make()


def _segment(images):
    """Labels 0 none, 1 red, 2 green > 0; one channel plus a second "green" channel."""
    red = (images[..., 0] > 0.2).astype(jnp.int32)
    green = 2 * (images[..., 1] > 0.0).astype(jnp.int32)
    return jnp.stack([red, green], axis=-1)


def _brute_counts(module, params, z, alpha):
    images = intervene.generate(module, params, jnp.asarray(z), intervene.make(LAYER, alpha))
    return float(np.asarray(planted.mask(images)).sum())


def test_order_with_tiebreak():
    np.testing.assert_array_equal(ablate.order([-0.5, -0.9, -0.5, 0.0]), [1, 0, 2, 3])
    np.testing.assert_array_equal(
        ablate.order([-0.5, -0.9, -0.5, 0.0], tiebreak=[0.0, 0.0, -1.0, 0.0]), [1, 2, 0, 3]
    )


def test_curve_matches_brute_force(gen):
    module, params = gen
    z = proggan.sample_z(12, 3, 4)
    units = [3, 1, 0, 5]
    c = ablate.curve(module, params, planted.mask, z, LAYER, units, n_max=3, batch_size=5,
                     edit_chunk=2, show=False)  # fmt: skip
    assert c["units"] == [3, 1, 0] and c["n"] == [0, 1, 2, 3]
    for n in range(4):
        want = _brute_counts(module, params, z, intervene.unit_alpha(units[:n], 6))
        assert c["counts"][n] == want
    assert c["removed"][0] == 0 and c["removed"][2] == pytest.approx(1.0)
    assert c["removed"][3] == c["removed"][2]  # unit 0 does not cause the class
    assert all(lo <= r + 1e-9 and r <= hi + 1e-9
               for lo, r, hi in zip(c["low"], c["removed"], c["high"], strict=True))  # fmt: skip
    # Mixed units: each unit ablated by its alpha.
    alpha = np.linspace(0.1, 0.6, 6).astype(np.float32)
    m = ablate.curve(module, params, planted.mask, z, LAYER, units, alpha, n_max=2, show=False)
    want = _brute_counts(module, params, z, intervene.unit_alpha(units[:2], 6) * alpha)
    assert m["counts"][2] == want


def test_sweep_equals_loop(gen):
    module, params = gen
    z = proggan.sample_z(6, 3, 4)
    base, ablated = ablate.sweep(module, params, _segment, z, LAYER, 3, batch_size=4,
                                 edit_chunk=4, show=False)  # fmt: skip
    assert ablated.shape == (6, 3)

    def fractions(alpha):
        e = intervene.make(LAYER, alpha)
        seg = np.asarray(_segment(intervene.generate(module, params, jnp.asarray(z), e)))
        return np.array([(seg == lab).any(-1).mean() for lab in range(3)])

    np.testing.assert_allclose(base, fractions(np.zeros(6)), rtol=1e-6)
    for u in range(6):
        np.testing.assert_allclose(ablated[u], fractions(intervene.unit_alpha([u], 6)), rtol=1e-5)
    effect = ablated[:, 1] - base[1]
    assert np.all(effect[list(planted.CAUSAL)] < 0)
    np.testing.assert_allclose(np.delete(effect, planted.CAUSAL), 0.0, atol=1e-7)


def test_experiment_writes_files(gen, tmp_path):
    module, params = gen
    z = proggan.sample_z(8, 3, 4)
    orders = {"units": ([1, 3, 0], None), "ace": ([0, 2, 1], np.full(6, 0.5, np.float32))}
    out = ablate.experiment(str(tmp_path), module, params, planted.mask, z, LAYER, "red", orders,
                            n_max=3, batch_size=4, grid_images=3, grid_n=2, segment_fn=_segment,
                            colorize=draw.colorize, show=False)  # fmt: skip
    with open(tmp_path / "red-units.json") as f:
        rec = json.load(f)
    assert rec["ablation_units"] == [1, 3, 0] and rec["metric"] == "units"
    assert rec["removed"][2] == pytest.approx(1.0)
    assert out["ace"]["units"] == [0, 2, 1]
    grid = np.asarray(Image.open(tmp_path / "red-grid.png"))
    # 3 rows of images + 3 of segmentations, each tile 16 px, 2 px gaps, and a caption band
    band = grid.shape[1] - (3 * 18 - 2)
    assert grid.shape[0] == 6 * 18 - 2 and 40 < band <= 160
    assert Image.open(tmp_path / "red-curve.png").size == (640, 420)


def test_save_sweep(tmp_path):
    path = ablate.save_sweep(str(tmp_path / "sweep"), [1.0, 0.5], [[1.0, 0.1], [1.0, 0.4]],
                             ["-", "red"], LAYER)  # fmt: skip
    d = np.load(path)
    np.testing.assert_allclose(d["effect"], [[0.0, -0.4], [0.0, -0.1]])
    with open(tmp_path / "sweep.json") as f:
        assert json.load(f)["strongest"]["red"][:2] == [0, 1]
