"""How good an inversion is, and whether an edit of an inverted picture does what it should.

* :func:`psnr` and :func:`agreement` (the share of pixels whose segmenter label in the
  reconstruction equals the one in the target) per image;
* :func:`scenes` inverts held-out rendered scenes (seed :data:`EVAL_SEED`, which neither demo
  model was trained on) and measures both, for the encoder alone and after optimization, then
  inserts a class's top units in a painted square of each scene (:func:`paint_square`: the
  lowest cell-aligned square on a wall without a door) and measures the class's pixels there
  and how much of the picture outside stayed the original's.
"""

from __future__ import annotations

import jax
import numpy as np

from gdjax import progress
from gdjax.intervene import ace
from gdjax.models import segmenter as seglib

__all__ = ["EVAL_SEED", "agreement", "insertion_value", "paint_square", "psnr", "top_units"]

EVAL_SEED = 1616  # the demo GAN saw scenes of seed 1000, the segmenter 0 (and 7777 for its eval)


def psnr(images, targets) -> np.ndarray:
    """``[N]`` PSNR in dB of ``images`` (clamped to ``[-1, 1]``) against ``targets``, both
    ``[N, R, R, 3]`` in ``[-1, 1]``, on the ``[0, 1]`` scale: ``10 log10(1 / mse)``."""
    x = (np.clip(np.asarray(images, np.float64), -1, 1) + 1) / 2
    t = (np.asarray(targets, np.float64) + 1) / 2
    mse = np.mean(np.square(x - t), axis=(1, 2, 3))
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


@jax.jit
def _labels(seg, images):
    return seglib.segment(seg, images)[..., 0]


def labels(seg: seglib.Segmenter, images, batch_size: int = 100) -> np.ndarray:
    """The segmenter's object labels ``[N, R, R]`` of ``images``."""
    images = np.asarray(images, np.float32)
    out = [np.asarray(_labels(seg, jax.device_put(np.clip(images[s : s + batch_size], -1, 1))))
           for s in range(0, len(images), batch_size)]  # fmt: skip
    return np.concatenate(out)


def agreement(seg: seglib.Segmenter, images, targets) -> np.ndarray:
    """``[N]`` share of pixels whose segmenter label in ``images`` equals that in ``targets``."""
    return np.mean(labels(seg, images) == labels(seg, targets), axis=(1, 2))


def paint_square(facade, avoid=None, side: int = 16, cell: int = 8, full: float = 0.75):
    """``[N, R, R]`` bool: per image a ``side``-pixel square on the ``cell`` grid where a door
    belongs: the lowest square at least ``full`` covered by ``facade [N, R, R]`` (wall and
    window pixels; doors stand on a wall's ground line) and free of ``avoid`` pixels (an
    existing door), else the one covered most."""
    facade = np.asarray(facade, bool)
    avoid = np.zeros_like(facade) if avoid is None else np.asarray(avoid, bool)
    n, r, _ = facade.shape
    best = np.zeros((n, r, r), bool)
    starts = range(0, r - side + 1, cell)
    spots = [(y, x) for y in starts for x in starts]

    def count(m):
        return np.stack([m[:, y : y + side, x : x + side].sum((1, 2)) for y, x in spots], 1)

    counts, clash = count(facade), count(avoid) > 0
    lowness = np.array([y for y, _ in spots])
    good = (counts >= full * side * side) & ~clash
    score = np.where(good, 10**6 * (1 + lowness) + counts, counts - 10**3 * clash)
    for i, p in enumerate(np.argmax(score, 1)):
        y, x = spots[p]
        best[i, y : y + side, x : x + side] = True
    return best


def top_units(score, n: int) -> list[int]:
    """The ``n`` best units of a ``dissect.json`` ranking (lower score = better)."""
    return [int(u) for u in np.argsort(np.asarray(score), kind="stable")[:n]]


