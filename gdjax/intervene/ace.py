"""Average causal effect (ACE) of units on a class, and learning per-unit α (reference §4.2–4.3).

Written against plain callables so any segmenter fits (:func:`segmenter_fns` adapts a
:class:`gdjax.models.segmenter.Segmenter`):

* ``score(images [N, R, R, 3]) -> [N, h, w]``: soft class probability, differentiable;
* ``mask(images) -> [N, h, w] bool``: hard class pixels.

``h, w`` must be multiples of the layer's ``H, W``; a "cell" is one layer position and its
class coverage is the mean of the class mask over its block of pixels. The generator is a
:class:`gdjax.models.proggan.Generator` (or any module with the same ``start``/``stop``/``edits``
call) or a :class:`gdjax.models.stylegan2.Generator`, split at ``cfg.layer``
(:mod:`gdjax.intervene.edits`; a StyleGAN2's carry is kept beside each image's activation).

The reference reads the insertion reward of its training loss at the *present* image's cell
(``ploc``) instead of the candidate's (``cloc``, reference §4.3, §9 item 11). The default
here reads it at ``cloc``; ``Config(ploc_bug=True)`` reproduces the reference.

Under ``jax.distributed`` (:mod:`gdjax.distributed`) each process computes its share of the
present and candidate sets' batches and the results are gathered in batch order (the same
bytes as one process); the α training, small beside them, runs alike on every process, and
process 0 writes the files.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdjax import distributed, rundir
from gdjax import progress as _progress
from gdjax.errors import InputError
from gdjax.intervene import edits
from gdjax.models import proggan
from gdjax.report import record


class ClassFns(NamedTuple):
    """``score(images) -> [N, h, w]`` soft probability, ``mask(images) -> [N, h, w]`` bool."""

    score: Callable[[jax.Array], jax.Array]
    mask: Callable[[jax.Array], jax.Array]


def segmenter_fns(seg, label: int, downsample: int = 1) -> ClassFns:
    """:class:`ClassFns` for ``label`` of a :class:`gdjax.models.segmenter.Segmenter`.

    ``score`` is ``class_score``'s soft map (the reference ``predict_single_class``), ``mask``
    is "any segmentation channel equals ``label``" as the reference's set selection.
    """
    from gdjax.models import segmenter

    def score(images):
        return segmenter.class_score(seg, images, label, downsample)[0]

    def mask(images):
        return jnp.any(segmenter.segment(seg, images, downsample) == label, axis=-1)

    return ClassFns(score, mask)


class Config(NamedTuple):
    """Settings; defaults are the reference's (``netdissect.aceoptimize``)."""

    layer: str = "layer4"
    search_size: int = 10000
    train_size: int = 1000
    eval_size: int = 200
    inference_batch_size: int = 10
    train_batch_size: int = 2
    train_update_freq: int = 10  # micro-batches accumulated per Adam step
    train_epochs: int = 10
    l2_lambda: float = 0.005
    lr: float = 0.01
    present_seed: int = 10  # latent seed of the present (search) set
    candidate_seed: int = 11  # latent seed of the candidate set
    cells_per_batch: int = 5  # cells probed per candidate batch
    location_seed: int = 1  # numpy RandomState drawing the probed cells
    shuffle_seed: int = 0  # pairing and order of training pairs (the reference: unseeded)
    ploc_bug: bool = False  # read the insertion reward at ploc, as the reference


def check_config(cfg: Config) -> Config:
    """``cfg`` if its sizes can work, else :class:`gdjax.errors.InputError` naming the first
    bad setting: sizes positive, the search set large enough for the training and evaluation
    pairs it is to provide, at least one Adam step per epoch, ``lr > 0``, ``l2_lambda >= 0``."""
    sizes = ("search_size", "train_size", "eval_size", "inference_batch_size")
    sizes += ("train_batch_size", "train_update_freq", "train_epochs", "cells_per_batch")
    for name in sizes:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if cfg.search_size < cfg.train_size + cfg.eval_size:
        raise InputError(
            f"search_size {cfg.search_size} is below train_size + eval_size "
            f"({cfg.train_size} + {cfg.eval_size}): the pairs are the best of the search set"
        )
    per_step = cfg.train_batch_size * cfg.train_update_freq
    if cfg.train_size < per_step:
        raise InputError(
            f"train_size {cfg.train_size} is below one Adam step of train_batch_size x "
            f"train_update_freq = {per_step} pairs"
        )
    if not cfg.lr > 0:
        raise InputError(f"lr must be > 0, got {cfg.lr}")
    if not cfg.l2_lambda >= 0:
        raise InputError(f"l2_lambda must be >= 0, got {cfg.l2_lambda}")
    return cfg


