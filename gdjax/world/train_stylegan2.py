"""Adversarial training of a gdjax StyleGAN2 generator (the demo StyleGAN2 of the scenes world).

The recipe of :mod:`gdjax.world.train_gan` with a StyleGAN2 generator: the same PGGAN-style
discriminator (minibatch stddev, equalized LR), non-saturating logistic loss with a lazy R1
penalty, Adam(β = (0, 0.99)) and an EMA of the generator whose half-life warms up. Left out
for a small CPU budget: style mixing, path-length regularization and augmentation. The
mapping network learns at ``lr * 0.01`` through its equalized-LR multiplier, as the original.
``w_avg`` (the truncation centre) is not tracked during training; :func:`export` sets it to
the mean ``w`` of 10,000 latents of the exported weights.

A run is a pure function of its :class:`~gdjax.world.train_gan.TrainState` checkpoints, so it
resumes from any of them and is deterministic for a seed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdjax import rundir
from gdjax.models import stylegan2
from gdjax.world.train_gan import Discriminator, TrainState, _checkpoint_manager


class Config(NamedTuple):
    z_dim: int = 128
    w_dim: int = 128
    resolution: int = 64
    channels: tuple[int, ...] = (64, 64, 32, 16, 8)
    mapping_layers: int = 2
    batch_size: int = 16
    lr: float = 0.002
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 0.5
    r1_every: int = 8
    ema_half_life_images: float = 10_000.0


def generator(cfg: Config) -> stylegan2.Generator:
    return stylegan2.Generator(
        cfg.z_dim, cfg.w_dim, cfg.resolution, tuple(cfg.channels), cfg.mapping_layers
    )


def _models(cfg: Config):
    return generator(cfg), Discriminator((cfg.z_dim, *cfg.channels))


def _optimizer(cfg: Config):
    return optax.adam(cfg.lr, b1=cfg.beta1, b2=cfg.beta2, eps=1e-8)


def init_state(cfg: Config, seed: int) -> TrainState:
    g, d = _models(cfg)
    kg, kd, key = jax.random.split(jax.random.PRNGKey(seed), 3)
    r = cfg.resolution
    g_params = g.init(kg, jnp.zeros((1, cfg.z_dim)))["params"]
    d_params = d.init(kd, jnp.zeros((cfg.batch_size, r, r, 3)))["params"]
    opt = _optimizer(cfg)
    return TrainState(
        jnp.zeros((), jnp.int32), g_params, d_params, g_params, opt.init(g_params),
        opt.init(d_params), key,
    )  # fmt: skip


@functools.lru_cache(maxsize=4)
def make_step(cfg: Config, with_r1: bool):
    """A jitted ``(state, reals [B,R,R,3]) -> (state, metrics)``: one D step then one G step."""
    g, d = _models(cfg)
    opt = _optimizer(cfg)
    b = cfg.batch_size

    def d_loss(dp, gp, z, reals):
        fakes = jax.lax.stop_gradient(g.apply({"params": gp}, z)[0])
        loss = jax.nn.softplus(d.apply({"params": dp}, fakes)).mean()
        loss += jax.nn.softplus(-d.apply({"params": dp}, reals)).mean()
        r1 = jnp.zeros(())
        if with_r1:
            grad = jax.grad(lambda x: d.apply({"params": dp}, x).sum())(reals)
            r1 = jnp.square(grad).sum(axis=(1, 2, 3)).mean()
            loss += 0.5 * cfg.r1_gamma * cfg.r1_every * r1  # lazy: same average strength
        return loss, r1

    def g_loss(gp, dp, z):
        return jax.nn.softplus(-d.apply({"params": dp}, g.apply({"params": gp}, z)[0])).mean()

    @jax.jit
    def step(state: TrainState, reals):
        key, k1, k2 = jax.random.split(state.key, 3)
        z1 = jax.random.normal(k1, (b, cfg.z_dim))
        z2 = jax.random.normal(k2, (b, cfg.z_dim))
        (dl, r1), dg = jax.value_and_grad(d_loss, has_aux=True)(
            state.d_params, state.g_params, z1, reals
        )
        du, d_opt = opt.update(dg, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, du)
        gl, gg = jax.value_and_grad(g_loss)(state.g_params, d_params, z2)
        gu, g_opt = opt.update(gg, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, gu)
        seen = (state.step + 1).astype(jnp.float32) * b
        half_life = jnp.minimum(cfg.ema_half_life_images, seen * 0.1)
        beta = 0.5 ** (b / jnp.maximum(half_life, 1e-8))
        ema = jax.tree.map(lambda e, p: beta * e + (1 - beta) * p, state.ema_params, g_params)
        new = TrainState(state.step + 1, g_params, d_params, ema, g_opt, d_opt, key)
        return new, {"d_loss": dl, "g_loss": gl, "r1": r1}

    return step


def restore_or_init(directory: str, cfg: Config, seed: int) -> TrainState:
    """The latest checkpoint in ``directory`` if any, else a fresh state."""
    import orbax.checkpoint as ocp

    state = init_state(cfg, seed)
    with _checkpoint_manager(directory) as mngr:
        step = mngr.latest_step()
        if step is None:
            return state
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state._asdict())
        return TrainState(**mngr.restore(step, args=ocp.args.StandardRestore(target)))


def export(directory: str, cfg: Config, state: TrainState, **extra) -> str:
    """Write the EMA generator of ``state`` (with its mean ``w``) as a gdjax checkpoint."""
    module = generator(cfg)
    images = int(state.step) * cfg.batch_size
    params = stylegan2.with_mean_w(module, state.ema_params)
    return stylegan2.save(directory, module, params, trained_images=images, steps=int(state.step),
                          train=cfg._asdict(), **extra)  # fmt: skip


def train(
    directory: str,
    data_fn: Callable[[int, int], jax.Array],
    total_images: int,
    cfg: Config | None = None,
    seed: int = 0,
    checkpoint_every: int = 250,
    log: Callable[[str], None] = print,
) -> TrainState:
    """Train (or resume) until ``total_images`` real images have been seen.

    As :func:`gdjax.world.train_gan.train`: step ``s`` consumes ``data_fn(s * B, B)``; every
    ``checkpoint_every`` steps and on Ctrl-C a checkpoint (orbax, last two kept), the EMA
    generator's ``samples.png`` and a ``log.jsonl`` line are written.
    """
    import orbax.checkpoint as ocp

    from gdjax.report import draw

    cfg = cfg or Config()
    os.makedirs(directory, exist_ok=True)
    settings = {**cfg._asdict(), "channels": list(cfg.channels), "seed": seed}
    rundir.check_run(directory, settings, "training run")
    state = restore_or_init(os.path.join(directory, "checkpoints"), cfg, seed)
    steps = {False: make_step(cfg, False), True: make_step(cfg, True)}
    g = generator(cfg)
    preview = jax.jit(lambda p, z: g.apply({"params": p}, z)[0])
    preview_z = jax.random.normal(jax.random.PRNGKey(1234), (32, cfg.z_dim))
    total_steps = -(-total_images // cfg.batch_size)
    first = int(state.step)
    log(f"training from step {first} to {total_steps} ({cfg.batch_size} images/step) in "
        f"{directory}")  # fmt: skip

    def save(state, metrics, rate, seconds):
        mngr.save(int(state.step), args=ocp.args.StandardSave(state._asdict()))
        mngr.wait_until_finished()
        images = np.asarray(preview(state.ema_params, preview_z))
        draw.save_png(os.path.join(directory, "samples.png"), draw.grid(draw.to_uint8(images), 8))
        record = {"step": int(state.step), "images": int(state.step) * cfg.batch_size}
        values = {k: float(v) for k, v in metrics.items()}
        record |= {k: v if math.isfinite(v) else None for k, v in values.items()}
        record |= {"images_per_s": rate, "seconds": seconds}
        with open(os.path.join(directory, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    metrics, t0, done, last_r1 = {}, time.time(), first, float("nan")
    with _checkpoint_manager(os.path.join(directory, "checkpoints")) as mngr:
        try:
            for s in range(first, total_steps):
                with_r1 = s % cfg.r1_every == 0
                state, metrics = steps[with_r1](state, data_fn(s * cfg.batch_size, cfg.batch_size))
                if with_r1:
                    last_r1 = metrics["r1"]
                metrics = {**metrics, "r1": last_r1}
                done = s + 1
                rate = (done - first) * cfg.batch_size / (time.time() - t0)
                if done % 50 == 0 or done == total_steps:
                    eta = (total_steps - done) * cfg.batch_size / max(rate, 1e-9)
                    m = " ".join(f"{k}={float(v):.3f}" for k, v in metrics.items())
                    log(f"step {done}/{total_steps} {m} {rate:.1f} img/s eta {eta / 60:.0f} min")
                if done % checkpoint_every == 0 or done == total_steps:
                    save(state, metrics, rate, time.time() - t0)
        except KeyboardInterrupt:
            log(f"interrupted at step {done}: saving a checkpoint")
            if metrics:
                save(state, metrics, 0.0, time.time() - t0)
            raise
    return state
