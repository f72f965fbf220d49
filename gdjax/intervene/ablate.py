"""Ablation experiments: top-n removal curves, single-unit sweeps, before/after grids.

Ports the reference's ``fullablate.py`` and the notebooks' evaluation to edit values
(reference §4.4): whole-map ablation of the first ``n`` units of a ranking, the class's hard
pixels counted with every ``n`` as one vmapped program per image batch. Class functions are
plain callables (see :mod:`gdjax.intervene.ace`): ``mask(images) -> [N, h, w] bool`` and
``segment(images) -> int [N, h, w, K]`` label channels.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from gdjax import distributed, progress
from gdjax.intervene import edits
from gdjax.report import draw, plots


def order(score, tiebreak=None) -> np.ndarray:
    """Units by ``score`` ascending (rankings store negated metrics), ties by ``tiebreak``."""
    score = np.asarray(score, np.float64)
    keys = (score,) if tiebreak is None else (np.asarray(tiebreak, np.float64), score)
    return np.lexsort(keys)


def _spans(n, size):
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _bootstrap(counts: np.ndarray, seed: int, draws: int, level: float):
    """Percentile band of ``1 - sum counts[n] / sum counts[0]`` over resampled images."""
    idx = np.random.RandomState(seed).randint(counts.shape[1], size=(draws, counts.shape[1]))
    sums = counts[:, idx].sum(axis=-1)  # [E, draws]
    removed = 1 - sums / np.maximum(sums[:1], 1e-20)
    tail = (1 - level) / 2 * 100
    return np.percentile(removed, tail, axis=1), np.percentile(removed, 100 - tail, axis=1)


def curve(
    module,
    params,
    mask_fn,
    z,
    layer: str,
    units,
    alpha=None,
    n_max: int = 30,
    batch_size: int = 10,
    edit_chunk: int = 0,
    seed: int = 0,
    level: float = 0.99,
    show: bool = True,
) -> dict:
    """Fraction of the class's pixels removed by ablating the first ``n`` of ``units``.

    ``units``: unit order (best first); ``alpha``: ``None`` ablates fully, else each unit is
    ablated by its ``alpha`` (the reference's ``mixed_units``). For ``n = 0 … n_max`` over
    latents ``z [N, Z]``, whole-map ablation, hard pixels. ``edit_chunk`` bounds how many of
    the ``n_max + 1`` edits run at once (0: all). Returns a JSON-able dict with per-``n``
    ``removed`` = 1 − count/baseline and a ``level`` bootstrap band (``low``, ``high``).
    """
    units = np.asarray(units, int)[:n_max]
    c = num_units(module, params, layer)
    weights = np.ones(c, np.float32) if alpha is None else np.asarray(alpha, np.float32)
    alphas = np.zeros((len(units) + 1, c), np.float32)
    for n in range(1, len(units) + 1):
        alphas[n, units[:n]] = weights[units[:n]]

    @jax.jit
    def run(params, z, alphas):
        h, carry = edits.prefix(module, params, z, layer, with_carry=True)

        def count(a):
            img = edits.tail(module, params, h, layer, edits.make(layer, a, 0.0), carry)
            return jnp.sum(mask_fn(img), axis=(1, 2))

        return jax.lax.map(count, alphas, batch_size=edit_chunk)

    counts = []
    for s, e in progress.bar(
        _spans(len(z), batch_size), f"ablating {layer}", disable=not show, warmup=True
    ):
        counts.append(np.asarray(run(params, jnp.asarray(z[s:e]), jnp.asarray(alphas))))
    counts = np.concatenate(counts, axis=1).astype(np.float64)  # [n_max + 1, N]
    totals = counts.sum(axis=1)
    low, high = _bootstrap(counts, seed, 1000, level)
    return {
        "layer": layer, "units": units.tolist(), "n": list(range(len(units) + 1)),
        "baseline": float(totals[0]), "counts": totals.tolist(),
        "removed": (1 - totals / max(totals[0], 1e-20)).tolist(),
        "low": low.tolist(), "high": high.tolist(), "level": level, "images": len(z),
    }  # fmt: skip


def sweep(
    module,
    params,
    segment_fn,
    z,
    layer: str,
    num_labels: int,
    batch_size: int = 10,
    edit_chunk: int = 16,
    show: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Every unit of ``layer`` ablated alone: ``(base [L], ablated [C, L])`` pixel fractions.

    A pixel counts for label ``l`` if any segmentation channel equals ``l``; fractions are
    means over pixels and latents ``z``. All ``C`` single-unit edits of a batch run as one
    compiled program (``lax.map`` over chunks of ``edit_chunk`` vmapped edits).
    """

    def fractions(images):
        onehot = jax.nn.one_hot(segment_fn(images), num_labels, dtype=jnp.bool_)
        return jnp.mean(jnp.any(onehot, axis=-2), axis=(1, 2)).sum(axis=0)  # [L], summed over N

    @jax.jit
    def run(params, z):
        h, carry = edits.prefix(module, params, z, layer, with_carry=True)
        base = fractions(edits.tail(module, params, h, layer, carry=carry))
        eye = jnp.eye(h.shape[-1], dtype=jnp.float32)
        edit = lambda a: fractions(
            edits.tail(module, params, h, layer, edits.make(layer, a), carry)
        )
        return base, jax.lax.map(edit, eye, batch_size=edit_chunk)

    spans = _spans(len(z), batch_size)
    first, last = distributed.share(len(spans))  # each process its share of the batches
    mine = [run(params, jnp.asarray(z[s:e])) for s, e in progress.bar(
        spans[first:last], f"sweeping {layer}", disable=not show, warmup=True)]  # fmt: skip
    lengths = distributed.share_lengths(len(spans))
    bs = distributed.concat(np.stack([np.asarray(b) for b, _ in mine]), lengths, "sweep")
    abl = distributed.concat(np.stack([np.asarray(a) for _, a in mine]), lengths, "sweep")
    base, ablated = 0.0, 0.0
    for b, a in zip(bs, abl, strict=True):  # in batch order, whoever computed them
        base, ablated = base + np.asarray(b, np.float64), ablated + np.asarray(a, np.float64)
    return base / len(z), ablated / len(z)


def save_sweep(path: str, base, ablated, labels, layer: str) -> str:
    """``<path>.npz`` (base, ablated, effect = ablated − base) and a readable ``<path>.json``."""
    base, ablated = np.asarray(base), np.asarray(ablated)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path + ".npz", base=base, ablated=ablated, effect=ablated - base)
    effect = ablated - base
    record = {
        "layer": layer, "labels": list(labels), "base": base.tolist(),
        "strongest": {  # per label, the 5 units whose ablation removes most of it
            lab: np.argsort(effect[:, i], kind="stable")[:5].tolist()
            for i, lab in enumerate(labels) if i > 0
        },
    }  # fmt: skip
    with open(path + ".json", "w") as f:
        json.dump(record, f, indent=1)
    return path + ".npz"


