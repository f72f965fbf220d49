"""Training the encoder on pairs the generator makes for free: latent ``z`` -> (layer ``h``, image).

Each step draws a batch of latents from ``fold_in(PRNGKey(seed), step)``, runs the generator
once to get the layer's activation ``h`` and the image, and fits the encoder's prediction
``e(image)`` to ``h`` (mean squared error over the activations' overall variance) plus
``pixel_weight`` times the mean squared error of the image regenerated from the prediction
(``tail(e(image))`` against the image), which weighs errors in ``h`` by what they do to the
picture. Adam with a warm-up and cosine decay.

Every step is a pure function of a :class:`TrainState` and the step number, so the run
resumes from its latest orbax checkpoint (``<directory>/checkpoints``, last two kept) and gives
the same parameters as an uninterrupted run; ``settings.json`` guards the run's settings.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gdjax import progress, rundir
from gdjax.intervene import edits
from gdjax.invert import encoder as enc

__all__ = ["Config", "TrainState", "init_state", "loss_fn", "make_step", "train"]


class Config(NamedTuple):
    layer: str = "layer4"
    steps: int = 1500
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 100
    pixel_weight: float = 1.0
    weight_decay: float = 1e-5


class TrainState(NamedTuple):
    step: jax.Array
    params: dict
    opt: optax.OptState


def _optimizer(cfg: Config):
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, cfg.warmup, max(cfg.steps, cfg.warmup + 1), cfg.lr * 0.05
    )
    return optax.adamw(schedule, weight_decay=cfg.weight_decay)


def init_state(module: enc.Encoder, cfg: Config, seed: int) -> TrainState:
    params = enc.init(module, seed)
    return TrainState(jnp.zeros((), jnp.int32), params, _optimizer(cfg).init(params))


def loss_fn(params, module: enc.Encoder, gen, h, images, layer: str, pixel_weight: float):
    """``(loss, (h_loss, pixel_loss))`` of the encoder on a batch of ``(h, images)`` pairs."""
    gen_module, gen_params = gen
    pred = module.apply({"params": params}, images)
    h_loss = jnp.mean(jnp.square(pred - h)) / (jnp.var(h) + 1e-8)
    pixel = jnp.zeros(())
    if pixel_weight:
        pixel = jnp.mean(jnp.square(edits.tail(gen_module, gen_params, pred, layer) - images))
    return h_loss + pixel_weight * pixel, (h_loss, pixel)


@functools.lru_cache(maxsize=8)  # one compilation per configuration, shared by resumed runs
def make_step(module: enc.Encoder, gen_module, cfg: Config, seed: int):
    """A jitted ``(state, gen_params) -> (state, (loss, h_loss, pixel_loss))``."""
    opt = _optimizer(cfg)
    key0 = jax.random.PRNGKey(seed)

    @jax.jit
    def step(state: TrainState, gen_params):
        z = jax.random.normal(
            jax.random.fold_in(key0, state.step), (cfg.batch_size, gen_module.sizes[0])
        )
        h = edits.prefix(gen_module, gen_params, z, cfg.layer)
        images = edits.tail(gen_module, gen_params, h, cfg.layer)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (hl, pl)), g = grad_fn(
            state.params, module, (gen_module, gen_params), h, images, cfg.layer, cfg.pixel_weight
        )
        updates, opt_state = opt.update(g, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, opt_state), (loss, hl, pl)

    return step


def _manager(directory: str):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    path = os.path.abspath(os.path.join(directory, "checkpoints"))
    return ocp.CheckpointManager(path, options=options)


def train(
    directory: str,
    gen,
    cfg: Config | None = None,
    seed: int = 0,
    checkpoint_every: int = 250,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    stop_at: int | None = None,
):
    """Train (or resume) the encoder for ``cfg.layer`` of ``gen = (module, params)``.

    ``stop_at``: stop (with a checkpoint) after this step, short of ``cfg.steps``; the schedule
    is still the one of ``cfg.steps``, and a later call resumes from there.

    Writes ``settings.json``, orbax checkpoints every ``checkpoint_every`` steps and on Ctrl-C,
    and ``log.jsonl`` (one line per checkpoint). Returns ``(encoder module, params, step)``.
    """
    import orbax.checkpoint as ocp

    cfg = cfg or Config()
    gen_module, gen_params = gen
    module = enc.for_layer(gen_module, cfg.layer)
    settings = {**cfg._asdict(), "seed": seed, "generator_sizes": list(gen_module.sizes)}
    os.makedirs(directory, exist_ok=True)
    rundir.check_run(directory, settings, "encoder training run")
    state = init_state(module, cfg, seed)
    with _manager(directory) as mngr:
        last = mngr.latest_step()
        if last is not None:
            target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state._asdict())
            state = TrainState(**mngr.restore(last, args=ocp.args.StandardRestore(target)))
        first = int(state.step)
        step = make_step(module, gen_module, cfg, seed)
        metrics, t0 = None, time.time()

        def save():
            mngr.save(int(state.step), args=ocp.args.StandardSave(state._asdict()))
            mngr.wait_until_finished()
            if metrics is not None:
                loss, hl, pl = (float(m) for m in metrics)
                record = {"step": int(state.step), "loss": loss, "h_loss": hl, "pixel_loss": pl,
                          "seconds": round(time.time() - t0, 1)}  # fmt: skip
                with open(os.path.join(directory, "log.jsonl"), "a") as f:
                    f.write(json.dumps(record) + "\n")

        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        if first < end:
            log(f"training the {cfg.layer} encoder from step {first} to {end} in {directory}")
        steps = range(first, end)
        try:
            for s in progress.bar(steps, "encoder", disable=not show_progress, warmup=True):
                state, metrics = step(state, gen_params)
                if (s + 1) % checkpoint_every == 0 or s + 1 == end:
                    save()
        except KeyboardInterrupt:
            log(f"interrupted at step {int(state.step)}: saving a checkpoint")
            save()
            raise
    return module, state.params, int(state.step)


@functools.lru_cache(maxsize=4)
def _predict_fn(module: enc.Encoder):
    return jax.jit(lambda params, images: module.apply({"params": params}, images))


def predict(module: enc.Encoder, params, images) -> jax.Array:
    """The encoder's ``[N, H, W, C]`` prediction for ``images [N, R, R, 3]`` (jitted)."""
    return _predict_fn(module)(params, images)
