"""Semantic segmenters for dissection: the UPP UPerNet, the ADE20K PPM model, small custom ones.

One module (:class:`gdjax.models.upernet.SegmentationModel`, NHWC, names after the PyTorch
state dicts) and one API for every segmenter (reference §2):

* :class:`Segmenter` — ``(module, variables, vocab, prep)``, a pytree (variables are leaves),
  from :func:`load` (a converted or trained checkpoint) or :func:`create` (random weights).
* :func:`segment` — int label channels ``[N, H/d, W/d, K]`` (jittable, quad included).
* :func:`class_score` — differentiable soft score map and hard mask for one label.
* :func:`probabilities` — the summed per-size softmax maps the two above are built from.

Images are always ``[N, H, W, 3]`` RGB float in ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from gdjax.models import checkpoint
from gdjax.models.labels import Vocab, label_maps, quad_channels
from gdjax.models.resample import resize
from gdjax.models.upernet import SegmentationModel

__all__ = [
    "Preprocess",
    "SegmentationModel",
    "Segmenter",
    "class_score",
    "create",
    "from_config",
    "load",
    "preprocess",
    "probabilities",
    "save",
    "segment",
]

KIND = "segmenter"


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Image normalisation: ``x = ((img + 1) / 2 * scale)[..., ::-1 if bgr] - mean) / std``,
    then for every ``seg_size`` an adaptive average pool to ``(s, s)`` unless already that size.

    upp: ``scale=255, bgr=True, mean=(102.9801, 115.9465, 122.7717), std=1`` (BGR means).
    ADE20K (CSAIL): ``scale=1, bgr=False``, ImageNet mean/std.
    """

    scale: float = 255.0
    bgr: bool = True
    mean: tuple[float, ...] = (102.9801, 115.9465, 122.7717)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    seg_sizes: tuple[int, ...] = (256,)


