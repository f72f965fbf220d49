"""The segmenters' ResNet encoder (CSAIL "deep stem" ResNet, optionally dilated), NHWC.

Submodule names follow the PyTorch state-dict paths (``layer3.2.conv2.weight`` ->
``layer3/2/conv2/kernel``; BN ``weight/bias`` -> ``scale/bias``, running statistics in the
``batch_stats`` collection), so conversion is a rename plus a layout transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

__all__ = ["Bottleneck", "ConvBN", "ResNet", "batch_norm", "conv"]


def conv(features, kernel, stride=1, dilation=1, bias=False, name=None) -> nn.Conv:
    """torch ``Conv2d`` with padding ``dilation * (kernel // 2)`` (ResNet/UPerNet style)."""
    pad = dilation * (kernel // 2)
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=(dilation, dilation),
        use_bias=bias,
        name=name,
    )


def batch_norm(train: bool, name=None) -> nn.BatchNorm:
    """torch ``BatchNorm2d`` (eps 1e-5, momentum 0.1 == flax momentum 0.9)."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class ConvBN(nn.Module):
    """torch ``Sequential(Conv2d(bias=False), BatchNorm2d[, ReLU])``: children ``0`` and ``1``."""

    features: int
    kernel: int = 3
    stride: int = 1
    dilation: int = 1
    relu: bool = True
    first: int = 0  # index of the conv in the Sequential (1 after a pooling layer)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        i = self.first
        x = conv(self.features, self.kernel, self.stride, self.dilation, name=str(i))(x)
        x = batch_norm(train, name=str(i + 1))(x)
        return nn.relu(x) if self.relu else x


class Bottleneck(nn.Module):
    """ResNet v1 bottleneck with the stride on the 3x3 conv (as the CSAIL/torchvision code)."""

    planes: int
    stride: int = 1
    dilation: int = 1  # of conv2; the first block of a dilated stage uses half (see ResNet)
    downsample: bool = False
    expansion: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        out = nn.relu(batch_norm(train, "bn1")(conv(self.planes, 1, name="conv1")(x)))
        out = conv(self.planes, 3, self.stride, self.dilation, name="conv2")(out)
        out = nn.relu(batch_norm(train, "bn2")(out))
        out = batch_norm(train, "bn3")(conv(self.planes * self.expansion, 1, name="conv3")(out))
        if self.downsample:
            x = ConvBN(self.planes * self.expansion, 1, self.stride, relu=False, name="downsample")(
                x, train
            )
        return nn.relu(out + x)


class _Stage(nn.Module):
    planes: int
    depth: int
    stride: int
    dilation: int
    in_features: int
    expansion: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for j in range(self.depth):
            if self.dilation > 1:
                # Reference `_nostride_dilate`: strides removed; the first block's 3x3 conv
                # (formerly strided) gets half the dilation, the others the full one.
                stride, dil = 1, (self.dilation // 2 if j == 0 else self.dilation)
            else:
                stride, dil = (self.stride if j == 0 else 1), 1
            down = j == 0 and (self.stride != 1 or self.in_features != self.planes * self.expansion)
            x = Bottleneck(self.planes, stride, dil, down, self.expansion, name=str(j))(x, train)
        return x


class ResNet(nn.Module):
    """ResNet encoder returning ``(C5, acts)`` with ``acts = {stem, layer1..layer4}``.

    Input ``[N, H, W, 3]`` already normalised (see ``segmenter.preprocess``). With the defaults
    it is the UPerNet "resnet50" encoder: deep stem (3x3 convs 3->64 s2, 64->64, 64->128, 3x3
    max-pool s2), bottleneck stages [3, 4, 6, 3] with 64/128/256/512 planes (outputs 256..2048
    channels at strides 4/8/16/32). ``dilated=True`` gives "resnet50_dilated8": stages 3 and 4
    keep stride 8 with dilation 2 and 4. ``deep_stem=False`` uses the torchvision 7x7 stem.
    """

    stem: Sequence[int] = (64, 64, 128)
    planes: Sequence[int] = (64, 128, 256, 512)
    depths: Sequence[int] = (3, 4, 6, 3)
    dilated: bool = False
    deep_stem: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        acts = {}
        if self.deep_stem:
            for i, (f, s) in enumerate(zip(self.stem, (2, 1, 1), strict=True), 1):
                x = nn.relu(batch_norm(train, f"bn{i}")(conv(f, 3, s, name=f"conv{i}")(x)))
            width = self.stem[-1]
        else:
            x = nn.Conv(
                self.stem[0], (7, 7), (2, 2), ((3, 3), (3, 3)), use_bias=False, name="conv1"
            )(x)
            x = nn.relu(batch_norm(train, "bn1")(x))
            width = self.stem[0]
        x = nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
        acts["stem"] = x
        for i, (p, d) in enumerate(zip(self.planes, self.depths, strict=True)):
            stride = 1 if i == 0 else 2
            dilation = {2: 2, 3: 4}.get(i, 1) if self.dilated else 1
            x = _Stage(p, d, stride, dilation, width, name=f"layer{i + 1}")(x, train)
            width = p * 4
            acts[f"layer{i + 1}"] = x
        return x, acts
