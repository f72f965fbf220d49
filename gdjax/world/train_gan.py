"""Adversarial training of a gdjax Progressive GAN generator (used for the built-in demo GAN).

A PGGAN-style discriminator with equalized learning rate and a minibatch-stddev layer, the
non-saturating logistic loss with a lazy R1 penalty on real images (Mescheder et al. 2018),
Adam, and an exponential moving average (EMA) of the generator whose decay warms up so the
average is not dominated by the initial weights early on. Progressive growing is not used: the
generator is trained at its final resolution from the start.

Everything is a pure function of a :class:`TrainState` pytree, so a run is resumable from any
checkpoint and deterministic for a given seed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from gdjax import rundir
from gdjax.models import proggan


class EqConv(nn.Module):
    """Conv with equalized LR: N(0,1) kernel scaled by ``sqrt(2/fan_in)`` at run time."""

    features: int
    kernel: int = 3
    gain: float = math.sqrt(2)

    @nn.compact
    def __call__(self, x):
        k = self.kernel
        w = self.param("kernel", nn.initializers.normal(1.0), (k, k, x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        scale = self.gain / math.sqrt(k * k * x.shape[-1])
        y = jax.lax.conv_general_dilated(
            x, w * scale, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + b.reshape(1, 1, 1, -1)


class EqDense(nn.Module):
    """Dense layer with equalized LR."""

    features: int
    gain: float = math.sqrt(2)

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", nn.initializers.normal(1.0), (x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ (w * (self.gain / math.sqrt(x.shape[-1]))) + b.reshape(1, -1)


def _downsample(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _minibatch_stddev(x, group: int = 4):
    """Append the mean (over features) stddev within groups of images as one extra channel."""
    n, h, w, c = x.shape
    g = min(group, n)
    y = x.reshape(g, n // g, h, w, c)
    y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8).mean(axis=(1, 2, 3))  # [n//g]
    y = jnp.tile(y.reshape(1, n // g, 1, 1, 1), (g, 1, h, w, 1)).reshape(n, h, w, 1)
    return jnp.concatenate([x, y], axis=-1)


class Discriminator(nn.Module):
    """PGGAN-style discriminator mirroring a generator's ``sizes`` (4x4 depth first).

    ``[N, R, R, 3]`` images in ``[-1, 1]`` -> ``[N]`` logits (real > 0).
    """

    sizes: Sequence[int]

    @nn.compact
    def __call__(self, x):
        depths = list(self.sizes[1:])[::-1]  # finest first
        x = nn.leaky_relu(EqConv(depths[0], 1, name="from_rgb")(x), 0.2)
        for i, (cin, cout) in enumerate(zip(depths[:-1], depths[1:], strict=True)):
            x = nn.leaky_relu(EqConv(cin, name=f"block{i}_conv0")(x), 0.2)
            x = nn.leaky_relu(EqConv(cout, name=f"block{i}_conv1")(x), 0.2)
            x = _downsample(x)
        x = _minibatch_stddev(x)
        x = nn.leaky_relu(EqConv(depths[-1], name="final_conv")(x), 0.2)
        x = nn.leaky_relu(EqDense(depths[-1], name="final_dense")(x.reshape(x.shape[0], -1)), 0.2)
        return EqDense(1, gain=1.0, name="logit")(x)[:, 0]


class TrainState(NamedTuple):
    step: jax.Array
    g_params: dict
    d_params: dict
    ema_params: dict
    g_opt: optax.OptState
    d_opt: optax.OptState
    key: jax.Array


class Config(NamedTuple):
    sizes: tuple[int, ...] = (128, 128, 128, 64, 32, 16)
    batch_size: int = 16
    lr: float = 0.002
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 1.0
    r1_every: int = 8
    ema_half_life_images: float = 10_000.0


def _optimizer(cfg: Config):
    return optax.adam(cfg.lr, b1=cfg.beta1, b2=cfg.beta2, eps=1e-8)


def models(cfg: Config):
    return proggan.Generator(tuple(cfg.sizes)), Discriminator(tuple(cfg.sizes))


def init_state(cfg: Config, seed: int) -> TrainState:
    """Fresh generator, discriminator, optimizers and EMA for ``cfg``, from ``seed``."""
    return fresh_state(*models(cfg), cfg, seed)


def fresh_state(g, d, cfg, seed: int) -> TrainState:
    """A fresh :class:`TrainState` for generator module ``g`` (latent size ``g.sizes[0]``, images
    ``g.resolution``) and discriminator ``d``, optimized as ``cfg`` says, from ``seed``."""
    kg, kd, key = jax.random.split(jax.random.PRNGKey(seed), 3)
    res = g.resolution
    g_params = g.init(kg, jnp.zeros((1, g.sizes[0])))["params"]
    d_params = d.init(kd, jnp.zeros((cfg.batch_size, res, res, 3)))["params"]
    opt = _optimizer(cfg)
    return TrainState(
        jnp.zeros((), jnp.int32), g_params, d_params, g_params, opt.init(g_params),
        opt.init(d_params), key,
    )  # fmt: skip


@functools.lru_cache(maxsize=8)  # one compilation per configuration, shared by resumed runs
def make_step(cfg: Config, with_r1: bool):
    """A jitted ``(state, reals [B,R,R,3]) -> (state, metrics)``: one D step then one G step."""
    return gan_step(*models(cfg), cfg, with_r1)


def gan_step(g, d, cfg, with_r1: bool):
    """The training step of generator module ``g`` (latent size ``g.sizes[0]``) against
    discriminator ``d``, from ``cfg``'s ``batch_size, lr, beta1, beta2, r1_gamma, r1_every,
    ema_half_life_images`` (any generator: the demo PGGAN's and StyleGAN2's recipes share it)."""
    opt = _optimizer(cfg)
    b, zdim = cfg.batch_size, g.sizes[0]

    def generate(gp, z):
        return g.apply({"params": gp}, z)[0]

    def d_loss(dp, gp, z, reals):
        fakes = jax.lax.stop_gradient(generate(gp, z))
        loss = jax.nn.softplus(d.apply({"params": dp}, fakes)).mean()
        loss += jax.nn.softplus(-d.apply({"params": dp}, reals)).mean()
        r1 = jnp.zeros(())
        if with_r1:
            grad = jax.grad(lambda x: d.apply({"params": dp}, x).sum())(reals)
            r1 = jnp.square(grad).sum(axis=(1, 2, 3)).mean()
            # Lazy regularization: scale by the interval so the average strength is unchanged.
            loss += 0.5 * cfg.r1_gamma * cfg.r1_every * r1
        return loss, r1

    def g_loss(gp, dp, z):
        return jax.nn.softplus(-d.apply({"params": dp}, generate(gp, z))).mean()

    @jax.jit
    def step(state: TrainState, reals):
        key, k1, k2 = jax.random.split(state.key, 3)
        z1 = jax.random.normal(k1, (b, zdim))
        z2 = jax.random.normal(k2, (b, zdim))
        (dl, r1), dg = jax.value_and_grad(d_loss, has_aux=True)(
            state.d_params, state.g_params, z1, reals
        )
        du, d_opt = opt.update(dg, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, du)
        gl, gg = jax.value_and_grad(g_loss)(state.g_params, d_params, z2)
        gu, g_opt = opt.update(gg, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, gu)
        # EMA with warm-up: the half-life grows with the number of images seen so far.
        seen = (state.step + 1).astype(jnp.float32) * b
        half_life = jnp.minimum(cfg.ema_half_life_images, seen * 0.1)
        beta = 0.5 ** (b / jnp.maximum(half_life, 1e-8))
        ema = jax.tree.map(lambda e, p: beta * e + (1 - beta) * p, state.ema_params, g_params)
        new = TrainState(state.step + 1, g_params, d_params, ema, g_opt, d_opt, key)
        return new, {"d_loss": dl, "g_loss": gl, "r1": r1}

    return step


def checkpoint_manager(directory: str):
    """The orbax manager of a training run's checkpoints (the last two kept)."""
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def restore_or_init(directory: str, cfg: Config, seed: int, init=None) -> TrainState:
    """The latest checkpoint in ``directory`` if any, else a fresh state (``init(cfg, seed)``,
    :func:`init_state` by default)."""
    import orbax.checkpoint as ocp

    state = (init or init_state)(cfg, seed)
    with checkpoint_manager(directory) as mngr:
        step = mngr.latest_step()
        if step is None:
            return state
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state._asdict())
        restored = mngr.restore(step, args=ocp.args.StandardRestore(target))
    return TrainState(**restored)


