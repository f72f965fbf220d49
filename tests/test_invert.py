"""Inversion: encoder training, optimization, image loading, blending (gdjax.invert)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gdjax import demo, invert, proggan, progress
from gdjax.errors import InputError
from gdjax.intervene import edits
from gdjax.invert import blend, evaluate, image, optimize, train

# A tiny generator: 16x16 images, layer4 is 8x8 with 16 units, layer6 16x16 with 8.
SIZES = [16, 16, 16, 8]


@pytest.fixture(scope="module")
def gen():
    return proggan.init(SIZES, seed=0)


def _interrupt_after(monkeypatch, n):
    """Make the next progress bar raise KeyboardInterrupt after ``n`` items (later bars run)."""
    real, calls = progress.bar, []

    def bar(items, *args, **kwargs):
        if calls:
            yield from real(items, *args, **kwargs)
            return
        calls.append(1)
        for i, item in enumerate(items):
            if i == n:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(progress, "bar", bar)


def test_encoder_training_reduces_loss_and_resumes_to_the_same_weights(gen, tmp_path, monkeypatch):
    cfg = train.Config(steps=30, batch_size=8, lr=3e-3, warmup=2, pixel_weight=1.0)
    module, params, _ = train.train(str(tmp_path / "a"), gen, cfg, checkpoint_every=10,
                                    log=lambda s: None, show_progress=False)  # fmt: skip
    # The loss on a fixed batch of pairs, before and after.
    z = jax.random.normal(jax.random.PRNGKey(99), (16, SIZES[0]))
    h = edits.prefix(*gen, z, "layer4")
    x = edits.tail(*gen, h, "layer4")
    before, _ = train.loss_fn(
        train.init_state(module, cfg, 0).params, module, gen, h, x, "layer4", 1.0
    )
    after, _ = train.loss_fn(params, module, gen, h, x, "layer4", 1.0)
    assert float(after) < 0.6 * float(before)

    _interrupt_after(monkeypatch, 13)  # a checkpoint at step 13 (Ctrl-C) after the one at 10
    with pytest.raises(KeyboardInterrupt):
        train.train(str(tmp_path / "b"), gen, cfg, checkpoint_every=10, log=lambda s: None)
    _, resumed, step = train.train(str(tmp_path / "b"), gen, cfg, checkpoint_every=10,
                                   log=lambda s: None, show_progress=False)  # fmt: skip
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    assert step == 30
    steps = [json.loads(line)["step"] for line in open(tmp_path / "b" / "log.jsonl")]
    assert steps == [10, 13, 20, 30]


def test_optimizer_recovers_a_planted_representation_batch_independent_and_resumable(
    gen, tmp_path, monkeypatch
):
    module, params = gen
    z = jax.random.normal(jax.random.PRNGKey(5), (3, SIZES[0]))
    targets = np.asarray(edits.generate(module, params, z))
    h = edits.prefix(module, params, z, "layer4")  # the planted optimum, perturbed
    far = h + 0.5 * jnp.std(h) * jax.random.normal(jax.random.PRNGKey(6), h.shape)
    start = invert.Representation("layer4", far)
    cfg = invert.Config(steps=40, lr=0.05, feature_weight=0.0)
    rep, losses = optimize.optimize(module, params, None, targets, start, cfg, trace=True,
                                    show_progress=False)  # fmt: skip
    assert losses.shape == (41, 3)
    assert np.all(losses[-1] < 0.1 * losses[0])  # pixel MSE: the random net's images are large
    assert np.all(np.diff(losses.mean(1))[-10:] < 0)

    # Adam acts element by element and the loss is per image: one image alone gives the same.
    one, _ = optimize.optimize(module, params, None, targets[1:2], start.replace(h=far[1:2]),
                               cfg, show_progress=False)  # fmt: skip
    np.testing.assert_allclose(np.asarray(one.h[0]), np.asarray(rep.h[1]), rtol=1e-4, atol=1e-4)

    # Interrupted at step 17 (state saved on Ctrl-C), then resumed: the same result.
    work = str(tmp_path / "opt")
    _interrupt_after(monkeypatch, 17)
    with pytest.raises(KeyboardInterrupt):
        optimize.optimize(module, params, None, targets, start, cfg, workdir=work)
    again, _ = optimize.optimize(module, params, None, targets, start, cfg, workdir=work,
                                 show_progress=False)  # fmt: skip
    np.testing.assert_allclose(np.asarray(again.h), np.asarray(rep.h), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="other settings"):  # another picture, same workdir
        optimize.optimize(module, params, None, targets[::-1], start, cfg, workdir=work)


def test_generate_matches_tail_and_residuals_and_npz_roundtrip(gen, tmp_path):
    module, params = gen
    z = jax.random.normal(jax.random.PRNGKey(1), (2, SIZES[0]))
    h = edits.prefix(module, params, z, "layer4")
    e = edits.insertion("layer4", [1, 3], jnp.full(16, 2.0), mask=jnp.eye(8))
    rep = invert.Representation("layer4", h)
    np.testing.assert_allclose(invert.generate(module, params, rep, e),
                               edits.tail(module, params, h, "layer4", e), atol=1e-6)  # fmt: skip
    # A residual r at layer6 equals an edit that sets layer6 to (its value + r).
    h6 = module.apply({"params": params}, h, start="layer4", stop="layer6")[0]
    r = jax.random.normal(jax.random.PRNGKey(2), h6.shape) * 0.1
    with_res = invert.generate(module, params, rep.replace(residuals={"layer6": r}))
    manual = module.apply({"params": params}, h6 + r, start="layer6")[0]
    np.testing.assert_allclose(with_res, manual, atol=1e-5)
    path = rep.replace(residuals={"layer6": r}).save(str(tmp_path / "rep.npz"))
    back = invert.Representation.load(path)
    assert back.layer == "layer4" and set(back.residuals) == {"layer6"}
    np.testing.assert_array_equal(back.h, np.asarray(h))
    with pytest.raises(InputError, match="residual layer 'layer3'"):
        optimize.optimize(module, params, None, np.zeros((2, 16, 16, 3)), rep,
                          invert.Config(steps=1, residuals=("layer3",)))  # fmt: skip


def test_demo_generated_image_reconstructed_near_exactly_from_the_encoder_start():
    module, params = demo.generator()
    seg = demo.segmenter()
    z = proggan.sample_z(2, seed=11, dim=module.sizes[0])
    targets = np.asarray(edits.generate(module, params, z))
    start = invert.encode(targets, module, params, "layer4", "demo")
    start_psnr = evaluate.psnr(invert.generate(module, params, start), targets)
    cfg = invert.Config(steps=80, lr=0.05)
    rep, losses = optimize.optimize(module, params, seg, targets, start, cfg, trace=True,
                                    show_progress=False)  # fmt: skip
    final = evaluate.psnr(invert.generate(module, params, rep), targets)
    assert np.all(losses[-1] < losses[0])
    assert np.all(final > start_psnr)
    assert np.all(final > 32.0), final


def _save(path, array, mode):
    Image.fromarray(array).convert(mode).save(path)
    return str(path)


def test_image_loading_refuses_bad_pictures_in_one_line(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    exact = image.load(_save(tmp_path / "ok.png", rgb, "RGB"), 64)
    assert exact.dtype == np.float32 and exact.shape == (64, 64, 3)
    np.testing.assert_array_equal(image.to_uint8(exact), rgb)  # 8-bit values round-trip
    wide = image.load(_save(tmp_path / "wide.jpg", np.zeros((40, 100, 3), np.uint8), "RGB"), 64)
    assert wide.shape == (64, 64, 3)
    (tmp_path / "notes.png").write_text("not a picture")
    gray = np.zeros((64, 64, 3), np.uint8)
    bad = {
        _save(tmp_path / "g.png", gray, "L"): "grayscale",
        _save(tmp_path / "a.png", gray, "RGBA"): "alpha",
        _save(tmp_path / "la.png", gray, "LA"): "grayscale|alpha",
        _save(tmp_path / "tiny.png", np.zeros((4, 4, 3), np.uint8), "RGB"): "too small",
        str(tmp_path / "notes.png"): "not an image",
        str(tmp_path / "missing.png"): "no such file",
    }
    for path, what in bad.items():
        with pytest.raises(InputError, match=what) as e:
            image.load(path, 64)
        assert "\n" not in str(e.value) and path in str(e.value)
    with pytest.raises(InputError, match="40x100|100x40"):
        image.load(str(tmp_path / "wide.jpg"), 64, fit="exact")
    with pytest.raises(InputError, match=r"expected \[64, 64, 3\]"):
        image.check_array(np.zeros((32, 32, 3)), 64)


def test_blend_keeps_the_original_outside_the_mask_exactly():
    rng = np.random.default_rng(0)
    original = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    recon = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    edited = recon.copy()
    edited[:, 10:14, 10:14] += 0.8  # the edit changes a 4x4 patch (and a far pixel, below)
    edited[:, 30, 0] += 0.8
    region = np.zeros((2, 32, 32), bool)
    region[:, 8:16, 8:16] = True
    mask = np.asarray(blend.change_mask(edited, recon, region, halo=4, feather=1))
    out = blend.blend(original, edited, mask)
    grown = np.zeros_like(region)
    grown[:, 4:20, 4:20] = True
    assert np.all(mask[~grown] == 0)  # the far change is outside the halo: ignored
    np.testing.assert_array_equal(out[mask == 0], original[mask == 0])
    np.testing.assert_array_equal(out[region], edited[region])  # painted: fully the edit
    assert 0 < mask[:, 7, 12].min() < 1 and mask[:, 6, 12].max() == 0  # feathered by 1 px
    free = np.asarray(blend.change_mask(edited, recon, feather=1))  # no region: where it changed
    assert free[:, 12, 12].min() == 1 and free[:, 0, 20].max() == 0 and free[:, 30, 0].min() > 0
