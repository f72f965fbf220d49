"""One layer's statistics from cached activations: its units' levels, then its result.

:func:`levels` runs on the threshold set (the second latent set in IQR mode, else the main
set): exact quantiles of the upsampled activations, and in IQR mode the counts against 100
candidate thresholds and the IQR search (reference §3.4). :func:`result` runs one pass over the
main set at those levels: the IoU counts and the top-k images (reference §3.5), then the scores.
Each pass checkpoints into ``workdir`` (:func:`gdjax.dissect.passes.counting_pass`).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from gdjax import distributed
from gdjax.dissect import passes, quantiles, scores
from gdjax.dissect.cache import Cache
from gdjax.dissect.result import IQR_FIELDS, LayerResult, Levels
from gdjax.dissect.settings import Settings

__all__ = ["check_finite", "dissect_layer", "levels", "result"]


def check_finite(layer: str, acts: np.ndarray) -> None:
    """Raises ``ValueError`` naming the first image whose activations hold a NaN."""
    for start in range(0, acts.shape[0], 256):
        bad = np.flatnonzero(np.isnan(acts[start : start + 256]).any(axis=(1, 2, 3)))
        if bad.size:
            raise ValueError(f"layer {layer!r}: NaN activations in image {start + int(bad[0])}")


def levels(
    layer: str,
    c: Cache,
    label_category: np.ndarray,
    num_categories: int,
    settings: Settings,
    *,
    workdir: str,
    batch_size: int,
    checkpoint_seconds: float = 30.0,
    ready=None,
) -> Levels:
    """Each unit's level from cache ``c`` (the threshold set in IQR mode, else the main set).
    ``ready(stop)`` (optional) is called before every batch; it may raise to stop the passes."""
    up = passes.upsampler(tuple(c.labels.shape[1:3]), settings.padding)
    batch_size = passes.even_batch(c.size, batch_size)

    def levels_at(qs, name, transform=up):
        radix = iter(range(1, len(quantiles.DEFAULT_BITS) + 1))

        lo, hi = passes.share_rows(c.size, batch_size)  # all rows with one process

        def batches():  # one pass per radix digit
            desc = f"{name} (pass {next(radix)}/{len(quantiles.DEFAULT_BITS)})"
            arrays = {"a": c.acts[layer][lo:hi]}
            wait = None if ready is None else lambda stop: ready(lo + stop)
            return (b["a"] for _, b in passes.batches(arrays, batch_size, desc, ready=wait))

        def combine(state):  # every process's share (nothing with one process)
            return distributed.reduce(jax.device_get(state), passes.add, name)

        return quantiles.exact_quantiles(batches, qs, transform=transform, combine=combine)

    if not settings.iqr_mode:  # the raw feature maps' quantile (gandissect) or the upsampled
        q = 1 - settings.threshold
        raw = settings.quantile_of == "raw"
        name = f"{layer} quantile of {'raw' if raw else 'upsampled'} values"
        return Levels(levels_at([q], name, None if raw else up)[:, 0])
    taus = scores.monotone_thresholds(
        levels_at(1 - scores.iqr_fractions(), f"{layer} threshold quantiles")
    )
    counts = passes.threshold_counts(
        c, layer, taus, label_category, num_categories,
        directory=os.path.join(workdir, "iqr_counts"), batch_size=batch_size,
        every=checkpoint_seconds, ready=ready, padding=settings.padding,
    )  # fmt: skip
    ties = settings.ties_quirk
    search = scores.iqr_search(counts, taus, label_category, ties_quirk=ties)
    best, level = scores.unit_levels(search, label0_quirk=settings.label0_quirk, ties_quirk=ties)
    return Levels(level, np.asarray(best, np.int64), {k: getattr(search, k) for k in IQR_FIELDS})


def result(
    layer: str,
    main: Cache,
    lv: Levels,
    label_category: np.ndarray,
    num_categories: int,
    settings: Settings,
    *,
    workdir: str,
    batch_size: int,
    checkpoint_seconds: float = 30.0,
    ready=None,
) -> LayerResult:
    """Top-k images and IoU counts on the main set at the units' levels ``lv``, in one pass,
    and the scores. ``ready(stop)`` (optional) blocks until the main set's first ``stop``
    images exist (:class:`gdjax.dissect.cache.Watch`)."""
    batch_size = passes.even_batch(main.size, batch_size)
    level = np.asarray(lv.levels, np.float32)
    state = passes.main_pass(
        main, layer, level, label_category, num_categories, settings.topk,
        directory=os.path.join(workdir, "iou_counts"), batch_size=batch_size,
        every=checkpoint_seconds, ready=ready, padding=settings.padding,
    )  # fmt: skip
    final, top = jax.device_get(state)  # indexing device arrays would compile small programs
    check_finite(layer, main.acts[layer])
    ov = scores.overlap(final, denominators=settings.iou)
    iou, iqr = scores.overlap_scores(ov, label_category)
    label = lv.label
    if label is None:
        label = scores.label_units(iou, iqr, label_category, ties_quirk=settings.ties_quirk).label
    return LayerResult(
        levels=level, label=np.asarray(label, np.int64), iou=iou, iqr=iqr,
        top_values=np.asarray(top.values), top_indices=np.asarray(top.index),
        intersection=ov.intersection, active=ov.active, label_size=ov.label_size,
        domain=ov.domain, search=lv.search,
    )  # fmt: skip


def dissect_layer(
    layer: str,
    main: Cache,
    train: Cache | None,
    label_category: np.ndarray,
    num_categories: int,
    settings: Settings,
    *,
    workdir: str,
    batch_size: int = 64,
    checkpoint_seconds: float = 30.0,
) -> LayerResult:
    """Both steps for one layer, one after the other: :func:`levels` on ``train`` (IQR mode)
    or ``main``, then :func:`result` on ``main``."""
    common = dict(workdir=workdir, batch_size=batch_size, checkpoint_seconds=checkpoint_seconds)
    source = train if settings.iqr_mode else main
    lv = levels(layer, source, label_category, num_categories, settings, **common)
    return result(layer, main, lv, label_category, num_categories, settings, **common)
