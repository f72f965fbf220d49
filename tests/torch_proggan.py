"""Our own PyTorch reference of the original Progressive GAN generator (reference §1.1–1.3).

Written from the documented facts, NCHW, with the original state-dict names, so the converter
can be tested against it. ``forward`` returns the image and every block's output by name.
"""

import math

import torch
from torch import nn


class PixelNorm(nn.Module):
    def forward(self, x):
        return x / torch.sqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class WScale(nn.Module):
    def __init__(self, channels, fan_in, gain):
        super().__init__()
        self.scale = gain / math.sqrt(fan_in)  # a constant, not in the state dict
        self.b = nn.Parameter(torch.randn(channels))

    def forward(self, x):
        return x * self.scale + self.b.view(1, -1, 1, 1)


class Block(nn.Module):
    def __init__(self, cin, cout, k, pad, upsample=False, output=False):
        super().__init__()
        self.norm = PixelNorm()
        self.upsample = upsample
        self.output = output
        self.conv = nn.Conv2d(cin, cout, k, padding=pad, bias=False)
        self.wscale = WScale(cout, cin, 1.0 if output else math.sqrt(2) / k)

    def forward(self, x):
        x = self.norm(x)
        if self.upsample:
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        x = self.wscale(self.conv(x))
        return x if self.output else nn.functional.leaky_relu(x, 0.2)


class Generator(nn.Sequential):
    def __init__(self, sizes):
        blocks = [
            ("layer1", Block(sizes[0], sizes[1], 4, 3)),
            ("layer2", Block(sizes[1], sizes[1], 3, 1)),
        ]
        for si, so in zip(sizes[1:-1], sizes[2:], strict=True):
            blocks.append((f"layer{len(blocks) + 1}", Block(si, so, 3, 1, upsample=True)))
            blocks.append((f"layer{len(blocks) + 1}", Block(so, so, 3, 1)))
        res = 4 * 2 ** (len(blocks) // 2 - 1)
        blocks.append((f"output_{res}x{res}", Block(sizes[-1], 3, 1, 0, output=True)))
        super().__init__()
        for name, block in blocks:
            self.add_module(name, block)

    def forward_all(self, z):
        """``(image, {name: output})`` for a latent ``[N, z]``."""
        x = z.view(z.shape[0], -1, 1, 1)
        acts = {}
        for name, block in self.named_children():
            x = block(x)
            acts[name] = x
        return x, acts

    def old_state_dict(self):
        """The same weights in the old ``features.{i}`` / ``output`` naming, with wscale.scale."""
        out = {}
        children = list(self.named_children())
        for i, (_, block) in enumerate(children):
            prefix = "output" if i == len(children) - 1 else f"features.{i}"
            out[f"{prefix}.conv.weight"] = block.conv.weight.detach().clone()
            out[f"{prefix}.wscale.b"] = block.wscale.b.detach().clone()
            out[f"{prefix}.wscale.scale"] = torch.tensor(block.wscale.scale)
        return out
