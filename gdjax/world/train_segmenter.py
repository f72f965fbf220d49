"""Training and evaluation of small segmenters on the rendered scenes (the demo segmenter).

A :class:`~gdjax.models.upernet.SegmentationModel` is trained from scratch with per-pixel
cross-entropy against the exact labels of :func:`gdjax.world.scenes.render`: logits resized to the
label size (``softmax=False``), batch norm in train mode (``batch_stats`` updated), AdamW with a
warm-up + cosine schedule. Step ``s`` always reads scenes ``s*B … s*B+B-1`` of the training seed
and draws its augmentation from ``fold_in(key(seed), s)``, so a resumed run is the same as an
uninterrupted one. The augmentation (blur, noise, colour jitter) makes the segmenter read the
slightly blurry outputs of the demo GAN as well as the crisp renders.

:func:`evaluate` computes the confusion matrix of :func:`gdjax.models.segmenter.segment` on held-out
scenes: pixel accuracy, per-class IoU and their mean over the classes present.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdjax import rundir
from gdjax.models import segmenter as seglib
from gdjax.world import scenes

__all__ = [
    "Config",
    "TrainState",
    "augment",
    "demo_config",
    "evaluate",
    "format_evaluation",
    "make_step",
    "train",
]

EVAL_SEED = 7777  # held-out scenes; training streams from Config.data_seed (0)


def demo_config(
    stem=(16, 16, 32), planes=(16, 32, 64, 128), depths=(1, 1, 1, 1), dim=64
) -> dict[str, Any]:
    """Segmenter config (for :func:`gdjax.models.segmenter.from_config`) of the demo segmenter.

    A thin deep-stem ResNet + UPerNet with one flat object head over ``scenes.LABELS`` (12
    outputs; label 0 ``'-'`` is never drawn, so never learnt), 64x64 input, images mapped
    back to ``[-1, 1]`` by the preprocessing (no upp BGR means: trained from scratch).
    """
    labels = scenes.LABELS
    return {
        "kind": seglib.KIND,
        "model": {
            "decoder": "upernet",
            "stem": list(stem),
            "planes": list(planes),
            "depths": list(depths),
            "dilated": False,
            "deep_stem": True,
            "n_object": len(labels),
            "fpn_dim": dim,
            "ppm_dim": dim,
            "pool_scales": [1, 2, 3, 6],
        },
        "vocab": {
            "objects": [name for name, _ in labels],
            "object_categories": [cat for _, cat in labels],
        },
        "preprocess": {
            "scale": 1.0,
            "bgr": False,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "seg_sizes": [64],
        },
    }


class Config(NamedTuple):
    steps: int = 3600
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 1e-4
    data_seed: int = 0
    blur: float = 1.2  # max Gaussian sigma (pixels), drawn uniformly per image
    noise: float = 0.06  # max additive noise std, per image
    jitter: float = 0.08  # max brightness / contrast / per-channel shift


class TrainState(NamedTuple):
    step: jax.Array
    params: dict
    batch_stats: dict
    opt_state: optax.OptState


def _optimizer(cfg: Config):
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup, cfg.steps, cfg.lr * 0.01)
    return optax.adamw(sched, weight_decay=cfg.weight_decay)


def _blur(x: jax.Array, sigma: jax.Array) -> jax.Array:
    """Separable 5-tap Gaussian blur of ``x [N, H, W, C]`` with one ``sigma [N]`` per image
    (reflect padding; ``sigma -> 0`` is the identity)."""
    taps = jnp.arange(-2, 3, dtype=x.dtype)
    w = jnp.exp(-0.5 * (taps[None, :] / jnp.maximum(sigma[:, None], 1e-3)) ** 2)
    w = (w / w.sum(axis=1, keepdims=True))[:, :, None, None, None]  # [N, 5, 1, 1, 1]
    h, wd = x.shape[1], x.shape[2]
    p = jnp.pad(x, ((0, 0), (2, 2), (0, 0), (0, 0)), mode="reflect")
    x = sum(w[:, i] * p[:, i : i + h] for i in range(5))
    p = jnp.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)), mode="reflect")
    return sum(w[:, i] * p[:, :, i : i + wd] for i in range(5))


def augment(key: jax.Array, images: jax.Array, cfg: Config) -> jax.Array:
    """Random blur (half the images), noise, brightness/contrast/colour jitter of
    ``images [N, H, W, 3]`` in ``[-1, 1]``; labels are unchanged (no geometric transforms)."""
    n = images.shape[0]
    k = jax.random.split(key, 6)
    sigma = jax.random.uniform(k[0], (n,), maxval=cfg.blur)
    sigma = jnp.where(jax.random.bernoulli(k[1], 0.5, (n,)), sigma, 0.0)
    x = _blur(images, sigma)
    col = (1, 1, 1)
    contrast = 1.0 + jax.random.uniform(k[2], (n, *col), minval=-1, maxval=1) * cfg.jitter * 2
    shift = jax.random.uniform(k[3], (n, 1, 1, 3), minval=-1, maxval=1) * cfg.jitter
    shift = shift + jax.random.uniform(k[4], (n, *col), minval=-1, maxval=1) * cfg.jitter
    std = jax.random.uniform(k[5], (n, *col), maxval=cfg.noise)
    noise = jax.random.normal(jax.random.fold_in(key, 7), x.shape) * std
    return jnp.clip(x * contrast + shift + noise, -1.0, 1.0)


@functools.lru_cache(maxsize=8)  # one compilation per (module, config)
def make_step(module: seglib.SegmentationModel, prep: seglib.Preprocess, cfg: Config, seed: int):
    """A jitted ``(state, images [B,H,W,3], labels [B,H,W]) -> (state, {'loss', 'acc'})``."""
    opt = _optimizer(cfg)
    base = jax.random.key(seed)

    @jax.jit
    def step(state: TrainState, images, labels):
        x = augment(jax.random.fold_in(base, state.step), images, cfg)
        dummy = seglib.Segmenter(module, {}, None, prep)
        (x,) = seglib.preprocess(dummy, x)

        def loss_fn(params):
            (out, _), new = module.apply(
                {"params": params, "batch_stats": state.batch_stats},
                x,
                labels.shape[1:3],
                train=True,
                softmax=False,
                mutable=["batch_stats"],
            )
            logits = out["object"]
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            acc = (jnp.argmax(logits, -1) == labels).mean()
            return loss, (new["batch_stats"], acc)

        (loss, (stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, stats, opt_state), {"loss": loss, "acc": acc}

    return step


@functools.lru_cache(maxsize=8)  # compiled once per module, not once per train() call
def _init(module: seglib.SegmentationModel, size: int):
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    return jax.jit(lambda key: module.init(key, x, (size, size)))


def _manager(directory: str):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def train(
    directory: str,
    config: dict[str, Any] | None = None,
    cfg: Config | None = None,
    seed: int = 0,
    checkpoint_every: int = 500,
    until: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[seglib.Segmenter, dict[str, Any]]:
    """Train (or resume) a segmenter in ``directory`` until ``cfg.steps`` (or stop early at
    step ``until``, a checkpoint to resume from; the schedule is that of ``cfg.steps``).

    ``config``: segmenter config (default :func:`demo_config`); its preprocessing's first
    ``seg_size`` must be the scene size. Checkpoints (orbax, last two) every
    ``checkpoint_every`` steps, at the end and on Ctrl-C; ``log.jsonl`` gets a line per
    checkpoint. Returns the trained :class:`~gdjax.models.segmenter.Segmenter` and
    ``{'steps', 'train_seconds'}`` (seconds summed over all resumed sessions).
    """
    import orbax.checkpoint as ocp

    from gdjax import progress

    config = config or demo_config()
    cfg = cfg or Config()
    os.makedirs(directory, exist_ok=True)
    rundir.check_run(
        directory, {"config": config, "train": cfg._asdict(), "seed": seed}, "training run"
    )

    def fresh():
        v = _init(module, size)(jax.random.key(seed))
        opt_state = _optimizer(cfg).init(v["params"])
        return TrainState(jnp.zeros((), jnp.int32), v["params"], v["batch_stats"], opt_state)

    shapes = jax.eval_shape(lambda: seglib.from_config(config))  # module, prep: static
    module, prep = shapes.module, shapes.prep
    size = prep.seg_sizes[0]

    seconds = np.zeros((), np.float64)
    with _manager(os.path.join(directory, "checkpoints")) as mngr:
        last = mngr.latest_step()
        if last is None:
            state = fresh()
        else:  # restore into the abstract state: no initialization to compile or run
            target = {"state": jax.eval_shape(fresh)._asdict(), "seconds": seconds}
            target = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
            restored = mngr.restore(last, args=ocp.args.StandardRestore(target))
            state, seconds = TrainState(**restored["state"]), restored["seconds"]
        # Restored arrays are committed to a device, fresh ones are not; jit would compile the
        # step once for each kind, so commit both.
        state = jax.device_put(state, jax.devices()[0])
        first = int(state.step)
        step = make_step(module, prep, cfg, seed)
        b = cfg.batch_size
        log(f"training steps {first}..{cfg.steps} ({b} scenes/step) in {directory}")
        t0, done, metrics = time.perf_counter(), first, {}

        def save():
            total = float(seconds) + time.perf_counter() - t0
            item = {"state": state._asdict(), "seconds": np.asarray(total)}
            mngr.save(done, args=ocp.args.StandardSave(item), force=True)
            mngr.wait_until_finished()
            record = {"step": done, "train_seconds": round(total, 1)}
            record |= {k: round(float(v), 5) for k, v in metrics.items()}
            with open(os.path.join(directory, "log.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")

        try:
            end = cfg.steps if until is None else min(until, cfg.steps)
            for s in progress.bar(range(first, end), "segmenter", every=30.0):
                images, labels = scenes.render(cfg.data_seed, b, size, start=s * b)
                state, metrics = step(state, images, labels)
                done = s + 1
                if done % 100 == 0:
                    log(f"step {done}: loss {float(metrics['loss']):.4f} "
                        f"acc {float(metrics['acc']):.4f}")  # fmt: skip
                if done % checkpoint_every == 0 and done < end:
                    save()
            if metrics or last != done:
                save()
        except KeyboardInterrupt:
            log(f"interrupted at step {done}: saving a checkpoint")
            if metrics:
                save()
            raise
        total = float(seconds) + time.perf_counter() - t0 if metrics else float(seconds)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    trained = seglib.from_config(config, jax.tree.map(np.asarray, variables))
    return trained, {"steps": done, "train_seconds": round(total, 1)}


def evaluate(
    seg: seglib.Segmenter, n: int = 2000, seed: int = EVAL_SEED, batch_size: int = 200
) -> dict[str, Any]:
    """Pixel accuracy and IoU of ``segment(seg, ·)[..., 0]`` on scenes ``0..n-1`` of ``seed``.

    Returns ``{'pixel_accuracy', 'mean_iou', 'iou': {name: IoU}, 'confusion' [K, K] int64
    (rows = truth), 'images_per_second'}``; the mean is over the classes drawn at least once
    (label 0 ``'-'`` never is).
    """
    k = len(seg.labels)
    conf = np.zeros((k, k), np.int64)
    seconds = 0.0
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        images, labels = scenes.render(seed, m, start=start)
        t = time.perf_counter()
        pred = np.asarray(seglib.segment(seg, jnp.asarray(images))[..., 0])
        seconds += time.perf_counter() - t
        conf += np.bincount(labels.ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)
    truth, predicted, hit = conf.sum(1), conf.sum(0), np.diag(conf)
    present = np.flatnonzero(truth)
    iou = hit[present] / (truth[present] + predicted[present] - hit[present])
    names = [name for name, _ in seg.labels]
    return {
        "pixel_accuracy": float(hit.sum() / conf.sum()),
        "mean_iou": float(iou.mean()),
        "iou": {names[c]: float(v) for c, v in zip(present, iou, strict=True)},
        "confusion": conf,
        "images_per_second": n / seconds,
    }


def format_evaluation(result: dict[str, Any]) -> str:
    """A small text table of :func:`evaluate`'s result."""
    conf = result["confusion"]
    freq = conf.sum(1) / conf.sum()
    names = list(result["iou"])
    index = {name: i for i, name in enumerate(n for n, _ in scenes.LABELS)}
    lines = [f"{'class':<10} {'IoU':>7} {'pixels':>8}"]
    for name in names:
        lines.append(f"{name:<10} {result['iou'][name]:>7.4f} {freq[index[name]]:>8.2%}")
    lines.append(f"pixel accuracy {result['pixel_accuracy']:.4f}")
    lines.append(f"mean IoU ({len(names)} classes) {result['mean_iou']:.4f}")
    return "\n".join(lines)
