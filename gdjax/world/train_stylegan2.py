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
from collections.abc import Callable
from typing import NamedTuple

import jax

from gdjax.models import stylegan2
from gdjax.world import train_gan
from gdjax.world.train_gan import Discriminator, TrainState


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


def init_state(cfg: Config, seed: int) -> TrainState:
    return train_gan.fresh_state(*_models(cfg), cfg, seed)


@functools.lru_cache(maxsize=4)
def make_step(cfg: Config, with_r1: bool):
    """A jitted ``(state, reals [B,R,R,3]) -> (state, metrics)``: one D step then one G step
    (:func:`gdjax.world.train_gan.gan_step`)."""
    return train_gan.gan_step(*_models(cfg), cfg, with_r1)


def restore_or_init(directory: str, cfg: Config, seed: int) -> TrainState:
    """The latest checkpoint in ``directory`` if any, else a fresh state."""
    return train_gan.restore_or_init(directory, cfg, seed, init_state)


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
    cfg = cfg or Config()
    settings = {**cfg._asdict(), "channels": list(cfg.channels), "seed": seed}
    return train_gan.run(directory, data_fn, total_images, cfg, seed, settings, generator(cfg),
                         init_state, make_step, checkpoint_every, log)  # fmt: skip
