"""Dissection: label every unit of some generator layers with the concept it matches best.

Pipeline (reference §3, with the PNAS variant of §12 as options):

1. :mod:`.cache` runs the generator and the segmenter once per latent set (``seed``, and
   ``train_seed`` for the IQR thresholds) and keeps raw activations, label maps and the images
   (for the strips) on disk.
2. Per layer, every statistic is a pass over the cache: activations are upsampled to the
   segmentation grid (half-pixel bilinear, edge clamp), thresholds come from exact quantiles
   (``threshold='iqr'``: 100 top fractions and the IQR search on the threshold set; or a
   number ``q``: each unit's exact ``1 - q`` quantile), then one pass on the main set for the
   top-k images by spatial max and the final IoU counts.
3. :mod:`.scores` turns counts into IoU / IQR and unit labels; :mod:`gdjax.report` writes
   ``dissect.json`` (the reference's field names), ``<layer>/stats.npz``, image strips, a bar
   chart per layer and ``report.html``.

Overlap: every statistics program is compiled on a worker thread while the networks fill the
first cache. In IQR mode the threshold set (made first) is then counted on that thread while
the networks make the main set, and the main set's pass follows the networks batch by batch
(:class:`gdjax.dissect.cache.Watch`), so little is left to do once the last image is made.

Counting passes save their state with orbax after a batch at most every ``checkpoint_seconds``
(30 s by default; a shorter pass is simply redone) and finished layers keep their results in
``<layer>/result.npz``; together with the cache's own progress a run killed at any point
resumes where it stopped and ends with the same bytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gdjax import progress
from gdjax.dissect import cache, passes, quantiles, scores
from gdjax.models import checkpoint, proggan
from gdjax.models import segmenter as seglib
from gdjax.report import draw, strips
from gdjax.report import record as report

RESULT_FIELDS = ("levels", "best", "top_values", "top_indices", "iou", "iqr", "lc", "cc", "ic")


def _nan_check(layer: str, acts: np.ndarray) -> None:
    for start in range(0, acts.shape[0], 256):
        bad = np.flatnonzero(np.isnan(acts[start : start + 256]).any(axis=(1, 2, 3)))
        if bad.size:
            raise ValueError(f"layer {layer!r}: NaN activations in image {start + int(bad[0])}")


def layer_levels(
    layer: str,
    c: cache.Cache,
    label_category: np.ndarray,
    num_categories: int,
    *,
    workdir: str,
    threshold="iqr",
    batch_size: int = 64,
    label0_quirk: bool = False,
    ties_quirk: bool = False,
    checkpoint_seconds: float = 30.0,
    ready=None,
) -> dict:
    """Each unit's level from cache ``c`` (the threshold set in IQR mode, else the main set):
    ``{"levels": float32 [C]}``, plus in IQR mode the best-IQR label ``best`` and the search's
    ``max_iqr*`` arrays. ``ready(stop)`` (optional) is called before every batch (it may raise
    to stop the passes)."""
    up = passes.upsampler(tuple(c.labels.shape[1:3]))
    batch_size = passes.even_batch(c.size, batch_size)

    def levels_at(qs, name):
        def batches():
            arrays = {"a": c.acts[layer]}
            return (b["a"] for _, b in passes.batches(arrays, batch_size, name, ready=ready))

        return quantiles.exact_quantiles(batches, qs, transform=up)

    if threshold != "iqr":
        return {"levels": levels_at([1 - float(threshold)], f"{layer} quantile")[:, 0]}
    taus = scores.monotone_thresholds(
        levels_at(1 - scores.iqr_fractions(), f"{layer} threshold quantiles")
    )
    counts = passes.threshold_counts(
        c, layer, taus, label_category, num_categories,
        directory=os.path.join(workdir, "iqr_counts"), batch_size=batch_size,
        every=checkpoint_seconds, ready=ready,
    )  # fmt: skip
    search = scores.iqr_search(counts, taus, label_category, ties_quirk=ties_quirk)
    best, levels = scores.unit_levels(search, label0_quirk=label0_quirk, ties_quirk=ties_quirk)
    out = {"levels": levels, "best": best}
    for k in ("max_iqr", "max_iqr_level", "max_iqr_quantile", "max_iqr_iou"):
        out[k] = getattr(search, k)
    return out


def layer_scores(
    layer: str,
    main: cache.Cache,
    levels: dict,
    label_category: np.ndarray,
    num_categories: int,
    *,
    workdir: str,
    iou_mode: str = "category",
    topk: int = 8,
    batch_size: int = 64,
    ties_quirk: bool = False,
    checkpoint_seconds: float = 30.0,
    ready=None,
) -> dict:
    """Top-k images and IoU counts on the main set at the units' ``levels``
    (:func:`layer_levels`), in one pass: the layer's result, a dict of numpy arrays
    (``RESULT_FIELDS`` plus any ``max_iqr*`` from ``levels``). ``ready(stop)`` (optional)
    blocks until the main set's first ``stop`` images exist (:class:`gdjax.dissect.cache.Watch`)."""
    batch_size = passes.even_batch(main.size, batch_size)
    num_units = main.acts[layer].shape[-1]
    level = np.asarray(levels["levels"], np.float32)
    final, top = passes.main_pass(
        main, layer, level, label_category, num_categories, topk,
        directory=os.path.join(workdir, "iou_counts"), batch_size=batch_size,
        every=checkpoint_seconds, ready=ready,
    )  # fmt: skip
    _nan_check(layer, main.acts[layer])
    iou_, iqr_ = scores.iou_scores(final, label_category, denominators=iou_mode)
    if iou_mode == "category":
        lc = np.asarray(final.label_channels)
        cc = np.asarray(final.cat_hist[..., 1])
    else:
        lc = np.asarray(final.label_pixels)
        cc = np.broadcast_to(np.asarray(final.all_hist[:, 1]), (num_categories, num_units))
    best = levels.get("best")
    if best is None:
        best = scores.label_units(iou_, iqr_, label_category, ties_quirk=ties_quirk).label
    ic = np.asarray(final.label_hist[..., 1]).T.copy()
    ic[0] = 0
    extra = {k: v for k, v in levels.items() if k.startswith("max_iqr")}
    return extra | {
        "levels": level, "best": np.asarray(best),
        "top_values": np.asarray(top.values), "top_indices": np.asarray(top.index),
        "iou": iou_, "iqr": iqr_, "lc": lc, "cc": np.array(cc), "ic": ic,
    }  # fmt: skip


