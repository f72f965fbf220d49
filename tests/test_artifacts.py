"""Artifact units: Fréchet distance against scipy, the ranking and the repair on planted cases."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import proggan
from gdjax.errors import InputError
from gdjax.intervene import artifacts, edits
from gdjax.world import quality

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [16, 16, 16, 8]  # 16x16 images; layer6 is 16x16 with 8 units
LAYER, PLANTED = "layer6", 5
OFF = edits.ablation(LAYER, [PLANTED], SIZES[-1])


def scipy_fd(a, b):
    """pytorch-fid's calculate_frechet_distance: scipy.linalg.sqrtm of the covariance product."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2)).real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


@pytest.mark.parametrize("n,d", [(500, 8), (3000, 64)])
def test_frechet_equals_scipy(n, d):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(d)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    a = rng.normal(size=(n, d)) @ mix
    b = (rng.normal(size=(n + 100, d)) * rng.uniform(0.5, 2, d)) @ mix + rng.normal(size=d) * 0.3
    want = scipy_fd(a, b)
    assert want > 0.1
    for got in (
        artifacts.frechet(artifacts.gaussian(a), b),
        artifacts.frechet(artifacts.gaussian(None, a.mean(0), np.cov(a, rowvar=False)), b),
        artifacts.frechet(artifacts.gaussian(b), artifacts.gaussian(a)),  # symmetric
        quality.frechet_distance(a, b),
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_frechet_of_fewer_samples_than_dimensions():
    """A unit's few top images against many features (singular covariance, where scipy's
    sqrtm is unreliable): the Gram-matrix route equals the eigendecomposition of R S R."""
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 50)) @ rng.normal(size=(50, 50))
    few = rng.normal(size=(20, 50)) @ rng.normal(size=(50, 50)) + 1.0
    ref = artifacts.gaussian(real)
    want = artifacts.frechet(ref, artifacts.gaussian(few))
    # 1e-7: the square roots of the D x D route's rounding-level eigenvalues (the 30 that are
    # zero in exact arithmetic) add up to about 1e-8 of the distance.
    np.testing.assert_allclose(artifacts.frechet(ref, few), want, rtol=1e-7)
    np.testing.assert_allclose(quality.frechet_distance(real, few), want, rtol=1e-6)


def test_rank_planted_features():
    """Unit 3's top images are the only ones with shifted features: it ranks first, and every
    unit's FD is the brute-force FD of its own top images."""
    rng = np.random.default_rng(0)
    n, c, d, top = 400, 12, 6, 40
    feats = rng.normal(size=(n, d))
    peaks = rng.uniform(size=(n, c)).astype(np.float32)
    off = rng.choice(n, top, replace=False)
    peaks[off, 3] += 1.0  # unit 3 fires hardest exactly on the off-distribution images
    feats[off] += 2.0
    real = artifacts.gaussian(rng.normal(size=(2000, d)))
    r = artifacts.rank(peaks, feats, real, top)
    assert r["order"][0] == 3 and set(r["top_index"][:, 3]) == set(off)
    for u in range(c):
        want = np.argsort(-peaks[:, u], kind="stable")[:top]
        np.testing.assert_array_equal(r["top_index"][:, u], want)
        np.testing.assert_allclose(r["fd"][u], artifacts.frechet(real, feats[want]), rtol=1e-12)
    assert r["fd"][3] > 2 * np.delete(r["fd"], 3).max()
    with pytest.raises(ValueError, match="top must be in 2..400"):
        artifacts.rank(peaks, feats, real, 401)


