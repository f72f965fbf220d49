"""ACE on a planted generator whose class is caused by units 1 and 3 (tests/planted.py)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import planted
import pytest

from gdjax import ace, intervene, proggan
from gdjax.errors import InputError

CFG = ace.Config(
    layer="layer1",
    search_size=48,
    train_size=16,
    eval_size=8,
    inference_batch_size=8,
    train_batch_size=2,
    train_update_freq=2,
    train_epochs=10,
)


@pytest.fixture(scope="module")
def gen():
    return planted.make()


def _pairs(gen, n=4):
    module, params = gen
    hp = intervene.prefix(module, params, jnp.asarray(proggan.sample_z(n, 10, 4)), "layer1")
    hc = intervene.prefix(module, params, jnp.asarray(proggan.sample_z(n, 11, 4)), "layer1")
    return hp, jnp.array([0, 5, 10, 15][:n]), hc, jnp.array([3, 3, 12, 6][:n])


@pytest.mark.parametrize("ploc_bug", [False, True])
def test_ace_loss_by_hand(gen, ploc_bug):
    module, params = gen
    hp, ploc, hc, cloc = _pairs(gen)
    k = jnp.linspace(1.0, 3.0, 6)
    alpha = jnp.zeros(6)
    got = ace.ace_loss(alpha, params, k, hp, ploc, hc, cloc, module=module, layer="layer1",
                       score=planted.score, ploc_bug=ploc_bug)  # fmt: skip
    # alpha = 0: no edit; 4x4 cells of 2x2 pixels.
    sp = planted.score(module.apply({"params": params}, hp, start="layer1")[0])
    sc = planted.score(module.apply({"params": params}, hc, start="layer1")[0])
    cell = lambda s, i, loc: s[i].reshape(4, 2, 4, 2).mean(axis=(1, 3)).reshape(-1)[loc]
    read = ploc if ploc_bug else cloc  # the reference reads the gain at ploc
    want = sum(cell(sp, i, int(ploc[i])) - cell(sc, i, int(read[i])) for i in range(4))
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("ploc_bug", [False, True])
def test_ace_loss_grad_matches_finite_differences(gen, ploc_bug):
    module, params = gen
    hp, ploc, hc, cloc = _pairs(gen)
    k = jnp.linspace(1.0, 3.0, 6)

    @jax.jit
    def f(alpha):
        return ace.ace_loss(alpha, params, k, hp, ploc, hc, cloc, module=module, layer="layer1",
                            score=planted.score, ploc_bug=ploc_bug)  # fmt: skip

    alpha = jnp.array([0.2, 0.5, 0.9, 0.3, 0.0, 0.7])
    g = np.asarray(jax.grad(f)(alpha))
    eps = 1e-2
    fd = np.array([(f(alpha.at[u].add(eps)) - f(alpha.at[u].add(-eps))) / (2 * eps)
                   for u in range(6)])  # fmt: skip
    np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-3)
    assert np.all(np.abs(g[[0, 2, 4, 5]]) < 1e-6)  # units without effect on the class
    if not ploc_bug:
        assert np.abs(g[1]) > 1e-2 and np.abs(g[3]) > 1e-2


def test_present_set_insertion_value(gen):
    module, params = gen
    z = proggan.sample_z(12, 10, 4)
    cov, k = ace.present_set(module, params, planted.FNS, z, CFG._replace(inference_batch_size=5),
                             progress=False)  # fmt: skip
    h = np.asarray(intervene.prefix(module, params, jnp.asarray(z), "layer1"))
    m = np.asarray(planted.mask(module.apply({"params": params}, jnp.asarray(z))[0]))
    want_cov = m.reshape(12, 4, 2, 4, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(cov, want_cov)
    want_k = (h * want_cov[..., None]).sum(axis=(0, 1, 2)) / want_cov.sum()
    np.testing.assert_allclose(k, want_k, rtol=1e-5)


def test_candidate_set(gen):
    module, params = gen
    z = proggan.sample_z(16, 11, 4)
    k = np.full(6, 3.0, np.float32)
    scores, cloc = ace.candidate_set(module, params, planted.FNS, z, k, np.ones(16), CFG,
                                     progress=False)  # fmt: skip
    assert scores.shape == (16, 16)
    assert np.all((scores != 0).sum(axis=1) <= CFG.cells_per_batch)
    m = np.asarray(planted.mask(module.apply({"params": params}, jnp.asarray(z))[0]))
    present = m.reshape(16, 4, 2, 4, 2).any(axis=(2, 4)).reshape(16, -1)
    assert np.all(scores[present] == 0)
    assert scores.max() > 0  # inserting k into the red units adds red pixels
    np.testing.assert_array_equal(cloc, scores.argmax(axis=1))


def test_step_compiles_once(gen):
    module, params = gen
    hp, ploc, hc, cloc = _pairs(gen)
    traces = []

    def score(images):
        traces.append(1)
        return planted.score(images)

    init, step = ace.make_step(module, score, CFG)
    state = init(jnp.full(6, 0.5))
    batch = tuple(x.reshape(2, 2, *x.shape[1:]) for x in (hp, ploc, hc, cloc))
    k = jnp.ones(6)
    state, _ = step(state, params, k, batch)
    n = len(traces)
    for _ in range(3):
        state, loss = step(state, params, k, batch)
    assert len(traces) == n
    assert np.all((np.asarray(state.alpha) >= 0) & (np.asarray(state.alpha) <= 1))


def test_optimize_recovers_planted_units(gen):
    module, params = gen
    res = ace.optimize(module, params, planted.FNS, CFG, progress=False)
    assert res.snapshots.shape == (CFG.train_epochs + 1, 6)
    np.testing.assert_array_equal(res.snapshots[0], np.full(6, 0.5))
    assert set(np.argsort(-res.alpha)[:2]) == set(planted.CAUSAL)
    # 40 Adam steps of lr 0.01 from 0.5: the L2 term walks the other units down by ~0.4.
    assert res.alpha[list(planted.CAUSAL)].min() > 0.6, res.alpha
    assert np.delete(res.alpha, planted.CAUSAL).max() < 0.15, res.alpha
    assert res.eval_loss[-1] < res.eval_loss[0]
    again = ace.optimize(module, params, planted.FNS, CFG, progress=False)
    np.testing.assert_array_equal(res.alpha, again.alpha)  # seeded and deterministic


def test_delta(gen):
    module, params = gen
    z = proggan.sample_z(10, 3, 4)
    k = np.full(6, 3.0, np.float32)
    causal = ace.delta(module, params, planted.mask, z, "layer1",
                       intervene.unit_alpha(planted.CAUSAL, 6), k, batch_size=4)  # fmt: skip
    other = ace.delta(module, params, planted.mask, z, "layer1",
                      intervene.unit_alpha([0, 2, 4, 5], 6), k, batch_size=4)  # fmt: skip
    assert causal > 0.5 and other == 0.0
    loc = np.zeros((10, 4, 4), np.float32)
    loc[:, :2, :2] = 1
    local = ace.delta(module, params, planted.mask, z, "layer1",
                      intervene.unit_alpha(planted.CAUSAL, 6), k, locations=loc)  # fmt: skip
    assert local == pytest.approx(1.0)  # inserted cells all red, ablated cells none


def test_unit_quantiles(gen):
    module, params = gen
    z = proggan.sample_z(6, 1, 4)
    got = ace.unit_quantiles(module, params, z, "layer1", [0.5, 0.99], batch_size=4)
    h = np.asarray(intervene.prefix(module, params, jnp.asarray(z), "layer1")).reshape(-1, 6)
    np.testing.assert_allclose(got, np.quantile(h, [0.5, 0.99], axis=0, method="hazen"))


def test_init_from_dissect():
    rec = {"layers": [{"layer": "layer4", "rankings": [
        {"name": "tree-iou", "metric": "iou", "score": [-0.1, -0.4, 0.0]},
        {"name": "sky-iou", "metric": "iou", "score": [0.0, 0.0, 0.0]},
    ]}]}  # fmt: skip
    np.testing.assert_allclose(ace.init_from_dissect(rec, "layer4", "tree"), [0.25, 1.0, 0.0])
    assert ace.init_from_dissect(rec, "layer4", "door") is None  # no ranking
    assert ace.init_from_dissect(rec, "layer4", "sky") is None  # no positive IoU


def test_check_config():
    assert ace.check_config(ace.Config()) == ace.Config()
    bad = {
        "train_size must be a positive integer, got 0": dict(train_size=0),
        r"search_size 100 is below train_size \+ eval_size \(1000 \+ 200\)": dict(search_size=100),
        "train_size 10 is below one Adam step of train_batch_size x train_update_freq = 20": dict(
            train_size=10, eval_size=5, search_size=100
        ),
        "lr must be > 0": dict(lr=0.0),
    }
    for message, change in bad.items():
        with pytest.raises(InputError, match=message):
            ace.check_config(ace.Config(**change))


def test_optimize_resumes_after_an_interruption(gen, tmp_path, monkeypatch):
    module, params = gen
    cfg = CFG._replace(train_epochs=4)
    whole = ace.optimize(module, params, planted.FNS, cfg, progress=False)
    work = str(tmp_path / "work")
    real_bar = ace._progress.bar

    def interrupted_bar(items, desc="", **kw):  # Ctrl-C when the third epoch is to start
        for i, item in enumerate(real_bar(items, desc, **kw)):
            if desc == "ace epochs" and i == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(ace._progress, "bar", interrupted_bar)
    with pytest.raises(KeyboardInterrupt):
        ace.optimize(module, params, planted.FNS, cfg, progress=False, workdir=work)
    monkeypatch.setattr(ace._progress, "bar", real_bar)
    with np.load(os.path.join(work, "training.npz")) as f:
        assert int(f["epochs"]) == 2  # two epochs were kept
    searched = []
    present = ace.present_set
    monkeypatch.setattr(ace, "present_set", lambda *a: searched.append(1) or present(*a))
    resumed = ace.optimize(module, params, planted.FNS, cfg, progress=False, workdir=work)
    assert searched == []  # the present set was not searched again
    for field in ace.Result._fields:
        np.testing.assert_array_equal(getattr(resumed, field), getattr(whole, field), field)