def cell_coverage(pixels: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``[N, h, w]`` -> ``[N, H, W]`` mean over each cell's pixel block (adaptive avg pool)."""
    n, h, w = pixels.shape
    if h % size[0] or w % size[1]:
        raise ValueError(f"map {h}x{w} is not a multiple of the layer's {size[0]}x{size[1]}")
    x = pixels.astype(jnp.float32).reshape(n, size[0], h // size[0], size[1], w // size[1])
    return x.mean(axis=(2, 4))


def _batches(n: int, size: int):
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _prefix_fn(module, layer, with_carry: bool = False):
    return jax.jit(lambda params, z: edits.prefix(module, params, z, layer, with_carry=with_carry))


def _take(tree, idx):
    """``tree`` (an array, a carry or ``None``) at rows ``idx``."""
    return jax.tree.map(lambda x: x[idx], tree)


def present_set(module, params, fns: ClassFns, z, cfg: Config, progress: bool = True):
    """Phase 1: per image the class coverage of each cell, and the insertion value ``k``.

    Returns ``(coverage [N, H, W], k [C])`` where ``k = sum feat*cov / (1e-20 + sum cov)``
    over all images and cells: the activation mean weighted by class coverage.
    """

    @jax.jit
    def run(params, z):
        h, carry = edits.prefix(module, params, z, cfg.layer, with_carry=True)
        images = edits.tail(module, params, h, cfg.layer, carry=carry)
        cov = cell_coverage(fns.mask(images), h.shape[1:3])
        return cov, jnp.einsum("nhwc,nhw->c", h, cov), jnp.sum(cov)

    spans = _batches(len(z), cfg.inference_batch_size)
    mine = spans[slice(*distributed.share(len(spans)))]  # every span with one process
    covs, sums, totals = [], [], []
    for s, e in _progress.bar(mine, "ace present set", disable=not progress, warmup=True):
        cov, ws, t = run(params, jnp.asarray(z[s:e]))
        covs.append(np.asarray(cov))
        sums.append(np.asarray(ws))
        totals.append(np.asarray(t))
    cov, sums, totals = _gather(spans, covs, sums, totals)
    wsum, total = 0.0, 0.0
    for ws, t in zip(sums, totals, strict=True):  # in batch order, whoever computed them
        wsum, total = wsum + np.asarray(ws, np.float64), total + float(t)
    return cov, (wsum / (1e-20 + total)).astype(np.float32)


def _gather(spans, rows: list, *per_batch: list) -> tuple:
    """Each process's rows (a list of ``[batch, ...]`` arrays) and per-batch values over its
    share of ``spans``, concatenated over processes in order: ``(rows, *per_batch)``."""
    batches = distributed.share_lengths(len(spans))
    ends = np.cumsum([0, *batches])
    lengths = [sum(e - s for s, e in spans[a:b]) for a, b in zip(ends[:-1], ends[1:], strict=True)]
    rows = distributed.concat(np.concatenate(rows) if rows else np.zeros((0,)), lengths)
    out = [distributed.concat(np.stack(v) if v else np.zeros((0,)), batches) for v in per_batch]
    return (rows, *out)


def unit_quantiles(module, params, z, layer: str, qs, batch_size: int = 10) -> np.ndarray:
    """Exact (hazen) per-unit quantile levels ``[len(qs), C]`` of ``layer`` over latents ``z``.

    Alternative insertion values (the reference's ``_h99`` variant and GANPaint use 0.99).
    Holds every activation in memory: use a few thousand images at most.
    """
    run = _prefix_fn(module, layer)
    acts = [np.asarray(run(params, jnp.asarray(z[s:e]))) for s, e in _batches(len(z), batch_size)]
    acts = np.concatenate(acts)
    return np.quantile(acts.reshape(-1, acts.shape[-1]), np.asarray(qs), axis=0, method="hazen")


def select(scores, train_size: int, eval_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``train+eval`` images by score, index-sorted, split into train and eval."""
    best = np.sort(np.argsort(-np.asarray(scores), kind="stable")[: train_size + eval_size])
    return best[:train_size], best[train_size:]


def candidate_set(module, params, fns: ClassFns, z, k, popularity, cfg: Config, progress=True):
    """Phase 4: where inserting ``k`` into *all* units at one cell adds the class.

    Per batch ``cells_per_batch`` distinct cells are drawn (the same for the batch) with
    weights ``popularity + mean(popularity)/10``; the score of a probed cell is the change in
    class pixels, zeroed where the cell already shows the class; unprobed cells score 0.
    Returns ``(scores [N, H*W], cloc [N])``.
    """
    rng = np.random.RandomState(cfg.location_seed)
    weights = np.asarray(popularity, np.float64) + np.mean(popularity) / 10
    weights = weights / weights.sum()
    k = jnp.asarray(k, jnp.float32)

    @jax.jit
    def run(params, z, cells):
        h, carry = edits.prefix(module, params, z, cfg.layer, with_carry=True)
        size = h.shape[1:3]
        base = fns.mask(edits.tail(module, params, h, cfg.layer, carry=carry))
        masks = jax.nn.one_hot(cells, size[0] * size[1]).reshape(-1, *size)
        probes = edits.Edit(
            cfg.layer,
            jnp.ones((len(cells), k.shape[0]), jnp.float32),
            jnp.broadcast_to(k, (len(cells), k.shape[0])),
            masks,
        )
        imgs = jax.vmap(lambda e: edits.tail(module, params, h, cfg.layer, e, carry))(probes)
        new = fns.mask(imgs.reshape(-1, *imgs.shape[2:])).reshape(len(cells), *base.shape)
        gain = new.sum(axis=(2, 3)) - base.sum(axis=(1, 2))[None, :]  # [cells, N]
        absent = cell_coverage(base, size).reshape(base.shape[0], -1)[:, cells] == 0
        return gain.T * absent

    ncell = len(weights)
    spans = _batches(len(z), cfg.inference_batch_size)
    # Every batch's cells, drawn in order (each process computes its share of the batches).
    cells = [rng.choice(ncell, cfg.cells_per_batch, replace=False, p=weights) for _ in spans]
    first, last = distributed.share(len(spans))
    mine = []
    for i in _progress.bar(
        range(first, last), "ace candidate set", disable=not progress, warmup=True
    ):
        (s, e), c = spans[i], cells[i]
        rows = np.zeros((e - s, ncell), np.float32)
        rows[:, c] = np.asarray(run(params, jnp.asarray(z[s:e]), jnp.asarray(c)))
        mine.append(rows)
    (scores,) = _gather(spans, mine)
    scores = scores.reshape(len(z), ncell)
    return scores, np.argmax(scores, axis=1)


def ace_loss(
    alpha, params, k, hp, ploc, hc, cloc, cp=None, cc=None, *, module, layer, score, ploc_bug=False
):
    """The reference ``ace_loss`` for one batch of pairs (reference §4.3), without the L2 term.

    ``hp, hc [B, H, W, C]``: the layer activations of present and candidate images;
    ``ploc, cloc [B]``: flat cell indices; ``cp, cc``: their carries (a StyleGAN2's, see
    :func:`gdjax.intervene.edits.prefix`; ``None`` for PGGAN). Ablates ``alpha`` at ``ploc``
    of the present images (class probability left there is the erase loss) and inserts ``k``
    with ``alpha`` at ``cloc`` of the candidates (class probability gained there, at ``ploc``
    if ``ploc_bug``, is subtracted). Sums over the batch.
    """
    size = hp.shape[1:3]

    def run(h, loc, value, carry):
        onehot = jax.nn.one_hot(loc, size[0] * size[1])
        edit = edits.Edit(layer, alpha, value, onehot.reshape(-1, *size))
        pooled = cell_coverage(score(edits.tail(module, params, h, layer, edit, carry)), size)
        return pooled.reshape(h.shape[0], -1), onehot

    p_erase, onehot_p = run(hp, ploc, jnp.zeros_like(alpha), cp)
    p_add, onehot_c = run(hc, cloc, jnp.broadcast_to(k, alpha.shape), cc)
    return jnp.sum(p_erase * onehot_p) - jnp.sum(p_add * (onehot_p if ploc_bug else onehot_c))


def _loss_fn(module, score, cfg: Config):
    return functools.partial(
        ace_loss, module=module, layer=cfg.layer, score=score, ploc_bug=cfg.ploc_bug
    )


class TrainState(NamedTuple):
    alpha: jax.Array  # [C] in [0, 1]
    opt_state: optax.OptState


def make_step(module, score, cfg: Config):
    """``(init(alpha) -> TrainState, step(state, params, k, batch) -> (state, loss))``.

    ``batch = (hp, ploc, hc, cloc)`` or ``(hp, ploc, hc, cloc, cp, cc)`` (with carries, see
    :func:`ace_loss`) with a leading ``train_update_freq`` axis over micro-batches of
    ``train_batch_size`` pairs: their gradients are summed (as the
    reference's accumulation), ``l2_lambda * pairs * |alpha|^2`` added, one Adam step taken
    and alpha projected to ``[0, 1]``. Jitted; compiles once per shape.
    """
    opt = optax.adam(cfg.lr)
    loss = _loss_fn(module, score, cfg)

    def init(alpha):
        alpha = jnp.asarray(alpha, jnp.float32)
        return TrainState(alpha, opt.init(alpha))

    @jax.jit
    def step(state, params, k, batch):
        def micro(g, mb):
            value, grad = jax.value_and_grad(loss)(state.alpha, params, k, *mb)
            return g + grad, value

        grad, values = jax.lax.scan(micro, jnp.zeros_like(state.alpha), batch)
        pairs = batch[0].shape[0] * batch[0].shape[1]
        l2 = cfg.l2_lambda * pairs
        grad = grad + 2 * l2 * state.alpha
        updates, opt_state = opt.update(grad, state.opt_state, state.alpha)
        alpha = optax.projections.projection_box(optax.apply_updates(state.alpha, updates), 0, 1)
        return TrainState(alpha, opt_state), jnp.sum(values) + l2 * jnp.sum(state.alpha**2)

    return init, step


class Result(NamedTuple):
    alpha: np.ndarray  # [C] final
    snapshots: np.ndarray  # [epochs + 1, C]: before training ("epoch -1"), then each epoch
    eval_loss: np.ndarray  # [epochs + 1] mean ACE loss per eval pair, same rows
    train_loss: np.ndarray  # [epochs] mean loss per pair (with the L2 term)
    k: np.ndarray  # [C] insertion value
    present: np.ndarray  # [train + eval] present-set latent indices (seed present_seed)
    candidates: np.ndarray  # [train + eval] candidate latent indices (seed candidate_seed)


def _saved(workdir: str | None, name: str, make):
    """``make()`` as a dict of arrays, kept in ``workdir/name.npz`` (loaded if it exists)."""
    if workdir is None:
        return make()
    path = os.path.join(workdir, name + ".npz")
    if os.path.exists(path):
        with np.load(path) as f:
            return dict(f)
    out = make()
    if distributed.is_main():  # every process holds the same arrays
        rundir.write_npz(path, out)
    return out


def optimize(
    module,
    params,
    fns: ClassFns,
    cfg: Config | None = None,
    init=None,
    value=None,
    progress=True,
    workdir: str | None = None,
):
    """Learn per-unit α for a class (reference §4.2): sets, ``k``, then Adam with projection.

    ``init``: initial α ``[C]`` (the reference: IoU / max IoU, see :func:`init_from_dissect`);
    ``None`` starts at 0.5 everywhere. ``value``: insertion value ``[C]`` replacing the
    coverage-weighted mean ``k`` (e.g. :func:`unit_quantiles` at 0.99, the reference's
    ``_h99`` variant). Deterministic for a given ``cfg`` (default: :class:`Config`).
    ``workdir`` (optional): the present and candidate sets and the training state after every
    epoch are kept there, so an interrupted call with the same arguments resumes after the
    last finished phase or epoch and returns the same result.
    """
    cfg = Config() if cfg is None else cfg
    zdim = module.sizes[0]
    n = cfg.train_size + cfg.eval_size
    zp = proggan.sample_z(cfg.search_size, cfg.present_seed, zdim)

    def present():
        cov, k = present_set(module, params, fns, zp, cfg, progress)
        return {"cov": cov, "k": k}

    ps = _saved(workdir, "present", present)
    k = ps["k"] if value is None else np.asarray(value, np.float32)
    cov = ps["cov"].reshape(len(zp), -1)
    ptrain, peval = select(cov.max(axis=1), cfg.train_size, cfg.eval_size)
    ploc = np.argmax(cov, axis=1)
    popularity = np.bincount(ploc[ptrain], minlength=cov.shape[1])
    zc = proggan.sample_z(cfg.search_size, cfg.candidate_seed, zdim)

    def candidates():
        cscore, cloc = candidate_set(module, params, fns, zc, k, popularity, cfg, progress)
        return {"score": cscore, "cloc": cloc}

    cs = _saved(workdir, "candidates", candidates)
    cscore, cloc = cs["score"], cs["cloc"]
    ctrain, ceval = select(cscore.max(axis=1), cfg.train_size, cfg.eval_size)

    # The generator up to the layer runs once per selected image; training resumes from it.
    # A StyleGAN2 also needs its carry (latents, skip image) per image; PGGAN's is None.
    prefix = _prefix_fn(module, cfg.layer, with_carry=True)
    pidx, cidx = np.concatenate([ptrain, peval]), np.concatenate([ctrain, ceval])

    def acts(z, idx):
        spans = _batches(len(idx), cfg.inference_batch_size)
        parts = [prefix(params, jnp.asarray(z[idx[s:e]])) for s, e in spans]
        return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

    (hp, cp), (hc, cc) = acts(zp, pidx), acts(zc, cidx)
    pl, cl, kj = jnp.asarray(ploc[pidx]), jnp.asarray(cloc[cidx]), jnp.asarray(k)
    init_fn, step = make_step(module, fns.score, cfg)
    loss = _loss_fn(module, fns.score, cfg)
    ev = np.arange(cfg.train_size, n)
    b = cfg.train_batch_size
    ev_batches = [ev[i : i + b] for i in range(0, len(ev), b)]
    eval_fn = jax.jit(loss)  # arrays as arguments, not captured constants

    def evaluate(alpha):
        total = sum(
            float(
                eval_fn(alpha, params, kj, hp[i], pl[i], hc[i], cl[i], _take(cp, i), _take(cc, i))
            )
            for i in ev_batches
        )
        return total / max(1, len(ev))

    alpha0 = np.full(kj.shape, 0.5, np.float32) if init is None else np.asarray(init, np.float32)
    state = init_fn(alpha0)
    snapshots, eval_loss, train_loss = [np.asarray(state.alpha)], [evaluate(state.alpha)], []
    rng = np.random.RandomState(cfg.shuffle_seed)
    per_step = b * cfg.train_update_freq
    steps = cfg.train_size // per_step
    done = 0
    saved = None if workdir is None else os.path.join(workdir, "training.npz")
    if saved is not None and os.path.exists(saved):
        with np.load(saved) as f:
            done = int(f["epochs"])
            leaves = [jnp.asarray(f[f"state_{i}"]) for i in range(len(jax.tree.leaves(state)))]
            snapshots, eval_loss = list(f["snapshots"]), list(f["eval_loss"])
            train_loss = list(f["train_loss"])
        state = jax.tree.unflatten(jax.tree.structure(state), leaves)
    epochs = range(cfg.train_epochs)
    for epoch in _progress.bar(epochs, "ace epochs", disable=not progress, warmup=True):
        pair, order = rng.permutation(cfg.train_size), rng.permutation(cfg.train_size)
        if epoch < done:  # finished before an interruption: only the shuffles are replayed
            continue
        total = 0.0
        for s in range(steps):
            i = order[s * per_step : (s + 1) * per_step]
            ip, ic = i.reshape(cfg.train_update_freq, b), pair[i].reshape(cfg.train_update_freq, b)
            batch = (hp[ip], pl[ip], hc[ic], cl[ic], _take(cp, ip), _take(cc, ic))
            state, value = step(state, params, kj, batch)
            total += float(value)
        snapshots.append(np.asarray(state.alpha))
        eval_loss.append(evaluate(state.alpha))
        train_loss.append(total / max(1, steps * per_step))
        if saved is not None and distributed.is_main():
            leaves = {f"state_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))}
            rundir.write_npz(saved, {
                "epochs": np.asarray(epoch + 1), "snapshots": np.stack(snapshots),
                "eval_loss": np.asarray(eval_loss), "train_loss": np.asarray(train_loss),
                **leaves,
            })  # fmt: skip
    return Result(
        np.asarray(state.alpha), np.stack(snapshots), np.asarray(eval_loss),
        np.asarray(train_loss), k, pidx, cidx,
    )  # fmt: skip


def delta(module, params, mask_fn, z, layer, alpha, k, locations=None, batch_size=10) -> float:
    """ACE δ: class pixel fraction with ``alpha`` inserted (value ``k``) minus ablated (0).

    ``alpha [C]`` (``edits.unit_alpha`` for a unit set), ``z [N, Z]``; ``locations``:
    ``None`` edits and measures the whole image, ``[N, H, W]`` 0/1 cells edits there and
    measures the fraction inside those cells. Mean over images.
    """
    alpha, k = jnp.asarray(alpha, jnp.float32), jnp.asarray(k, jnp.float32)

    @jax.jit
    def run(params, z, loc):
        h, carry = edits.prefix(module, params, z, layer, with_carry=True)
        fracs = []
        for value in (k, jnp.zeros_like(k)):
            edit = edits.make(layer, alpha, value, loc)
            img = edits.tail(module, params, h, layer, edit, carry)
            m = cell_coverage(mask_fn(img), h.shape[1:3])
            w = jnp.ones_like(m) if loc is None else loc
            fracs.append(jnp.sum(m * w, axis=(1, 2)) / jnp.maximum(jnp.sum(w, axis=(1, 2)), 1e-20))
        return fracs[0] - fracs[1]

    out = []
    for s, e in _batches(len(z), batch_size):
        loc = None if locations is None else jnp.asarray(locations[s:e], jnp.float32)
        out.append(np.asarray(run(params, jnp.asarray(z[s:e]), loc)))
    return float(np.concatenate(out).mean())


def init_from_dissect(rec: dict, layer: str, classname: str) -> np.ndarray | None:
    """IoU / max IoU from the ``'<class>-iou'`` ranking of a ``dissect.json`` record (``None``
    if the layer has no such ranking or no positive IoU)."""
    score = record.ranking(rec, layer, f"{classname}-iou")
    if score is None:
        return None
    iou = -score
    return iou / iou.max() if iou.max() > 0 else None


def save(outdir: str, result: Result, cfg: Config, classname: str, **extra) -> str:
    """Write ``alpha.npy``, ``snapshots/epoch-{-1..E-1}.npy`` and ``summary.json`` (the
    ``'<class>-ace'`` ranking, losses per epoch, settings, ``extra``); returns the summary path.
    """
    os.makedirs(os.path.join(outdir, "snapshots"), exist_ok=True)
    np.save(os.path.join(outdir, "alpha.npy"), result.alpha)
    for epoch, alpha in enumerate(result.snapshots, start=-1):
        np.save(os.path.join(outdir, "snapshots", f"epoch-{epoch}.npy"), alpha)
    summary = {
        "classname": classname, "layer": cfg.layer, "settings": cfg._asdict(),
        "ranking": {"name": f"{classname}-ace", "metric": "ace",
                    "score": (-result.alpha).tolist()},
        "top_units": np.argsort(-result.alpha, kind="stable")[:20].tolist(),
        "eval_loss": result.eval_loss.tolist(), "train_loss": result.train_loss.tolist(),
        "insertion_value": result.k.tolist(), **extra,
    }  # fmt: skip
    path = os.path.join(outdir, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=1)
    return path
