"""Unit strips: a unit's top images with its active region outlined, and their segmentations.

Files under the report's ``outdir``: ``<layer>/image/<unit>-top.jpg`` (a photograph: JPEG at
quality 90; the reference uses 80) and ``<layer>/image/<unit>-seg.png`` (flat colours: PNG). The
strip mask is the IoU's own mask (bilinear, edge clamp, strict ``>``), not the reference's
zero-padded spline with ``>=`` (reference §9 item 18), so pictures and IoU agree.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from gdjax import progress
from gdjax.models import resample
from gdjax.report import draw

__all__ = ["save_strip", "seg_strip", "unit_strip", "write_strips"]

_upsample = jax.jit(resample.upsample, static_argnums=(1, 2, 3))  # one dispatch per strip


def _row(tiles: np.ndarray, gap: int) -> np.ndarray:
    """uint8 ``[k, H, W, 3]`` -> ``[H, k*(W+gap)-gap, 3]`` with white gaps."""
    k, h, w, _ = tiles.shape
    out = np.full((h, k * (w + gap) - gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        out[:, i * (w + gap) : i * (w + gap) + w] = tile
    return out


def unit_strip(
    images, acts, level, gap=4, dim=0.5, outline=(255, 255, 0), padding="edge"
) -> np.ndarray:
    """The unit's top images with its active region shown: uint8 ``[H, k*(W+gap)-gap, 3]``.

    ``images``: uint8 ``[k, H, W, 3]``; ``acts``: float ``[k, h, w]`` raw activation maps;
    ``level``: the unit's threshold. ``acts`` is upsampled to ``[H, W]`` by
    :func:`gdjax.models.resample.upsample` (half-pixel bilinear with ``padding``, as the IoU);
    the mask is ``act > level``. Outside the mask pixels are ``uint8(x * dim)`` (truncated);
    mask pixels with a 4-neighbour outside the mask become ``outline`` (the image border is not
    "outside", so a region touching it is not outlined there); the other mask pixels are
    unchanged.
    """
    images = np.asarray(images, np.uint8)
    k, h, w, _ = images.shape
    acts = np.asarray(acts, np.float32)[..., None]
    up = np.asarray(_upsample(acts, (h, w), False, padding))[..., 0]
    mask = up > level
    p = np.pad(mask, ((0, 0), (1, 1), (1, 1)), mode="edge")
    interior = p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    edge = mask & ~interior
    out = np.where(mask[..., None], images, (images * np.float32(dim)).astype(np.uint8))
    out[edge] = np.asarray(outline, np.uint8)
    return _row(out, gap)


def seg_strip(labels, colors, size, gap=4) -> np.ndarray:
    """Segmentations as colours: uint8 ``[H, k*(W+gap)-gap, 3]`` for ``size = (H, W)``.

    ``labels``: int ``[k, h, w]`` (one channel); ``colors``: uint8 ``[L, 3]`` palette (labels
    outside ``[0, L)`` are clipped). Nearest upsampling at pixel centres: output row ``t``
    reads row ``floor((t + 0.5) * h / H)`` (a plain repeat for integer factors).
    """
    labels = np.asarray(labels)
    k, h, w = labels.shape
    rows = ((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64)
    cols = ((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64)
    big = labels[:, rows][:, :, cols]
    return _row(np.take(np.asarray(colors, np.uint8), big, axis=0, mode="clip"), gap)


def save_strip(outdir: str, layer: str, unit: int, top_strip, seg) -> tuple[str, str]:
    """Write ``<layer>/image/<unit>-top.jpg`` (a photograph: JPEG) and ``-seg.png`` (flat
    colours, exact: PNG) under ``outdir``; returns the paths."""
    base = os.path.join(outdir, layer, "image", f"{int(unit)}")
    return draw.save_jpeg(base + "-top.jpg", top_strip), draw.save_png(base + "-seg.png", seg)


def write_strips(
    outdir: str, layer: str, result, images, acts, labels, colors, count: int, padding="edge"
):
    """Write every unit's strips of ``layer``: its first ``count`` top images
    (``result.top_indices``) from ``images`` (uint8 ``[N, H, W, 3]``), outlined where
    ``acts`` (``[N, h, w, C]``) exceeds the unit's level, and their segmentations (channel 0 of
    ``labels`` ``[N, H/d, W/d, K]``, coloured with ``colors``; ``padding`` as the IoU's
    upsampling). Units are drawn and encoded on
    a few threads (the encoders release the GIL). Returns the number of units written."""
    top = np.asarray(result.top_indices)[:count]
    n = images.shape[0]

    def write(unit):
        idx = [int(i) for i in top[:, unit] if 0 <= int(i) < n]
        imgs = np.asarray(images[idx])
        unit_acts = np.asarray(acts[idx, :, :, unit])
        strip = unit_strip(imgs, unit_acts, result.levels[unit], padding=padding)
        seg = seg_strip(np.asarray(labels[idx, :, :, 0]), colors, imgs.shape[1:3])
        save_strip(outdir, layer, unit, strip, seg)

    units = range(top.shape[1])
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        for _ in progress.bar(pool.map(write, units), f"{layer} unit strips", total=len(units)):
            pass
    return len(units)
