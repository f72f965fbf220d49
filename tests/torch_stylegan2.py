"""Our PyTorch references of the StyleGAN2 generator, for the equivalence tests only.

Two implementations of the same network, written for these tests from the published
descriptions, each with the module and tensor names of a checkpoint format people have:

* :class:`Generator`: stylegan2-ada-pytorch's names (``mapping.fc0.weight``,
  ``synthesis.b8.conv0.affine.bias``, ``noise_const``/``noise_strength``, ``w_avg``,
  ``resample_filter`` buffers), weights modulated per image and run as one grouped conv
  ("fused"), transposed conv then blur for x2 up. ``modules`` of it are what
  ``tests/test_convert_stylegan2.py`` pickles under the official class names.
* :class:`RosinalityGenerator`: the rosinality/stylegan2-pytorch names (``style.1.weight``,
  ``convs.0.conv.modulation.weight``, ``noises.noise_0``, ``to_rgbs.0.bias`` …) and its own
  arithmetic order (the 1/sqrt(fan_in) scale inside the modulated weight, a ``[1, O, I, k, k]``
  weight, the bias in the activation).

Both use :func:`upfirdn2d`, a pure-torch upsample / pad / FIR filter / downsample. Images are
NCHW here; the tests transpose.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def make_filter(taps=(1, 3, 3, 1)):
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """``x [N, C, H, W]``: zero-insert by ``up``, pad ``(x0, x1, y0, y1)`` (negative crops),
    convolve with ``f * gain`` (flipped, as a true convolution), keep every ``down``-th."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(n, c, h * up, w * up)
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    k = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down]


SQRT2 = math.sqrt(2)


def lrelu(x, gain=SQRT2):
    return F.leaky_relu(x, 0.2) * gain


# --- stylegan2-ada-pytorch layout -----------------------------------------------------------


class FullyConnectedLayer(nn.Module):
    def __init__(self, fin, fout, lr_multiplier=1.0, bias_init=0.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([fout], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(fin)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x):
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activation else x


class MappingNetwork(nn.Module):
    def __init__(self, z_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01):
        super().__init__()
        self.num_ws, self.num_layers = num_ws, num_layers
        dims = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            layer = FullyConnectedLayer(dims[i], dims[i + 1], lr_multiplier, activation=True)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, psi=1.0, cutoff=None):
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1:
            cutoff = self.num_ws if cutoff is None else cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], psi)
        return x


def modulated_conv2d(x, weight, styles, up=False, demodulate=True, f=None):
    """Per-image weights ``weight * style`` (demodulated), one grouped conv over the batch."""
    n = x.shape[0]
    o, i, k, _ = weight.shape
    w = weight[None] * styles.reshape(n, 1, i, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        w = w * (w.square().sum([2, 3, 4]) + 1e-8).rsqrt().reshape(n, o, 1, 1, 1)
    x = x.reshape(1, n * i, *x.shape[2:])
    if not up:
        x = F.conv2d(x, w.reshape(n * o, i, k, k), padding=k // 2, groups=n)
        return x.reshape(n, o, *x.shape[2:])
    w = w.transpose(1, 2).reshape(n * i, o, k, k)
    x = F.conv_transpose2d(x, w, stride=2, groups=n)
    x = x.reshape(n, o, *x.shape[2:])
    p0, p1 = k // 2 + 2 - (k - 1), k // 2 + 1 - (k - 2)
    return upfirdn2d(x, f, pad=(p0, p1, p0, p1), gain=4.0)


class SynthesisLayer(nn.Module):
    def __init__(self, cin, cout, w_dim, resolution, up=False, conv_clamp=None):
        super().__init__()
        self.up, self.conv_clamp, self.resolution = up, conv_clamp, resolution
        self.affine = FullyConnectedLayer(w_dim, cin, bias_init=1.0)
        self.register_buffer("resample_filter", make_filter())
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, w):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, self.up, True, self.resample_filter)
        x = x + self.noise_const * self.noise_strength
        x = lrelu(x + self.bias.reshape(1, -1, 1, 1))
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp * math.sqrt(2), self.conv_clamp * math.sqrt(2))
        return x, styles