def _features(images):
    """A small fake feature extractor: per-channel mean and spread, and a coarse 2x2 colour map."""
    mean, std = images.mean(axis=(1, 2)), images.std(axis=(1, 2))
    n, h, w, _ = images.shape
    coarse = images.reshape(n, 2, h // 2, 2, w // 2, 3).mean(axis=(2, 4)).reshape(n, 12)
    return jnp.concatenate([mean, std, coarse], axis=1)


@pytest.fixture(scope="module")
def planted():
    """A random generator whose last block's unit 5 paints into the image 3x harder than the
    others (its toRGB weights scaled); "real" images are the same generator with unit 5 off,
    so the images where unit 5 fires hardest are the farthest from real."""
    module, params = proggan.init(SIZES, seed=0)
    out = params["output_16x16"]
    kernel = out["conv"]["kernel"].at[:, :, PLANTED, :].multiply(3.0)
    params = {**params, "output_16x16": {**out, "conv": {"kernel": kernel}}}
    z_real = proggan.sample_z(600, seed=9, dim=SIZES[0])
    feats = jax.jit(lambda z: _features(edits.generate(module, params, z, OFF)))(z_real)
    return module, params, artifacts.gaussian(np.asarray(feats))


def test_scan_equals_brute_force_and_resumes(planted, tmp_path):
    module, params, _ = planted
    z = proggan.sample_z(23, seed=4, dim=SIZES[0])
    images, acts = module.apply({"params": params}, z, capture=[LAYER])
    want_peaks = np.asarray(acts[LAYER]).max(axis=(1, 2))
    path = str(tmp_path / "scan.npz")
    peaks, feats = artifacts.scan(module, params, LAYER, _features, z, 5, path, every=0)
    np.testing.assert_allclose(peaks, want_peaks, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(feats, _features(images), rtol=1e-5, atol=1e-6)
    # An interrupted scan: only the first two batches on disk; the rest is computed again.
    with np.load(path) as f:
        partial = {"peaks": f["peaks"].copy(), "features": f["features"].copy(), "done": 10}
    partial["peaks"][10:] = partial["features"][10:] = 0
    np.savez(path, **partial)
    again = artifacts.scan(module, params, LAYER, _features, z, 5, path, every=0)
    np.testing.assert_array_equal(again[0], peaks)
    np.testing.assert_array_equal(again[1], feats)


def test_experiment_finds_and_repairs_the_planted_unit(planted, tmp_path):
    module, params, real = planted
    z_scan = proggan.sample_z(400, seed=1, dim=SIZES[0])
    z_repair = proggan.sample_z(300, seed=3, dim=SIZES[0])
    settings = {"case": "planted"}
    run = lambda **kw: artifacts.experiment(  # noqa: E731
        str(tmp_path / "a"), module, params, LAYER, _features, real, z_scan, z_repair,
        top=40, ks=(1, 3), draws=5, worst=3, labels={PLANTED: "planted"},
        real_images=np.zeros((6, 16, 16, 3)), settings=settings, show=False, **kw,
    )  # fmt: skip
    out = run()
    rank, fix = out["ranking"], out["repair"]
    assert rank["ranking"][0]["unit"] == PLANTED and rank["ranking"][0]["label"] == "planted"
    assert rank["ranking"][0]["fd"] > 1.2 * rank["ranking"][1]["fd"]
    one, three = fix["ks"]
    assert one["units"] == [PLANTED] and three["units"][0] == PLANTED
    # Unit 5 off makes the generator the "real" one: FD falls to the sampling floor, far below
    # the unedited generator and every random draw that leaves unit 5 on.
    assert one["fd"] < 0.05 * fix["base"]
    kept_on = [f for u, f in zip(one["random"]["units"], one["random"]["fd"], strict=True)
               if PLANTED not in u]  # fmt: skip
    assert kept_on and one["fd"] < 0.05 * min(kept_on)
    r = one["random"]
    assert r["min"] <= r["low"] <= r["mean"] <= r["high"] <= r["max"]
    assert len(r["fd"]) == 5 and all(len(u) == 1 for u in r["units"])
    assert all(len(set(u)) == 3 for u in three["random"]["units"])
    # The same FD as measured directly.
    feats = jax.jit(lambda z: _features(edits.generate(module, params, z, OFF)))(z_repair)
    direct = artifacts.frechet(real, np.asarray(feats))
    np.testing.assert_allclose(one["fd"], direct, rtol=1e-4)
    names = sorted(os.listdir(tmp_path / "a"))
    for name in ("artifacts.json", "artifacts-worst.png", "repair.json", "artifacts-repair.png"):
        assert name in names
    with open(tmp_path / "a" / "repair.json") as f:
        assert json.load(f)["ks"][0]["fd"] == one["fd"]
    # A rerun resumes: finished measurements are read back, not measured again (a planted
    # value shows it), the rest is the same; other settings are refused.
    progress = tmp_path / "a" / "repair-progress.json"
    stored = json.loads(progress.read_text())
    stored["base"]["fd"] = 123.0
    progress.write_text(json.dumps(stored))
    again = run()["repair"]
    assert again["base"] == 123.0 and again["ks"] == fix["ks"]
    settings["case"] = "other"
    with pytest.raises(InputError, match="case"):
        run()


def test_cli_bad_input_is_one_line(tmp_path):
    env = {**os.environ, "GDJAX_PROGRESS": "0"}
    for flags, message in [
        (["--features", "inception"], "error: --features inception needs --inception DIR"),
        (
            ["--real", str(tmp_path / "none.npz")],
            f"error: --real {tmp_path / 'none.npz'}: no such file",
        ),
    ]:
        p = subprocess.run(
            [sys.executable, "examples/artifacts.py", "--outdir", str(tmp_path / "o"), *flags],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith(message), p.stderr
        assert not (tmp_path / "o").exists()
