"""Which units cause each class: ACE α per class, then top-n removal by ACE vs by IoU.

For one class (:func:`run_class`, what ``examples/ace.py`` runs) or every class with enough
interpretable units (:func:`run_all`, ``examples/ace_all.py``): learn α
(:func:`.ace.optimize`), ablate the top ``topn`` units by α and by the ``<class>-iou``
ranking over the whole map (:func:`.ablate.experiment`, reference §4.4) and record the
fraction of class pixels removed, the paper's measure (reference §14: 20 units, whole-image
ablation, 1000 latents of seed 3; here ``eval_images`` latents of seed 3). As in the
reference notebook that produced §14's numbers, each ACE-ranked unit is ablated by its α
(``mixed_units``; α ≤ 1, so never more than a full ablation), IoU-ranked units fully;
``mixed_units=False`` ablates both fully.

Under ``jax.distributed`` every process learns α (each computing its share of the sets,
:mod:`.ace`); process 0 then measures the removal and writes every file while the others wait.

:func:`run_all` is resumable: each class writes ``<outdir>/<layer>/<class>/result.json`` last
(atomically) and a rerun with the same settings reuses it, so an interrupted run loses at most
the class it was on; other settings on the same directory are refused.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from gdjax import distributed, rundir
from gdjax.intervene import ablate, ace
from gdjax.models import proggan
from gdjax.report import record

RESULT = "result.json"


def _band(c: dict) -> dict:
    return {"removed": c["removed"][-1], "low": c["low"][-1], "high": c["high"][-1]}


def run_class(
    outdir: str,
    module,
    params,
    fns: ace.ClassFns,
    dissect_path: str,
    classname: str,
    cfg: ace.Config,
    *,
    eval_images: int = 200,
    eval_seed: int = 3,
    topn: int = 20,
    insertion_quantile: float | None = None,
    mixed_units: bool = True,
    segment_fn=None,
    colorize=None,
    progress: bool = True,
    overwrite: bool = False,
    **extra,
) -> dict:
    """Learn α for ``classname`` and compare the removal by its top ``topn`` units with IoU's.

    Resumable: ``outdir`` records the settings (others are refused unless ``overwrite``) and
    keeps the optimisation's phases and epochs in ``outdir/work`` (:func:`.ace.optimize`).

    α starts from ``dissect_path``'s ``<class>-iou`` ranking (IoU / max IoU) when present, else
    0.5. Writes into ``outdir``: ``alpha.npy``, ``snapshots/``, ``summary.json``
    (:func:`.ace.save`, with ``extra``), the curves ``<class>-{ace,iou}.json``, their plot
    and a before/after grid (segmentation rows with ``segment_fn`` and ``colorize``); adds the
    ``<class>-ace`` ranking (``-α``) to ``dissect_path``; writes ``result.json`` last.
    ``insertion_quantile`` inserts each unit's level at that quantile instead of the
    coverage-weighted mean (the reference's ``_h99`` at 0.99). ``mixed_units``: ablate the
    ACE-ranked units by their α (the reference's notebooks), else fully.

    Returns the ``result.json`` record: ``classname``, ``removed`` ``{metric: {removed, low,
    high}}`` at ``topn`` units (``level`` band), ``topn``, ``images``, ``top_units``/``top_alpha``
    (ten largest α), ``eval_loss`` per epoch, ``alpha_start``, ``seconds``, ``paths``, ``extra``.
    """
    start = time.time()
    rec = record.read(dissect_path)
    record.layer(rec, cfg.layer, dissect_path)
    settings = {
        **cfg._asdict(), "classname": classname, "dissect": dissect_path,
        "eval_images": eval_images, "eval_seed": eval_seed, "topn": topn,
        "insertion_quantile": insertion_quantile, "mixed_units": mixed_units, **extra,
    }  # fmt: skip
    distributed.first(lambda: rundir.check_run(outdir, settings, "ACE run", overwrite), "settings")
    init = ace.init_from_dissect(rec, cfg.layer, classname)
    value = None
    if insertion_quantile is not None:
        zq = proggan.sample_z(min(cfg.search_size, 2000), cfg.present_seed, module.sizes[0])
        value = ace.unit_quantiles(module, params, zq, cfg.layer, [insertion_quantile])[0]
    work = os.path.join(outdir, "work")
    result = ace.optimize(module, params, fns, cfg, init, value, progress, workdir=work)
    if not distributed.is_main():  # process 0 measures the removal and writes the results
        distributed.barrier(f"{outdir} written")
        with open(os.path.join(outdir, RESULT)) as f:
            return json.load(f)

    alpha = result.alpha
    orders = {"ace": (np.argsort(-alpha, kind="stable"), alpha)}
    iou = record.ranking(rec, cfg.layer, f"{classname}-iou")
    if iou is not None:
        orders["ace"] = (ablate.order(-alpha, tiebreak=iou), alpha)
        orders["iou"] = (ablate.order(iou), None)
    if not mixed_units:
        orders["ace"] = (orders["ace"][0], None)
    z = proggan.sample_z(eval_images, eval_seed, module.sizes[0])
    curves = ablate.experiment(
        outdir, module, params, fns.mask, z, cfg.layer, classname, orders, n_max=topn,
        batch_size=cfg.inference_batch_size, grid_n=topn, segment_fn=segment_fn,
        colorize=colorize, show=progress,
    )  # fmt: skip
    removed = {m: _band(curves[m]) for m in orders}
    summary = ace.save(outdir, result, cfg, classname, removed_top=removed, topn=topn, **extra)
    record.add_ranking(dissect_path, cfg.layer, f"{classname}-ace", -alpha, "ace")
    top = np.argsort(-alpha, kind="stable")[:10]
    out = {
        "classname": classname, "layer": cfg.layer, "removed": removed,
        "topn": len(curves["ace"]["units"]), "images": eval_images,
        "level": curves["ace"]["level"], "top_units": top.tolist(),
        "top_alpha": alpha[top].tolist(), "eval_loss": result.eval_loss.tolist(),
        "alpha_start": "IoU / max IoU" if init is not None else "0.5 (no <class>-iou ranking)",
        "seconds": time.time() - start, "paths": [summary, *curves["paths"]], **extra,
    }  # fmt: skip
    rundir.write_json(os.path.join(outdir, RESULT), out)
    distributed.barrier(f"{outdir} written")
    return out


def summarize(results: Sequence[dict], units: dict, skipped: dict, settings: dict) -> dict:
    """The summary record: per class ``units``, ``iou``/``ace`` bands, and the two checks.

    * ``ace_beats_iou``: ACE's top ``topn`` removes more than IoU's for most (> half) classes;
    * ``half_removed``: ACE's top ``topn`` removes at least 0.5 of the class's pixels for at
      least half of the classes (the same count for IoU is reported beside it).
    """
    rows = []
    for r in results:
        iou = r["removed"].get("iou")
        row = {"classname": r["classname"], "units": units[r["classname"]], "topn": r["topn"],
               "ace": r["removed"]["ace"], "iou": iou}  # fmt: skip
        row["ace_beats_iou"] = iou is not None and row["ace"]["removed"] > iou["removed"]
        row["bands_apart"] = iou is not None and row["ace"]["low"] > iou["high"]
        rows.append(row)
    n = len(rows)
    beats = sum(r["ace_beats_iou"] for r in rows)
    half = sum(r["ace"]["removed"] >= 0.5 for r in rows)
    half_iou = sum(r["iou"] is not None and r["iou"]["removed"] >= 0.5 for r in rows)
    return {
        "layer": settings["layer"], "classes": rows, "skipped": skipped, "settings": settings,
        "checks": {
            "ace_beats_iou": {"count": beats, "of": n, "pass": n > 0 and beats > n / 2},
            "half_removed": {"count": half, "of": n, "pass": n > 0 and half >= math.ceil(n / 2),
                             "iou_count": half_iou},
        },
        "seconds": sum(r["seconds"] for r in results),
    }  # fmt: skip


def table(summary: dict) -> str:
    """A plain-text table of :func:`summarize`'s record."""
    s = summary["settings"]
    fmt = lambda b: "-" if b is None else f"{b['removed']:.3f} [{b['low']:.3f}, {b['high']:.3f}]"
    lines = [
        f"{summary['layer']}: fraction of class pixels removed by ablating the top {s['topn']} "
        f"units ({s['level']:.0%} bootstrap band), {s['eval_images']} latents of seed "
        f"{s['eval_seed']}",
        f"{'class':<12}{'units':>6}  {'top by IoU':<26}{'top by ACE':<26}ACE > IoU",
    ]
    for r in summary["classes"]:
        beats = ("yes" if r["ace_beats_iou"] else "no") + (" (bands apart)" * r["bands_apart"])
        lines.append(f"{r['classname']:<12}{r['units']:>6}  {fmt(r['iou']):<26}"
                     f"{fmt(r['ace']):<26}{beats}")  # fmt: skip
    a, h = summary["checks"]["ace_beats_iou"], summary["checks"]["half_removed"]
    yes = lambda c: "yes" if c["pass"] else "NO"
    lines += [
        f"ACE removes more than IoU for {a['count']}/{a['of']} classes (most: {yes(a)})",
        f"ACE's top units remove >= 0.5 for {h['count']}/{h['of']} classes (at least half: "
        f"{yes(h)}); IoU's for {h['iou_count']}/{h['of']}",
    ]
    for c, why in summary["skipped"].items():
        lines.append(f"skipped {c}: {why}")
    return "\n".join(lines) + "\n"


def run_all(
    outdir: str,
    module,
    params,
    class_fns: Callable[[str], ace.ClassFns],
    dissect_path: str,
    labels: Sequence[str],
    cfg: ace.Config,
    *,
    classes=None,
    min_units: int = 4,
    eval_images: int = 200,
    eval_seed: int = 3,
    topn: int = 20,
    insertion_quantile: float | None = None,
    mixed_units: bool = True,
    segment_fn=None,
    colorize=None,
    settings_extra: dict | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict:
    """:func:`run_class` for every eligible class (:func:`gdjax.report.record.eligible`),
    resumably; summary and table.

    ``class_fns(name)`` gives a class's :class:`gdjax.intervene.ace.ClassFns` (for a segmenter:
    ``lambda c: ace.segmenter_fns(seg, labels.index(c), downsample)``); ``labels``: label
    names by number. Writes ``<outdir>/<layer>/<class>/`` per class, ``summary.json``
    (:func:`summarize`, plus ``paths``) and ``summary.txt`` (:func:`table`) in
    ``<outdir>/<layer>``, and a ``<class>-ace`` ranking per class into ``dissect_path``.
    ``settings_extra`` (e.g. the models and segmentation downsampling) joins the recorded
    settings; ``classes`` and ``min_units`` may change between runs, the rest may not.
    """
    rec = record.read(dissect_path)
    names, skipped, units = record.eligible(rec, cfg.layer, labels, classes, min_units)
    settings = {**cfg._asdict(), "eval_images": eval_images, "eval_seed": eval_seed,
                "topn": topn, "insertion_quantile": insertion_quantile,
                "mixed_units": mixed_units, "level": 0.99, **(settings_extra or {})}  # fmt: skip
    root = os.path.join(outdir, cfg.layer)
    distributed.first(lambda: rundir.check_run(root, settings, "ACE run"), "settings")
    results = []
    for i, c in enumerate(names):
        path = os.path.join(root, c, RESULT)
        if os.path.exists(path):
            with open(path) as f:
                results.append(json.load(f))
            if log:
                log(f"[{i + 1}/{len(names)}] {c}: done before, reusing {path}")
            continue
        if log:
            log(f"[{i + 1}/{len(names)}] {c}: {units[c]} interpretable units")
        results.append(
            run_class(
                os.path.join(root, c),
                module,
                params,
                class_fns(c),
                dissect_path,
                c,
                cfg,
                eval_images=eval_images,
                eval_seed=eval_seed,
                topn=topn,
                insertion_quantile=insertion_quantile,
                mixed_units=mixed_units,
                segment_fn=segment_fn,
                colorize=colorize,
                progress=progress,
                label=list(labels).index(c),
            )  # fmt: skip
        )
    summary = summarize(results, units, skipped, settings)
    paths = [os.path.join(root, "summary.json"), os.path.join(root, "summary.txt")]
    if distributed.is_main():
        rundir.write_json(paths[0], {**summary, "paths": paths})
        with open(paths[1], "w") as f:
            f.write(table(summary))
    return {**summary, "paths": paths}