def train(
    directory: str,
    data_fn: Callable[[int, int], jax.Array],
    total_images: int,
    cfg: Config | None = None,
    seed: int = 0,
    checkpoint_every: int = 500,
    log: Callable[[str], None] = print,
) -> TrainState:
    """Train (or resume) until ``total_images`` real images have been seen.

    ``data_fn(start, n)`` returns real images ``start … start+n-1`` (``[n, R, R, 3]`` in
    ``[-1, 1]``); step ``s`` always consumes images ``s*B … s*B+B-1``, so a resumed run sees
    the same data as an uninterrupted one. A checkpoint (orbax, last two kept), a sample grid
    ``samples.png`` of the EMA generator and a line in ``log.jsonl`` are written every
    ``checkpoint_every`` steps and when interrupted (Ctrl-C).
    """
    cfg = cfg or Config()
    settings = {**cfg._asdict(), "sizes": list(cfg.sizes), "seed": seed}
    g = models(cfg)[0]
    return run(directory, data_fn, total_images, cfg, seed, settings, g, init_state, make_step,
               checkpoint_every, log)  # fmt: skip


def run(directory, data_fn, total_images, cfg, seed, settings, g, init, make, checkpoint_every,
        log) -> TrainState:  # fmt: skip
    """The training loop of :func:`train` for any recipe: generator module ``g``, fresh state
    ``init(cfg, seed)``, jitted steps ``make(cfg, with_r1)``; ``settings`` are compared with a
    previous run's in ``directory`` (:func:`gdjax.rundir.check_run`)."""
    import orbax.checkpoint as ocp

    from gdjax.report import draw

    os.makedirs(directory, exist_ok=True)
    rundir.check_run(directory, settings, "training run")
    state = restore_or_init(os.path.join(directory, "checkpoints"), cfg, seed, init)
    steps = {False: make(cfg, False), True: make(cfg, True)}
    preview = jax.jit(lambda p, z: g.apply({"params": p}, z)[0])
    preview_z = jax.random.normal(jax.random.PRNGKey(1234), (32, g.sizes[0]))
    total_steps = -(-total_images // cfg.batch_size)
    first = int(state.step)
    log(
        f"training from step {first} to {total_steps} ({cfg.batch_size} images/step) in {directory}"
    )

    def save(state, metrics, rate, seconds):
        mngr.save(int(state.step), args=ocp.args.StandardSave(state._asdict()))
        mngr.wait_until_finished()
        images = np.asarray(preview(state.ema_params, preview_z))
        draw.save_png(os.path.join(directory, "samples.png"), draw.grid(draw.to_uint8(images), 8))
        record = {"step": int(state.step), "images": int(state.step) * cfg.batch_size}
        values = {k: float(v) for k, v in metrics.items()}
        record |= {k: v if math.isfinite(v) else None for k, v in values.items()}  # strict JSON
        record |= {"images_per_s": rate, "seconds": seconds}
        with open(os.path.join(directory, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    metrics, t0, done, last_r1 = {}, time.time(), first, float("nan")
    with checkpoint_manager(os.path.join(directory, "checkpoints")) as mngr:
        try:
            for s in range(first, total_steps):
                reals = data_fn(s * cfg.batch_size, cfg.batch_size)
                with_r1 = s % cfg.r1_every == 0
                state, metrics = steps[with_r1](state, reals)
                if with_r1:
                    last_r1 = metrics["r1"]
                metrics = {**metrics, "r1": last_r1}  # R1 is computed every r1_every steps only
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
