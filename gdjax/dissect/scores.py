"""IoU, IQR, per-unit thresholds and unit labels from :class:`gdjax.dissect.counts.ThresholdCounts`.

Pure NumPy (float64) finalize functions, run once on the host after the counting passes, so
their results do not depend on the backend or on the number of devices.

The reference (reference §3.4-3.6) estimates the conditional CDFs with quantile sketches and
interpolates them; here every fraction is an exact count ratio (pixels with activation strictly
above the threshold). Quirks are reproduced only behind options, off by default:

* ``label0_quirk``: label 0 ("no label") competes for a unit's best-IQR label (§0.4, §3.4.4).
  Default: only real labels compete; a unit with no positive IQR gets label 0 (none).
* ``ties_quirk``: ties in an argmax go to the *last* index, as torch 1.2's CPU ``max`` (§9b.19):
  an all-zero IQR row picks the last bucket (``f = 1``, the unit's minimum) and the last label.
  Default: the first index (the top-0.1% bucket, label 0).

Not reproduced: the reference skips conditions for labels rarer than 1e-4 (their IQR is zeroed
anyway, only their ``max_iqr_iou``/``agreement`` diagnostics differ).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gdjax.dissect.counts import ThresholdCounts

__all__ = [
    "IqrSearch",
    "Overlap",
    "UnitLabels",
    "info_quality",
    "iou_scores",
    "iqr_fractions",
    "iqr_search",
    "label_units",
    "monotone_thresholds",
    "overlap",
    "overlap_scores",
    "unit_levels",
]


def iqr_fractions(num: int = 100) -> np.ndarray:
    """Top fractions ``f_j = 10**(-3 + 3 j / (num - 1))``, float64 ``[num]`` (last one is 1).

    The candidate thresholds are the unit quantiles at ``1 - f_j`` (``exact_quantiles``).
    """
    return np.logspace(-3, 0, num)


def monotone_thresholds(quantiles: np.ndarray) -> np.ndarray:
    """Quantiles at decreasing ``q`` (``[C, T]``) made exactly non-increasing along ``T``.

    Interpolated quantiles can break monotonicity by an ulp at an order statistic;
    :func:`gdjax.dissect.counts.counts_update` needs it exact.
    """
    return np.minimum.accumulate(np.asarray(quantiles, np.float32), axis=-1)


def _argmax(x: np.ndarray, axis: int, last: bool) -> np.ndarray:
    if not last:
        return np.argmax(x, axis=axis)
    n = x.shape[axis]
    return n - 1 - np.argmax(np.flip(x, axis=axis), axis=axis)


def info_quality(p00, p01, p10, p11):
    """Mutual information, joint entropy and IQR of 2x2 probability tables (natural log).

    ``p_ab`` (a: active?, b: label?; any broadcastable shapes) are clamped to [0, 1] first, as
    the reference (its tables need not sum to 1, §9 item 6). ``0 log 0 = 0``; MI and JE are
    clamped at 0; ``IQR = MI / JE`` (0 where JE is 0). Returns float64 ``(mi, je, iqr)``.
    """
    p = [np.clip(np.asarray(x, np.float64), 0.0, 1.0) for x in (p00, p01, p10, p11)]
    row = [p[0] + p[1], p[2] + p[3]]
    col = [p[0] + p[2], p[1] + p[3]]
    mi = 0.0
    je = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        for (a, b), pab in zip([(0, 0), (0, 1), (1, 0), (1, 1)], p, strict=True):
            mi = mi + np.where(pab > 0, pab * np.log(pab / (row[a] * col[b])), 0.0)
            je = je - np.where(pab > 0, pab * np.log(pab), 0.0)
    mi = np.maximum(mi, 0.0)
    je = np.maximum(je, 0.0)
    iqr = np.where(je > 0, mi / np.where(je > 0, je, 1.0), 0.0)
    return mi, je, iqr


def _ratio(a, b):
    return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def _above(hist: np.ndarray) -> np.ndarray:
    """``[..., T + 1]`` exceeded-count histogram -> ``[..., T]`` pixels above threshold ``j``."""
    num = hist.shape[-1] - 1
    rev = np.cumsum(hist[..., ::-1].astype(np.int64), axis=-1)[..., ::-1]  # rev[m] = sum k >= m
    return rev[..., num:0:-1]  # threshold j is exceeded iff k >= T - j


class IqrSearch(NamedTuple):
    """Best IQR per (label, unit) over the candidate thresholds; every field ``[L, C]``.

    max_iqr, max_iqr_level (threshold), max_iqr_quantile (top fraction ``f_j``), max_iqr_iou,
    max_iqr_agreement (``p00 + p11``) at the best bucket ``bucket`` (int). ``full`` holds
    ``{'mi', 'je', 'iqr'}`` ``[L, C, T]`` (IQR after the maximisation's zeroing) if asked.
    """

    max_iqr: np.ndarray
    max_iqr_level: np.ndarray
    max_iqr_quantile: np.ndarray
    max_iqr_iou: np.ndarray
    max_iqr_agreement: np.ndarray
    bucket: np.ndarray
    full: dict | None = None


def iqr_search(
    counts: ThresholdCounts,
    thresholds: np.ndarray,
    label_category: np.ndarray,
    *,
    fractions: np.ndarray | None = None,
    ties_quirk: bool = False,
    full: bool = False,
    chunk: int = 32,
) -> IqrSearch:
    """The reference's ``collect_iqr`` (reference §3.4.3) on exact counts.

    ``counts``: from ``thresholds`` (float32 ``[C, T]``, non-increasing, ``tau[u, j] =
    Q_u(1 - f_j)`` over all pixels of the threshold set); ``fractions``: ``f_j`` (default
    :func:`iqr_fractions`). Per label ``l`` of category ``g``: ``truth = label_channels /
    pixels``; ``pred = above_g / cat_pixels_g`` (not times P(g), as the reference);
    ``isect = above_l / label_pixels_l * truth``; the 2x2 table, MI zeroed at the last bucket
    and for ``truth < 1e-3``; then IQR zeroed where ``agreement <= 0.8`` or ``tau <= 0``, and
    maximised over buckets. Labels are processed ``chunk`` at a time to bound memory.
    """
    thresholds = np.asarray(thresholds, np.float64)
    num = thresholds.shape[1]
    fractions = iqr_fractions(num) if fractions is None else np.asarray(fractions, np.float64)
    label_category = np.asarray(label_category)
    label_hist = np.moveaxis(np.asarray(counts.label_hist), 1, 0)  # [L, C, T + 1] view
    cat_hist = np.asarray(counts.cat_hist)
    pixels = float(counts.num_pixels)
    label_pixels = np.asarray(counts.label_pixels, np.float64)
    cat_pixels = np.asarray(counts.cat_pixels, np.float64)
    truth_all = np.asarray(counts.label_channels, np.float64) / pixels
    cat_pred = _ratio(_above(cat_hist), cat_pixels[:, None, None])  # [G, C, T]

    out = {k: [] for k in IqrSearch._fields[:6]}
    fulls = {"mi": [], "je": [], "iqr": []}
    for start in range(0, label_hist.shape[0], chunk):
        labels = np.arange(start, min(start + chunk, label_hist.shape[0]))
        truth = truth_all[labels][:, None, None]
        pred = cat_pred[label_category[labels]]
        isect = _ratio(_above(label_hist[labels]), label_pixels[labels][:, None, None]) * truth
        union = truth + pred - isect
        table = (isect, pred - isect, truth - isect, 1 - union)
        mi, je, _ = info_quality(*table)
        mi[..., num - 1] = 0.0
        mi[truth[:, 0, 0] < 1e-3] = 0.0
        iqr = np.where(je > 0, mi / np.where(je > 0, je, 1.0), 0.0)
        agreement = np.clip(table[0], 0, 1) + np.clip(table[3], 0, 1)
        iqr = np.where((agreement > 0.8) & (thresholds[None] > 0), iqr, 0.0)
        j = _argmax(iqr, axis=-1, last=ties_quirk)[..., None]
        units = np.arange(thresholds.shape[0])[None, :]
        out["max_iqr"].append(np.take_along_axis(iqr, j, -1)[..., 0])
        out["max_iqr_level"].append(thresholds[units, j[..., 0]])
        out["max_iqr_quantile"].append(fractions[j[..., 0]])
        out["max_iqr_iou"].append(np.take_along_axis(_ratio(isect, union), j, -1)[..., 0])
        out["max_iqr_agreement"].append(np.take_along_axis(agreement, j, -1)[..., 0])
        out["bucket"].append(j[..., 0])
        if full:
            for key, val in zip(fulls, (mi, je, iqr), strict=True):
                fulls[key].append(val.astype(np.float32))
    result = {k: np.concatenate(v) for k, v in out.items()}
    return IqrSearch(
        **result, full={k: np.concatenate(v) for k, v in fulls.items()} if full else None
    )


def unit_levels(
    search: IqrSearch, *, label0_quirk: bool = False, ties_quirk: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One threshold per unit from its best-IQR label (reference §0.4, §3.4.4).

    Returns ``best`` int ``[C]`` (``argmax_l max_iqr[l, u]``) and ``level`` float32 ``[C]``
    (``max_iqr_level[best, u]``). By default label 0 does not compete and a unit whose IQR is 0
    for every label gets label 0 and label 0's level; with ``ties_quirk`` that unit gets the
    last label, as the reference.
    """
    scores = search.max_iqr if label0_quirk else search.max_iqr[1:]
    best = _argmax(scores, axis=0, last=ties_quirk) + (0 if label0_quirk else 1)
    if not ties_quirk:
        best = np.where(scores.max(axis=0) > 0, best, 0)
    level = search.max_iqr_level[best, np.arange(best.size)]
    return best, level.astype(np.float32)


class Overlap(NamedTuple):
    """The four counts behind each (label, unit) IoU at one level per unit (int64).

    intersection: ``[L, C]`` pixels (or, per channel, occurrences) of label ``l`` where unit
      ``u`` is active; row 0 (no label) is 0, as the reference counts no intersections for it.
    active: ``[G, C]`` active pixels of unit ``u`` in the domain of category ``g``.
    label_size: ``[L]`` size of label ``l``.
    domain: ``[G]`` pixels of category ``g``'s domain.

    ``denominators='category'`` (reference ``score_tally_stats``, §3.5): a category's domain is
    the images where it is present, label sizes count every (pixel, channel) occurrence.
    ``'all'`` (PNAS successor, §12.8): every category's domain is every pixel, label sizes are
    pixels.
    """

    intersection: np.ndarray
    active: np.ndarray
    label_size: np.ndarray
    domain: np.ndarray


def overlap(counts: ThresholdCounts, *, denominators: str = "category") -> Overlap:
    """:class:`Overlap` from final counts (one level per unit, ``T = 1``)."""
    if counts.label_hist.shape[-1] != 2:
        raise ValueError("IoU needs counts with one threshold (level) per unit")
    ic = np.asarray(counts.label_hist[..., 1], np.int64).T.copy()
    ic[0] = 0
    num_categories = counts.cat_pixels.shape[0]
    if denominators == "category":
        active = np.asarray(counts.cat_hist[..., 1], np.int64)
        size = np.asarray(counts.label_channels, np.int64)
        domain = np.asarray(counts.cat_pixels, np.int64)
    elif denominators == "all":
        active = np.broadcast_to(
            np.asarray(counts.all_hist[:, 1], np.int64), (num_categories, ic.shape[1])
        )
        size = np.asarray(counts.label_pixels, np.int64)
        domain = np.full(num_categories, int(counts.num_pixels), np.int64)
    else:
        raise ValueError(f"denominators must be 'category' or 'all', not {denominators!r}")
    return Overlap(ic, np.array(active), size, domain)


def overlap_scores(ov: Overlap, label_category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU ``ic / (cc + lc - ic + 1e-20)`` and IQR (on the 2x2 table normalised by the
    domain's pixels) of every (label, unit): float64 ``(iou, iqr)``, each ``[L, C]``."""
    label_category = np.asarray(label_category)
    ic = ov.intersection.astype(np.float64)
    cc = ov.active.astype(np.float64)[label_category]
    lc = ov.label_size.astype(np.float64)[:, None]
    total = ov.domain.astype(np.float64)[label_category][:, None]
    union = cc + lc - ic
    iou = ic / (union + 1e-20)
    _, _, iqr = info_quality(*(_ratio(x, total) for x in (ic, cc - ic, lc - ic, total - union)))
    return iou, iqr


def iou_scores(
    counts: ThresholdCounts, label_category: np.ndarray, *, denominators: str = "category"
) -> tuple[np.ndarray, np.ndarray]:
    """IoU and IQR of every (label, unit) from final counts (one level per unit, ``T = 1``):
    :func:`overlap_scores` of :func:`overlap`. Label 0 gets IoU 0 in both modes.
    Returns float64 ``(iou, iqr)``, each ``[L, C]``."""
    return overlap_scores(overlap(counts, denominators=denominators), label_category)


class UnitLabels(NamedTuple):
    """Per unit ``[C]``: ``label`` (int), ``category`` (int), ``iou``, ``iqr`` of that label,
    and ``interp`` (bool)."""

    label: np.ndarray
    category: np.ndarray
    iou: np.ndarray
    iqr: np.ndarray
    interp: np.ndarray


def label_units(
    iou: np.ndarray,
    iqr: np.ndarray,
    label_category: np.ndarray,
    *,
    best: np.ndarray | None = None,
    iou_threshold: float = 0.05,
    iqr_threshold: float | None = 0.01,
    ties_quirk: bool = False,
) -> UnitLabels:
    """Each unit's label and interpretability (reference §3.6, §12.9).

    ``best`` from :func:`unit_levels` in ``iqr`` mode (the label is *not* the IoU argmax);
    ``None`` for a fixed quantile threshold: ``argmax_l IoU`` (first index unless
    ``ties_quirk``). ``interp = iou > iou_threshold and iqr > iqr_threshold`` (reference:
    0.05, 0.01; PNAS: ``iou_threshold=0.04, iqr_threshold=None``).
    """
    iou = np.asarray(iou)
    iqr = np.asarray(iqr)
    if best is None:
        best = _argmax(iou, axis=0, last=ties_quirk)
    units = np.arange(iou.shape[1])
    unit_iou = iou[best, units]
    unit_iqr = iqr[best, units]
    interp = unit_iou > iou_threshold
    if iqr_threshold is not None:
        interp &= unit_iqr > iqr_threshold
    return UnitLabels(best, np.asarray(label_category)[best], unit_iou, unit_iqr, interp)
