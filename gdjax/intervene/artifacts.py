"""Artifact units: the units whose strongest activations come with unrealistic images, and
the repair by switching them off (reference §5).

The paper ranks the units of a layer by the Fréchet distance (FID) between the images where
each unit fires hardest and real images of the domain, then ablates the worst units and
measures the whole generator's FID again. Here:

1. :func:`scan` generates ``N`` images, recording each unit's spatial maximum per image
   (``[N, C]``, the reference's top-image criterion) and each image's features (``[N, D]``);
2. :func:`rank` takes each unit's ``top`` images by that maximum and computes the Fréchet
   distance of their features to the real images' Gaussian; the ranking is by distance,
   largest first;
3. :func:`repair` measures the distance of ``n`` generated images with the top ``k`` units
   ablated (whole map, value 0, as the reference's ablation), unedited, and with ``k`` random
   units ablated over several draws (the control), all on the same latents.

Features are any jittable ``images [N, H, W, 3] in [-1, 1] -> [N, D]``: the demo segmenter's
pooled deepest encoder stage (:func:`segmenter_features`, as :mod:`gdjax.world.quality`) or the
FID Inception's pool3 (:func:`inception_features`). Fréchet distances are computed in float64
from a :class:`Gaussian` whose square root is taken once, so ranking ``C`` units costs ``C``
symmetric eigendecompositions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdjax import progress, rundir
from gdjax.intervene import ablate, edits

__all__ = [
    "Gaussian",
    "frechet",
    "gaussian",
    "inception_features",
    "rank",
    "real_gaussian",
    "repair",
    "scan",
    "segmenter_features",
]

FeatureFn = Callable[[jax.Array], jax.Array]


class Gaussian(NamedTuple):
    """A Gaussian fit of features: ``mean [D]``, ``cov [D, D]`` (``ddof=1``), its symmetric
    square root ``root [D, D]``, and the number of samples ``n``; float64."""

    mean: np.ndarray
    cov: np.ndarray
    root: np.ndarray
    n: int


def _sqrtm_psd(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def gaussian(features, mean=None, cov=None) -> Gaussian:
    """Fit ``features [N, D]``; or wrap given moments (``mean``, ``cov``, e.g. pytorch-fid's
    ``mu``/``sigma``) with ``features=None``."""
    if features is not None:
        f = np.asarray(features, np.float64)
        mean, cov, n = f.mean(0), np.cov(f, rowvar=False), f.shape[0]
    else:
        mean, cov, n = np.asarray(mean, np.float64), np.asarray(cov, np.float64), 0
    cov = np.atleast_2d(cov)
    return Gaussian(mean, cov, _sqrtm_psd(cov), n)


def frechet(ref: Gaussian, features) -> float:
    """Fréchet distance between ``ref`` and the Gaussian fit of ``features [N, D]`` (or a
    :class:`Gaussian`): ``|mu_r - mu|^2 + tr(S_r + S - 2 (S_r^1/2 S S_r^1/2)^1/2)``.

    Equals pytorch-fid's ``calculate_frechet_distance`` (``scipy.linalg.sqrtm(S_r S)``): the
    two matrices under the square roots are similar, so their traces of square roots agree;
    symmetric eigendecompositions keep the result real and stable for singular covariances.
    """
    if isinstance(features, Gaussian):
        mean, cov = features.mean, features.cov
        cross = np.linalg.eigvalsh(ref.root @ cov @ ref.root)
        trace = np.trace(cov)
    else:
        f = np.asarray(features, np.float64)
        mean = f.mean(0)
        # S = X^T X / (n - 1) for the centred X, so R S R = Y^T Y / (n - 1) with Y = X R: its
        # nonzero eigenvalues are those of the smaller of Y^T Y and Y Y^T (a unit's few top
        # images against many feature dimensions).
        y = (f - mean) @ ref.root
        small = y @ y.T if y.shape[0] < y.shape[1] else y.T @ y
        cross = np.linalg.eigvalsh(small / max(f.shape[0] - 1, 1))
        trace = float(((f - mean) ** 2).sum()) / max(f.shape[0] - 1, 1)
    trace_root = np.sqrt(np.clip(cross, 0, None)).sum()
    diff = ref.mean - mean
    return float(diff @ diff + np.trace(ref.cov) + trace - 2 * trace_root)


def segmenter_features(seg, layer: str = "layer4") -> FeatureFn:
    """``images -> [N, D]``: the segmenter's encoder stage ``layer`` averaged over space (the
    features :mod:`gdjax.world.quality` measures the demo GAN with)."""
    from gdjax.models import segmenter as seglib

    def fn(images):
        x = seglib.preprocess(seg, images)[0]
        _, acts = seg.module.apply(seg.variables, x, (images.shape[1], images.shape[2]))
        return acts[layer].mean(axis=(1, 2))

    return fn


def inception_features(module, variables) -> FeatureFn:
    """``images -> [N, 2048]``: the FID Inception's pool3 features (pytorch-fid's transform)."""
    from gdjax.models import inception

    return lambda images: inception.features(module, variables, images)


def real_gaussian(feature_fn: FeatureFn, batches: Iterable[np.ndarray], show=True) -> Gaussian:
    """:class:`Gaussian` of the features of real image batches ``[B, H, W, 3]`` in ``[-1, 1]``."""
    run = jax.jit(feature_fn)
    feats = [np.asarray(run(jax.device_put(np.asarray(b, np.float32))))
             for b in progress.bar(batches, "features of real images", disable=not show,
                                   warmup=True)]  # fmt: skip
    return gaussian(np.concatenate(feats))


def _spans(n, size):
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def scan(
    module,
    params,
    layer: str,
    feature_fn: FeatureFn,
    z: np.ndarray,
    batch_size: int = 50,
    path: str | None = None,
    every: float = 30.0,
    show: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(peaks [N, C], features [N, D])`` of the images of latents ``z [N, Z]``.

    ``peaks[i, u]`` is unit ``u``'s largest activation over ``layer``'s map in image ``i``
    (raw, before any upsampling, as the reference's ``RunningTopK``). With ``path`` (an
    ``.npz``) the arrays done so far are saved every ``every`` seconds and at the end, and a
    later call with the same arguments resumes from them.
    """

    @jax.jit
    def run(z):
        images, acts = module.apply({"params": params}, z, capture=[layer])
        return jnp.max(acts[layer], axis=(1, 2)), feature_fn(images)

    spans = _spans(len(z), batch_size)
    peaks = feats = None
    done = 0
    if path and os.path.exists(path):
        with np.load(path) as f:
            peaks, feats, done = f["peaks"], f["features"], int(f["done"])
    last = time.monotonic()
    todo = [(s, e) for s, e in spans if s >= done]
    for s, e in progress.bar(todo, f"scanning {layer}", disable=not show, warmup=True):
        p, f = run(jax.device_put(np.asarray(z[s:e], np.float32)))
        if peaks is None:
            peaks = np.zeros((len(z), p.shape[1]), np.float32)
            feats = np.zeros((len(z), f.shape[1]), np.float32)
        peaks[s:e], feats[s:e], done = np.asarray(p), np.asarray(f), e
        if path and (time.monotonic() - last > every or e == len(z)):
            rundir.write_npz(path, {"peaks": peaks, "features": feats, "done": done})
            last = time.monotonic()
    return peaks, feats