@struct.dataclass
class Segmenter:
    """A segmenter: module and vocabulary (static), ``variables`` (pytree leaves)."""

    module: SegmentationModel = struct.field(pytree_node=False)
    variables: dict
    vocab: Vocab = struct.field(pytree_node=False)
    prep: Preprocess = struct.field(pytree_node=False)

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        """``((name, category), ...)``; label 0 is ``'-'``."""
        return self.vocab.labels

    @property
    def categories(self) -> tuple[str, ...]:
        return self.vocab.categories

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able description from which :func:`from_config` rebuilds everything."""
        m = {f.name: getattr(self.module, f.name) for f in dataclasses.fields(SegmentationModel)}
        m = {k: v for k, v in m.items() if k not in ("parent", "name")}
        return {
            "kind": KIND,
            "model": jax.tree.map(lambda x: x, m, is_leaf=lambda x: isinstance(x, tuple)),
            "vocab": dataclasses.asdict(self.vocab),
            "preprocess": dataclasses.asdict(self.prep),
        }


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def _parts(config: dict[str, Any]) -> tuple[SegmentationModel, Vocab, Preprocess]:
    vocab = Vocab(**{k: _tuples(v) for k, v in config["vocab"].items()})
    model = {k: _tuples(v) for k, v in config["model"].items()}
    model["part_slices"] = vocab.part_slices
    prep = Preprocess(**{k: _tuples(v) for k, v in config.get("preprocess", {}).items()})
    return SegmentationModel(**model), vocab, prep


def _abstract(module: SegmentationModel, prep: Preprocess):
    s = prep.seg_sizes[0]
    x = jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32)
    return jax.eval_shape(functools.partial(module.init, seg_size=(s, s)), jax.random.key(0), x)


def from_config(config: dict[str, Any], variables: dict | None = None, key=None) -> Segmenter:
    """Build a :class:`Segmenter` from a config dict; random variables (``key``) if none given."""
    module, vocab, prep = _parts(config)
    if variables is None:
        s = prep.seg_sizes[0]
        x = jnp.zeros((1, s, s, 3), jnp.float32)
        init = jax.jit(module.init, static_argnums=2)  # compiled init: much faster than eager
        variables = init(jax.random.key(0) if key is None else key, x, (s, s))
    else:
        checkpoint.check_tree(variables, _abstract(module, prep), "segmenter variables")
    return Segmenter(module, dict(variables), vocab, prep)


create = from_config


def save(directory: str, seg: Segmenter, **extra) -> str:
    """Write ``seg`` as a gdjax segmenter checkpoint (orbax variables + ``config.json``)."""
    return checkpoint.save(directory, seg.variables, {**seg.config, **extra})


def load(directory: str, quad: bool | None = None) -> Segmenter:
    """Load a converted or trained segmenter; ``quad`` overrides the stored quad setting."""
    config = checkpoint.read_config(directory, KIND)
    module, vocab, prep = _parts(config)
    variables = checkpoint.restore(directory, _abstract(module, prep))
    if quad is not None:
        vocab = dataclasses.replace(vocab, quad=quad)
    return Segmenter(module, variables, vocab, prep)


def preprocess(seg: Segmenter, images: jax.Array) -> list[jax.Array]:
    """Images ``[N, H, W, 3]`` RGB in ``[-1, 1]`` -> one normalised input per ``seg_size``."""
    p = seg.prep
    x = (images + 1.0) * (0.5 * p.scale)
    if p.bgr:
        x = x[..., ::-1]
    x = (x - jnp.asarray(p.mean, x.dtype).reshape(1, 1, 1, 3)) / jnp.asarray(
        p.std, x.dtype
    ).reshape(1, 1, 1, 3)
    return [resize(x, (s, s), "area") for s in p.seg_sizes]


def probabilities(seg: Segmenter, images: jax.Array, downsample: int = 1) -> dict[str, jax.Array]:
    """Per-head probability maps ``[N, H/d, W/d, C]``, **summed** over ``seg_sizes`` as in the
    reference (so in ``[0, len(seg_sizes)]``)."""
    h, w = images.shape[1] // downsample, images.shape[2] // downsample
    total = None
    for x in preprocess(seg, images):
        out, _ = seg.module.apply(seg.variables, x, (h, w))
        total = out if total is None else jax.tree.map(jnp.add, total, out)
    return total


@functools.partial(jax.jit, static_argnames=("downsample", "skip_last_component"))
def segment(
    seg: Segmenter, images: jax.Array, downsample: int = 1, skip_last_component: bool = False
) -> jax.Array:
    """Label channels ``[N, H/d, W/d, K]`` int32 (0 = none) in ``seg.labels`` numbering.

    upp: object, material, part (+ quad top/bottom and left/right when ``seg.vocab.quad``);
    flat vocabularies: object (+ quad). Jitted, quad included (connected components run in
    a ``while_loop``). ``skip_last_component`` reproduces the reference's skipped component.
    """
    v = seg.vocab
    maps = label_maps(v, probabilities(seg, images, downsample))
    if not v.quad:
        return maps
    quad = jax.vmap(lambda o: quad_channels(o, v.n_obj, skip_last_component))(maps[..., 0])
    return jnp.concatenate([maps, quad], axis=-1)


@functools.partial(jax.jit, static_argnames=("label", "downsample"))
def class_score(
    seg: Segmenter, images: jax.Array, label: int, downsample: int = 1
) -> tuple[jax.Array, jax.Array]:
    """``(score [N, h, w] float, mask [N, h, w] bool)`` for one label (reference
    ``predict_single_class``); ``jax.grad`` flows through ``score``.

    Material: its probability, mask where it is the material argmax. Object: its probability,
    mask where it is the argmax. A part of a used owner (sky/building/person for upp) adds its
    within-owner probability to the score, and ORs "owner is the object argmax and the part
    the part argmax" into the mask — so labels that are objects *and* parts (door, window) can
    score up to 2, as in the reference. Quad labels raise ``ValueError``.
    """
    v = seg.vocab
    if v.n_obj < label <= v.material_base or label >= len(v.labels) or label < 0:
        if label < len(v.labels) and label >= 0:
            raise ValueError(f"label {label} ({v.labels[label][0]}) is a quad sub-label")
        raise ValueError(f"label {label} out of range 0..{len(v.labels) - 1}")
    p = probabilities(seg, images, downsample)
    obj = jnp.argmax(p["object"], axis=-1) + v.offset
    if v.materials and label > v.material_base and label - v.material_base < len(v.materials):
        m = label - v.material_base
        return p["material"][..., m], jnp.argmax(p["material"], axis=-1) == m
    score, mask = jnp.zeros(obj.shape, p["object"].dtype), jnp.zeros(obj.shape, bool)
    if label <= v.n_obj and label - v.offset >= 0:
        score, mask = p["object"][..., label - v.offset], obj == label
    for (owner, _), (a, _b), pmap in zip(v.part_owners, v.part_slices, v.part_maps, strict=False):
        if label in pmap[1:]:
            local = pmap.index(label, 1)
            score = score + p["part"][..., a + local]
            mask |= (obj == owner) & (jnp.argmax(p["part"][..., a:_b], axis=-1) == local)
    return score, mask
