"""Where can a class go? Insert its units at one location at a time and see where it appears.

The paper's context experiment ("where can a door go?"): the top units of a class are
inserted at a single cell of a layer's grid (alpha 1 on those units at that cell, the rest of
the map untouched, reference §4.1), in turn at every cell of every latent; the class's pixels
created near the cell are counted and grouped by what the segmenter saw at that cell before
the insertion. A door inserted on a building's wall should appear; one inserted in the sky
should not.

* **Value**: each unit is set to the class's insertion value ``k``, the activation mean
  weighted by the class's coverage of each cell, as ACE computes it (reference §4.2 phase 1,
  :func:`gdjax.intervene.ace.present_set`; here over ``value_size`` latents of ACE's present
  seed, so with the same size it is the ``k`` of ``examples/ace.py``). ``insertion_quantile``
  uses each unit's level at that quantile instead (the reference's ``_h99`` variant and
  GANPaint's "draw" use 0.99).
* **Context** of a cell: the most frequent label of the first segmentation channel over the
  cell's block of pixels in the unedited image (ties to the lower label number).
* **Created**: pixels of the class (any segmentation channel equals the class, as ACE) after
  the insertion that were not before, inside the window of cells within ``near`` cells of the
  inserted one (Chebyshev distance; ``near=0`` the cell alone). Pixels the insertion took
  from the class are counted apart (``removed``: inserting over an existing door can shrink
  it), and both over the whole image too.

Every (latent, cell) pair is one insertion; a batch of latents runs all of its cells as one
compiled program (a stack of single-cell edits, ``lax.map`` over chunks of ``edit_chunk``
vmapped edits), the generator resumed after the layer (:func:`gdjax.intervene.edits.tail`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdjax import progress as _progress
from gdjax import rundir
from gdjax.errors import InputError
from gdjax.intervene import ace, edits
from gdjax.models import proggan
from gdjax.report import bars, draw

__all__ = [
    "Config",
    "check_config",
    "insertion_value",
    "measure",
    "run",
    "summarize",
    "example_grid",
    "grid",
    "pick_examples",
    "top_units",
    "windows",
]

PROGRESS, VALUE, RESULT = "insertions.npz", "value.npz", "context.json"


class Config(NamedTuple):
    """Settings of a context experiment (demo-sized defaults)."""

    layer: str = "layer4"
    topn: int = 20  # units inserted, the first of the ranking
    size: int = 200  # latents; every cell of each is one insertion
    seed: int = 4  # latent seed (1, 2: dissection; 3: ablation; 10, 11: ACE)
    near: int = 1  # created pixels are counted within this many cells of the inserted one
    batch_size: int = 10  # latents per compiled program
    edit_chunk: int = 16  # single-cell edits run at once (vmapped) inside it
    value_size: int = 1000  # latents of the insertion value (ACE's search_size on the demo)
    value_seed: int = 10  # ACE's present seed
    insertion_quantile: float | None = None  # None: ACE's k; else each unit's level there
    bootstrap: int = 1000  # resamples of the latents for the confidence intervals
    level: float = 0.95  # of the intervals


def check_config(cfg: Config) -> Config:
    """``cfg`` if it can work, else :class:`InputError` naming the first bad setting."""
    for name in ("topn", "size", "batch_size", "edit_chunk", "value_size", "bootstrap"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(cfg.near, bool) or not isinstance(cfg.near, int) or cfg.near < 0:
        raise InputError(f"near must be an integer >= 0, got {cfg.near!r}")
    q = cfg.insertion_quantile
    if q is not None and not 0 < q < 1:
        raise InputError(f"insertion_quantile must be in (0, 1), got {q}")
    if not 0 < cfg.level < 1:
        raise InputError(f"level must be in (0, 1), got {cfg.level}")
    return cfg


def windows(size: tuple[int, int], near: int) -> np.ndarray:
    """``[H*W, H, W]`` float32: for each cell (row-major), 1 on the cells within ``near`` of it
    (Chebyshev distance), 0 elsewhere."""
    h, w = size
    y, x = np.divmod(np.arange(h * w), w)
    dy = np.abs(y[:, None, None] - np.arange(h)[None, :, None])
    dx = np.abs(x[:, None, None] - np.arange(w)[None, None, :])
    return (np.maximum(dy, dx) <= near).astype(np.float32)


def insertion_value(module, params, mask_fn, cfg: Config, progress: bool = True) -> np.ndarray:
    """The per-unit value ``[C]`` inserted: ACE's ``k`` over ``cfg.value_size`` latents of
    ``cfg.value_seed`` (:func:`gdjax.intervene.ace.present_set`), or with
    ``cfg.insertion_quantile`` each unit's level at that quantile over the same latents."""
    z = proggan.sample_z(cfg.value_size, cfg.value_seed, module.sizes[0])
    if cfg.insertion_quantile is not None:
        q = [cfg.insertion_quantile]
        return ace.unit_quantiles(module, params, z, cfg.layer, q, cfg.batch_size)[0]
    fns = ace.ClassFns(None, mask_fn)
    acfg = ace.Config(layer=cfg.layer, inference_batch_size=cfg.batch_size)
    return ace.present_set(module, params, fns, z, acfg, progress)[1]