def top_images(peaks: np.ndarray, top: int) -> np.ndarray:
    """``[top, C]`` image indices per unit by descending peak (ties: the lower index first)."""
    order = np.argsort(-np.asarray(peaks), axis=0, kind="stable")
    return order[:top]


def rank(peaks: np.ndarray, features: np.ndarray, real: Gaussian, top: int) -> dict:
    """Per-unit Fréchet distance of the ``top`` images by peak to ``real``.

    Returns ``fd [C]`` (float64), ``order`` (units by ``fd``, largest first; ties to the lower
    unit), ``top_index [top, C]`` and ``fd_all`` (all ``N`` images against ``real``).
    """
    if not 1 < top <= peaks.shape[0]:
        raise ValueError(f"top must be in 2..{peaks.shape[0]} (images scanned), got {top}")
    index = top_images(peaks, top)
    fd = np.array([frechet(real, features[index[:, u]]) for u in range(peaks.shape[1])])
    return {
        "fd": fd,
        "order": np.argsort(-fd, kind="stable"),
        "top_index": index,
        "fd_all": frechet(real, features),
    }


def _bootstrap_mean(values: np.ndarray, seed: int, level: float, draws: int = 1000):
    idx = np.random.default_rng(seed).integers(len(values), size=(draws, len(values)))
    means = values[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def repair(
    module,
    params,
    layer: str,
    feature_fn: FeatureFn,
    z: np.ndarray,
    real: Gaussian,
    ranking: Sequence[int],
    ks: Sequence[int] = (10, 20),
    draws: int = 8,
    seed: int = 0,
    level: float = 0.95,
    batch_size: int = 50,
    path: str | None = None,
    show: bool = True,
) -> dict:
    """Fréchet distance of the generator's images of ``z`` to ``real``: unedited, with the
    first ``k`` units of ``ranking`` ablated, and with ``k`` units drawn at random from all
    units ablated, ``draws`` times per ``k`` (seeded by ``seed``).

    Every measurement uses the same latents, so the comparisons are paired. With ``path`` (a
    ``.json``) each finished measurement is saved and a later call with the same arguments
    skips it. Returns ``{'base', 'ks': [{k, units, fd, random: {units, fd, mean, low, high,
    min, max}}], 'images', 'level'}``: ``low``/``high`` is a ``level`` bootstrap band of the
    random draws' mean (1000 resamples of the draws).
    """
    c = int(ablate.num_units(module, params, layer))
    rng = np.random.default_rng(seed)
    plan = {"base": []}
    for k in ks:
        if not 0 < k <= c:
            raise ValueError(f"k must be in 1..{c} (units of {layer}), got {k}")
        plan[f"top{k}"] = [int(u) for u in ranking[:k]]
        for d in range(draws):
            plan[f"random{k}_{d}"] = sorted(int(u) for u in rng.choice(c, k, replace=False))
    done = {}
    if path and os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)
        done = {n: r["fd"] for n, r in stored.items() if plan.get(n) == r["units"]}

    @jax.jit
    def run(z, alpha):
        h = edits.prefix(module, params, z, layer)
        return feature_fn(edits.tail(module, params, h, layer, edits.make(layer, alpha, 0.0)))

    todo = [name for name in plan if name not in done]
    batches = _spans(len(z), batch_size)
    items = [(name, s, e) for name in todo for s, e in batches]
    feats = {}
    for name, s, e in progress.bar(items, f"ablating {layer}", disable=not show, warmup=True):
        alpha = jax.device_put(edits.unit_alpha(plan[name], c))
        feats.setdefault(name, []).append(
            np.asarray(run(jax.device_put(np.asarray(z[s:e], np.float32)), alpha))
        )
        if e == len(z):
            done[name] = frechet(real, np.concatenate(feats.pop(name)))
            if path:
                rundir.write_json(path, {n: {"units": plan[n], "fd": done[n]} for n in done})
    out = {"base": done["base"], "ks": [], "images": len(z), "level": level, "draws": draws}
    for k in ks:
        rand = np.array([done[f"random{k}_{d}"] for d in range(draws)])
        low, high = _bootstrap_mean(rand, seed, level) if draws > 1 else (rand[0], rand[0])
        out["ks"].append({
            "k": k, "units": plan[f"top{k}"], "fd": done[f"top{k}"],
            "random": {"units": [plan[f"random{k}_{d}"] for d in range(draws)],
                       "fd": rand.tolist(), "mean": float(rand.mean()), "low": low,
                       "high": high, "min": float(rand.min()), "max": float(rand.max())},
        })  # fmt: skip
    return out


