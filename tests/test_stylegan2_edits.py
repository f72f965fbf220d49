"""Edits, ablation and ACE on a StyleGAN2 split at a layer: ``prefix(..., with_carry=True)`` and
``tail(..., carry=)`` equal the full run under the same edits; PGGAN's carry is None and its
split runs are unchanged."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import ace, intervene, proggan
from gdjax.intervene import ablate
from gdjax.models import stylegan2

G = stylegan2.Generator(z_dim=16, w_dim=16, resolution=16, channels=(16, 12, 8), mapping_layers=2)
LAYER = "b8.conv1"  # [N, 8, 8, 12]


def random_params(abstract, seed):
    """Random parameters with ``abstract``'s shapes, drawn in numpy (no compiled init):
    N(0, 1) weights, mapping weights N(0, 1/lr), affine biases 1 + N(0, 0.1²), other biases,
    noise strengths and the rest N(0, 0.5²)."""
    rng = np.random.RandomState(seed)
    leaves, tree = jax.tree.flatten_with_path(abstract)
    out = []
    for path, x in leaves:
        name = jax.tree_util.keystr(path)
        r = rng.standard_normal(x.shape).astype(np.float32)
        if "affine']['bias" in name:
            r = 1 + 0.1 * r
        elif "'weight'" in name or "'kernel'" in name or "'const'" in name:
            r = r / 0.01 if "mapping" in name else r
        else:
            r = 0.5 * r
        out.append(jax.device_put(r))
    return jax.tree.unflatten(tree, out)


@pytest.fixture(scope="module")
def params():
    return random_params(stylegan2.abstract_params(G), 0)


def z_of(n, seed=0):
    return proggan.sample_z(n, seed, 16)


@functools.cache
def _split(module, layer):
    pre = jax.jit(lambda p, z: intervene.prefix(module, p, z, layer, with_carry=True))
    tail = jax.jit(lambda p, h, c, e: intervene.tail(module, p, h, layer, e, c))
    return pre, tail


full = jax.jit(lambda p, z, e: intervene.generate(G, p, z, e))


@pytest.mark.parametrize("layer", ["b4.conv1", "b16.conv0"])  # skip image None / not None
def test_tail_of_prefix_equals_full_run(params, layer):
    pre, tail = _split(G, layer)
    z = z_of(3)
    h, carry = pre(params, z)
    assert isinstance(carry, stylegan2.Carry) and carry.ws.shape == (3, G.num_ws, 16)
    assert (carry.img is None) == (layer == "b4.conv1")  # b4's torgb has not run yet
    c = h.shape[-1]
    rng = np.random.RandomState(0)
    mask = (rng.uniform(size=h.shape[1:3]) > 0.5).astype(np.float32)
    edits = [
        intervene.make(layer, rng.uniform(size=c), rng.normal(size=c) * 2, mask),
        intervene.ablation("b16.conv1", [0, 3], 8),
        intervene.make("b16.torgb.style", np.ones(8), rng.normal(size=8)),
    ]
    got = tail(params, h, carry, edits)
    want = full(params, z, edits)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    plain = tail(params, h, carry, [])
    np.testing.assert_allclose(plain, full(params, z, []), rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(got) - np.asarray(plain)).max() > 1e-2  # the edits did something


def test_unit_ablation_via_tail_equals_module_edit(params):
    pre, tail = _split(G, LAYER)
    z = z_of(4, 1)
    h, carry = pre(params, z)
    edit = intervene.ablation(LAYER, [2, 5], 12)
    got = tail(params, h, carry, edit)
    want = full(params, z, edit)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # By hand: zeroing the units in h and resuming.
    by_hand = tail(params, h.at[..., [2, 5]].set(0.0), carry, [])
    np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(got) - np.asarray(tail(params, h, carry, []))).max() > 1e-2


def test_tail_errors(params):
    h, carry = _split(G, LAYER)[0](params, z_of(1))
    with pytest.raises(ValueError, match="needs carry"):
        intervene.tail(G, params, h, LAYER)
    for name in ["b8.conv1.style", "b8.conv0", "b4.torgb.style"]:  # used before the split
        with pytest.raises(ValueError, match=f"edit at '{name}' cannot be applied"):
            intervene.tail(G, params, h, LAYER, intervene.make(name, np.ones(4)), carry)


def test_pggan_carry_is_none_and_split_unchanged():
    module = proggan.Generator((8, 6, 5, 4))
    p = random_params(proggan.abstract_params(module), 3)
    z = z_of(2)[:, :8]
    assert not intervene.edits.needs_carry(module)

    @jax.jit
    def run(p, z):
        h = intervene.prefix(module, p, z, "layer2")
        h2, carry = intervene.prefix(module, p, z, "layer2", with_carry=True)
        e = intervene.ablation("layer2", [1], h.shape[-1])
        return (
            h,
            h2,
            carry,
            intervene.tail(module, p, h, "layer2", e),
            intervene.tail(module, p, h, "layer2", e, carry),
        )

    h, h2, carry, img, img2 = run(p, z)
    assert carry is None
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(img, img2)


def _red_fns(params, z, quantile=0.7):
    red = np.asarray(full(params, z, []))[..., 0]
    t = float(np.quantile(red, quantile))
    scale = float(red.std()) + 1e-6
    return ace.ClassFns(
        score=lambda img: jax.nn.sigmoid(10 * (img[..., 0] - t) / scale),
        mask=lambda img: img[..., 0] > t,
    )


CFG = ace.Config(
    layer=LAYER, search_size=16, train_size=8, eval_size=4, inference_batch_size=8,
    train_batch_size=2, train_update_freq=2, train_epochs=2, cells_per_batch=3,
)  # fmt: skip


def test_ace_on_stylegan2(params):
    fns = _red_fns(params, proggan.sample_z(CFG.search_size, CFG.present_seed, 16))
    # The loss with carries equals the same edits made in full runs.
    pre = _split(G, LAYER)[0]
    hp, cp = pre(params, z_of(2, 5))
    hc, cc = pre(params, z_of(2, 6))
    ploc, cloc = jnp.array([3, 40]), jnp.array([9, 63])
    alpha = jnp.asarray(np.random.RandomState(2).uniform(size=12), jnp.float32)
    k = jnp.full(12, 2.0)
    got = jax.jit(ace.ace_loss, static_argnames=("module", "layer", "score"))(
        alpha, params, k, hp, ploc, hc, cloc, cp, cc, module=G, layer=LAYER, score=fns.score
    )

    @jax.jit
    def pooled(z, loc, value):
        onehot = jax.nn.one_hot(loc, 64)
        e = intervene.Edit(LAYER, alpha, value, onehot.reshape(-1, 8, 8))
        s = fns.score(intervene.generate(G, params, z, e))
        return (ace.cell_coverage(s, (8, 8)).reshape(2, -1) * onehot).sum()

    want = pooled(z_of(2, 5), ploc, jnp.zeros(12)) - pooled(z_of(2, 6), cloc, k)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    result = ace.optimize(G, params, fns, CFG, progress=False)
    assert result.alpha.shape == (12,) and np.all(np.isfinite(result.alpha))
    assert np.all((result.alpha >= 0) & (result.alpha <= 1))
    assert np.all(np.isfinite(result.eval_loss)) and np.all(np.isfinite(result.train_loss))
    assert result.eval_loss[-1] < result.eval_loss[0]  # training lowered the held-out loss
    d = ace.delta(G, params, fns.mask, z_of(4, 7), LAYER, result.alpha, result.k, batch_size=4)
    assert np.isfinite(d)


def test_ablate_curve_on_stylegan2_matches_full_runs(params):
    z = z_of(6, 8)
    fns = _red_fns(params, z, 0.5)
    units = [4, 0, 7]
    c = ablate.curve(G, params, fns.mask, z, LAYER, units, n_max=3, batch_size=3, show=False)
    for n in range(4):
        e = intervene.make(LAYER, intervene.unit_alpha(units[:n], 12), 0.0)
        assert c["counts"][n] == float(np.sum(fns.mask(full(params, z, e))))
    assert c["baseline"] > 0 and np.all(np.isfinite(c["removed"]))
    assert len(set(c["counts"])) > 1  # the ablations change the class pixels