def insertion_value(module, params, layer: str, n: int = 500, seed: int = 3, q: float = 0.99):
    """Per-unit ``[C]`` insertion value: the ``q`` quantile of the layer's activations over
    ``n`` latents of ``seed`` (GANPaint inserts at the 0.99 level)."""
    from gdjax.models import proggan

    z = proggan.sample_z(n, seed, module.sizes[0])
    return ace.unit_quantiles(module, params, z, layer, [q], batch_size=50)[0]


def edit_effect(seg, label: int, original, blended, region, mask) -> dict:
    """Per-image ``[N]`` measures of an insertion of class ``label`` in ``region``.

    ``inside_before/after``: the class's share of the region's pixels in the original and in
    the blended picture; ``outside_same``: share of pixels outside the region that are exactly
    the original's; ``beyond_mask_same``: the same where the blend mask is 0 (must be 1);
    ``outside_change``: mean absolute change outside the region.
    """
    region = np.asarray(region, bool)
    before, after = labels(seg, original) == label, labels(seg, blended) == label
    area = np.maximum(region.sum((1, 2)), 1)
    same = np.all(np.asarray(blended) == np.asarray(original), axis=-1)
    outside = ~region
    zero = np.asarray(mask) == 0
    diff = np.abs(np.asarray(blended) - np.asarray(original)).mean(-1)
    return {
        "inside_before": (before & region).sum((1, 2)) / area,
        "inside_after": (after & region).sum((1, 2)) / area,
        "outside_same": (same & outside).sum((1, 2)) / outside.sum((1, 2)),
        "beyond_mask_same": (same & zero).sum((1, 2)) / np.maximum(zero.sum((1, 2)), 1),
        "outside_change": (diff * outside).sum((1, 2)) / outside.sum((1, 2)),
    }


def batches(n: int, size: int, desc: str, show: bool = True):
    spans = [(s, min(s + size, n)) for s in range(0, n, size)]
    return progress.bar(spans, desc, disable=not show, warmup=True)


def summary(values) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()),
            "max": float(v.max())}  # fmt: skip


def held_out(
    module,
    params,
    seg,
    enc,
    cfg,
    workdir: str,
    *,
    layer: str = "layer4",
    n: int = 100,
    seed: int = EVAL_SEED,
    batch_size: int = 50,
    label: int,
    units,
    value,
    show: bool = True,
) -> tuple[dict, dict]:
    """Invert ``n`` rendered scenes of ``seed`` and insert ``units`` of class ``label``.

    Per batch the optimized representation is kept in ``workdir/batch<k>.npz`` (and the
    optimization resumes from ``workdir/batch<k>/``), so an interrupted run continues.
    Returns ``(record, arrays)``: summaries (``mean/median/min/max``) of every measure for the
    encoder alone (``encoder``) and after ``cfg.steps`` steps (``optimized``), the edit's
    effect (``edit``), and the per-image arrays (targets, reconstructions, edits, masks).
    """
    import os

    from gdjax import invert
    from gdjax.world import scenes as world

    images, truth = world.render(seed, n, size=module.resolution)
    starts, reps = [], []
    for k, (s, e) in enumerate(batches(n, batch_size, "held-out scenes", show)):
        start = invert.encode(images[s:e], module, params, layer, enc)
        path = os.path.join(workdir, f"batch{k}.npz")
        if os.path.exists(path):
            rep = invert.Representation.load(path)
        else:
            rep, _ = invert.optimize.optimize(module, params, seg, images[s:e], start, cfg,
                                              workdir=os.path.join(workdir, f"batch{k}"),
                                              show_progress=show)  # fmt: skip
            rep.save(path)
        starts.append(np.asarray(invert.generate(module, params, start)))
        reps.append(rep)
    recon_enc = np.concatenate(starts)
    recon = np.concatenate([np.asarray(invert.generate(module, params, r)) for r in reps])
    true_obj = truth[..., 0] if truth.ndim == 4 else truth
    record: dict = {"n": n, "seed": seed}
    for name, x in (("encoder", recon_enc), ("optimized", recon)):
        rec_labels = labels(seg, x)
        record[name] = {
            "psnr": summary(psnr(x, images)),
            "agreement": summary(np.mean(rec_labels == labels(seg, images), axis=(1, 2))),
            "agreement_truth": summary(np.mean(rec_labels == true_obj, axis=(1, 2))),
        }
    record["target_agreement_truth"] = summary(np.mean(labels(seg, images) == true_obj, (1, 2)))
    region = paint_square(np.isin(true_obj, (world.BUILDING, world.WINDOW)), true_obj == world.DOOR)
    out = {k: [] for k in ("edited", "mask", "blended")}
    for (s, e), rep in zip([(s, min(s + batch_size, n)) for s in range(0, n, batch_size)], reps,
                           strict=True):  # fmt: skip
        res = invert.edit(module, params, rep, invert.insertion(rep, units, value, region[s:e]),
                          images[s:e], region[s:e])  # fmt: skip
        for k in out:
            out[k].append(getattr(res, k))
    out = {k: np.concatenate(v) for k, v in out.items()}
    effect = edit_effect(seg, label, images, out["blended"], region, out["mask"])
    facade = np.isin(true_obj, (world.BUILDING, world.WINDOW))
    on_wall = (region & facade).sum((1, 2)) >= 0.75 * region.sum((1, 2))
    record["edit"] = {k: summary(v) for k, v in effect.items()}
    record["edit"]["scenes_with_square_on_a_wall"] = int(on_wall.sum())
    record["edit"]["gained_class"] = int((effect["inside_after"] > effect["inside_before"]).sum())
    arrays = {"targets": images, "truth": true_obj, "encoder": recon_enc, "optimized": recon,
              "region": region, **out}  # fmt: skip
    return record, arrays


