"""Fréchet distance against closed forms."""

import numpy as np

from gdjax.world import quality


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert abs(quality.frechet_distance(a, a)) < 1e-9
    # Diagonal Gaussians: |mu_a - mu_b|^2 + sum (sd_a - sd_b)^2, from the samples' own moments.
    b = rng.normal(size=(5000, 3)) * np.array([1.0, 2.0, 0.5]) + np.array([1.0, -2.0, 0.0])
    # Decorrelate exactly so the sample covariances are diagonal and the closed form is exact.
    a = (a - a.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(a, rowvar=False)).T)
    b0 = b - b.mean(0)
    b = b0 @ np.linalg.inv(np.linalg.cholesky(np.cov(b0, rowvar=False)).T) * [1.0, 2.0, 0.5]
    b += np.array([1.0, -2.0, 0.0])
    want = 1.0 + 4.0 + 0.0 + (1 - 1) ** 2 + (1 - 2) ** 2 + (1 - 0.5) ** 2
    np.testing.assert_allclose(quality.frechet_distance(a, b), want, rtol=1e-9)
    # Symmetric, and invariant to a rotation of both sets.
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    np.testing.assert_allclose(
        quality.frechet_distance(a @ q, b @ q), quality.frechet_distance(b, a), rtol=1e-8
    )