class ToRGBLayer(nn.Module):
    def __init__(self, cin, cout, w_dim, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, 1, 1))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.weight_gain = 1 / math.sqrt(cin)

    def forward(self, x, w):
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles * self.weight_gain, demodulate=False)
        x = x + self.bias.reshape(1, -1, 1, 1)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x, styles


class SynthesisBlock(nn.Module):
    def __init__(self, cin, cout, w_dim, resolution, conv_clamp=None):
        super().__init__()
        self.resolution, self.cin, self.architecture = resolution, cin, "skip"
        self.register_buffer("resample_filter", make_filter())
        if cin == 0:
            self.const = nn.Parameter(torch.randn(cout, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(cin, cout, w_dim, resolution, True, conv_clamp)
        self.conv1 = SynthesisLayer(cout, cout, w_dim, resolution, False, conv_clamp)
        self.torgb = ToRGBLayer(cout, 3, w_dim, conv_clamp)
        self.num_conv = 1 if cin == 0 else 2

    def forward(self, x, img, ws, acts):
        b = f"b{self.resolution}"
        if self.cin == 0:
            x = self.const[None].repeat(ws.shape[0], 1, 1, 1)
        convs = ["conv1"] if self.cin == 0 else ["conv0", "conv1"]
        for j, name in enumerate(convs):
            x, s = getattr(self, name)(x, ws[:, j])
            acts[f"{b}.{name}.style"], acts[f"{b}.{name}"] = s, x
        y, s = self.torgb(x, ws[:, len(convs)])
        acts[f"{b}.torgb.style"] = s
        if img is not None:
            img = upfirdn2d(img, self.resample_filter, up=2, pad=(2, 1, 2, 1), gain=4.0)
        return x, y if img is None else img + y


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim, resolution, channels, conv_clamp=None):
        super().__init__()
        self.resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        cin = 0
        for r, c in zip(self.resolutions, channels, strict=True):
            setattr(self, f"b{r}", SynthesisBlock(cin, c, w_dim, r, conv_clamp))
            cin = c
        self.num_ws = 2 * len(self.resolutions)

    def forward(self, ws, acts):
        x = img = None
        wi = 0
        for r in self.resolutions:
            block = getattr(self, f"b{r}")
            x, img = block(x, img, ws[:, wi : wi + block.num_conv + 1], acts)
            wi += block.num_conv
        return img


class Generator(nn.Module):
    """stylegan2-ada-pytorch names; ``forward(z) -> (image [N, 3, R, R], acts)``."""

    def __init__(self, z_dim, w_dim, resolution, channels, mapping_layers=8, conv_clamp=None):
        super().__init__()
        self.z_dim, self.w_dim, self.img_resolution = z_dim, w_dim, resolution
        self.c_dim, self.img_channels = 0, 3
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels, conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers)

    def forward(self, z, psi=1.0, cutoff=None):
        acts = {}
        img = self.synthesis(self.mapping(z, psi, cutoff), acts)
        return img, acts


# --- rosinality/stylegan2-pytorch layout ----------------------------------------------------


