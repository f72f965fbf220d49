"""Interventions on generator units as values: the :class:`Edit` pytree and the split point.

An edit replaces a layer's activation ``x [N, H, W, C]`` by ``x * (1 - a) + v * a`` where the
alpha plane ``a`` is the per-unit ``alpha [C]`` times an optional spatial ``mask`` and ``v`` is a
per-unit value (reference §4.1: ablation is ``v = 0``, insertion ``v = k``). Edits are pytrees:
they stack (:func:`stack`) and vmap — a batch of different edits runs as one program — and
``jax.grad`` flows to ``alpha``, ``value`` and ``mask``.

Generation is split at the edited layer: :func:`prefix` computes the activation once,
:func:`tail` resumes from it under any edits, so sweeping many edits never recomputes the
blocks before the layer. A StyleGAN2 resumes from more than the activation (its latents and
running skip image, :class:`gdjax.models.stylegan2.Carry`): ``prefix(..., with_carry=True)``
returns ``(h, carry)`` and ``tail(..., carry=carry)`` takes it back; for PGGAN ``carry`` is
``None`` and both run exactly as without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gdjax.models import proggan, stylegan2


@struct.dataclass
class Edit:
    """``x -> x * (1 - alpha * mask) + value * alpha * mask`` after block ``layer``.

    * ``alpha``: ``[C]`` per unit (or ``[H, W, C]`` / ``[N, H, W, C]`` per position), in
      ``[0, 1]``;
    * ``value``: the replacement, broadcastable to ``alpha`` from the right (``[C]`` per unit);
    * ``mask``: ``None`` (whole map) or ``[H, W]`` / ``[N, H, W]`` in ``[0, 1]`` at the layer's
      resolution (see :func:`pool_mask` for image-space masks).

    A stack of ``E`` edits (:func:`stack`) has a leading ``E`` axis on every array.
    """

    layer: str = struct.field(pytree_node=False)
    alpha: jax.Array
    value: jax.Array
    mask: jax.Array | None = None


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def make(layer: str, alpha, value=0.0, mask=None) -> Edit:
    """An :class:`Edit` with float32 arrays; a scalar ``value`` is broadcast to ``alpha``."""
    alpha = _f32(alpha)
    value = _f32(value)
    if value.ndim == 0:
        value = jnp.broadcast_to(value, alpha.shape)
    return Edit(layer, alpha, value, None if mask is None else _f32(mask))


def unit_alpha(units: Sequence[int], num_units: int) -> np.ndarray:
    """``[num_units]`` float32 with 1 at ``units`` and 0 elsewhere."""
    a = np.zeros(num_units, np.float32)
    a[np.asarray(list(units), int)] = 1.0
    return a


def ablation(layer: str, units: Sequence[int], num_units: int, mask=None) -> Edit:
    """Switch ``units`` off (value 0, alpha 1) over the ``mask`` (default: the whole map)."""
    return make(layer, unit_alpha(units, num_units), 0.0, mask)


def insertion(layer: str, units: Sequence[int], value, mask=None) -> Edit:
    """Set ``units`` to ``value [C]`` (alpha 1) over the ``mask``; other units untouched."""
    value = _f32(value)
    return make(layer, unit_alpha(units, value.shape[-1]), value, mask)


def _rank(x: jax.Array, ndim: int) -> jax.Array:
    return x.reshape((1,) * (ndim - x.ndim) + x.shape)


def planes(edit: Edit) -> tuple[jax.Array, jax.Array]:
    """``(alpha, value)`` as :func:`gdjax.models.proggan.apply_edit` takes them, the mask folded in.

    Shapes: ``[C]`` without mask, ``[H, W, C]`` / ``[N, H, W, C]`` with one.
    """
    alpha, value = _f32(edit.alpha), _f32(edit.value)
    if edit.mask is not None:
        m = _f32(edit.mask)[..., None]
        n = max(m.ndim, alpha.ndim)
        alpha = _rank(alpha, n) * _rank(m, n)
    return alpha, value


def apply_edit(x: jax.Array, edit: Edit) -> jax.Array:
    """``x * (1 - a) + v * a`` on ``x [N, H, W, C]`` with ``(a, v) = planes(edit)``."""
    return proggan.apply_edit(x, *planes(edit))


def compose(edits: Sequence[Edit]) -> Edit:
    """Several edits of one layer as one, composited "alpha-over" in order (reference §6).

    ``a = 1 - (1 - a_acc)(1 - a_new)``, ``v = (v_acc a_acc (1 - a_new) + v_new a_new) / a``,
    which equals applying the edits one after another. The reference divides by
    ``a + 1e-40``; here ``v = 0`` where ``a = 0`` (no denormals, finite gradients).
    The result carries per-position planes and no mask.
    """
    edits = list(edits)
    if not edits:
        raise ValueError("compose needs at least one edit")
    layers = {e.layer for e in edits}
    if len(layers) != 1:
        raise ValueError(f"compose takes edits of one layer, got {sorted(layers)}")
    pairs = [planes(e) for e in edits]
    shape = np.broadcast_shapes(*(p.shape for pair in pairs for p in pair))
    pairs = [tuple(jnp.broadcast_to(_rank(p, len(shape)), shape) for p in pair) for pair in pairs]
    a, v = pairs[0]
    v = v * (a > 0)
    for a_new, v_new in pairs[1:]:
        a_out = 1 - (1 - a) * (1 - a_new)
        num = v * a * (1 - a_new) + v_new * a_new
        pos = a_out > 0
        v = jnp.where(pos, num / jnp.where(pos, a_out, 1.0), 0.0)
        a = a_out
    return Edit(edits[0].layer, a, v, None)


def stack(edits: Sequence[Edit]) -> Edit:
    """A batch of edits of one layer with equal shapes, for ``jax.vmap`` (leading axis E)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *edits)