def outline(images, region, color=(255, 255, 0)) -> np.ndarray:
    """uint8 ``images [N, R, R, 3]`` with the border pixels of ``region [N, R, R]`` coloured."""
    region = np.asarray(region, bool)
    pad = np.pad(region, ((0, 0), (1, 1), (1, 1)))
    inner = pad[:, :-2, 1:-1] & pad[:, 2:, 1:-1] & pad[:, 1:-1, :-2] & pad[:, 1:-1, 2:]
    out = np.array(images, np.uint8)
    out[region & ~inner] = color
    return out


def picture(path: str, rows, enlarge: int = 2, columns: bool = False) -> str:
    """A PNG of captioned rows: ``rows = [(caption, uint8 [N, R, R, 3]), ...]``, ``N`` equal.
    ``columns``: one image each, laid side by side with the captions above them."""
    from PIL import Image, ImageDraw

    from gdjax.report import draw

    tiles = np.concatenate([np.asarray(t, np.uint8) for _, t in rows])
    if columns:
        image = draw.enlarge(draw.grid(tiles, len(tiles)), enlarge)
        fnt = draw.font()
        ascent, descent = fnt.getmetrics()
        band = Image.new("RGB", (image.shape[1], ascent + descent + 8), (255, 255, 255))
        step = enlarge * (tiles.shape[2] + 2)
        for i, (caption, _) in enumerate(rows):
            text = draw.fit_text(caption, step - 4, fnt)
            x = i * step + (enlarge * tiles.shape[2] - fnt.getlength(text)) / 2
            ImageDraw.Draw(band).text((x, 2), text, fill=draw.CAPTION_COLOR, font=fnt)
        return draw.save_png(path, np.concatenate([np.asarray(band), image]))
    image = draw.enlarge(draw.grid(tiles, len(rows[0][1])), enlarge)
    height = enlarge * tiles.shape[1]
    image = draw.caption_rows(image, [c for c, _ in rows], height, pad=2 * enlarge, max_width=130)
    return draw.save_png(path, image)
