"""The demo-GAN trainer: shapes, determinism, and byte-identical resumption."""

import numpy as np
import pytest

from gdjax.world import train_gan

CFG = train_gan.Config(sizes=(16, 16, 16, 8), batch_size=4, r1_every=2)  # 16x16 images


def data(start, n):
    rng = np.random.default_rng(start)
    return rng.uniform(-1, 1, (n, 16, 16, 3)).astype(np.float32)


def leaves(state):
    return [np.asarray(x) for x in __import__("jax").tree.leaves(state)]


def test_discriminator_shapes_and_param_names():
    state = train_gan.init_state(CFG, 0)
    assert set(state.d_params) >= {"from_rgb", "block0_conv0", "final_dense", "logit"}
    _, d = train_gan.models(CFG)
    logits = d.apply({"params": state.d_params}, data(0, 4))
    assert logits.shape == (4,)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    quiet = lambda s: None  # noqa: E731
    full = train_gan.train(
        str(tmp_path / "a"), data, 40, CFG, seed=3, checkpoint_every=5, log=quiet
    )
    train_gan.train(str(tmp_path / "b"), data, 20, CFG, seed=3, checkpoint_every=5, log=quiet)
    resumed = train_gan.train(
        str(tmp_path / "b"), data, 40, CFG, seed=3, checkpoint_every=5, log=quiet
    )
    assert int(full.step) == int(resumed.step) == 10
    for a, b in zip(leaves(full), leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "b" / "samples.png").exists()
    lines = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(np.isfinite(list(__import__("json").loads(ln).values())).all()
                                   for ln in lines)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"holds a training run with other settings \(batch_size=4\)"
    ):
        train_gan.train(
            str(tmp_path / "b"), data, 40, CFG._replace(batch_size=8), seed=3, log=quiet
        )