def edit_grid(
    module, params, z, rows: dict, segment_fn=None, colorize=None, scale: int = 2,
    captions: bool = True,
):  # fmt: skip
    """Before/after grid: uint8 ``[H, W, 3]`` and the row names.

    Rows: the unedited images, then one per ``rows`` entry (name -> Edit or list of Edits);
    one column per latent of ``z [N, Z]``. With ``segment_fn`` and ``colorize`` (label map
    ``[N, h, w]`` -> uint8 colours) every image row is followed by its first label channel.
    With ``captions`` each row's name is written at its left (:func:`draw.caption_rows`), the
    tiles unchanged in the columns right of that band.
    """
    rows = [("original", ())] + list(rows.items())
    names, tiles = [], []
    for name, e in rows:
        images = edits.generate(module, params, jnp.asarray(z), e)
        names.append(name)
        tiles.append(draw.to_uint8(images))
        if segment_fn is not None and colorize is not None:
            seg = np.asarray(colorize(np.asarray(segment_fn(images))[..., 0]))
            factor = images.shape[1] // seg.shape[1]
            names.append(f"{name} (segmentation)")
            tiles.append(np.stack([draw.enlarge(t, factor) for t in seg]))
    tiles = np.concatenate([np.stack([draw.enlarge(t, scale) for t in row]) for row in tiles])
    image = draw.grid(tiles, ncols=len(z))
    if captions:
        image = draw.caption_rows(image, names, tiles.shape[1], pad=2, max_width=160)
    return image, names


def experiment(
    outdir: str,
    module,
    params,
    mask_fn,
    z,
    layer: str,
    classname: str,
    orders: dict,
    n_max: int = 30,
    batch_size: int = 10,
    grid_images: int = 6,
    grid_n: int = 20,
    segment_fn=None,
    colorize=None,
    show: bool = True,
) -> dict:
    """Top-n removal curves of several unit orders for one class, plot and image grid.

    ``orders``: ``{metric: (units, alpha or None)}`` (e.g. ``'iou'``, ``'ace'``, ``'units'``).
    Writes ``<outdir>/<class>-<metric>.json`` (the reference's ``fullablate`` fields
    ``classname, baseline, layer, metric, ablation_units, ablation_values, ablation_effects``
    plus ``removed`` and its band), ``<class>-curve.png`` and ``<class>-grid.png`` (the first
    ``grid_images`` latents, unedited and with each order's top ``grid_n`` units ablated).
    Returns ``{metric: curve}`` plus the written ``paths``.
    """
    curves, paths, grid_rows = {}, [], {}
    for metric, (units, alpha) in orders.items():
        c = curve(module, params, mask_fn, z, layer, units, alpha, n_max, batch_size, show=show)
        weights = np.ones(len(c["units"])) if alpha is None else np.asarray(alpha)[c["units"]]
        record = {
            "classname": classname, "baseline": c["baseline"], "layer": layer, "metric": metric,
            "ablation_units": c["units"], "ablation_values": np.asarray(weights).tolist(),
            "ablation_effects": c["counts"], **c,
        }  # fmt: skip
        path = os.path.join(outdir, f"{classname}-{metric}.json")
        os.makedirs(outdir, exist_ok=True)
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
        curves[metric], paths = c, [*paths, path]
        top = c["units"][:grid_n]
        a = edits.unit_alpha(top, num_units(module, params, layer))
        if alpha is not None:
            a = a * np.asarray(alpha, np.float32)
        grid_rows[f"{metric} top {len(top)} off"] = edits.make(layer, a, 0.0)
    paths.append(plots.plot(curves, os.path.join(outdir, f"{classname}-curve.png"),
                      f"{classname}: fraction of pixels removed ({layer})"))  # fmt: skip
    image, _ = edit_grid(module, params, z[:grid_images], grid_rows, segment_fn, colorize)
    paths.append(draw.save_png(os.path.join(outdir, f"{classname}-grid.png"), image))
    return {**curves, "paths": paths}


def num_units(module, params, layer: str) -> int:
    """Units (channels) of a generator layer, from shapes alone."""
    z = jax.ShapeDtypeStruct((1, module.sizes[0]), jnp.float32)
    return jax.eval_shape(lambda z: edits.prefix(module, params, z, layer), z).shape[-1]