class EqualLinear(nn.Module):
    def __init__(self, fin, fout, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fout, fin) / lr_mul)
        self.bias = nn.Parameter(torch.full([fout], float(bias_init)))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(fin), lr_mul, activation

    def forward(self, x):
        if self.activation:
            return lrelu(F.linear(x, self.weight * self.scale) + self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    def __init__(self, cin, cout, k, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.scale = 1 / math.sqrt(cin * k * k)
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            self.blur = nn.Module()
            self.blur.register_buffer("kernel", make_filter() * 4)

    def forward(self, x, style):
        n, cin, h, w = x.shape
        s = self.modulation(style)
        weight = self.scale * self.weight * s.reshape(n, 1, cin, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.reshape(n, -1, 1, 1, 1)
        o, k = weight.shape[1], weight.shape[-1]
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * cin, o, k, k)
            out = F.conv_transpose2d(x.reshape(1, n * cin, h, w), weight, stride=2, groups=n)
            out = out.reshape(n, o, *out.shape[2:])
            return upfirdn2d(out, self.blur.kernel, pad=(1, 1, 1, 1)), s
        out = F.conv2d(x.reshape(1, n * cin, h, w), weight.reshape(n * o, cin, k, k),
                       padding=k // 2, groups=n)  # fmt: skip
        return out.reshape(n, o, h, w), s


class StyledConv(nn.Module):
    def __init__(self, cin, cout, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim, upsample=upsample)
        self.noise = nn.Module()
        self.noise.weight = nn.Parameter(torch.zeros(1))
        self.activate = nn.Module()
        self.activate.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, style, noise):
        out, s = self.conv(x, style)
        out = out + self.noise.weight * noise
        return lrelu(out + self.activate.bias.reshape(1, -1, 1, 1)), s


class ToRGB(nn.Module):
    def __init__(self, cin, style_dim, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = nn.Module()
            self.upsample.register_buffer("kernel", make_filter() * 4)
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out, s = self.conv(x, style)
        out = out + self.bias
        if skip is not None:
            out = out + upfirdn2d(skip, self.upsample.kernel, up=2, pad=(2, 1, 2, 1))
        return out, s


class RosinalityGenerator(nn.Module):
    """rosinality names; ``channels`` per resolution 4…R as for :class:`Generator`."""

    def __init__(self, size, style_dim, n_mlp, channels, lr_mlp=0.01):
        super().__init__()
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                           for _ in range(n_mlp)]
        )  # fmt: skip
        self.input = nn.Module()
        self.input.input = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        self.conv1 = StyledConv(channels[0], channels[0], style_dim)
        self.to_rgb1 = ToRGB(channels[0], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        cin = channels[0]
        for c in channels[1:]:
            self.convs.append(StyledConv(cin, c, style_dim, upsample=True))
            self.convs.append(StyledConv(c, c, style_dim))
            self.to_rgbs.append(ToRGB(c, style_dim))
            cin = c
        self.n_latent = self.log_size * 2 - 2

    def forward(self, z, truncation=1.0, truncation_latent=None):
        w = self.style(z)
        if truncation != 1:
            w = truncation_latent + truncation * (w - truncation_latent)
        latent = w.unsqueeze(1).repeat(1, self.n_latent, 1)
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        acts = {}
        out = self.input.input.repeat(z.shape[0], 1, 1, 1)
        out, acts["b4.conv1.style"] = self.conv1(out, latent[:, 0], noise[0])
        acts["b4.conv1"] = out
        skip, acts["b4.torgb.style"] = self.to_rgb1(out, latent[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            r = f"b{2 ** (k + 3)}"
            out, acts[f"{r}.conv0.style"] = self.convs[2 * k](out, latent[:, i], noise[i])
            acts[f"{r}.conv0"] = out
            out, acts[f"{r}.conv1.style"] = self.convs[2 * k + 1](
                out, latent[:, i + 1], noise[i + 1]
            )
            acts[f"{r}.conv1"] = out
            skip, acts[f"{r}.torgb.style"] = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, acts


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and noise buffer random (resampling filters kept): weights and constants
    ~ N(0, 1), affine biases ~ 1 + N(0, 0.2²), other biases, noise strengths, noise maps and
    ``w_avg`` ~ N(0, 0.5²), so each of them matters in a comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            r = torch.randn(t.shape, generator=g)
            if "resample_filter" in name or name.endswith("kernel"):
                continue
            if name.endswith(("affine.bias", "modulation.bias")):
                t.copy_(1 + 0.2 * r)
            elif "w_avg" in name or "noise" in name or name.endswith("bias"):
                t.copy_(0.5 * r)
            else:
                t.copy_(r)
    return module
