"""Inversion by optimization: the layer's representation that regenerates a target image.

A :class:`Representation` is the activation ``h [N, H, W, C]`` of one generator layer plus
optional ``residuals`` added to the outputs of later layers (``{layer: [N, h, w, c]}``, kept
small by an L2 penalty; they buy detail the layer alone cannot draw, at the cost of moving the
picture off what the layer's units control). :func:`generate` resumes the generator from it
under :mod:`gdjax.intervene` edits, so an inverted photo is edited exactly like a generated one.

:func:`optimize` fits it with Adam to a batch of targets. The loss of image ``i`` is

    mean((x_i - t_i)^2) * pixel_weight
    + feature_weight * sum_l mean((f_l(x_i) - f_l(t_i))^2) / mean(f_l(t_i)^2)
    + residual_weight * sum_r mean(r_i^2)

with ``x_i`` the regenerated image and ``f_l`` the demo segmenter's encoder activations
(``stem``, ``layer1``, ``layer2``: its own features stand in for a downloaded perceptual
network). The per-image loss is written for one image and vmapped; Adam works element by
element, so every image's result is independent of the others in its batch. The step is
jitted once per shapes and settings. With ``workdir`` the state is saved every
``checkpoint_every`` steps (``state.npz`` beside ``settings.json``) and an interrupted run
resumes there, to the same result as an uninterrupted one.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gdjax import progress, rundir
from gdjax.errors import InputError
from gdjax.intervene import edits as edlib
from gdjax.models import proggan
from gdjax.models import segmenter as seglib

__all__ = [
    "FEATURE_LAYERS",
    "Config",
    "Representation",
    "State",
    "features",
    "generate",
    "loss_fn",
    "make_step",
    "optimize",
]

FEATURE_LAYERS = ("stem", "layer1", "layer2")


@struct.dataclass
class Representation:
    """An image as the generator sees it: ``h [N, H, W, C]`` of ``layer`` plus ``residuals``
    ``{later layer: [N, h, w, c]}`` added to those layers' outputs."""

    layer: str = struct.field(pytree_node=False)
    h: jax.Array
    residuals: dict = struct.field(default_factory=dict)

    def save(self, path: str) -> str:
        """Write as ``.npz``: ``h``, ``residual/<layer>`` and the layer's name."""
        arrays = {"h": self.h, **{f"residual/{k}": v for k, v in self.residuals.items()}}
        return rundir.write_npz(path, {**arrays, "layer": np.array(self.layer)})

    @staticmethod
    def load(path: str) -> Representation:
        try:
            with np.load(path) as f:
                res = {k.split("/", 1)[1]: f[k] for k in f.files if k.startswith("residual/")}
                return Representation(str(f["layer"]), f["h"], res)
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{path}: not an inverted representation ({e})") from None


class Config(NamedTuple):
    steps: int = 200
    lr: float = 0.05
    pixel_weight: float = 1.0
    feature_weight: float = 0.1
    feature_layers: tuple[str, ...] = FEATURE_LAYERS
    residuals: tuple[str, ...] = ()
    residual_weight: float = 1.0


class State(NamedTuple):
    step: jax.Array
    rep: Representation
    opt: optax.OptState


def _check_layers(module: proggan.Generator, layer: str, residuals: Sequence[str]):
    names = module.layers
    if layer not in names[:-1]:
        raise InputError(f"layer {layer!r}: not a generator layer; valid: {', '.join(names)}")
    for r in residuals:
        if r not in names[:-1] or names.index(r) <= names.index(layer):
            raise InputError(
                f"residual layer {r!r}: must be a generator layer after {layer!r} "
                f"({', '.join(names[names.index(layer) + 1 : -1])})"
            )


def generate(module: proggan.Generator, params, rep: Representation, edits=()) -> jax.Array:
    """Images ``[N, R, R, 3]`` from ``rep`` under ``edits`` (one :class:`gdjax.intervene.Edit`
    or a sequence, at ``rep.layer`` or later). A residual is added to its layer's output
    before any edit of that layer."""
    groups = edlib._group(edits)
    names = module.layers
    for name in groups:
        if name not in names or names.index(name) < names.index(rep.layer):
            raise ValueError(f"edit at {name!r} cannot be applied after {rep.layer!r}")
    x, at = rep.h, rep.layer
    if at in groups:
        x = edlib.apply_edit(x, groups[at])
    for r in sorted(rep.residuals, key=names.index):
        between = {k: edlib.planes(e) for k, e in groups.items() if at != k != r
                   and names.index(at) < names.index(k) < names.index(r)}  # fmt: skip
        x = module.apply({"params": params}, x, start=at, stop=r, edits=between)[0]
        x = x + rep.residuals[r]
        if r in groups:
            x = edlib.apply_edit(x, groups[r])
        at = r
    later = {k: edlib.planes(e) for k, e in groups.items() if names.index(k) > names.index(at)}
    return module.apply({"params": params}, x, start=at, edits=later)[0]


def features(seg: seglib.Segmenter, images: jax.Array, layers: Sequence[str]) -> dict:
    """The segmenter's encoder activations ``{layer: [N, h, w, c]}`` for ``images [N,R,R,3]``."""
    (x,) = seglib.preprocess(seg, images)[:1]
    _, acts = seg.module.apply(seg.variables, x, (images.shape[1], images.shape[2]))
    return {k: acts[k] for k in layers}


_features = jax.jit(features, static_argnums=2)


