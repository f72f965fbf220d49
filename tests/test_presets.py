"""Fixed-quantile dissection as each original computes it: gandissect takes a unit's level over
its raw feature-map values, the PNAS successor over values upsampled with zero padding
(reference §3.1, §12.3, §12.7); the presets set every choice and round-trip through
settings.json."""

import json

import bruteforce
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import dissect, proggan
from gdjax import segmenter as seglib
from gdjax.dissect import cache, layer
from gdjax.dissect.settings import PRESET, PRESETS, Settings
from gdjax.errors import InputError
from gdjax.models.resample import interpolation_matrix, upsample
from gdjax.world import train_segmenter


@pytest.mark.parametrize("d,out", [(8, 64), (4, 64), (3, 8), (5, 16), (4, 4), (8, 4)])
def test_pnas_upsampler_equals_the_successors_grid_sample(d, out):
    x = np.random.default_rng(d * out).normal(size=(d, d, 3))
    got = np.asarray(upsample(jnp.asarray(x, jnp.float32), (out, out), padding="zeros"))
    np.testing.assert_allclose(got, bruteforce.successor_upsample(x, out), atol=1e-5)


def test_pnas_upsampler_fades_at_the_border_and_is_half_pixel_inside():
    ones = np.asarray(upsample(jnp.ones((8, 8, 1)), (64, 64), padding="zeros"))[..., 0]
    np.testing.assert_allclose(ones[0, 0], 0.5625**2)  # 8 -> 64: the corner pixel
    np.testing.assert_allclose(ones[0, 32], 0.5625)  # an edge pixel
    np.testing.assert_allclose(ones[4:60, 4:60], 1.0)  # no fade beyond half a feature pixel
    edge, zeros = interpolation_matrix(64, 8), interpolation_matrix(64, 8, padding="zeros")
    np.testing.assert_array_equal(edge[4:60], zeros[4:60])  # the same grid inside


def _planted(n=12):
    """Raw maps 4x4 whose extremes sit at the border: a unit's raw and upsampled quantiles
    differ (upsampling blends the extremes with their neighbours, zero padding fades them)."""
    rng = np.random.default_rng(3)
    acts = rng.uniform(0, 1, (n, 4, 4, 3)).astype(np.float32)
    acts[:, 0, :, 0] += 3.0  # unit 0: a hot top row
    acts[:, :, 3, 1] *= 5.0  # unit 1: a hot right column
    labels = rng.integers(0, 3, (n, 16, 16, 1)).astype(np.int16)
    return cache.Cache({"x": acts}, labels)


@pytest.mark.parametrize("q", [0.005, 0.1])
def test_each_preset_takes_its_level_where_its_original_does(tmp_path, q):
    c = _planted()
    acts = c.acts["x"]
    raw = np.quantile(acts.reshape(-1, 3), 1 - q, axis=0, method="hazen")
    up = np.stack([bruteforce.successor_upsample(a, 16) for a in acts])
    pnas = np.quantile(up.reshape(-1, 3), 1 - q, axis=0, method="hazen")
    assert np.all(np.abs(raw - pnas) > 0.01)  # the planted case separates the two
    label_category = np.zeros(3, np.int64)
    for preset, want in (("gandissect", raw), ("pnas", pnas)):
        settings = Settings(layers=("x",), preset=preset, threshold=q)
        lv = layer.levels("x", c, label_category, 1, settings, workdir=str(tmp_path),
                          batch_size=5)  # fmt: skip
        np.testing.assert_allclose(lv.levels, want, rtol=1e-5, atol=1e-5, err_msg=preset)
        assert lv.label is None and lv.search is None  # labels from the IoU argmax
    # A flag given explicitly overrides the preset: gandissect with upsampled quantiles.
    mixed = Settings(layers=("x",), threshold=q, quantile_of="upsampled", padding="zeros")
    lv = layer.levels("x", c, label_category, 1, mixed, workdir=str(tmp_path), batch_size=5)
    np.testing.assert_allclose(lv.levels, pnas, rtol=1e-5, atol=1e-5)


def test_presets_set_every_choice_and_flags_override():
    g, p = Settings(), Settings(preset="pnas")
    assert (g.threshold, g.quantile_of, g.padding, g.downsample, g.iou) == (
        "iqr",
        "raw",
        "edge",
        2,
        "category",
    )
    assert (g.iou_threshold, g.iqr_threshold) == (0.05, 0.01)
    assert (p.threshold, p.quantile_of, p.padding, p.downsample, p.iou) == (
        0.01,
        "upsampled",
        "zeros",
        4,
        "all",
    )
    assert (p.iou_threshold, p.iqr_threshold) == (0.04, None)
    assert Settings(preset="pnas", downsample=1, iqr_threshold=0.02).iqr_threshold == 0.02
    assert Settings(threshold=0.01).quantile_of == "raw"  # gandissect's fixed quantile
    for name in PRESETS["pnas"]:
        assert Settings.__dataclass_fields__[name].default == PRESET
    with pytest.raises(InputError, match="preset must be one of gandissect, pnas"):
        Settings(preset="iclr")
    with pytest.raises(InputError, match="padding must be 'edge' or 'zeros'"):
        Settings(padding="reflect")


def test_presets_round_trip_and_a_resume_with_another_preset_is_refused(tmp_path):
    seg = seglib.from_config(
        train_segmenter.demo_config(stem=(8, 8, 8), planes=(8, 8, 8, 8), depths=(1, 1, 1, 1),
                                    dim=8), key=jax.random.key(0),
    )  # fmt: skip
    gen = proggan.init((16, 16, 16, 8, 8, 8), seed=0)
    pnas = Settings(preset="pnas", samples=8, batch_size=8, strips=2)
    out = tmp_path / "run"
    rec = dissect.dissect(str(out), gen, seg, pnas)
    stored = json.loads((out / "settings.json").read_text())
    assert Settings.from_json(stored) == pnas
    assert stored["preset"] == "pnas" and stored["iqr_threshold"] is None
    assert stored["quantile_of"] == "upsampled" and stored["padding"] == "zeros"
    assert rec["quantile_threshold"] == 0.01 and rec["iqr_threshold"] is None
    assert rec["layers"][0]["iou_threshold"] == 0.04
    units = rec["layers"][0]["units"]
    assert [u["interp"] for u in units] == [u["iou"] > 0.04 for u in units]  # IoU alone
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(InputError, match="other settings .*preset='pnas'"):
        dissect.dissect(str(out), gen, seg, Settings(samples=8, batch_size=8, strips=2))
    assert sorted(p.name for p in out.iterdir()) == before