def _pool_axis(x: jax.Array, axis: int, n: int, op) -> jax.Array:
    size = x.shape[axis]
    bins = []
    for i in range(n):  # adaptive pooling bins, as torch's adaptive_{max,avg}_pool2d
        s, e = (i * size) // n, -((-(i + 1) * size) // n)
        bins.append(op(jax.lax.slice_in_dim(x, s, e, axis=axis), axis=axis))
    return jnp.stack(bins, axis=axis)


def pool_mask(mask, size: tuple[int, int], mode: str = "max") -> jax.Array:
    """An image-space mask ``[R, R]`` or ``[N, R, R]`` pooled to the layer's ``(H, W)``.

    ``mode='max'`` (the reference painting tool's default: any painted pixel turns the cell
    on) or ``'mean'`` (the painted fraction of the cell), with adaptive pooling bins.
    """
    op = {"max": jnp.max, "mean": jnp.mean}[mode]
    m = _f32(mask)
    m = _pool_axis(m, m.ndim - 2, size[0], op)
    return _pool_axis(m, m.ndim - 1, size[1], op)


def _group(edits) -> dict[str, Edit]:
    if isinstance(edits, Edit):
        edits = [edits]
    by_layer: dict[str, list[Edit]] = {}
    for e in edits:
        by_layer.setdefault(e.layer, []).append(e)
    return {k: v[0] if len(v) == 1 else compose(v) for k, v in by_layer.items()}


def needs_carry(module) -> bool:
    """Whether resuming ``module`` after a layer needs a carry besides the activation."""
    return isinstance(module, stylegan2.Generator)


def _position(module, name: str) -> float | None:
    """Where ``name`` runs among ``module.layers`` (a StyleGAN2 style vector runs just before
    its conv, a ``torgb`` style just after the block's ``conv1``); ``None`` if unknown."""
    names = list(module.layers)
    if name in names:
        return float(names.index(name))
    if needs_carry(module) and name in module.style_layers:
        block, conv = name.split(".")[:2]
        if conv == "torgb":
            return names.index(f"{block}.conv1") + 0.5
        return names.index(f"{block}.{conv}") - 0.5
    return None


def prefix(module, params, z: jax.Array, layer: str, *, with_carry: bool = False):
    """The activation ``[N, H, W, C]`` of ``layer`` for latents ``z [N, Z]`` (pre-edit).

    ``with_carry``: return ``(h, carry)``, what :func:`tail` needs to resume (``None`` for
    generators that resume from ``h`` alone, as PGGAN; see :func:`needs_carry`).
    """
    if not needs_carry(module):
        h = module.apply({"params": params}, z, stop=layer)[0]
        return (h, None) if with_carry else h
    h, acts = module.apply({"params": params}, z, stop=layer, capture=(stylegan2.CARRY,))
    return (h, acts[stylegan2.CARRY]) if with_carry else h


def tail(module, params, h: jax.Array, layer: str, edits=(), carry=None) -> jax.Array:
    """Images ``[N, R, R, 3]`` resumed from ``h``, the activation of ``layer``, under ``edits``.

    ``edits``: one :class:`Edit` or a sequence; edits at ``layer`` are applied to ``h``, edits
    at later layers (or StyleGAN2 style vectors used after ``layer``) inside the generator;
    several edits of one layer are composed in order. ``carry``: from
    ``prefix(..., with_carry=True)``, required by a StyleGAN2, ``None`` otherwise.
    """
    groups = _group(edits)
    here = _position(module, layer)
    for name in groups:
        pos = _position(module, name)
        if pos is None or here is None or pos < here or (pos == here and name != layer):
            raise ValueError(f"edit at {name!r} cannot be applied when resuming after {layer!r}")
    if layer in groups:
        h = apply_edit(h, groups.pop(layer))
    later = {k: planes(e) for k, e in groups.items()}
    kw = {} if carry is None else {"carry": carry}
    return module.apply({"params": params}, h, start=layer, edits=later, **kw)[0]


def generate(module: proggan.Generator, params, z: jax.Array, edits=()) -> jax.Array:
    """Images ``[N, R, R, 3]`` for latents ``z [N, Z]`` under ``edits`` (any layers)."""
    later = {k: planes(e) for k, e in _group(edits).items()}
    return module.apply({"params": params}, z, edits=later)[0]
