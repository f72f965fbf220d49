"""Brute-force NumPy versions of the reference's dissection statistics (reference §3.3-3.6, §12).

Written straight from the formulas, image by image and pixel mask by pixel mask, with none of
the histogram tricks of ``gdjax``: slow, small data only.
"""

from __future__ import annotations

import numpy as np


def upsample(x: np.ndarray, out: tuple[int, int], align_corners: bool = False) -> np.ndarray:
    """Bilinear resize of ``[h, w, C]`` by explicit per-pixel source coordinates (float64)."""
    h, w, _ = x.shape

    def source(t, n_out, n_in):
        if align_corners:
            return t * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return min(max((t + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)

    res = np.zeros((out[0], out[1], x.shape[2]))
    for i in range(out[0]):
        sy = source(i, out[0], h)
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, h - 1)
        for j in range(out[1]):
            sx = source(j, out[1], w)
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            res[i, j] = (
                (1 - fy) * (1 - fx) * x[y0, x0]
                + (1 - fy) * fx * x[y0, x1]
                + fy * (1 - fx) * x[y1, x0]
                + fy * fx * x[y1, x1]
            )
    return res


def topk(acts: np.ndarray, index: np.ndarray, k: int):
    """Per unit, the ``k`` images with the largest spatial max; ties to the lower index."""
    peak = acts.max(axis=(1, 2))  # [N, C]
    values = np.full((k, peak.shape[1]), -np.inf, np.float32)
    idx = np.full((k, peak.shape[1]), 2**31 - 1, np.int64)
    for u in range(peak.shape[1]):
        order = sorted(range(len(index)), key=lambda n, u=u: (-peak[n, u], index[n]))[:k]
        values[: len(order), u] = peak[order, u]
        idx[: len(order), u] = index[order]
    return values, idx


def _mi_je_iqr(p00, p01, p10, p11):
    """The reference's 2x2 formula: entries clamped, NaN terms set to 0, natural log."""
    p = np.stack([np.clip(x, 0, 1) for x in (p00, p01, p10, p11)]).reshape((2, 2) + np.shape(p00))
    row = p.sum(axis=1, keepdims=True)
    col = p.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.nan_to_num(p * np.log(p / (row * col)), nan=0.0).sum(axis=(0, 1))
        je = -np.nan_to_num(p * np.log(p), nan=0.0).sum(axis=(0, 1))
    mi = np.maximum(mi, 0)
    je = np.maximum(je, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iqr = np.nan_to_num(mi / je, nan=0.0)
    return mi, je, iqr


def _present_categories(seg_image, label_category):
    labels = np.unique(seg_image)
    return np.unique(label_category[labels])


def iqr_search(acts, seg, tau, label_category, fractions, num_labels, last=False):
    """``collect_iqr`` with exact conditional fractions. ``acts`` ``[N, H, W, C]`` (upsampled),
    ``seg`` ``[N, H, W, K]``, ``tau`` ``[C, T]``. Returns a dict of ``[L, C]`` arrays."""
    n_img, height, width, _ = acts.shape
    num_cats = int(label_category.max()) + 1
    pixels = n_img * height * width
    truth = np.bincount(seg.ravel(), minlength=num_labels) / pixels
    active = acts[..., None] > tau[None, None, None]  # [N, H, W, C, T]
    cat_images = np.zeros((num_cats, n_img), bool)
    for n in range(n_img):
        cat_images[_present_categories(seg[n], label_category), n] = True
    out = {k: np.zeros((num_labels, tau.shape[0])) for k in ("iqr", "level", "q", "iou", "agree")}
    for lab in range(num_labels):
        mask = np.any(seg == lab, axis=-1)
        cimg = cat_images[label_category[lab]]
        pred = active[cimg].sum(axis=(0, 1, 2)) / max(cimg.sum() * height * width, 1)
        isect = active[mask].sum(axis=0) / max(mask.sum(), 1) * truth[lab]
        union = truth[lab] + pred - isect
        table = (isect, pred - isect, truth[lab] - isect, 1 - union)
        mi, je, _ = _mi_je_iqr(*table)
        mi[:, -1] = 0
        if truth[lab] < 1e-3:
            mi[:] = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iqr = np.nan_to_num(mi / je, nan=0.0)
        agree = np.clip(table[0], 0, 1) + np.clip(table[3], 0, 1)
        iqr[agree <= 0.8] = 0
        iqr[tau <= 0] = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.nan_to_num(isect / union, nan=0.0)
        for u in range(tau.shape[0]):
            row = list(iqr[u])
            best = max(row)
            j = (len(row) - 1 - row[::-1].index(best)) if last else row.index(best)
            out["iqr"][lab, u] = best
            out["level"][lab, u] = tau[u, j]
            out["q"][lab, u] = fractions[j]
            out["iou"][lab, u] = iou[u, j]
            out["agree"][lab, u] = agree[u, j]
    return out


def bincounts(acts, seg, levels, label_category, num_labels):
    """``collect_bincounts`` + ``score_tally_stats`` literally, image by image (reference §3.5).
    Returns ``(iou, iqr)`` ``[L, C]`` with category denominators."""
    n_img, height, width, units = acts.shape
    num_cats = int(label_category.max()) + 1
    label_counts = np.zeros(num_labels)
    total = np.zeros(num_cats)
    ic = np.zeros((num_labels, units))
    cc = np.zeros((num_cats, units))
    for n in range(n_img):
        bc = np.bincount(seg[n].ravel(), minlength=num_labels)
        label_counts += bc
        present = np.nonzero(bc)[0]
        cats = np.unique(label_category[present])
        total[cats] += height * width
        on = acts[n] > levels  # [H, W, C]
        for lab in present:
            if lab != 0:
                ic[lab] += (on & np.any(seg[n] == lab, axis=-1)[..., None]).sum(axis=(0, 1))
        for c in cats:
            cc[c] += on.sum(axis=(0, 1))
    ccl = cc[label_category]
    lc = label_counts[:, None]
    iou = ic / (ccl + lc - ic + 1e-20)
    tot = total[label_category][:, None]
    union = ccl + lc - ic
    table = [x / tot for x in (ic, ccl - ic, lc - ic, tot - union)]
    return iou, _mi_je_iqr(*table)[2]


def iou_all(acts, seg, levels, num_labels):
    """PNAS ``iou_from_conditional_indicator_mean`` (all-pixel denominators, §12.8); label 0
    set to 0. Returns ``[L, C]``."""
    on = (acts > levels).reshape(-1, acts.shape[-1]).astype(np.float64)
    segf = seg.reshape(-1, seg.shape[-1])
    act = on.mean(axis=0)
    iou = np.zeros((num_labels, acts.shape[-1]))
    for lab in range(1, num_labels):
        mask = np.any(segf == lab, axis=-1)
        if not mask.any():
            continue
        gt = mask.mean()
        isect = on[mask].mean(axis=0) * gt
        iou[lab] = isect / (act + gt - isect)
    return iou


def successor_upsample(x: np.ndarray, out: int) -> np.ndarray:
    """The PNAS successor's upsampler of ``[h, w, C]`` to ``[out, out, C]``, pixel by pixel as
    its source builds it (reference §12.3): per axis of input size ``d``, ``s = out / d``,
    ``o = s / 2 - 1/2``, grid ``g(t) = (t - o) * 2 / (s * max(1, d - 1)) - 1``, read by
    ``grid_sample(align_corners=True)`` at ``(g + 1) / 2 * (d - 1)`` with bilinear weights and
    zeros outside the map."""
    h, w, _ = x.shape

    def coord(t, d):
        s = out / d
        g = (t - (s / 2 - 0.5)) * 2 / (s * max(1, d - 1)) - 1
        return (g + 1) / 2 * (d - 1)

    def tap(i, j):
        inside = 0 <= i < h and 0 <= j < w
        return x[i, j] if inside else np.zeros(x.shape[2])

    res = np.zeros((out, out, x.shape[2]))
    for a in range(out):
        sy = coord(a, h)
        y0 = int(np.floor(sy))
        fy = sy - y0
        for b in range(out):
            sx = coord(b, w)
            x0 = int(np.floor(sx))
            fx = sx - x0
            res[a, b] = (
                (1 - fy) * (1 - fx) * tap(y0, x0)
                + (1 - fy) * fx * tap(y0, x0 + 1)
                + fy * (1 - fx) * tap(y0 + 1, x0)
                + fy * fx * tap(y0 + 1, x0 + 1)
            )
    return res