def grid(module, params, segment_fn, layer: str) -> tuple[int, int]:
    """The layer's ``(H, W)``, checked against the segmentation's size (from shapes alone):
    :class:`InputError` unless the label map's sides are multiples of the layer's."""
    z = jax.ShapeDtypeStruct((1, module.sizes[0]), jnp.float32)
    size = jax.eval_shape(lambda z: edits.prefix(module, params, z, layer), z).shape[1:3]
    seg = jax.eval_shape(lambda z: segment_fn(edits.generate(module, params, z)), z).shape
    if seg[1] % size[0] or seg[2] % size[1]:
        raise InputError(
            f"segmentation {seg[1]}x{seg[2]} is not a multiple of {layer}'s {size[0]}x{size[1]} "
            "grid: choose a coarser layer or less segmentation downsampling"
        )
    return tuple(size)


def _blocks(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``[N, h, w, ...]`` -> ``[N, H, W, ...]`` sums over each cell's block of pixels."""
    n, h, w = x.shape[:3]
    x = x.reshape(n, size[0], h // size[0], size[1], w // size[1], *x.shape[3:])
    return x.sum(axis=(2, 4))


def _program(module, segment_fn, label: int, num_labels: int, layer: str, edit_chunk: int):
    """The jitted per-batch measurement (see :func:`measure`)."""

    @jax.jit
    def run(params, z, alpha, value, wins):
        h = edits.prefix(module, params, z, layer)
        size = h.shape[1:3]
        seg = segment_fn(edits.tail(module, params, h, layer))  # [n, s, s, K]
        onehot = jax.nn.one_hot(seg[..., 0], num_labels, dtype=jnp.int32)
        context = jnp.argmax(_blocks(onehot, size), axis=-1).reshape(z.shape[0], -1)
        had = jnp.any(seg == label, axis=-1)  # [n, s, s]
        before = _blocks(had.astype(jnp.float32), size)  # [n, H, W]
        cells = jnp.eye(size[0] * size[1], dtype=jnp.float32).reshape(-1, *size)

        def insert(args):
            cell, win = args
            img = edits.tail(module, params, h, layer, edits.Edit(layer, alpha, value, cell))
            now = jnp.any(segment_fn(img) == label, axis=-1)
            new = _blocks((now & ~had).astype(jnp.float32), size)
            lost = _blocks((had & ~now).astype(jnp.float32), size)
            sums = [jnp.sum(x * w, axis=(1, 2)) for x in (new, lost) for w in (win[None], 1.0)]
            return jnp.stack(sums)  # [4, n]: created near, anywhere; removed near, anywhere

        counts = jax.lax.map(insert, (cells, wins), batch_size=edit_chunk)  # [E, 4, n]
        counts = jnp.round(counts).astype(jnp.int32).transpose(1, 2, 0)  # [4, n, E]
        before_near = jnp.einsum("nhw,ehw->ne", before, wins)
        return context, jnp.round(before_near).astype(jnp.int32), *counts

    return run


def measure(
    module,
    params,
    segment_fn: Callable[[jax.Array], jax.Array],
    label: int,
    num_labels: int,
    z,
    units: Sequence[int],
    value,
    cfg: Config,
    workdir: str | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Insert ``units`` at every cell of ``cfg.layer`` for every latent of ``z [N, Z]``.

    ``segment_fn(images) -> int [N, h, w, K]`` label channels (``h, w`` multiples of the
    layer's ``H, W``); ``label``: the class; ``value [C]``: the inserted levels. Returns
    ``[N, H*W]`` int32 arrays (cells row-major): ``context`` (the cell's label before),
    ``before`` (class pixels in the cell's window before), ``created`` (pixels of the class
    after the insertion that were not before, in the window), ``removed`` (the reverse) and
    ``created_image``, ``removed_image`` (the same over the whole image). With ``workdir``
    the arrays are kept in ``workdir/insertions.npz`` after every batch and an interrupted
    call resumes after the last finished batch.
    """
    c = value.shape[-1]
    alpha = jnp.asarray(edits.unit_alpha(units, c))
    value = jax.device_put(np.asarray(value, np.float32))
    size = grid(module, params, segment_fn, cfg.layer)
    wins = jax.device_put(windows(size, cfg.near))
    n, e = len(z), size[0] * size[1]
    names = ("context", "before", "created", "created_image", "removed", "removed_image")
    out = {k: np.zeros((n, e), np.int32) for k in names}
    done = 0
    path = None if workdir is None else os.path.join(workdir, PROGRESS)
    if path is not None and os.path.exists(path):
        with np.load(path) as f:
            if f["context"].shape == (n, e):
                out, done = {k: f[k] for k in names}, int(f["done"])
    run = _program(module, segment_fn, label, num_labels, cfg.layer, cfg.edit_chunk)
    spans = [(s, min(s + cfg.batch_size, n)) for s in range(0, n, cfg.batch_size)]
    todo = [(s, t) for s, t in spans if s >= done]
    desc = f"inserting at {e} cells of {cfg.layer}"
    for s, t in _progress.bar(todo, desc, disable=not progress, warmup=True):
        res = run(params, jax.device_put(np.asarray(z[s:t], np.float32)), alpha, value, wins)
        for k, v in zip(names, res, strict=True):
            out[k][s:t] = np.asarray(v)
        if path is not None:
            rundir.write_npz(path, {**out, "done": np.asarray(t)})
    return out


def top_units(rec: dict, layer: str, classname: str, topn: int) -> tuple[list[int], str]:
    """``(units, ranking)``: the first ``topn`` units of the ``'<class>-ace'`` ranking of a
    ``dissect.json`` record when it has one (``examples/ace.py`` adds it), else of
    ``'<class>-iou'``; ties broken by the IoU ranking, as the ablation curves. Neither:
    :class:`InputError`."""
    from gdjax.intervene import ablate
    from gdjax.report import record

    record.layer(rec, layer)
    iou = record.ranking(rec, layer, f"{classname}-iou")
    for name in (f"{classname}-ace", f"{classname}-iou"):
        score = record.ranking(rec, layer, name)
        if score is not None:
            return ablate.order(score, tiebreak=iou)[:topn].tolist(), name
    raise InputError(
        f"the dissection has no ranking {classname}-ace or {classname}-iou for {layer} "
        "(no unit is labelled with the class): give the units explicitly"
    )


def summarize(res: dict, labels: Sequence[str], cfg: Config, seed: int = 0) -> list[dict]:
    """Per context label met: ``{label, labelnum, insertions, latents, created, low, high,
    appeared, removed, net, created_image, removed_image, before}``, most insertions first.

    ``created`` / ``removed``: mean class pixels created / removed per insertion in the
    window, ``net`` their difference, ``*_image`` the same over the whole image;
    ``low, high``: the ``cfg.level`` percentile interval of ``created`` over
    ``cfg.bootstrap`` resamples of the latents (insertions into one image are not
    independent, so whole latents are resampled); ``appeared``: the share of insertions that
    created at least one pixel; ``before``: mean class pixels in the window before.
    """
    context, created = res["context"], res["created"].astype(np.float64)
    n, num = context.shape[0], len(labels)
    rows = np.repeat(np.arange(n), context.shape[1])
    flat = context.ravel()
    counts = np.zeros((n, num))
    sums = np.zeros((n, num))
    np.add.at(counts, (rows, flat), 1)
    np.add.at(sums, (rows, flat), created.ravel())
    idx = np.random.RandomState(seed).randint(n, size=(cfg.bootstrap, n))
    boot_c, boot_s = counts[idx].sum(axis=1), sums[idx].sum(axis=1)  # [B, L]
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = boot_s / boot_c
    tail = (1 - cfg.level) / 2 * 100
    out = []
    for lab in np.flatnonzero(counts.sum(axis=0)):
        sel = flat == lab
        b = boot[:, lab][np.isfinite(boot[:, lab])]
        mean = lambda key: float(res[key].ravel()[sel].astype(np.float64).mean())  # noqa: B023
        out.append({
            "label": labels[lab], "labelnum": int(lab), "insertions": int(sel.sum()),
            "latents": int((counts[:, lab] > 0).sum()),
            "created": float(created.ravel()[sel].mean()),
            "low": float(np.percentile(b, tail)), "high": float(np.percentile(b, 100 - tail)),
            "appeared": float((created.ravel()[sel] > 0).mean()),
            "removed": mean("removed"), "net": mean("created") - mean("removed"),
            "created_image": mean("created_image"), "removed_image": mean("removed_image"),
            "before": mean("before"),
        })  # fmt: skip
    out.sort(key=lambda r: (-r["insertions"], r["labelnum"]))
    return out


def example_grid(
    module, params, z, picks, layer: str, units, value, segment_fn=None, label: int = -1,
    scale: int = 3,
):  # fmt: skip
    """Example insertions: uint8 ``[H, W, 3]``, one captioned row per ``picks`` entry.

    ``picks``: ``[(row name, [(latent, cell), ...])]`` with latents of ``z [N, Z]`` and cells
    row-major; every pick is drawn as the image before and after inserting ``units`` at
    ``value`` in that cell, the cell outlined in yellow, tiles enlarged ``scale``x. With
    ``segment_fn`` a third tile shows the after image greyed with the pixels of class
    ``label`` the insertion created in magenta.
    """
    pairs = [p for _, row in picks for p in row]
    if not pairs:
        return np.full((8, 8, 3), 255, np.uint8)
    size = jax.eval_shape(lambda z: edits.prefix(module, params, z, layer), z[:1]).shape[1:3]
    zs = jax.device_put(np.asarray([z[i] for i, _ in pairs], np.float32))
    cells = np.zeros((len(pairs), size[0] * size[1]), np.float32)
    cells[np.arange(len(pairs)), [c for _, c in pairs]] = 1
    alpha = edits.unit_alpha(units, np.asarray(value).shape[-1])
    edit = edits.make(layer, alpha, np.asarray(value, np.float32), cells.reshape(-1, *size))
    images = [edits.generate(module, params, zs), edits.generate(module, params, zs, edit)]
    before, after = (draw.to_uint8(x) for x in images)
    res = before.shape[1]
    views = [before, after]
    if segment_fn is not None:
        had, now = (np.asarray(segment_fn(x) == label).any(-1) for x in images)
        new = (now & ~had).repeat(res // now.shape[1], 1).repeat(res // now.shape[2], 2)
        grey = (after.astype(np.float32).mean(-1, keepdims=True) * 0.5 + 100).astype(np.uint8)
        views.append(np.where(new[..., None], np.uint8([255, 0, 255]), grey.repeat(3, -1)))
    step = res // size[0] * scale, res // size[1] * scale
    tiles = []
    for k, (_, cell) in enumerate(pairs):
        y, x = divmod(cell, size[1])
        for view in views:
            t = draw.enlarge(view[k], scale).copy()
            y0, x0, y1, x1 = y * step[0], x * step[1], (y + 1) * step[0] - 1, (x + 1) * step[1] - 1
            t[y0 : y1 + 1, [x0, x1]] = t[[y0, y1], x0 : x1 + 1] = (255, 220, 0)
            tiles.append(t)
    per_row, v = max(len(row) for _, row in picks), len(views)
    blank = np.full_like(tiles[0], 255)
    rows, k = [], 0
    for _, row in picks:
        rows += tiles[k : k + v * len(row)] + [blank] * (v * (per_row - len(row)))
        k += v * len(row)
    image = draw.grid(np.stack(rows), ncols=v * per_row, pad=3)
    names = [name for name, _ in picks]
    return draw.caption_rows(image, names, tiles[0].shape[0], pad=3, max_width=200)


def pick_examples(res: dict, contexts: list[dict], per_row: int = 2):
    """``[(row name, [(latent, cell)])]``: for each of ``contexts`` (:func:`summarize` rows),
    the ``per_row`` insertions that created the most class pixels, one per latent."""
    picks = []
    for c in contexts:
        lat, cell = np.nonzero(res["context"] == c["labelnum"])
        order = np.lexsort((cell, lat, -res["created"][lat, cell]))
        chosen, seen = [], set()
        for j in order:
            if lat[j] not in seen:
                seen.add(lat[j])
                chosen.append((int(lat[j]), int(cell[j])))
            if len(chosen) == per_row:
                break
        best = res["created"][tuple(np.asarray(chosen).T)] if chosen else []
        made = ", ".join(f"{int(b):+d}" for b in best)
        name = (f"{c['label']} (mean {c['created']:.2f}): the best {len(chosen)} of "
                f"{c['insertions']}, {made} px")  # fmt: skip
        picks.append((name, chosen))
    return picks


def run(
    outdir: str,
    module,
    params,
    segment_fn: Callable[[jax.Array], jax.Array],
    labels: Sequence[str],
    classname: str,
    units: Sequence[int],
    cfg: Config,
    *,
    ranking: str | None = None,
    min_insertions: int = 20,
    overwrite: bool = False,
    progress: bool = True,
    extra: dict | None = None,
) -> dict:
    """The context experiment for ``classname`` (see the module docstring); resumable.

    ``segment_fn(images) -> int [N, h, w, K]``, ``labels``: label names by number;
    ``units``: the units inserted (``ranking`` names where they came from, for the record).
    Everything is checked before anything is written; ``outdir`` records the settings (with
    ``extra``; others are refused unless ``overwrite``), the insertion value
    (``value.npz``) and the insertions so far (``insertions.npz``), so a rerun resumes.
    Writes ``context.json`` (settings, the value, per context :func:`summarize`),
    ``context.png`` (created pixels per insertion by context, contexts with at least
    ``min_insertions`` insertions, most created first) and ``context-grid.png``
    (:func:`pick_examples` of the three charted contexts with the most pixels created and the
    two with the fewest). Returns the ``context.json`` record with ``paths``.
    """
    cfg = check_config(cfg)
    labels = list(labels)
    if classname not in labels[1:]:
        raise InputError(f"unknown class {classname!r}; classes are {', '.join(labels[1:])}")
    label = labels.index(classname)
    size = grid(module, params, segment_fn, cfg.layer)
    num_units = jax.eval_shape(
        lambda z: edits.prefix(module, params, z, cfg.layer),
        jax.ShapeDtypeStruct((1, module.sizes[0]), jnp.float32),
    ).shape[-1]
    units = [int(u) for u in units]
    if not units or not all(0 <= u < num_units for u in units):
        raise InputError(f"units must be in 0..{num_units - 1}, got {units}")
    settings = {**cfg._asdict(), "classname": classname, "units": units, "ranking": ranking,
                **(extra or {})}  # fmt: skip
    rundir.check_run(outdir, settings, "context run", overwrite)

    def mask_fn(images):
        return jnp.any(segment_fn(images) == label, axis=-1)

    vpath = os.path.join(outdir, VALUE)
    if os.path.exists(vpath):
        with np.load(vpath) as f:
            value = f["value"]
    else:
        value = insertion_value(module, params, mask_fn, cfg, progress)
        rundir.write_npz(vpath, {"value": value})
    z = proggan.sample_z(cfg.size, cfg.seed, module.sizes[0])
    res = measure(module, params, segment_fn, label, len(labels), z, units, value, cfg,
                  workdir=outdir, progress=progress)  # fmt: skip
    contexts = summarize(res, labels, cfg)
    shown = sorted((c for c in contexts if c["insertions"] >= min_insertions),
                   key=lambda c: -c["created"])  # fmt: skip
    how = (f"ACE's k over {cfg.value_size} latents" if cfg.insertion_quantile is None
           else f"each unit's {cfg.insertion_quantile} quantile")  # fmt: skip
    within = "in the cell" if cfg.near == 0 else f"within {cfg.near} cell(s) of it"
    paths = [os.path.join(outdir, n) for n in (RESULT, "context.png", "context-grid.png")]
    colors = draw.palette(len(labels))
    bars.bar_chart(
        paths[1], [c["label"] for c in shown], [c["created"] for c in shown],
        [c["low"] for c in shown], [c["high"] for c in shown],
        [c["insertions"] for c in shown], [colors[c["labelnum"]] for c in shown],
        f"{classname} pixels created per insertion, by context class ({cfg.layer})",
        f"{classname} pixels created",
        note=f"top {len(units)} units ({ranking or 'given'}) set to {how} at one {cfg.layer} "
        f"cell, {cfg.size} latents x {size[0] * size[1]} cells; context = the cell's label "
        f"before; pixels counted {within} on the segmentation grid; whiskers: "
        f"{cfg.level:.0%} interval over latents; contexts with >= {min_insertions} insertions",
    )  # fmt: skip
    rows = shown[:3] + [c for c in shown[-2:] if c not in shown[:3]]  # most and least
    picks = pick_examples(res, rows)
    image = example_grid(module, params, z, picks, cfg.layer, units, value, segment_fn, label)
    draw.save_png(paths[2], image)
    out = {
        "classname": classname, "label": label, "layer": cfg.layer, "units": units,
        "ranking": ranking, "value": how, "insertion_value": np.asarray(value).tolist(),
        "grid": list(size), "insertions": int(res["context"].size), "contexts": contexts,
        "settings": settings, "paths": paths,
    }  # fmt: skip
    rundir.write_json(paths[0], out)
    return out
