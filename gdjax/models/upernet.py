"""The segmentation networks as Flax modules: a ResNet encoder with a UPerNet decoder (the
Unified Perceptual Parsing "upp" model) or a pyramid-pooling decoder (the ADE20K "ppm" model).

Submodules are named after the PyTorch state dicts (``decoder.ppm_conv.0.0.weight`` <->
``decoder/ppm_conv/0/0/kernel``) so conversion is a rename plus a layout transform. The API
that segments images (:class:`gdjax.models.segmenter.Segmenter`) is built on
:class:`SegmentationModel`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gdjax.models.resample import prroi_matrix, resample, resize
from gdjax.models.resnet import ConvBN, ResNet, batch_norm, conv

__all__ = ["PPMDeepsup", "SegmentationModel", "UPerNet"]


class _ConvBNList(nn.Module):
    """torch ``ModuleList`` of ``Sequential(conv, BN, ReLU)`` (``nest``: wrapped once more)."""

    features: int
    kernel: int
    nest: bool = False

    @nn.compact
    def __call__(self, xs, train):
        if self.nest:
            return [
                _Nest(self.features, self.kernel, name=str(i))(x, train) for i, x in enumerate(xs)
            ]
        return [ConvBN(self.features, self.kernel, name=str(i))(x, train) for i, x in enumerate(xs)]


class _Nest(nn.Module):
    features: int
    kernel: int

    @nn.compact
    def __call__(self, x, train):
        return ConvBN(self.features, self.kernel, name="0")(x, train)


class _Head(nn.Module):
    """``Sequential(conv3x3_bn_relu, [AdaptiveAvgPool(1)], Conv2d 1x1 with bias)``."""

    features: int
    classes: int
    global_pool: bool = False

    @nn.compact
    def __call__(self, x, train):
        x = ConvBN(self.features, 3, name="0")(x, train)
        if self.global_pool:
            x = jnp.mean(x, axis=(1, 2), keepdims=True)
        return conv(self.classes, 1, bias=True, name="2" if self.global_pool else "1")(x)


class UPerNet(nn.Module):
    """UPerNet decoder (reference §2.2). ``feats`` = C2..C5; returns per-head logits.

    PPM branch ``s``: whole-map precise RoI pooling to ``s x s``, bilinear back to the C5 size,
    *then* 1x1 conv + BN + ReLU (the reference applies ``ppm_conv`` after the upsampling).
    """

    n_object: int
    n_part: int = 0
    n_material: int = 0
    n_scene: int = 0
    fpn_dim: int = 512
    ppm_dim: int = 512
    pool_scales: Sequence[int] = (1, 2, 3, 6)

    @nn.compact
    def __call__(self, feats, train=False):
        c5 = feats[-1]
        size = c5.shape[1:3]
        pooled = [
            resize(resample(c5, prroi_matrix(s, size[0]), prroi_matrix(s, size[1])), size)
            for s in self.pool_scales
        ]
        ppm = _ConvBNList(self.ppm_dim, 1, name="ppm_conv")(pooled, train)
        f = ConvBN(self.fpn_dim, 3, name="ppm_last_conv")(jnp.concatenate([c5, *ppm], -1), train)
        acts, logits = {"ppm": f}, {}
        if self.n_scene:
            logits["scene"] = _Head(self.fpn_dim, self.n_scene, True, name="scene_head")(f, train)
        lateral = _ConvBNList(self.fpn_dim, 1, name="fpn_in")(feats[:-1], train)
        tops, t = [], f
        for lat in reversed(lateral):  # top-down: the sum (not the fpn_out output) propagates
            t = lat + resize(t, lat.shape[1:3])
            tops.insert(0, t)
        fpn = [*_ConvBNList(self.fpn_dim, 3, nest=True, name="fpn_out")(tops, train), f]
        acts.update({f"fpn{i}": p for i, p in enumerate(fpn[:-1])})
        size0 = fpn[0].shape[1:3]
        if self.n_material:
            logits["material"] = _Head(self.fpn_dim, self.n_material, name="material_head")(
                fpn[0], train
            )
        fused = jnp.concatenate([fpn[0]] + [resize(p, size0) for p in fpn[1:]], -1)
        x = ConvBN(self.fpn_dim, 3, name="conv_fusion")(fused, train)
        acts["fusion"] = x
        logits["object"] = _Head(self.fpn_dim, self.n_object, name="object_head")(x, train)
        if self.n_part:
            logits["part"] = _Head(self.fpn_dim, self.n_part, name="part_head")(x, train)
        return logits, acts


class _ConvLast(nn.Module):
    """``Sequential(conv3x3, BN, ReLU, Dropout2d, Conv2d 1x1)`` of the PPM decoder."""

    features: int
    classes: int

    @nn.compact
    def __call__(self, x, train):
        x = nn.relu(batch_norm(train, "1")(conv(self.features, 3, name="0")(x)))
        return conv(self.classes, 1, bias=True, name="4")(x)  # dropout omitted (inference)


class PPMDeepsup(nn.Module):
    """ADE20K ``ppm_bilinear_deepsup`` decoder (reference §2.3): adaptive-average PPM branches
    (pool, 1x1 conv + BN + ReLU, then bilinear up), ``conv_last``; the deep-supervision head on
    C4 is returned as an activation (unused for segmentation)."""

    n_object: int = 150
    ppm_dim: int = 512
    pool_scales: Sequence[int] = (1, 2, 3, 6)

    @nn.compact
    def __call__(self, feats, train=False):
        c5 = feats[-1]
        size = c5.shape[1:3]
        pooled = [resize(c5, (s, s), "area") for s in self.pool_scales]
        outs = _PPMList(self.ppm_dim, name="ppm")(pooled, train)
        ppm = jnp.concatenate([c5, *[resize(o, size) for o in outs]], -1)
        x = _ConvLast(self.ppm_dim, self.n_object, name="conv_last")(ppm, train)
        c4 = feats[-2]
        d = ConvBN(c4.shape[-1] // 2, 3, name="cbr_deepsup")(c4, train)
        deep = conv(self.n_object, 1, bias=True, name="conv_last_deepsup")(d)
        return {"object": x}, {"ppm": ppm, "deepsup": deep}


class _PPMList(nn.Module):
    """``ppm.{i}`` = ``Sequential(AdaptiveAvgPool2d, Conv2d 1x1, BN, ReLU)``: conv/BN at 1, 2."""

    features: int

    @nn.compact
    def __call__(self, xs, train):
        return [ConvBN(self.features, 1, first=1, name=str(i))(x, train) for i, x in enumerate(xs)]


class SegmentationModel(nn.Module):
    """Encoder (``encoder/``, :class:`~gdjax.resnet.ResNet`) + decoder (``decoder/``).

    ``__call__(x, seg_size, train=False, softmax=True) -> (out, acts)``: ``x [N, H, W, 3]``
    preprocessed (:func:`preprocess`); ``out`` maps ``'object'``, ``'material'``, ``'part'``
    (present heads) to ``[N, *seg_size, C]`` — softmax probabilities of the logits resized
    bilinearly to ``seg_size`` (the part head softmaxed within each owner's slice of
    ``part_slices``), or the resized logits with ``softmax=False`` (for training) — and
    ``'scene'`` to ``[N, n_scene]``. ``acts``: encoder ``stem, layer1..layer4``; decoder
    ``ppm, fpn0..2, fusion`` (UPerNet) or ``ppm, deepsup`` (PPM); ``<head>_logits`` at
    feature resolution.
    """

    decoder: str = "upernet"  # or "ppm"
    stem: Sequence[int] = (64, 64, 128)
    planes: Sequence[int] = (64, 128, 256, 512)
    depths: Sequence[int] = (3, 4, 6, 3)
    dilated: bool = False
    deep_stem: bool = True
    n_object: int = 336
    n_part: int = 0
    n_material: int = 0
    n_scene: int = 0
    fpn_dim: int = 512
    ppm_dim: int = 512
    pool_scales: Sequence[int] = (1, 2, 3, 6)
    part_slices: Sequence[tuple[int, int]] = ()

    @nn.compact
    def __call__(self, x, seg_size, train=False, softmax=True):
        enc = ResNet(
            self.stem, self.planes, self.depths, self.dilated, self.deep_stem, name="encoder"
        )
        _, acts = enc(x, train)
        feats = [acts[f"layer{i}"] for i in range(1, 5)]
        if self.decoder == "upernet":
            dec = UPerNet(
                self.n_object,
                self.n_part,
                self.n_material,
                self.n_scene,
                self.fpn_dim,
                self.ppm_dim,
                tuple(self.pool_scales),
                name="decoder",
            )
        else:
            dec = PPMDeepsup(self.n_object, self.ppm_dim, tuple(self.pool_scales), name="decoder")
        logits, dacts = dec(feats, train)
        acts.update(dacts)
        acts.update({f"{k}_logits": v for k, v in logits.items()})
        out = {}
        for k, v in logits.items():
            if k == "scene":
                out[k] = jax.nn.softmax(v[:, 0, 0, :], axis=-1) if softmax else v[:, 0, 0, :]
                continue
            v = resize(v, tuple(seg_size))
            if softmax and k == "part":
                v = jnp.concatenate(
                    [jax.nn.softmax(v[..., a:b], -1) for a, b in self.part_slices], -1
                )
            elif softmax:
                v = jax.nn.softmax(v, axis=-1)
            out[k] = v
        return out, acts
