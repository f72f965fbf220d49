"""A small procedural world of outdoor scenes with exact per-pixel labels.

``render(seed, n)`` draws ``n`` scenes of sky, clouds, mountains, a lake, a road, grass, trees and
buildings with roofs, windows and doors. Every pixel's label comes from the same drawing call that
paints it, so the masks are exact; they are the ground truth for the demo segmenter, the demo GAN
and dissection checks.

Determinism: scene ``i`` of ``render(seed, ...)`` is a function of ``(seed, i, size)`` alone. Its
parameters come from a counter-based hash (splitmix64 of seed, scene index and parameter index),
so the same arguments give the same bytes and ``render(seed, 10)`` is a prefix of
``render(seed, 100)``. The drawing is vectorized over scenes with numpy (one thread).

Shapes are described per image column (a top and a bottom edge at each ``x``) or as separable
rectangles, so each object costs a few array operations on ``[n, H, W]``. Context rules hold by
construction: clouds and mountains only above the horizon, water only in a band just below it,
trees and buildings standing on grass or road below the water, windows and doors only inside
walls, doors standing on the wall's ground line, roofs on top of walls; trees and buildings
occlude each other by distance (lower ground line = closer), and both occlude mountains.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["CATEGORIES", "LABELS", "class_frequencies", "render"]

LABELS = [
    ("-", "object"),
    ("sky", "object"),
    ("cloud", "object"),
    ("mountain", "object"),
    ("water", "object"),
    ("grass", "object"),
    ("road", "object"),
    ("tree", "object"),
    ("building", "object"),
    ("roof", "object"),
    ("window", "object"),
    ("door", "object"),
]
CATEGORIES = ["object"]

SKY, CLOUD, MOUNTAIN, WATER, GRASS, ROAD, TREE, BUILDING, ROOF, WINDOW, DOOR = range(1, 12)

# Paint slots: each object part gets a slot with its own colour; the label is the slot's class.
_NB, _NT = 2, 3  # buildings and trees per scene (at most)
_S_SKY, _S_CLOUD, _S_FAR, _S_NEAR, _S_GRASS, _S_WATER, _S_ROAD = range(7)
_S_BUILD = 7  # wall, roof, window, door of building b at 7 + 4b + (0, 1, 2, 3)
_S_TREE = _S_BUILD + 4 * _NB  # trunk, foliage of tree t at _S_TREE + 2t + (0, 1)
_NSLOT = _S_TREE + 2 * _NT
_SLOT_CLASS = np.array(
    [SKY, CLOUD, MOUNTAIN, MOUNTAIN, GRASS, WATER, ROAD]
    + [BUILDING, ROOF, WINDOW, DOOR] * _NB
    + [TREE, TREE] * _NT,
    np.uint8,
)
_NPARAM = 320  # hash streams per scene; parameters are drawn in a fixed order

# Colours in [0, 1]: (colour at the top of the image, colour at the bottom); tuples pick one.
_SKY_TOP, _SKY_HORIZON = (0.22, 0.42, 0.80), (0.66, 0.80, 0.95)
_WALLS = ((0.86, 0.78, 0.60), (0.92, 0.89, 0.80), (0.74, 0.44, 0.32), (0.66, 0.66, 0.70))
_ROOFS = ((0.62, 0.18, 0.14), (0.45, 0.27, 0.17), (0.30, 0.31, 0.36))
_DOORS = ((0.40, 0.23, 0.12), (0.28, 0.15, 0.09), (0.52, 0.33, 0.18))
_BASE = {  # slot: (top colour, bottom colour)
    _S_CLOUD: ((0.98, 0.98, 1.0), (0.80, 0.82, 0.86)),
    _S_FAR: ((0.62, 0.66, 0.78), (0.58, 0.62, 0.74)),
    _S_NEAR: ((0.44, 0.48, 0.58), (0.38, 0.44, 0.50)),
    _S_GRASS: ((0.50, 0.72, 0.32), (0.26, 0.50, 0.16)),
    _S_WATER: ((0.26, 0.52, 0.70), (0.08, 0.28, 0.48)),
    _S_ROAD: ((0.46, 0.46, 0.48), (0.30, 0.30, 0.32)),
}
_WINDOW = (0.16, 0.24, 0.38)
_TRUNK, _FOLIAGE = (0.36, 0.24, 0.13), (0.14, 0.36, 0.13)
# Texture amplitude per class (index = label): smooth noise, horizontal streaks, brick mortar.
_NOISE_AMP = np.array([0, 0, 0.03, 0.06, 0, 0.08, 0.05, 0.2, 0.02, 0.06, 0.04, 0.04], np.float32)
_STREAK_AMP = np.array([0, 0, 0, 0, 0.22, 0, 0, 0, 0, 0, 0, 0], np.float32)


def render(seed_or_key, n: int, size: int = 64, *, start: int = 0):
    """Renders scenes ``start .. start + n - 1`` of the world drawn from ``seed_or_key``.

    Args:
      seed_or_key: an int, or a JAX PRNG key (typed or raw ``uint32[2]``).
      n: number of scenes.
      size: image height and width in pixels (64 by default, 128 works; objects scale with it).
      start: index of the first scene; scene ``i`` depends only on ``(seed, i, size)``.

    Returns:
      ``(images, labels)``: float32 ``[n, size, size, 3]`` RGB in ``[-1, 1]``, and int32
      ``[n, size, size]`` indices into ``LABELS``, every pixel ``>= 1``.
    """
    seed = _seed_int(seed_or_key)
    images = np.empty((n, size, size, 3), np.float32)
    labels = np.empty((n, size, size), np.int32)
    chunk = max(1, 2**17 // (size * size))  # keeps the working set in cache
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        _render_chunk(seed, np.arange(start + a, start + b), size, images[a:b], labels[a:b])
    return images, labels


def class_frequencies(labels, num_classes: int) -> np.ndarray:
    """Fraction of pixels of each class: float64 ``[num_classes]`` from int labels of any shape."""
    labels = np.asarray(labels).ravel()
    return np.bincount(labels, minlength=num_classes)[:num_classes] / max(labels.size, 1)


def _seed_int(seed_or_key) -> int:
    if isinstance(seed_or_key, (int, np.integer)):
        return int(seed_or_key) % 2**64
    import jax  # only for keys; the renderer itself is numpy

    key = seed_or_key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = np.asarray(key, np.uint64).ravel()
    return int(sum(int(w) << (32 * j) for j, w in enumerate(words))) % 2**64


def _splitmix(z):
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniforms(seed: int, index, num: int):
    """float32 ``[len(index), num]`` in [0, 1): stream ``k`` of scene ``i`` hashes (seed, i, k)."""
    z = _splitmix(np.array([seed], np.uint64))
    z = _splitmix(z + np.asarray(index, np.uint64))[:, None]
    z = _splitmix(z + np.arange(num, dtype=np.uint64))
    return (z >> np.uint64(40)).astype(np.float32) / np.float32(2**24)


class _Draw:
    """Hands out the per-scene uniform streams in a fixed order: ``d(lo, hi)`` -> ``[n]``."""

    def __init__(self, u):
        self.u, self.k = u, 0

    def __call__(self, lo=0.0, hi=1.0):
        self.k += 1
        return np.float32(lo) + np.float32(hi - lo) * self.u[:, self.k - 1]

    def pick(self, options):
        return np.asarray(options, np.float32)[(self() * len(options)).astype(int)]


@functools.lru_cache(maxsize=4)
def _textures(size: int):
    """Fixed zero-mean textures: noise, streaks ``[3S, 3S]`` (wrap-padded), brick ``[S, S]``."""
    t = 2 * size
    rng = np.random.default_rng(20190101)
    f = np.fft.fftfreq(t) * t * 64 / size  # cycles per tile, in 64-px units
    fy, fx = f[:, None] / t, f[None, :] / t

    def smooth(sy, sx):  # Gaussian blur (std in 64-px pixels) of white noise, unit std
        g = np.exp(-2 * np.pi**2 * ((fy * sy) ** 2 + (fx * sx) ** 2))
        x = np.fft.ifft2(np.fft.fft2(rng.standard_normal((t, t))) * g).real
        return (x - x.mean()) / x.std()

    noise = 0.6 * smooth(0.7, 0.7) + 0.6 * smooth(2.0, 2.0)
    streak = smooth(0.6, 5.0)
    c = (np.arange(size) + 0.5) * 64 / size  # pixel centres in 64-px units
    by, bx = c[:, None] / 3, c[None, :] / 6  # bricks 6 x 3, mortar 1 px, alternate rows shifted
    shift = 0.5 * (np.floor(by) % 2)
    mortar = ((by % 1) < 1 / 3) | (((bx + shift) % 1) < 1 / 6)
    brick = np.where(mortar, -1.0, 0.35)
    pad = lambda v: np.pad(v, (0, size), mode="wrap").astype(np.float32)
    return pad(noise), pad(streak), brick.astype(np.float32)


def _span(y, top, bot):
    """Column-interval mask ``[n, H, W]``: ``top[n, x] <= y < bot[n, x]``; ``bot`` may be [n, 1]."""
    return (y >= top[:, None, :]) & (y < bot[:, None, :])


def _hump(x, c, r):
    """``sqrt(1 - ((x - c) / r)^2)``, 0 outside: half-ellipse profile ``[n, W]``; c, r ``[n]``."""
    return np.sqrt(np.maximum(0, 1 - ((x - c[:, None]) / r[:, None]) ** 2))


def _tent(x, c, r):
    return np.maximum(0, 1 - np.abs(x - c[:, None]) / r[:, None])


def _render_chunk(seed: int, index, size: int, images, labels):
    """Renders scenes ``index`` into ``images`` ``[n, S, S, 3]`` and ``labels`` ``[n, S, S]``."""
    n, f32 = len(index), np.float32
    d = _Draw(_uniforms(seed, index, _NPARAM))
    c = (np.arange(size, dtype=f32) + f32(0.5)) / f32(size)  # pixel centres in [0, 1]
    x, y = c[None, :], c[None, :, None]  # [1, W] for column profiles; [1, H, 1] rows
    none = f32(9.0)  # a top edge below the image: no pixels in that column

    h = d(0.40, 0.58)  # horizon
    slot = np.where(y < h[:, None, None], np.uint8(_S_SKY), np.uint8(_S_GRASS))
    slot = np.ascontiguousarray(np.broadcast_to(slot, (n, size, size)))

    def paint(mask, k):
        np.copyto(slot, np.uint8(k), where=mask)

    for p in (0.8, 0.55, 0.35):  # clouds: flat-bottomed, puffy tops, in the sky
        on, cx, a, b = d() < p, d(-0.1, 1.1), d(0.09, 0.2), d(0.045, 0.085)
        cb = 0.12 + d() * (h - 0.19)
        puff = 0.35 * _hump(x, cx, a)
        for j in (-0.5, 0.0, 0.5):
            pc, pr, ph = cx + a * (j + d(-0.15, 0.15)), a * d(0.35, 0.6), d(0.6, 1.0)
            puff = np.maximum(puff, ph[:, None] * _hump(x, pc, pr))
        top = np.where(on[:, None] & (puff > 0), cb[:, None] - b[:, None] * puff, none)
        paint(_span(y, top, cb[:, None] + 0.3 * b[:, None] * _hump(x, cx, a)), _S_CLOUD)

    water_on, water_cx, water_rx, water_d = d() < 0.45, d(0.1, 0.9), d(0.3, 0.9), d(0.06, 0.15)
    ground0 = h + np.where(water_on, water_d, 0) + 0.04  # trees and buildings stand below this

    for k, p, amp in ((_S_FAR, 0.75, (0.10, 0.30)), (_S_NEAR, 0.5, (0.05, 0.17))):  # mountains
        on, height = d() < p, d(*amp)
        prof = 0.15 + 0.04 * np.sin(d(10, 30)[:, None] * x + d(0, 6.3)[:, None])
        for _ in range(2):
            prof = np.maximum(prof, d(0.5, 1.0)[:, None] * _tent(x, d(-0.1, 1.1), d(0.2, 0.5)))
        top = np.where(on[:, None], h[:, None] - height[:, None] * prof, none)
        paint(_span(y, top, h[:, None]), k)

    env = _hump(x, water_cx, water_rx)  # a lake from the horizon down to a curved shore
    top = np.where(water_on[:, None] & (env > 0), h[:, None], none)
    paint(_span(y, top, h[:, None] + water_d[:, None] * env), _S_WATER)

    road_on, vx, bx, bw, curve = d() < 0.6, d(0.25, 0.75), d(0.1, 0.9), d(0.12, 0.22), d(-0.3, 0.3)
    ytop = np.where(road_on, ground0 - 0.035, none)  # the road starts at the lake's shore

    def road_at(yy):  # centre and half-width of the road at rows yy [n, m] -> 2 x [n, m]
        t = np.clip((yy - ytop[:, None]) / (1 - ytop[:, None]), 0, 1)
        mid = vx[:, None] + (bx - vx)[:, None] * t + curve[:, None] * t * (1 - t)
        return mid, 0.004 + (bw - 0.004)[:, None] * t

    rc, rw = road_at(np.broadcast_to(y[..., 0], (n, size)))
    paint(
        (y >= ytop[:, None, None]) & (np.abs(x[:, None] - rc[:, :, None]) < rw[:, :, None]), _S_ROAD
    )

    def place(base, width):  # left edge of an object beside the road (or anywhere without one)
        c0, w0 = (v[:, 0] for v in road_at(base[:, None]))
        gap, free = d(0.01, 0.1), d(-0.1, 1.1 - width)
        left, right = c0 - w0 - gap - width, c0 + w0 + gap
        go_right = np.where((right < 1 - width / 2) & (left > -width / 2), d() < 0.5, 1 - c0 > c0)
        return np.where(road_on, np.where(go_right, right, left), free)

    zbuf = np.full((n, size, size), np.inf, f32)

    def paint_z(mask, k, depth):  # painter's algorithm by distance for trees and buildings
        mask &= depth[:, None, None] <= zbuf  # <=: later parts of one object cover earlier ones
        paint(mask, k)
        np.copyto(zbuf, depth[:, None, None], where=mask)

    for i, p in enumerate((0.85, 0.5)):  # buildings: wall, roof, windows, doors
        on, base = d() < p, ground0 + d() * (0.97 - ground0)
        cw, fh, ncols = d(0.11, 0.15), d(0.15, 0.19), np.floor(2 + 3 * d())
        floors = np.clip(np.minimum(np.floor(1 + 3 * d()), np.floor((base - 0.08) / fh)), 1, 3)
        margin = 0.35 * cw
        width = ncols * cw + 2 * margin
        x0 = place(base, width)
        wtop = base - (floors + 0.3) * fh
        inx = (x >= x0[:, None]) & (x < (x0 + width)[:, None])
        rows = (y[..., 0] >= wtop[:, None]) & (y[..., 0] < base[:, None])
        k = _S_BUILD + 4 * i
        depth = -base  # closer objects stand lower; every mask below is empty where not `on`
        inx &= on[:, None]
        paint_z(inx[:, None, :] & rows[:, :, None], k, depth)
        over, thick = d(0.01, 0.03), d(0.025, 0.04)
        rh = np.where(d() < 0.7, d(0.05, 0.15), 0)  # gable or flat roof
        tent = _tent(x, x0 + width / 2, width / 2 + over)
        top = np.where((tent > 0) & on[:, None], (wtop - thick)[:, None] - rh[:, None] * tent, none)
        paint_z(_span(y, top, wtop[:, None]), k + 1, depth)
        relx = (x - (x0 + margin)[:, None]) / cw[:, None]  # [n, W] window columns
        col, fx = np.floor(relx), relx % 1
        incol = (relx >= 0) & (relx < ncols[:, None]) & on[:, None]
        rely = (base[:, None] - y[..., 0]) / fh[:, None]  # [n, H] floors counted from the ground
        winrow = (rely >= 0) & (rely < floors[:, None]) & (rely % 1 >= 0.35) & (rely % 1 < 0.8)
        wincol = incol & (np.abs(fx - 0.5) < 0.25)
        paint_z(winrow[:, :, None] & wincol[:, None, :], k + 2, depth)
        j1 = np.floor(d() * ncols)
        j2 = np.where(
            (d() < 0.5) & (ncols >= 3), (j1 + 1 + np.floor(d() * (ncols - 1))) % ncols, -1
        )
        doorcol = incol & (np.abs(fx - 0.5) < 0.375) & ((col == j1[:, None]) | (col == j2[:, None]))
        doorrow = (rely >= 0) & (rely < 0.85)
        paint_z(doorrow[:, :, None] & doorcol[:, None, :], k + 3, depth)

    for i, p in enumerate((0.75, 0.5, 0.3)):  # trees: a trunk under a round or conical crown
        on, base = d() < p, ground0 + d() * (0.97 - ground0)
        sc = 0.8 + 0.35 * (base - h) / (1 - h)  # a little perspective
        rx, ry, cone = d(0.06, 0.12) * sc, d(0.07, 0.13) * sc, d() < 0.4
        cone_w, cone_h = d(0.06, 0.1) * sc, d(0.2, 0.32) * sc
        tw, th = d(0.012, 0.02) * sc, d(0.04, 0.09) * sc
        tx = place(base, 2 * rx) + rx
        depth = -base
        k = _S_TREE + 2 * i
        trunk = (_tent(x, tx, tw) > 0) & on[:, None]
        top = np.where(trunk, (base - th - 0.5 * ry)[:, None], none)
        paint_z(_span(y, top, base[:, None]), k, depth)
        cy, cbot = base - th - 0.85 * ry, base - 0.6 * th
        ell, tri = _hump(x, tx, rx), _tent(x, tx, cone_w)
        cone = cone[:, None]
        top = np.where(cone, cbot[:, None] - cone_h[:, None] * tri, cy[:, None] - ry[:, None] * ell)
        bot = np.where(cone, cbot[:, None], cy[:, None] + ry[:, None] * ell)
        top = np.where((np.where(cone, tri, ell) > 0) & on[:, None], top, none)
        paint_z(_span(y, top, bot), k + 1, depth)

    _colour(d, slot, h, images, labels)


def _colour(d: _Draw, slot, h, images, labels):
    """Slot map ``[n, S, S]`` -> ``images`` float32 ``[n, S, S, 3]`` in [-1, 1]; ``labels``."""
    (n, size, _), f32 = slot.shape, np.float32
    top = np.zeros((n, _NSLOT, 3), f32)  # colour at y = 0 and its change per unit y
    slope = np.zeros((n, _NSLOT, 3), f32)

    def set_slot(k, c0, c1=None):
        c0 = np.broadcast_to(np.asarray(c0, f32), (n, 3))
        c1 = c0 if c1 is None else np.broadcast_to(np.asarray(c1, f32), (n, 3))
        gain, tint = d(0.88, 1.12)[:, None], np.stack([d(-0.04, 0.04) for _ in range(3)], 1)
        top[:, k], slope[:, k] = gain * c0 + tint, gain * (c1 - c0)

    sky_hor = np.asarray(_SKY_HORIZON, f32)
    sky_top = np.asarray(_SKY_TOP, f32)
    set_slot(_S_SKY, sky_top, sky_top + (sky_hor - sky_top) / h[:, None])  # horizon colour at h
    for k, (c0, c1) in _BASE.items():
        set_slot(k, c0, c1)
    for b in range(_NB):
        k = _S_BUILD + 4 * b
        set_slot(k, d.pick(_WALLS))
        roof = d.pick(_ROOFS)
        set_slot(k + 1, roof * 1.15, roof * 0.85)
        set_slot(k + 2, _WINDOW)
        set_slot(k + 3, d.pick(_DOORS))
    for t in range(_NT):
        set_slot(_S_TREE + 2 * t, _TRUNK)
        set_slot(_S_TREE + 2 * t + 1, _FOLIAGE)
    brick_on = np.zeros(n * _NSLOT, f32)
    for b in range(_NB):
        brick_on[_S_BUILD + 4 * b :: _NSLOT] = (d() < 0.6) * 0.1

    noise, streak, brick = _textures(size)
    t = noise.shape[0] - size  # tiles are wrap-padded by `size` so every window is a slice
    oy, ox = (d() * t).astype(int), (d() * t).astype(int)
    windows = [(slice(a, a + size), slice(b, b + size)) for a, b in zip(oy, ox, strict=True)]
    # Per-slot tables gathered with a flat intp index, one channel at a time: np.take of 1-wide
    # rows with intp indices is many times faster than fancy indexing or 3-wide rows.
    flat = (slot + (np.arange(n) * _NSLOT)[:, None, None]).astype(np.intp)
    np.take(np.tile(_SLOT_CLASS.astype(np.int32), n), flat, out=labels)
    tex = np.take(np.tile(_NOISE_AMP[_SLOT_CLASS], n), flat) * np.stack([noise[w] for w in windows])
    streaks = np.stack([streak[w] for w in windows])
    tex += np.take(np.tile(_STREAK_AMP[_SLOT_CLASS], n), flat) * streaks
    tex += np.take(brick_on, flat) * brick
    c = (np.arange(size, dtype=f32) + f32(0.5)) / f32(size)
    light = 1 + d(-0.3, 0.3)[:, None, None] * (c[None, None, :] - f32(0.5))  # sun to one side
    shade = (1 + tex) * light
    top, slope = top.reshape(-1, 3).T.copy(), slope.reshape(-1, 3).T.copy()
    planes = []
    for ch in range(3):
        v = np.take(top[ch], flat) + np.take(slope[ch], flat) * c[:, None]
        v *= shade
        planes.append(np.clip(v, 0, 1, out=v) * f32(2) - f32(1))
    np.stack(planes, -1, out=images)  # stacking planes is the fast way to interleave channels