# --- pictures and the whole experiment --------------------------------------------------------


def worst_picture(module, params, z, result: dict, units, labels=None, images: int = 6,
                  real_images=None, scale: int = 2) -> np.ndarray:  # fmt: skip
    """uint8 picture: one captioned row per unit of ``units`` with its top ``images`` images
    (``result`` from :func:`rank`, ``z`` the scanned latents), then ``real_images`` if given.
    ``labels``: optional ``{unit: label}`` from a dissection, shown in the captions."""
    from gdjax.report import draw

    rows, names = [], []
    for u in units:
        idx = np.asarray(result["top_index"][:images, u])
        rows.append(draw.to_uint8(edits.generate(module, params, jnp.asarray(z[idx]))))
        label = f" ({labels[u]})" if labels and labels.get(u) else ""
        names.append(f"unit {u}{label}: FD {result['fd'][u]:.2f}")
    if real_images is not None:
        rows.append(draw.to_uint8(np.asarray(real_images[:images])))
        names.append("real")
    tiles = np.concatenate([np.stack([draw.enlarge(t, scale) for t in r]) for r in rows])
    image = draw.grid(tiles, ncols=images)
    return draw.caption_rows(image, names, tiles.shape[1], pad=2, max_width=200)


def repair_picture(module, params, layer: str, z, result: dict, scale: int = 2) -> np.ndarray:
    """uint8 picture: the images of ``z`` unedited, with each ``k``'s top artifact units
    ablated and with its first random draw ablated; FDs (``result`` from :func:`repair``) in
    the captions."""
    from gdjax.report import draw

    num = int(ablate.num_units(module, params, layer))
    rows = {}
    for r in result["ks"]:
        rows[f"top {r['k']} artifact units off: FD {r['fd']:.2f}"] = edits.ablation(
            layer, r["units"], num
        )
        rnd = r["random"]
        rows[f"{r['k']} random units off (draw 1): FD {rnd['fd'][0]:.2f}"] = edits.ablation(
            layer, rnd["units"][0], num
        )
    image, names = ablate.edit_grid(module, params, z, rows, scale=scale, captions=False)
    names[0] = f"unedited: FD {result['base']:.2f}"
    height = (image.shape[0] - 2 * (len(names) - 1)) // len(names)
    return draw.caption_rows(image, names, height, pad=2, max_width=220)


