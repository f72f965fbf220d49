"""Segmentation label vocabularies, label maps from probabilities, and quad sub-labels.

Two vocabularies share one numbering scheme (reference §2.2): label 0 is ``'-'`` (no label);
``1..n`` are the objects (channel 0); with ``quad`` the four ``'<obj>-t/-l/-b/-r'`` copies
follow; then materials, then the parts of the first owners that are not objects themselves.

* ``upp`` (Unified Perceptual Parsing): objects / materials / parts of sky, building, person;
  1729 labels with quad (389 without).
* ``flat`` (ADE20K, custom demo vocabularies): a single head; label = argmax + ``offset``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Vocab",
    "connected_components",
    "label_categories",
    "label_maps",
    "quad_channels",
    "upp_vocab_from_tables",
]

QUAD = ("t", "l", "b", "r")


def label_categories(labels: Sequence[tuple[str, str]], categories: Sequence[str]) -> np.ndarray:
    """Index of each label's category in ``categories``: int64 ``[L]`` for ``labels =
    [(name, category)] * L``. Label 0 (no label) and labels of a category not in the list fall
    into category 0, as the reference does (reference §9b.21)."""
    index = {c: i for i, c in enumerate(categories)}
    out = np.array([index.get(cat, 0) for _, cat in labels], np.int64)
    out[:1] = 0
    return out


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Label numbering of one segmenter (hashable; a static part of ``Segmenter``).

    ``objects``: names, index 0 = ``'-'``; ``object_categories``: category of each object label
    (``'object'`` for upp); ``materials``: names, index 0 = ``'-'`` (empty: no material head);
    ``part_owners``: ``((object index, (part names...)), ...)`` for every object with parts, in
    head order; ``n_owners_used``: how many of those the label map uses (3 for upp: sky,
    building, person — the reference assumes they are the first three); ``offset``: added to the
    object argmax (1 for ADE20K's 150 classes without ``'-'``, else 0); ``quad``: append the
    quad sub-labels.
    """

    objects: tuple[str, ...]
    object_categories: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()
    part_owners: tuple[tuple[int, tuple[str, ...]], ...] = ()
    n_owners_used: int = 0
    offset: int = 0
    quad: bool = False

    @property
    def n_obj(self) -> int:
        return len(self.objects) - 1

    @property
    def mult(self) -> int:
        return 5 if self.quad else 1

    @property
    def material_base(self) -> int:
        """Label of material ``m`` is ``m + material_base`` (``m >= 1``)."""
        return self.n_obj * self.mult

    @property
    def part_slices(self) -> tuple[tuple[int, int], ...]:
        """``(start, stop)`` of each owner's slice of the part head."""
        out, head = [], 0
        for _, parts in self.part_owners:
            out.append((head, head + len(parts)))
            head += len(parts)
        return tuple(out)

    def _numbering(self):
        labels = [(o, c) for o, c in zip(self.objects, self.categories_of_objects(), strict=True)]
        if self.quad:
            labels += [(f"{o}-{s}", "part") for s in QUAD for o in self.objects[1:]]
        labels += [(m, "material") for m in self.materials[1:]]
        index = {o: i for i, o in enumerate(self.objects)}
        part_maps = []
        for _, parts in self.part_owners[: self.n_owners_used]:
            m = []
            for p in parts:
                if p == "-":
                    m.append(0)
                elif p in index:
                    m.append(index[p])
                else:
                    index[p] = len(labels)
                    labels.append((p, "part"))
                    m.append(index[p])
            part_maps.append(tuple(m))
        return tuple(labels), tuple(part_maps)

    def categories_of_objects(self) -> tuple[str, ...]:
        return self.object_categories or ("object",) * len(self.objects)

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        """``((name, category), ...)``; index = label number."""
        return self._numbering()[0]

    @property
    def part_maps(self) -> tuple[tuple[int, ...], ...]:
        """For each used owner: part-slice index -> label number (0 for ``'-'``)."""
        return self._numbering()[1]

    @property
    def categories(self) -> tuple[str, ...]:
        cats = list(dict.fromkeys(c for _, c in self.labels))
        order = ["object", "part", "material"]
        return tuple(sorted(cats, key=lambda c: order.index(c) if c in order else len(order)))


