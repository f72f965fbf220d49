"""Edits as values: identities, the alpha-over rule, vmapping, gradients, mask pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import intervene, proggan

SIZES = (8, 8, 8, 4)  # z=8; layer1-4 have 8 units (4x4, 8x8), layer5,6 4 units at 16x16
LAYER = "layer2"


@pytest.fixture(scope="module")
def gen():
    module, params = proggan.init(SIZES, seed=3)
    z = jnp.asarray(proggan.sample_z(3, seed=1, dim=8))
    return module, params, z


def test_ablation_equals_zeroing_channels(gen):
    module, params, z = gen
    h = intervene.prefix(module, params, z, LAYER)
    edit = intervene.ablation(LAYER, [1, 5], 8)
    zeroed = h.at[..., jnp.array([1, 5])].set(0.0)
    got = intervene.tail(module, params, h, LAYER, edit)
    want = module.apply({"params": params}, zeroed, start=LAYER)[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # The same through the full generator.
    np.testing.assert_allclose(intervene.generate(module, params, z, edit), want, atol=1e-5)


def test_alpha_zero_is_identity(gen):
    module, params, z = gen
    h = intervene.prefix(module, params, z, LAYER)
    edit = intervene.make(LAYER, np.zeros(8), np.full(8, 7.0))
    np.testing.assert_array_equal(intervene.apply_edit(h, edit), h)
    np.testing.assert_allclose(
        intervene.tail(module, params, h, LAYER, edit),
        module.apply({"params": params}, z)[0],
        atol=1e-5,
    )


def test_mask_restricts_edit():
    x = jnp.arange(2 * 2 * 2 * 3, dtype=jnp.float32).reshape(2, 2, 2, 3)
    mask = np.array([[1.0, 0.0], [0.0, 0.5]], np.float32)
    edit = intervene.make(LAYER, [1.0, 0.0, 1.0], [10.0, 10.0, 20.0], mask)
    got = np.asarray(intervene.apply_edit(x, edit))
    want = np.asarray(x).copy()
    a = mask[None, :, :, None] * np.array([1.0, 0.0, 1.0])
    want = want * (1 - a) + np.array([10.0, 10.0, 20.0]) * a
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_compose_matches_hand_computation():
    x = np.array([2.0, -1.0, 4.0], np.float32).reshape(1, 1, 1, 3)
    e1 = intervene.make(LAYER, [0.5, 1.0, 0.0], [10.0, 20.0, 30.0])
    e2 = intervene.make(LAYER, [0.25, 0.0, 0.0], [-4.0, 5.0, 6.0])
    c = intervene.compose([e1, e2])
    # alpha-over by hand: a = 1-(1-a1)(1-a2); v = (v1 a1 (1-a2) + v2 a2) / a; v = 0 where a = 0
    np.testing.assert_allclose(c.alpha, [1 - 0.5 * 0.75, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(
        c.value, [(10 * 0.5 * 0.75 - 4 * 0.25) / (1 - 0.5 * 0.75), 20.0, 0.0], rtol=1e-6
    )
    seq = intervene.apply_edit(intervene.apply_edit(jnp.asarray(x), e1), e2)
    np.testing.assert_allclose(intervene.apply_edit(jnp.asarray(x), c), seq, rtol=1e-6)


def test_compose_masks_of_different_ranks(gen):
    module, params, z = gen
    h = intervene.prefix(module, params, z, LAYER)
    m1 = np.zeros((4, 4), np.float32)
    m1[:2] = 1
    m2 = np.zeros((3, 4, 4), np.float32)
    m2[:, :, 1:3] = 0.5
    e1 = intervene.ablation(LAYER, [0, 3], 8, m1)
    e2 = intervene.insertion(LAYER, [3, 4], np.arange(8.0), m2)
    seq = intervene.apply_edit(intervene.apply_edit(h, e1), e2)
    np.testing.assert_allclose(
        intervene.apply_edit(h, intervene.compose([e1, e2])), seq, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        intervene.tail(module, params, h, LAYER, [e1, e2]),
        module.apply({"params": params}, seq, start=LAYER)[0],
        atol=1e-5,
    )


def test_vmapped_edits_equal_loop(gen):
    module, params, z = gen
    h = intervene.prefix(module, params, z, LAYER)
    rng = np.random.RandomState(0)
    edits = [
        intervene.make(LAYER, rng.uniform(size=8), rng.normal(size=8), rng.uniform(size=(4, 4)))
        for _ in range(5)
    ]
    run = jax.jit(lambda e: intervene.tail(module, params, h, LAYER, e))
    batched = jax.vmap(run)(intervene.stack(edits))
    for i, e in enumerate(edits):
        np.testing.assert_allclose(batched[i], run(e), rtol=1e-4, atol=1e-4)


def test_later_layer_edit_in_tail(gen):
    module, params, z = gen
    h = intervene.prefix(module, params, z, LAYER)
    edit = intervene.ablation("layer5", [2], 4)
    full = intervene.generate(module, params, z, edit)
    np.testing.assert_allclose(intervene.tail(module, params, h, LAYER, edit), full, atol=1e-5)
    with pytest.raises(ValueError, match="cannot be applied"):
        intervene.tail(module, params, h, "layer3", intervene.ablation(LAYER, [0], 8))


def test_grad_in_alpha(gen):
    # At the last hidden layer the rest of the generator is smooth (PixelNorm, 1x1 conv), so
    # finite differences are meaningful; earlier layers put LeakyReLU kinks in the way.
    module, params, z = gen
    h = intervene.prefix(module, params, z, "layer6")
    value = jnp.linspace(0.0, 2.0, 4)

    def f(alpha):
        edit = intervene.make("layer6", alpha, value)
        return jnp.sum(jnp.sin(intervene.tail(module, params, h, "layer6", edit)))

    alpha = jnp.array([0.3, 0.9, 0.0, 0.5])
    g = jax.grad(f)(alpha)
    eps = 1e-2
    for u in range(4):
        d = jnp.zeros(4).at[u].set(eps)
        fd = (f(alpha + d) - f(alpha - d)) / (2 * eps)
        np.testing.assert_allclose(g[u], fd, rtol=2e-2, atol=1e-4)


def test_pool_mask_max_and_mean():
    m = np.zeros((2, 8, 8), np.float32)
    m[0, 0, 0] = 1
    m[1, 4:, 4:] = 1
    m[1, 7, 0] = 1
    np.testing.assert_array_equal(
        intervene.pool_mask(m, (2, 2), "max"), [[[1, 0], [0, 0]], [[0, 0], [1, 1]]]
    )
    np.testing.assert_allclose(
        intervene.pool_mask(m, (2, 2), "mean"), [[[1 / 16, 0], [0, 0]], [[0, 0], [1 / 16, 1]]]
    )
    # Non-dividing sizes use overlapping adaptive bins: 5 px -> 3 cells: [0,2) [1,4) [3,5).
    row = np.array([[0, 0, 0, 1, 0]], np.float32).repeat(5, 0)
    np.testing.assert_array_equal(intervene.pool_mask(row, (1, 3), "max"), [[0, 1, 1]])
