"""The shipped demo segmenter meets its targets; the segmenter trainer learns and resumes."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import demo, scenes
from gdjax import segmenter as seglib
from gdjax.models import checkpoint
from gdjax.world import train_segmenter

needs_weights = pytest.mark.skipif(
    not os.path.isdir(demo.SEGMENTER), reason="demo segmenter weights not shipped"
)


@pytest.fixture(scope="module")
def seg():
    return demo.segmenter()


@needs_weights
def test_shipped_segmenter_meets_targets(seg):
    result = train_segmenter.evaluate(seg, n=2000, seed=train_segmenter.EVAL_SEED)
    print(train_segmenter.format_evaluation(result))
    assert result["confusion"].sum() == 2000 * 64 * 64
    assert set(result["iou"]) == {name for name, _ in scenes.LABELS[1:]}
    # Measured on these 2000 scenes: pixel accuracy 0.9758, mean IoU 0.9109; per class sky 0.981,
    # cloud 0.864, mountain 0.916, water 0.951, grass 0.977, road 0.960, tree 0.833,
    # building 0.935, roof 0.915, window 0.776, door 0.912.
    assert result["pixel_accuracy"] >= 0.97
    assert result["mean_iou"] >= 0.90
    worst = min(result["iou"], key=result["iou"].get)
    assert result["iou"][worst] >= 0.75, (worst, result["iou"][worst])


@needs_weights
def test_shipped_segmenter_config_and_downsample(seg):
    config = checkpoint.read_config(demo.SEGMENTER, seglib.KIND)
    assert config["recipe"].startswith("examples/train_demo.py --what=segmenter")
    assert config["steps"] > 0 and config["train_seconds"] > 0
    assert seg.labels == tuple(tuple(x) for x in scenes.LABELS)
    assert demo.segmenter() is seg  # cached
    images, labels = scenes.render(train_segmenter.EVAL_SEED, 16)
    out = np.asarray(seglib.segment(seg, jnp.asarray(images), downsample=2))
    assert out.shape == (16, 32, 32, 1) and out.dtype == np.int32
    assert out.min() >= 1 and out.max() < len(scenes.LABELS)  # '-' is never predicted
    # Against the top-left pixel of each 2x2 cell (they may differ along boundaries).
    assert (out[..., 0] == labels[:, ::2, ::2]).mean() > 0.9  # measured 0.935


def test_missing_generator_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "GENERATOR", str(tmp_path / "generator"))
    demo.generator.cache_clear()
    with pytest.raises(FileNotFoundError, match="--what=generator --export"):
        demo.generator()
    demo.generator.cache_clear()


def _tiny():
    config = train_segmenter.demo_config(stem=(4, 4, 8), planes=(4, 4, 4, 4), dim=8)
    config["preprocess"]["seg_sizes"] = [32]
    return config


# One configuration for both training tests, so the jitted step compiles once.
TINY_CFG = train_segmenter.Config(steps=12, batch_size=4, lr=1e-2, warmup=1)


@pytest.mark.slow
def test_step_learns_and_compiles_once():
    config = _tiny()
    seg = jax.eval_shape(lambda: seglib.from_config(config))  # module and prep
    variables = train_segmenter._init(seg.module, 32)(jax.random.key(0))  # shared with train()
    cfg = TINY_CFG
    opt = train_segmenter._optimizer(cfg)
    params = variables["params"]
    state = train_segmenter.TrainState(
        jnp.zeros((), jnp.int32), params, variables["batch_stats"], opt.init(params)
    )
    state = jax.device_put(state, jax.devices()[0])  # committed, as train() does
    step = train_segmenter.make_step(seg.module, seg.prep, cfg, 0)
    images, labels = scenes.render(0, 4, 32)
    losses = []
    for _ in range(12):  # the same batch: the loss must go down
        state, metrics = step(state, images, labels)
        losses.append(float(metrics["loss"]))
    assert step._cache_size() == 1, step._cache_size()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses  # measured: 0.72


@pytest.mark.slow
def test_training_resumes_to_the_same_weights(tmp_path):
    config, cfg = _tiny(), TINY_CFG
    quiet = dict(log=lambda _: None, checkpoint_every=2)
    # Stopped after step 3 (a checkpoint is written at the stop), then resumed to step 4.
    train_segmenter.train(str(tmp_path / "a"), config, cfg, until=3, **quiet)
    a, info_a = train_segmenter.train(str(tmp_path / "a"), config, cfg, until=4, **quiet)
    b, info_b = train_segmenter.train(str(tmp_path / "b"), config, cfg, until=4, **quiet)
    assert info_a["steps"] == info_b["steps"] == 4
    seg = seglib.from_config(config)
    assert train_segmenter.make_step(seg.module, seg.prep, cfg, 0)._cache_size() == 1  # resumed too
    log = [json.loads(line) for line in open(tmp_path / "a" / "log.jsonl")]
    assert [r["step"] for r in log] == [2, 3, 4]
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
        a.variables,
        b.variables,
    )
    # Nothing left to do: the checkpoint is loaded as it is; other settings are refused.
    c, info_c = train_segmenter.train(str(tmp_path / "a"), config, cfg, until=4, **quiet)
    assert info_c["steps"] == 4
    jax.tree.map(np.testing.assert_array_equal, c.variables, a.variables)
    with pytest.raises(ValueError, match="holds a training run with other settings"):
        train_segmenter.train(str(tmp_path / "a"), config, cfg._replace(steps=13), **quiet)
