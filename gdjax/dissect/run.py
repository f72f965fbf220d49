"""Dissection: label every unit of some generator layers with the concept it matches best.

Pipeline (reference §3, with the PNAS variant of §12 as options), every choice in one
:class:`gdjax.dissect.settings.Settings`:

1. :mod:`.cache` runs the generator and the segmenter once per latent set (``seed``, and
   ``train_seed`` for the IQR thresholds) and keeps raw activations, label maps and the images
   (for the strips) on disk.
2. Per layer (:mod:`.layer`), every statistic is a pass over the cache: activations are
   upsampled to the segmentation grid (half-pixel bilinear, edge clamp), thresholds come from
   exact quantiles (IQR mode: 100 top fractions and the IQR search on the threshold set; or a
   fraction ``q``: each unit's exact ``1 - q`` quantile), then one pass on the main set for the
   top-k images by spatial max and the final IoU counts. The statistics run beside the
   networks (:mod:`.schedule`).
3. :mod:`gdjax.report` writes ``dissect.json`` (the reference's field names), image strips, a
   bar chart per layer and ``report.html``; each layer's :class:`.result.LayerResult` is
   ``<layer>/stats.npz``.

Counting passes save their state (``.npz``) after a batch at most every ``checkpoint_seconds``
(30 s by default; a shorter pass is simply redone) and a finished layer's ``stats.npz`` is
written whole or not at all; together with the cache's own progress a run stopped at any point
(Ctrl-C, ``kill -9``) resumes where it stopped and ends with the same bytes.

Under ``jax.distributed`` (:mod:`gdjax.distributed`; ``outdir`` on a file system every process
sees) each process makes its share of both latent sets and counts its share of every pass; the
counts are summed across processes, process 0 writes the results and the report, and the
bytes equal a one-process run's. The statistics then follow the networks instead of running
beside them. When a process stops, the others stop at their next synchronisation point, and
relaunching every process resumes each where it stopped.
"""

from __future__ import annotations

import os

from gdjax import distributed, progress, rundir
from gdjax.dissect import cache, layer, passes, schedule
from gdjax.dissect.result import LayerResult
from gdjax.dissect.settings import Settings
from gdjax.models import proggan
from gdjax.models import segmenter as seglib
from gdjax.models.labels import label_categories
from gdjax.report import draw, record, strips, write

__all__ = ["dissect", "stats_path"]


def stats_path(outdir: str, layer_name: str) -> str:
    """Where a finished layer's :class:`LayerResult` lives."""
    return os.path.join(outdir, layer_name, "stats.npz")


def dissect(
    outdir: str,
    generator,
    segmenter: seglib.Segmenter,
    settings: Settings,
    *,
    overwrite: bool = False,
    overlap: bool = True,
    checkpoint_seconds: float = 30.0,
) -> dict:
    """Dissect ``settings.layers`` of ``generator = (module, params)``; returns the
    ``dissect.json`` record.

    Everything lands in ``outdir``; a rerun with the same settings resumes. Other settings are
    refused with :class:`gdjax.errors.InputError` (nothing written), or with ``overwrite``
    replace the old run. ``overlap``: statistics beside the networks (else one after the
    other; the same bytes either way).
    """
    module, params = generator
    settings.check_models(module.layers, module.resolution)
    labels, categories = list(segmenter.labels), list(segmenter.categories)
    label_category = label_categories(labels, categories)
    fn = cache.model_fn(module, params, segmenter, settings.layers, settings.downsample, True)
    zdim = module.sizes[0]
    shapes = cache.output_shapes(fn, zdim, settings.batch_size, settings.micro)  # one trace
    distributed.first(
        lambda: rundir.check_run(outdir, settings.to_json(), "dissection", overwrite), "settings"
    )

    stats_batch = passes.stats_batch(settings.samples, tuple(shapes[1].shape[1:3]))
    todo = [name for name in settings.layers if not os.path.exists(stats_path(outdir, name))]
    common = dict(batch_size=stats_batch, checkpoint_seconds=checkpoint_seconds)
    num_categories = len(categories)

    def collect(name: str, watch: cache.Watch, check) -> cache.Cache:
        seed = settings.train_seed if name == "train" else settings.seed
        z = proggan.sample_z(settings.samples, seed, zdim)
        return cache.collect(
            os.path.join(outdir, "cache", name), z, fn, settings.batch_size, settings.micro,
            desc=f"generate+segment seed {seed}", watch=watch, check=check,
        )  # fmt: skip

    def levels(c: cache.Cache, ready) -> dict:
        out = {}
        for name in todo:
            layer.check_finite(name, c.acts[name])
            out[name] = layer.levels(
                name, c, label_category, num_categories, settings,
                workdir=os.path.join(outdir, name, "passes"), ready=ready, **common,
            )  # fmt: skip
        return out

    def results(lv: dict, watch: cache.Watch) -> None:
        main = watch.wait(0)
        for name in todo:
            res = layer.result(
                name, main, lv[name], label_category, num_categories, settings,
                workdir=os.path.join(outdir, name, "passes"), ready=watch.wait, **common,
            )  # fmt: skip
            if distributed.is_main():  # every process holds the same result
                res.save(stats_path(outdir, name))

    def compile_all() -> None:
        if todo:
            with progress.status("compiling the statistics programs"):
                passes.compile_passes(
                    shapes, todo, len(labels), num_categories, stats_batch, settings
                )

    jobs = schedule.Jobs(settings.iqr_mode, compile_all, collect, levels, results)
    # Several processes: each does its share of every job, one job after another.
    overlap = overlap and distributed.count() == 1
    main = (schedule.overlapped if overlap else schedule.sequential)(jobs)
    if not distributed.is_main():  # process 0 writes the report
        distributed.barrier("report written")
        return record.read(os.path.join(outdir, "dissect.json"))

    colors = draw.palette(len(labels))
    layers = []
    for name in settings.layers:  # each checked for NaNs when its result was made
        result = LayerResult.load(stats_path(outdir, name))
        layers.append(record.layer_record(
            name, result, labels, categories, iou_threshold=settings.iou_threshold,
            iqr_threshold=settings.iqr_threshold,
        ))  # fmt: skip
        strips.write_strips(
            outdir, name, result, main.images, main.acts[name], main.labels, colors,
            settings.strips, settings.padding,
        )  # fmt: skip
    rec = record.report_record(settings, layers, labels, colors)
    write.write_report(outdir, rec)
    distributed.barrier("report written")
    return rec
