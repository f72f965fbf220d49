"""The Flax Progressive GAN against our PyTorch reference, through the converter CLI."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import proggan

LSUN256 = [512, 512, 512, 512, 256, 128, 64, 32]
SMALL = [16, 32, 16, 8]  # 16x16 output, 6 blocks + output


def tol(a, b):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_layer_names_and_param_count():
    assert proggan.layer_names(LSUN256)[-1] == "output_256x256"
    assert len(proggan.layer_names(LSUN256)) == 15
    assert proggan.layer_names([128, 128, 128, 64, 32, 16])[-1] == "output_64x64"
    params = proggan.abstract_params(proggan.Generator(tuple(LSUN256)))
    assert sum(x.size for x in jax.tree.leaves(params)) == 18_344_995


def test_wscale_constants_match_reference():
    # reference §1.2: scale = gain / sqrt(fan_in), gain sqrt(2)/k (1 for the output block).
    module = proggan.Generator(tuple(LSUN256))
    params = proggan.abstract_params(module)
    got = {}

    def spy(next_fun, args, kwargs, context):
        if isinstance(context.module, proggan.WScale):
            got[context.module.scope.path[0]] = context.module.scale
        return next_fun(*args, **kwargs)

    with proggan.nn.intercept_methods(spy):  # traced only: no computation
        jax.eval_shape(lambda p: module.apply({"params": p}, jnp.zeros((1, 512))), params)
    expect = {"layer1": 0.015625, "layer7": 0.0208333, "layer8": 0.0294628, "layer10": 0.0416667}
    expect |= {"layer13": 0.0589256, "layer14": 0.0833333, "output_256x256": 0.1767767}
    for name, value in expect.items():
        assert got[name] == pytest.approx(value, abs=1e-7), name


def test_sample_z_matches_reference_and_is_prefix_stable():
    z = proggan.sample_z(10, seed=1)
    assert z.dtype == np.float32 and z.shape == (10, 512)
    np.testing.assert_allclose(z[0, :4], [1.6243454, -0.6117564, -0.5281718, -1.0729686], 1e-6)
    np.testing.assert_array_equal(proggan.sample_z(3, seed=1), z[:3])
    assert not np.array_equal(proggan.sample_z(3, seed=2), z[:3])


def test_split_run_equals_full_run_under_jit_vmap_grad():
    module, params = proggan.init(SMALL, seed=3)
    z = jnp.asarray(proggan.sample_z(3, seed=5, dim=SMALL[0]))
    names = module.layers

    @jax.jit
    def full(z):
        return module.apply({"params": params}, z, capture=names)

    image, acts = full(z)
    assert set(acts) == set(names)
    for k in names[:-1]:
        h, _ = jax.jit(lambda z, k=k: module.apply({"params": params}, z, stop=k))(z)
        np.testing.assert_allclose(h, acts[k], rtol=1e-6, atol=1e-6)
        tail, _ = module.apply({"params": params}, h, start=k)
        np.testing.assert_allclose(tail, image, rtol=1e-5, atol=1e-5)
    # vmap over single latents equals the batched run.
    one = jax.vmap(lambda z1: module.apply({"params": params}, z1[None])[0][0])(z)
    np.testing.assert_allclose(one, image, rtol=1e-5, atol=1e-5)
    # Gradient of the image w.r.t. an edit coefficient is finite and non-zero.
    h4, _ = module.apply({"params": params}, z, stop="layer4")

    def f(alpha):
        out, _ = module.apply(
            {"params": params}, h4, start="layer4", edits={"layer5": (alpha, jnp.zeros(8))}
        )
        return out.sum()

    g = jax.grad(f)(jnp.full((8,), 0.5))
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_bad_layer_and_latent_shapes_raise_clearly():
    module, params = proggan.init(SMALL)
    with pytest.raises(ValueError, match=r"unknown generator layer 'layer99'.*layer4"):
        module.apply({"params": params}, jnp.zeros((1, 16)), capture=["layer99"])
    with pytest.raises(ValueError, match=r"latent must be \[N, 16\]"):
        module.apply({"params": params}, jnp.zeros((1, 8)))
    with pytest.raises(ValueError, match="comes before"):
        module.apply({"params": params}, jnp.zeros((1, 16)), start="layer4", stop="layer2")


def test_edit_broadcasting():
    x = jnp.arange(2 * 2 * 2 * 3, dtype=jnp.float32).reshape(2, 2, 2, 3)
    alpha = jnp.array([1.0, 0.0, 0.5])
    got = proggan.apply_edit(x, alpha, jnp.array([7.0, 7.0, 7.0]))
    want = np.asarray(x) * (1 - np.asarray(alpha)) + 7.0 * np.asarray(alpha)
    np.testing.assert_allclose(got, want)
    mask = jnp.zeros((2, 2, 3)).at[0, 1].set(1.0)
    got = proggan.apply_edit(x, mask, 0.0)
    np.testing.assert_allclose(got[:, 0, 1], 0.0)
    np.testing.assert_allclose(got[:, 1], x[:, 1])


def test_load_rejects_non_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        proggan.load(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="is not a gdjax proggan checkpoint"):
        proggan.load(str(tmp_path))
    module, params = proggan.init(SMALL)
    proggan.save(str(tmp_path / "g"), module, params)
    loaded_module, loaded = proggan.load(str(tmp_path / "g"))
    assert loaded_module == module
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
    # A checkpoint of another configuration fails listing the differences.
    import json

    cfg_path = tmp_path / "g" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["sizes"] = [16, 32, 16, 4]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"misshaped: layer5/conv/kernel"):
        proggan.load(str(tmp_path / "g"))
