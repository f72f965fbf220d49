"""Our own PyTorch reference of the CSAIL segmenters, written from docs/reference.md §2 and §13.

State-dict names match the original checkpoints. Precise RoI pooling is computed here the way
the CUDA kernel does it — a closed-form integral of the bilinear patch of every cell a bin
overlaps — which is independent of gdjax's matrix formulation. NCHW, eval mode only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cbr(i, o, k=3, stride=1):
    return nn.Sequential(
        nn.Conv2d(i, o, k, stride, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU()
    )


class Bottleneck(nn.Module):
    def __init__(self, inp, planes, stride=1, down=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        if down:
            self.downsample = nn.Sequential(
                nn.Conv2d(inp, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
        else:
            self.downsample = None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = x if self.downsample is None else self.downsample(x)
        return F.relu(out + res)


def _dilate(stage, d):
    """Remove the stride; former strided 3x3 gets dilation d//2, the other 3x3 convs d."""
    for m in stage.modules():
        if isinstance(m, nn.Conv2d):
            if m.stride == (2, 2):
                m.stride = (1, 1)
                if m.kernel_size == (3, 3):
                    m.dilation, m.padding = (d // 2,) * 2, (d // 2,) * 2
            elif m.kernel_size == (3, 3):
                m.dilation, m.padding = (d,) * 2, (d,) * 2


class ResNet(nn.Module):
    """Deep-stem ResNet; ``dilated`` = resnet50_dilated8."""

    def __init__(self, stem=(64, 64, 128), planes=(64, 128, 256, 512), depths=(3, 4, 6, 3),
                 dilated=False):  # fmt: skip
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem[0], 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem[0])
        self.conv2 = nn.Conv2d(stem[0], stem[1], 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem[1])
        self.conv3 = nn.Conv2d(stem[1], stem[2], 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(stem[2])
        inp = stem[2]
        for i, (p, d) in enumerate(zip(planes, depths, strict=True)):
            s = 1 if i == 0 else 2
            blocks = [Bottleneck(inp, p, s, down=(s != 1 or inp != 4 * p))]
            blocks += [Bottleneck(4 * p, p) for _ in range(d - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inp = 4 * p
        if dilated:
            _dilate(self.layer3, 2)
            _dilate(self.layer4, 4)

    def forward(self, x):
        acts = {}
        for i in (1, 2, 3):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        acts["stem"] = x
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            acts[f"layer{i}"] = x
        return acts


def _cell_integral(a, b):
    """Integrals of (1-u) and u over [a, b] within a unit cell."""
    return (b - a) - (b * b - a * a) / 2, (b * b - a * a) / 2


def prroi_pool_whole(x, pooled):
    """PrRoIPool2D(pooled, pooled, 1.0) with the roi [0, 0, W, H] for every image, per cell."""
    n, c, h, w = x.shape
    xp = F.pad(x, (0, 1, 0, 1))  # samples outside the map read as 0
    out = x.new_zeros(n, c, pooled, pooled)
    bh = torch.tensor(float(h), dtype=torch.float32) / pooled
    bw = torch.tensor(float(w), dtype=torch.float32) / pooled
    for p in range(pooled):
        y0, y1 = float(bh * p), float(bh * p + bh)
        for q in range(pooled):
            x0, x1 = float(bw * q), float(bw * q + bw)
            acc = x.new_zeros(n, c, dtype=torch.float64)
            for ch in range(int(y0), min(int(y1) + 1, h)):
                a, b = max(y0, ch) - ch, min(y1, ch + 1) - ch
                if b <= a:
                    continue
                iy0, iy1 = _cell_integral(a, b)
                for cw in range(int(x0), min(int(x1) + 1, w)):
                    u, v = max(x0, cw) - cw, min(x1, cw + 1) - cw
                    if v <= u:
                        continue
                    ix0, ix1 = _cell_integral(u, v)
                    patch = xp[:, :, ch : ch + 2, cw : cw + 2].double()
                    acc += (
                        patch[:, :, 0, 0] * iy0 * ix0
                        + patch[:, :, 1, 0] * iy1 * ix0
                        + patch[:, :, 0, 1] * iy0 * ix1
                        + patch[:, :, 1, 1] * iy1 * ix1
                    )
            out[:, :, p, q] = (acc / (float(bh) * float(bw))).float()
    return out


def _up(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UPerNet(nn.Module):
    def __init__(self, n_object, n_part, n_material, n_scene, part_slices, fc_dim=2048,
                 fpn_inplanes=(256, 512, 1024, 2048), fpn_dim=512, ppm_dim=512,
                 pool_scales=(1, 2, 3, 6)):  # fmt: skip
        super().__init__()
        self.pool_scales, self.part_slices = pool_scales, part_slices
        self.ppm_conv = nn.ModuleList([cbr(fc_dim, ppm_dim, 1) for _ in pool_scales])
        self.ppm_last_conv = cbr(fc_dim + len(pool_scales) * ppm_dim, fpn_dim)
        self.fpn_in = nn.ModuleList([cbr(c, fpn_dim, 1) for c in fpn_inplanes[:-1]])
        self.fpn_out = nn.ModuleList(
            [nn.Sequential(cbr(fpn_dim, fpn_dim)) for _ in fpn_inplanes[:-1]]
        )
        self.conv_fusion = cbr(len(fpn_inplanes) * fpn_dim, fpn_dim)
        self.scene_head = nn.Sequential(
            cbr(fpn_dim, fpn_dim), nn.AdaptiveAvgPool2d(1), nn.Conv2d(fpn_dim, n_scene, 1)
        )
        self.object_head = nn.Sequential(cbr(fpn_dim, fpn_dim), nn.Conv2d(fpn_dim, n_object, 1))
        self.part_head = nn.Sequential(cbr(fpn_dim, fpn_dim), nn.Conv2d(fpn_dim, n_part, 1))
        self.material_head = nn.Sequential(cbr(fpn_dim, fpn_dim), nn.Conv2d(fpn_dim, n_material, 1))

    def forward(self, feats, seg_size):
        c5 = feats[-1]
        size = c5.shape[2:]
        ppm = [c5] + [
            conv(_up(prroi_pool_whole(c5, s), size))
            for s, conv in zip(self.pool_scales, self.ppm_conv, strict=True)
        ]
        f = self.ppm_last_conv(torch.cat(ppm, 1))
        acts = {"ppm": f, "scene_logits": self.scene_head(f)}
        fpn = [f]
        for i in reversed(range(len(feats) - 1)):
            lat = self.fpn_in[i](feats[i])
            f = lat + _up(f, lat.shape[2:])
            fpn.append(self.fpn_out[i](f))
        fpn.reverse()
        for i in range(3):
            acts[f"fpn{i}"] = fpn[i]
        acts["material_logits"] = self.material_head(fpn[0])
        fused = torch.cat([fpn[0]] + [_up(p, fpn[0].shape[2:]) for p in fpn[1:]], 1)
        x = self.conv_fusion(fused)
        acts["fusion"] = x
        acts["object_logits"] = self.object_head(x)
        acts["part_logits"] = self.part_head(x)
        out = {
            "scene": F.softmax(acts["scene_logits"][:, :, 0, 0], 1),
            "object": F.softmax(_up(acts["object_logits"], seg_size), 1),
            "material": F.softmax(_up(acts["material_logits"], seg_size), 1),
        }
        part = _up(acts["part_logits"], seg_size)
        out["part"] = torch.cat([F.softmax(part[:, a:b], 1) for a, b in self.part_slices], 1)
        return out, acts


class PPMDeepsup(nn.Module):
    def __init__(self, n_class=150, fc_dim=2048, ppm_dim=512, pool_scales=(1, 2, 3, 6)):
        super().__init__()
        self.ppm = nn.ModuleList(
            [
                nn.Sequential(
                    nn.AdaptiveAvgPool2d(s),
                    nn.Conv2d(fc_dim, ppm_dim, 1, bias=False),
                    nn.BatchNorm2d(ppm_dim),
                    nn.ReLU(),
                )
                for s in pool_scales
            ]
        )
        self.cbr_deepsup = cbr(fc_dim // 2, fc_dim // 4)
        self.conv_last = nn.Sequential(
            nn.Conv2d(fc_dim + len(pool_scales) * ppm_dim, ppm_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(ppm_dim),
            nn.ReLU(),
            nn.Dropout2d(0.1),
            nn.Conv2d(ppm_dim, n_class, 1),
        )
        self.conv_last_deepsup = nn.Conv2d(fc_dim // 4, n_class, 1)

    def forward(self, feats, seg_size):
        c5 = feats[-1]
        ppm = torch.cat([c5] + [_up(m(c5), c5.shape[2:]) for m in self.ppm], 1)
        x = self.conv_last(ppm)
        acts = {"ppm": ppm, "object_logits": x}
        acts["deepsup"] = self.conv_last_deepsup(self.cbr_deepsup(feats[-2]))
        # Legacy SemanticSegmenter: logits resized to segSize, softmax per category (one here).
        return {"object": F.softmax(_up(x, seg_size), 1)}, acts


def randomize_bn(module, generator):
    """Random BN affine parameters and running statistics (all of them, in place)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
