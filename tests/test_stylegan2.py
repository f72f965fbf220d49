"""The Flax StyleGAN2 generator: resampling against brute force, split runs, edits in feature
and style space, truncation, jit / vmap / grad. (Equivalence with PyTorch references after
conversion: tests/test_convert_stylegan2.py.)"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax.models import stylegan2

G = stylegan2.Generator(z_dim=16, w_dim=16, resolution=16, channels=(16, 12, 8), mapping_layers=2)


def run(module, params, x, *, start=None, stop=None, capture=(), edits=None, carry=None):
    """``module.apply`` jitted once per split and capture (ref JAX compiles every op)."""
    return _jitted(module, start, stop, tuple(capture))(params, x, edits or {}, carry)


@functools.cache
def _jitted(module, start, stop, capture):
    def apply(p, x, edits, carry):
        return module.apply(
            {"params": p}, x, start=start, stop=stop, capture=capture, edits=edits, carry=carry
        )

    return jax.jit(apply)


@pytest.fixture(scope="module")
def params():
    return jax.jit(_params)()


def _params():
    p = G.init(jax.random.PRNGKey(0), jnp.zeros((1, 16)))["params"]
    # Non-zero noise strengths and w_avg, so noise and truncation matter below.
    leaves, tree = jax.tree.flatten_with_path(p)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    out = []
    for (path, x), k in zip(leaves, keys, strict=True):
        name = jax.tree_util.keystr(path)
        if "noise_strength" in name or "w_avg" in name or "'bias'" in name:
            x = 0.5 * jax.random.normal(k, x.shape)
        out.append(x)
    return jax.tree.unflatten(tree, out)


def z_of(n, seed=0):
    return np.random.RandomState(seed).standard_normal((n, 16)).astype(np.float32)


def brute_upfirdn(x, f, up, down, pad, gain):
    """Loops over every output pixel of the definition (NHWC, float64)."""
    n, h, w, c = x.shape
    x0, x1, y0, y1 = pad
    big = np.zeros((n, h * up, w * up, c))
    big[:, ::up, ::up] = x
    hp, wp = h * up + y0 + y1, w * up + x0 + x1
    padded = np.zeros((n, hp, wp, c))
    for i in range(hp):
        for j in range(wp):
            si, sj = i - y0, j - x0
            if 0 <= si < h * up and 0 <= sj < w * up:
                padded[:, i, j] = big[:, si, sj]
    fh, fw = f.shape
    k = f[::-1, ::-1] * gain
    out = np.zeros((n, hp - fh + 1, wp - fw + 1, c))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = np.einsum("nabc,ab->nc", padded[:, i : i + fh, j : j + fw], k)
    return out[:, ::down, ::down]


@pytest.mark.parametrize(
    "up,down,pad", [(1, 1, (1, 1, 1, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                    (2, 1, (-1, 0, 1, -2)), (3, 2, (0, 2, 1, 0))]
)  # fmt: skip
def test_upfirdn2d_against_brute_force(up, down, pad):
    rng = np.random.RandomState(0)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    f = rng.standard_normal((4, 3)).astype(np.float32)  # asymmetric: catches a missing flip
    got = stylegan2.upfirdn2d(jnp.asarray(x), f, up, down, pad, gain=1.5)
    np.testing.assert_allclose(np.asarray(got), brute_upfirdn(x, f, up, down, pad, 1.5),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_shapes_names_and_pggan_surface(params):
    assert G.sizes[0] == 16 and G.num_ws == 6
    assert G.layers == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1",
                        "output_16x16"]  # fmt: skip
    img, acts = run(G, params, z_of(3), capture=[*G.layers, *G.style_layers])
    assert img.shape == (3, 16, 16, 3)
    assert acts["b8.conv0"].shape == (3, 8, 8, 12) and acts["b16.conv1"].shape == (3, 16, 16, 8)
    assert acts["b16.conv0.style"].shape == (3, 12) and acts["b16.torgb.style"].shape == (3, 8)
    np.testing.assert_array_equal(np.asarray(acts["output_16x16"]), np.asarray(img))
    with pytest.raises(ValueError, match="unknown generator layer 'layer4'"):
        run(G, params, z_of(1), capture=["layer4"])
    with pytest.raises(ValueError, match="needs carry="):
        run(G, params, acts["b8.conv0"], start="b8.conv0")


@pytest.mark.parametrize("layer", G.layers)
def test_split_run_equals_full_run_with_edits(params, layer):
    z = z_of(2, 1)
    c = jnp.arange(12, dtype=jnp.float32) / 12
    edits = {"b8.conv1": (c, 0.3 * jnp.ones(12)), "b16.conv0.style": (jnp.full(12, 0.5), 2.0)}
    full, acts = run(G, params, z, edits=edits, capture=G.layers)
    h, a = run(G, params, z, stop=layer, edits=edits, capture=("carry",))
    tail, _ = run(G, params, h, start=layer, carry=a["carry"], edits=edits)
    np.testing.assert_allclose(np.asarray(tail), np.asarray(full), rtol=0, atol=1e-6)
    if layer != "b8.conv1":  # stop returns the layer's output after its edit
        np.testing.assert_allclose(np.asarray(h), np.asarray(acts[layer]), rtol=0, atol=1e-6)


def test_edits_change_only_what_follows(params):
    z = z_of(2, 2)
    base, acts = run(G, params, z, capture=G.layers)
    # A style edit in b16.conv0 leaves every earlier layer alone and changes b16.conv0 on.
    s = {"b16.conv0.style": (jnp.ones(12), jnp.zeros(12))}
    _, edited = run(G, params, z, capture=G.layers, edits=s)
    for name in ["b4.conv1", "b8.conv0", "b8.conv1"]:
        np.testing.assert_array_equal(np.asarray(edited[name]), np.asarray(acts[name]))
    assert float(jnp.abs(edited["b16.conv0"] - acts["b16.conv0"]).max()) > 1e-2
    # Replacing a style vector by itself (alpha 1) or not at all (alpha 0) changes nothing.
    _, st = run(G, params, z, capture=["b8.torgb.style"])
    for edit in [(1.0, st["b8.torgb.style"]), (0.0, 5.0)]:
        out, _ = run(G, params, z, edits={"b8.torgb.style": edit})
        np.testing.assert_allclose(np.asarray(out), np.asarray(base), rtol=0, atol=1e-6)
    # Switching off channel 3 of b8.conv0 zeroes exactly that channel of the captured-after map.
    a = jnp.zeros(12).at[3].set(1.0)
    h, _ = run(G, params, z, stop="b8.conv0", edits={"b8.conv0": (a, 0.0)})
    assert float(jnp.abs(h[..., 3]).max()) == 0.0
    np.testing.assert_array_equal(np.asarray(h[..., :3]), np.asarray(acts["b8.conv0"][..., :3]))


def test_truncation_and_noise_modes(params):
    z = z_of(3, 3)
    t0 = stylegan2.from_config(stylegan2.config(G), truncation_psi=0.0)
    img, _ = run(t0, params, z)  # psi 0: every w is w_avg, one image
    np.testing.assert_allclose(np.asarray(img[0]), np.asarray(img[1]), rtol=0, atol=1e-6)
    base, _ = run(G, params, z)
    quiet = stylegan2.from_config(stylegan2.config(G), noise_mode="none")
    assert float(jnp.abs(run(quiet, params, z)[0] - base).max()) > 1e-3
    rnd = stylegan2.from_config(stylegan2.config(G), noise_mode="random")
    noisy = jax.jit(lambda p, z, k: rnd.apply({"params": p}, z, rngs={"noise": k})[0])
    a, b, c = (noisy(params, z, jax.random.PRNGKey(k)) for k in (0, 0, 1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same key, same noise
    assert float(jnp.abs(a - c).max()) > 1e-3


def test_jit_vmap_grad(params):
    z = z_of(2, 4)
    traces = []

    @jax.jit
    def step(p, z, alpha):
        traces.append(1)
        return G.apply({"params": p}, z, edits={"b8.conv1": (alpha, 0.0)})[0]

    ref = run(G, params, z, edits={"b8.conv1": (jnp.full(12, 0.25), 0.0)})[0]
    for _ in range(2):
        got = step(params, z, jnp.full(12, 0.25))
    assert len(traces) == 1
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=0, atol=1e-5)
    alphas = jnp.stack([jnp.zeros(12), jnp.full(12, 0.25), jnp.ones(12)])
    batched = jax.vmap(lambda a: step(params, z, a))(alphas)
    np.testing.assert_allclose(np.asarray(batched[1]), np.asarray(ref), rtol=0, atol=1e-5)
    # d(mean image)/d(alpha) against a central finite difference.
    loss = lambda a: step(params, z, a).mean()  # noqa: E731
    g = jax.grad(loss)(jnp.full(12, 0.25))
    e = jnp.zeros(12).at[5].set(1e-2)
    fd = (loss(jnp.full(12, 0.25) + e) - loss(jnp.full(12, 0.25) - e)) / 2e-2
    assert abs(float(g[5]) - float(fd)) < 1e-3 * max(1.0, abs(float(fd))) and float(g[5]) != 0


def test_save_load_roundtrip(params, tmp_path):
    stylegan2.save(str(tmp_path / "g"), G, params, note="x")
    module, loaded = stylegan2.load(str(tmp_path / "g"), truncation_psi=0.7)
    assert module.truncation_psi == 0.7 and module.channels == G.channels
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_shipped_demo_stylegan2():
    from gdjax.models import checkpoint
    from gdjax.world import demo

    module, params = demo.load_generator("demo-stylegan2")
    assert (module.resolution, module.sizes[0]) == (64, 128)
    z = np.random.RandomState(5).standard_normal((2, 128)).astype(np.float32)
    img, acts = run(module, params, z, capture=["b8.conv1"])
    assert img.shape == (2, 64, 64, 3) and acts["b8.conv1"].shape == (2, 8, 8, 64)
    assert np.isfinite(np.asarray(img)).all() and float(jnp.abs(img).mean()) > 0.05
    config = checkpoint.read_config(demo.STYLEGAN2, stylegan2.KIND)
    assert config["trained_images"] > 0 and "train_stylegan2.py" in config["recipe"]
    avg = np.asarray(params["mapping"]["w_avg"])
    assert np.abs(avg).max() > 0  # the export set the truncation centre