def dissect_layer(
    layer: str,
    main: cache.Cache,
    train: cache.Cache | None,
    label_category: np.ndarray,
    num_categories: int,
    *,
    workdir: str,
    threshold="iqr",
    iou_mode: str = "category",
    topk: int = 8,
    batch_size: int = 64,
    label0_quirk: bool = False,
    ties_quirk: bool = False,
    checkpoint_seconds: float = 30.0,
) -> dict:
    """Statistics of one layer from cached activations: :func:`layer_levels` on ``train`` (IQR
    mode) or ``main``, then :func:`layer_scores` on ``main``."""
    common = dict(workdir=workdir, batch_size=batch_size, checkpoint_seconds=checkpoint_seconds,
                  ties_quirk=ties_quirk)  # fmt: skip
    levels = layer_levels(
        layer, train if threshold == "iqr" else main, label_category, num_categories,
        threshold=threshold, label0_quirk=label0_quirk, **common,
    )  # fmt: skip
    return layer_scores(
        layer, main, levels, label_category, num_categories, iou_mode=iou_mode, topk=topk,
        **common,
    )  # fmt: skip


def dissect(
    outdir: str,
    generator,
    segmenter: seglib.Segmenter,
    layers: Sequence[str],
    *,
    samples: int = 1000,
    seed: int = 1,
    train_seed: int = 2,
    threshold="iqr",
    iou_mode: str = "category",
    downsample: int = 2,
    batch_size: int = 32,
    micro: int = 8,
    topk: int = 8,
    strip_images: int = 5,
    iou_threshold: float = 0.05,
    iqr_threshold: float = 0.01,
    label0_quirk: bool = False,
    ties_quirk: bool = False,
    netname: str = "generator",
    settings_extra: dict | None = None,
) -> dict:
    """Dissect ``layers`` of ``generator = (module, params)``; returns the ``dissect.json`` record.

    ``samples`` latents of ``seed`` are dissected; in IQR mode the thresholds come from as many
    latents of ``train_seed`` (reference defaults: seeds 1 and 2). Everything lands in
    ``outdir`` and a rerun with the same settings resumes; other settings are refused.
    """
    module, params = generator
    bad = [name for name in layers if name not in module.layers]
    if bad:
        raise ValueError(f"unknown layer {bad[0]!r}; valid layers: {', '.join(module.layers)}")
    if threshold != "iqr" and not 0 < float(threshold) < 1:
        raise ValueError(f"threshold must be 'iqr' or a fraction in (0, 1), got {threshold!r}")
    if iou_mode not in ("category", "all"):
        raise ValueError(f"iou must be 'category' or 'all', got {iou_mode!r}")
    settings = {
        "netname": netname, "layers": list(layers), "samples": samples, "seed": seed,
        "train_seed": train_seed, "threshold": threshold, "iou": iou_mode,
        "downsample": downsample, "batch_size": batch_size, "micro": micro, "topk": topk,
        "label0_quirk": label0_quirk, "ties_quirk": ties_quirk, **(settings_extra or {}),
    }  # fmt: skip
    checkpoint.check_settings(outdir, settings, "run")
    fn = cache.model_fn(module, params, segmenter, layers, downsample, images=True)
    zdim = module.sizes[0]
    labels, categories = list(segmenter.labels), list(segmenter.categories)
    label_category = np.array([categories.index(c) if c in categories else 0 for _, c in labels])
    label_category[0] = 0
    shapes = cache.output_shapes(fn, zdim, batch_size, micro)  # traces the networks once
    stats_batch = passes.stats_batch(samples, tuple(shapes[1].shape[1:3]))
    common = dict(batch_size=stats_batch, ties_quirk=ties_quirk)
    paths = {layer: os.path.join(outdir, layer, "result.npz") for layer in layers}
    todo = [layer for layer in layers if not os.path.exists(paths[layer])]

    watch = cache.Watch()

    def levels_of(c: cache.Cache) -> dict:
        out = {}
        for layer in todo:
            _nan_check(layer, c.acts[layer])
            out[layer] = layer_levels(
                layer, c, label_category, len(categories), threshold=threshold,
                workdir=os.path.join(outdir, layer, "passes"), label0_quirk=label0_quirk,
                ready=lambda _: watch.check(), **common,
            )  # fmt: skip
        return out

    def scores_of(levels) -> None:
        main = watch.wait(0)
        for layer in todo:
            result = layer_scores(
                layer, main, levels[layer], label_category, len(categories), iou_mode=iou_mode,
                topk=topk, workdir=os.path.join(outdir, layer, "passes"), ready=watch.wait,
                **common,
            )  # fmt: skip
            os.makedirs(os.path.dirname(paths[layer]), exist_ok=True)
            np.savez(paths[layer] + ".tmp.npz", **result)
            os.replace(paths[layer] + ".tmp.npz", paths[layer])

    def cache_of(seed_: int, name: str, watch=None) -> cache.Cache:
        return cache.collect(
            os.path.join(outdir, "cache", name), proggan.sample_z(samples, seed_, zdim), fn,
            batch_size, micro, desc=f"generate+segment seed {seed_}", watch=watch,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=1, initializer=_lower_priority) as pool:
        try:
            # The statistics passes compile on a thread while the networks run. In IQR mode the
            # threshold set's passes then run there while the networks make the main set, and
            # the main set's pass follows them batch by batch.
            pool.submit(passes.compile_passes, shapes, todo, len(labels), len(categories),
                        stats_batch, topk, threshold)  # fmt: skip
            if threshold == "iqr":
                train = cache_of(train_seed, "train")
                levels = pool.submit(levels_of, train)
                scored = pool.submit(lambda: scores_of(levels.result()))
                main = cache_of(seed, "main", watch)
                scored.result()
            else:
                main = cache_of(seed, "main", watch)
                scores_of(levels_of(main))
        except BaseException:
            watch.fail()  # the worker stops at its next batch instead of finishing its passes
            raise

    records, strip_units = [], {}
    for layer in layers:
        _nan_check(layer, main.acts[layer])
        with np.load(paths[layer]) as f:
            result = dict(f)
        report.save_stats(outdir, layer, **result)
        records.append(report.layer_record(
            layer, labels, categories, result["iou"], result["iqr"], result["best"],
            result["levels"], result["top_values"], result["top_indices"], result["lc"],
            result["cc"], result["ic"], max_iqr=result.get("max_iqr"),
            max_iqr_level=result.get("max_iqr_level"),
            max_iqr_quantile=result.get("max_iqr_quantile"),
            max_iqr_iou=result.get("max_iqr_iou"),
            iou_threshold=iou_threshold, iqr_threshold=iqr_threshold,
        ))  # fmt: skip
        strip_units[layer] = result["top_indices"][:strip_images]
    colors = draw.palette(len(labels))
    _write_strips(outdir, main, strip_units, records, colors)
    record = report.report_record(
        netname, records, labels, colors, settings=settings, quantile_threshold=threshold,
        iou_threshold=iou_threshold, iqr_threshold=iqr_threshold,
    )  # fmt: skip
    report.write_report(outdir, record)
    return record


def _lower_priority() -> None:
    """Gives the calling thread a lower CPU priority (Linux threads have their own nice value):
    its Python work and its XLA compilations (whose LLVM threads inherit it) yield to the
    networks. The statistics programs themselves run on XLA's shared CPU thread pool, which no
    thread priority reaches (measured per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority
        pass


def _write_strips(outdir, main, strip_units, records, colors):
    """Write every unit's strip of top images (from the cache) and of their segmentations.

    Units are drawn and PNG-encoded on a few threads (the encoder releases the GIL)."""

    def write(job):
        layer, unit, level = job
        idx = [int(i) for i in strip_units[layer][:, unit] if 0 <= int(i) < main.size]
        imgs = np.asarray(main.images[idx])
        top_strip = strips.unit_strip(imgs, np.asarray(main.acts[layer][idx, :, :, unit]), level)
        seg = strips.seg_strip(np.asarray(main.labels[idx, :, :, 0]), colors, imgs.shape[1:3])
        strips.save_strip(outdir, layer, unit, top_strip, seg)

    jobs = [(r["layer"], u["unit"], u["level"]) for r in records for u in r["units"]]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        for _ in progress.bar(pool.map(write, jobs), "unit strips", total=len(jobs)):
            pass