def label_maps(vocab: Vocab, probs: dict[str, jax.Array]) -> jax.Array:
    """Probabilities -> int32 label channels ``[N, h, w, K]`` without quad (jittable).

    ``probs['object'] [N, h, w, n]`` (and for upp ``'material'``, ``'part'``). Channels: 0 =
    object argmax (+ ``offset``); 1 = material argmax shifted to its label (0 stays 0); 2 =
    parts of the used owners, written only where channel 0 is the owner (later owners win,
    they never overlap). argmax ties go to the first index (torch 1.x CPU took the last).
    """
    obj = jnp.argmax(probs["object"], axis=-1).astype(jnp.int32) + vocab.offset
    chans = [obj]
    if vocab.materials:
        mat = jnp.argmax(probs["material"], axis=-1).astype(jnp.int32)
        chans.append(jnp.where(mat > 0, mat + vocab.material_base, 0))
    if vocab.n_owners_used:
        part = jnp.zeros_like(obj)
        for (owner, _), (a, b), pmap in zip(
            vocab.part_owners, vocab.part_slices, vocab.part_maps, strict=False
        ):
            local = jnp.argmax(probs["part"][..., a:b], axis=-1)
            part = jnp.where(obj == owner, jnp.asarray(pmap, jnp.int32)[local], part)
        chans.append(part)
    return jnp.stack(chans, axis=-1)


def connected_components(x: jax.Array) -> jax.Array:
    """Component ids of an int map ``x [h, w]``: 8-connectivity, equal values, 0 = background.

    Returns ``[h, w]`` int32: for each foreground pixel the smallest flat index (``row*w +
    col``) in its component, ``h*w`` for background. Ordering components by this id is the
    raster order of their first pixel, which is how scikit-image numbers them. Min-label
    propagation with pointer jumping inside a ``while_loop``: jittable and vmappable.
    """
    h, w = x.shape
    n = h * w
    fg = x > 0
    ids = jnp.where(fg, jnp.arange(n, dtype=jnp.int32).reshape(h, w), n)
    xp = jnp.pad(x, 1, constant_values=0)
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    # Same-valued foreground neighbour masks are fixed; compute them once.
    same = [(xp[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] == x) & fg for dy, dx in shifts]

    def step(state):
        lab, _ = state
        lp = jnp.pad(lab, 1, constant_values=n)
        new = lab
        for (dy, dx), s in zip(shifts, same, strict=True):
            new = jnp.minimum(new, jnp.where(s, lp[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w], n))
        flat = jnp.append(new.reshape(-1), n)
        new = flat[flat[new]]  # pointer jumping: follow the label's own label twice
        return new, jnp.any(new != lab)

    # The initial flag is computed from the data (always True) so that under ``shard_map`` it
    # carries the same varying-axes type as the flag the body returns.
    running = jnp.all(ids >= 0)
    lab, _ = jax.lax.while_loop(lambda s: s[1], step, (ids, running))
    return lab


def quad_channels(obj: jax.Array, n_obj: int, skip_last: bool = False) -> jax.Array:
    """Quad sub-label channels ``[h, w, 2]`` (top/bottom, left/right) for object map ``[h, w]``.

    For each connected component with inclusive bounding box rows ``[t, b]``, columns
    ``[l, r]``: ``vmid = (t + b + 1) // 2``, ``hmid = (l + r + 1) // 2``; label ``+ n_obj`` above
    ``vmid`` (``-t``), ``+ 3 n_obj`` below (``-b``), ``+ 2 n_obj`` left of ``hmid`` (``-l``),
    ``+ 4 n_obj`` right (``-r``); background stays 0. ``skip_last=True`` reproduces the
    reference bug (reference §9.8): the last component in raster order gets 0.
    """
    h, w = obj.shape
    n = h * w
    comp = connected_components(obj)
    rows = jnp.broadcast_to(jnp.arange(h, dtype=jnp.int32)[:, None], (h, w))
    cols = jnp.broadcast_to(jnp.arange(w, dtype=jnp.int32)[None, :], (h, w))
    seg, kw = comp.reshape(-1), {"num_segments": n + 1}
    top = jax.ops.segment_min(rows.reshape(-1), seg, **kw)[comp]
    bot = jax.ops.segment_max(rows.reshape(-1), seg, **kw)[comp]
    left = jax.ops.segment_min(cols.reshape(-1), seg, **kw)[comp]
    right = jax.ops.segment_max(cols.reshape(-1), seg, **kw)[comp]
    vert = obj + n_obj * jnp.where(rows < (top + bot + 1) // 2, 1, 3)
    horiz = obj + n_obj * jnp.where(cols < (left + right + 1) // 2, 2, 4)
    keep = obj > 0
    if skip_last:
        keep &= comp != jnp.max(jnp.where(keep, comp, -1))
    return jnp.stack([jnp.where(keep, vert, 0), jnp.where(keep, horiz, 0)], axis=-1)


def upp_vocab_from_tables(
    objects, materials, object_part: dict[str, list[str]], quad: bool = True
) -> Vocab:
    """The upp :class:`Vocab` from ``labels.json``-style lists (objects sorted by index)."""
    index = {o: i for i, o in enumerate(objects)}
    owners = sorted((index[o], tuple(p)) for o, p in object_part.items())
    return Vocab(
        objects=tuple(objects),
        materials=tuple(materials),
        part_owners=tuple(owners),
        n_owners_used=min(3, len(owners)),
        quad=quad,
    )