def experiment(
    outdir: str,
    module,
    params,
    layer: str,
    feature_fn: FeatureFn,
    real: Gaussian,
    z_scan: np.ndarray,
    z_repair: np.ndarray,
    top: int,
    ks: Sequence[int] = (10, 20),
    draws: int = 8,
    seed: int = 0,
    worst: int = 8,
    labels: dict | None = None,
    real_images=None,
    settings: dict | None = None,
    overwrite: bool = False,
    batch_size: int = 50,
    show: bool = True,
) -> dict:
    """The whole experiment in ``outdir`` (resumable; ``settings`` recorded and checked there):

    * ``scan.npz`` (peaks and features of ``z_scan``'s images, kept for a resume);
    * ``artifacts.json``: every unit's FD, the ranking (worst first, with ``labels``), each
      unit's top image indices into ``z_scan``, ``fd_all`` and the sizes;
    * ``artifacts-worst.png``: the ``worst`` units' top images (:func:`worst_picture`);
    * ``repair.json`` (:func:`repair` on ``z_repair``; ``repair-progress.json`` while it runs)
      and ``artifacts-repair.png`` (:func:`repair_picture`, the first 6 latents).

    Returns ``{'ranking': …, 'repair': …, 'paths': […]}``.
    """
    rundir.check_run(outdir, settings or {}, "artifacts run", overwrite)
    peaks, feats = scan(module, params, layer, feature_fn, z_scan, batch_size,
                        os.path.join(outdir, "scan.npz"), show=show)  # fmt: skip
    with progress.status(f"Fréchet distances of {peaks.shape[1]} units", disable=not show):
        result = rank(peaks, feats, real, top)
    labels = labels or {}
    ranking = {
        "layer": layer, "images": len(z_scan), "top": top, "real_images": real.n,
        "fd_all": result["fd_all"], "fd": result["fd"].tolist(),
        "ranking": [{"unit": int(u), "fd": float(result["fd"][u]), "label": labels.get(int(u))}
                    for u in result["order"]],
        "top_index": result["top_index"].T.tolist(),
    }  # fmt: skip
    paths = [rundir.write_json(os.path.join(outdir, "artifacts.json"), ranking)]
    from gdjax.report import draw

    with progress.status("picture of the worst units", disable=not show):
        picture = worst_picture(module, params, z_scan, result, result["order"][:worst], labels,
                                real_images=real_images)  # fmt: skip
    paths.append(draw.save_png(os.path.join(outdir, "artifacts-worst.png"), picture))
    fixed = repair(module, params, layer, feature_fn, z_repair, real, result["order"], ks, draws,
                   seed, batch_size=batch_size,
                   path=os.path.join(outdir, "repair-progress.json"), show=show)  # fmt: skip
    fixed = {"layer": layer, "real_images": real.n, **fixed}
    paths.append(rundir.write_json(os.path.join(outdir, "repair.json"), fixed))
    with progress.status("picture of the repair", disable=not show):
        picture = repair_picture(module, params, layer, z_repair[:6], fixed)
    paths.append(draw.save_png(os.path.join(outdir, "artifacts-repair.png"), picture))
    return {"ranking": ranking, "repair": fixed, "paths": paths}
