"""Convert an original Progressive GAN ``.pth`` (GAN Dissection's LSUN models) to gdjax.

    python -m converters.proggan --src churchoutdoor_lsun.pth --dst models/church

Reads the current naming (``layer{i}.conv.weight``, ``layer{i}.wscale.b``, ``output_RxR.*``),
the old naming (``features.{i}.*``, ``output.*``; stored ``wscale.scale`` entries are dropped
since the scale is derived from shapes), or either wrapped as ``{'state_dict': …}``. ``sizes``
are inferred from the weights as the original's ``sizes_from_state_dict`` does. The result is
an orbax checkpoint directory plus ``config.json`` (sizes, source file, its sha256); nothing is
written unless every tensor maps, so a bad file fails with the full list of problems.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping

import numpy as np

from converters.common import (
    ConversionError,
    ParamMismatchError,
    apply_table,
    conv_oihw_to_hwio,
    identity,
    load_state_dict,
    sha256,
)
from gdjax import proggan


def rename_old(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Old naming ``features.{i}.X``, ``output.X`` -> ``layer{i+1}.X``, ``output_RxR.X``."""
    n = sum(1 for k in sd if re.fullmatch(r"features\.\d+\.conv\.weight", k))
    res = 4 * 2 ** (n // 2 - 1) if n else 0
    out = {}
    for k, v in sd.items():
        if k.endswith("wscale.scale"):
            continue  # a constant of the old port; gdjax derives it from shapes
        m = re.fullmatch(r"features\.(\d+)\.(.+)", k)
        if m:
            out[f"layer{int(m.group(1)) + 1}.{m.group(2)}"] = v
        elif k.startswith("output."):
            out[f"output_{res}x{res}." + k[len("output.") :]] = v
        else:
            out[k] = v
    return out


def infer_sizes(sd: Mapping[str, np.ndarray]) -> list[int]:
    """``[z, depth@4x4, …]`` from conv weight shapes: layer1's input, every odd layer's output."""
    if "layer1.conv.weight" not in sd:
        raise ConversionError(
            "not a Progressive GAN state dict: no 'layer1.conv.weight' or 'features.0.conv.weight'"
            f" (first keys: {sorted(sd)[:5]})"
        )
    sizes, i = [int(sd["layer1.conv.weight"].shape[1])], 1
    while f"layer{i}.conv.weight" in sd:
        if i % 2 == 1:
            sizes.append(int(sd[f"layer{i}.conv.weight"].shape[0]))
        i += 1
    if len(sizes) < 2 or i - 1 != 2 * (len(sizes) - 1):
        raise ConversionError(f"the layer{{i}} blocks found (1…{i - 1}) are not an even count")
    return sizes


def convert_state_dict(sd: Mapping[str, np.ndarray], output_tanh: bool = False):
    """``(module, params)`` from a state dict in either naming; raises listing every problem."""
    if "features.0.conv.weight" in sd:
        sd = rename_old(sd)
    module = proggan.Generator(tuple(infer_sizes(sd)), output_tanh)
    table = {}
    for name in module.layers:
        table[f"{name}.conv.weight"] = (f"{name}/conv/kernel", conv_oihw_to_hwio)
        table[f"{name}.wscale.b"] = (f"{name}/wscale/b", identity)
    expected = proggan.abstract_params(module)
    params = apply_table(sd, table, expected, "Progressive GAN state dict")
    return module, params


def convert(src: str, dst: str, output_tanh: bool = False) -> str:
    """Convert ``src`` (.pth) into the gdjax checkpoint directory ``dst``; returns ``dst``."""
    module, params = convert_state_dict(load_state_dict(src), output_tanh)
    return proggan.save(
        dst, module, params, source=os.path.basename(src), source_sha256=sha256(src)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m converters.proggan", description=__doc__)
    parser.add_argument("--src", required=True, help="original .pth checkpoint")
    parser.add_argument("--dst", required=True, help="output directory (created)")
    parser.add_argument("--output_tanh", action="store_true", help="clamp output with hardtanh")
    args = parser.parse_args(argv)
    try:
        dst = convert(args.src, args.dst, args.output_tanh)
    except (ConversionError, ParamMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    config = proggan.checkpoint.read_config(dst, proggan.KIND)
    print(f"wrote {dst} (sizes {config['sizes']}, layers {proggan.layer_names(config['sizes'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