def loss_fn(rep: Representation, gen_params, seg, target, target_feats, *, module, cfg: Config):
    """Loss of ONE image: ``rep`` without its batch axis, ``target [R, R, 3]``,
    ``target_feats {layer: [h, w, c]}``; returns ``(loss, pixel mse)``."""
    batched = jax.tree.map(lambda a: a[None], rep)
    x = generate(module, gen_params, batched)
    pixel = jnp.mean(jnp.square(x[0] - target))
    loss = cfg.pixel_weight * pixel
    if target_feats:
        feats = features(seg, x, cfg.feature_layers)
        for k in cfg.feature_layers:
            t = target_feats[k]
            scale = jnp.mean(jnp.square(t)) + 1e-6
            loss += cfg.feature_weight * jnp.mean(jnp.square(feats[k][0] - t)) / scale
    for r in rep.residuals.values():
        loss += cfg.residual_weight * jnp.mean(jnp.square(r))
    return loss, pixel


def _optimizer(cfg: Config):
    return optax.adam(optax.cosine_decay_schedule(cfg.lr, max(cfg.steps, 1), 0.1))


@functools.lru_cache(maxsize=16)
def make_step(module: proggan.Generator, cfg: Config):
    """Jitted ``step(state, gen_params, seg, targets, target_feats) -> (state, (loss, mse))``,
    per-image ``[N]`` values of the state *before* the step; and ``init(rep) -> State``."""
    opt = _optimizer(cfg)
    per_image = jax.vmap(
        jax.value_and_grad(functools.partial(loss_fn, module=module, cfg=cfg), has_aux=True),
        in_axes=(0, None, None, 0, 0),  # target_feats may be {} (no feature loss)
    )

    @jax.jit
    def step(state: State, gen_params, seg, targets, target_feats):
        (loss, mse), grad = per_image(state.rep, gen_params, seg, targets, target_feats)
        updates, opt_state = opt.update(grad, state.opt, state.rep)
        rep = optax.apply_updates(state.rep, updates)
        return State(state.step + 1, rep, opt_state), (loss, mse)

    def init(rep: Representation) -> State:
        return State(jnp.zeros((), jnp.int32), rep, opt.init(rep))

    return step, init


def _fingerprint(targets: np.ndarray, rep: Representation) -> str:
    h = hashlib.sha256(np.ascontiguousarray(targets, np.float32).tobytes())
    for a in [rep.h, *(rep.residuals[k] for k in sorted(rep.residuals))]:
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()[:16]


def _save_state(path: str, state: State) -> None:
    leaves = jax.tree.leaves(state)
    rundir.write_npz(path, {f"leaf{i}": leaf for i, leaf in enumerate(leaves)})


def _load_state(path: str, like: State) -> State:
    leaves, treedef = jax.tree.flatten(like)
    with np.load(path) as f:
        stored = [f[f"leaf{i}"] for i in range(len(leaves))]
    for a, b in zip(stored, leaves, strict=True):
        if a.shape != np.shape(b):
            raise InputError(f"{path}: saved state does not match this run; use another workdir")
    return jax.tree.unflatten(
        treedef, [jnp.asarray(a, b.dtype) for a, b in zip(stored, leaves, strict=True)]
    )


def optimize(
    module: proggan.Generator,
    params,
    seg: seglib.Segmenter,
    targets,
    start: Representation,
    cfg: Config | None = None,
    *,
    workdir: str | None = None,
    checkpoint_every: int = 50,
    show_progress: bool = True,
    trace: bool = False,
):
    """Fit ``start`` (at ``start.layer``; zero residuals are added for ``cfg.residuals``) to
    ``targets [N, R, R, 3]`` in ``[-1, 1]`` for ``cfg.steps`` Adam steps.

    Returns ``(rep, losses)``: the representation and per-image ``[steps + 1, N]`` losses
    (the last row after the final step) when ``trace``, else ``[1, N]`` final losses.
    With ``workdir``, resumes a run of the same targets, start and settings saved there.
    """
    cfg = cfg or Config()
    _check_layers(module, start.layer, cfg.residuals)
    targets = jax.device_put(np.asarray(targets, np.float32))
    res = dict(start.residuals)
    if cfg.residuals:

        def acts(h):
            return module.apply({"params": params}, h, start=start.layer, capture=cfg.residuals)[1]

        shapes = jax.eval_shape(acts, jax.ShapeDtypeStruct(np.shape(start.h), jnp.float32))
        res = {k: res.get(k, jnp.zeros(shapes[k].shape, jnp.float32)) for k in cfg.residuals}
    rep = Representation(start.layer, jnp.asarray(start.h, jnp.float32), res)
    step, init = make_step(module, cfg)
    state = init(rep)
    path = None
    if workdir is not None:
        settings = {**cfg._asdict(), "layer": start.layer, "inputs": _fingerprint(targets, rep)}
        if rundir.check_run(workdir, settings, "previous inversion") and os.path.exists(
            path := os.path.join(workdir, "state.npz")
        ):
            state = _load_state(path, state)
        path = os.path.join(workdir, "state.npz")
    use_feats = bool(cfg.feature_weight and cfg.feature_layers)
    feats = _features(seg, targets, cfg.feature_layers) if use_feats else {}
    per_step = []
    steps = range(int(state.step), cfg.steps)
    try:
        for s in progress.bar(steps, "inversion", disable=not show_progress, warmup=True):
            state, (loss, _) = step(state, params, seg, targets, feats)
            if trace:
                per_step.append(loss)
            if path and (s + 1) % checkpoint_every == 0:
                _save_state(path, state)
    except KeyboardInterrupt:
        if path:
            _save_state(path, state)
        raise
    final, _ = step(state, params, seg, targets, feats)[1]  # losses at the final state
    if path:
        _save_state(path, state)
    losses = np.asarray(jnp.stack([*per_step, final])) if trace else np.asarray(final)[None]
    return state.rep, losses
