"""Convert an original Progressive GAN ``.pth`` (GAN Dissection's LSUN models) to gdjax.

    python -m converters.proggan --src churchoutdoor_lsun.pth --dst models/church

Reads the current naming (``layer{i}.conv.weight``, ``layer{i}.wscale.b``, ``output_RxR.*``),
the old naming (``features.{i}.*``, ``output.*``; stored ``wscale.scale`` entries are dropped
since the scale is derived from shapes), or either wrapped as ``{'state_dict': …}``. The
number of blocks comes from the ``output_RxR`` name (else the highest ``layer{i}``) and every
entry of ``sizes`` from a vote over all tensors that show it, so a deleted block or one
misshaped tensor is reported by name instead of changing the inferred architecture. The
result is an orbax checkpoint directory plus ``config.json`` (sizes, source file, its sha256);
nothing is written unless every tensor maps, and an existing ``--dst`` is replaced only with
``--overwrite`` and only once the new one is complete.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

import numpy as np

from converters.common import (
    IDENTITY,
    OIHW_TO_HWIO,
    ArgumentParser,
    ConversionError,
    MismatchError,
    check_dst,
    dims,
    fail,
    load_state_dict,
    match_table,
    publish,
    sha256,
    vote,
)
from gdjax import proggan

_BLOCK = re.compile(r"layer(\d+)\.(conv\.weight|wscale\.b)")
_OUTPUT = re.compile(r"output_(\d+)x\1\.(conv\.weight|wscale\.b)")


def _is_old(sd: Mapping[str, np.ndarray]) -> bool:
    return any(re.match(r"features\.\d+\.", k) or k.startswith("output.") for k in sd)


def rename_old(sd: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Old naming ``features.{i}.X``, ``output.X`` -> ``layer{i+1}.X``, ``output_RxR.X``.

    ``R`` follows from the highest feature index (rounded up to a whole pair of blocks), so a
    missing block in the middle does not rename the output block.
    """
    top = max((int(m.group(1)) for k in sd if (m := re.match(r"features\.(\d+)\.", k))), default=-1)
    n = top + 1 + (top + 1) % 2
    res = 4 * 2 ** (n // 2 - 1) if n else 0
    out = {}
    for k, v in sd.items():
        if k.endswith("wscale.scale"):
            continue  # a constant of the old port; gdjax derives it from shapes
        m = re.fullmatch(r"features\.(\d+)\.(.+)", k)
        if m:
            out[f"layer{int(m.group(1)) + 1}.{m.group(2)}"] = v
        elif k.startswith("output.") and res:
            out[f"output_{res}x{res}." + k[len("output.") :]] = v
        else:
            out[k] = v
    return out


def _old_name(key: str) -> str:
    """Inverse of :func:`rename_old` for messages: ``layer{i}.X`` -> ``features.{i-1}.X``."""
    if m := re.fullmatch(r"layer(\d+)\.(.+)", key):
        return f"features.{int(m.group(1)) - 1}.{m.group(2)}"
    return re.sub(r"^output_(\d+)x\1\.", "output.", key)


def _n_blocks(sd: Mapping[str, np.ndarray]) -> int | None:
    """Number of ``layer{i}`` blocks: from the output block's resolution if there is one (it
    names the architecture), else the highest ``layer{i}`` rounded up to a pair."""
    res = [int(m.group(1)) for k in sd if (m := _OUTPUT.fullmatch(k))]
    res = [r for r in res if r >= 4 and r % 4 == 0 and (r // 4) & (r // 4 - 1) == 0]
    if res:
        return 2 * (max(res) // 4).bit_length()
    top = max((int(m.group(1)) for k in sd if (m := _BLOCK.fullmatch(k))), default=0)
    return max(2, top + top % 2) if top else None


def infer_sizes(sd: Mapping[str, np.ndarray], source: str = "state dict") -> list[int]:
    """``[z, depth@4x4, …]`` from the tensor shapes, each entry by a vote (:func:`vote`).

    ``sizes[k]`` (k >= 1) is the output width of ``layer{2k-1}`` and ``layer{2k}``, the input
    width of ``layer{2k}`` and of the next block; ``z`` is ``layer1``'s input width. A width
    that no tensor shows (all of them deleted) is guessed from a neighbour: those tensors are
    then all reported missing, with the guess in their expected shapes.
    """
    n = _n_blocks(sd)
    if n is None:
        raise ConversionError(
            f"{source}: not a Progressive GAN state dict (no layer{{i}}.*, features.{{i}}.* or "
            f"output_RxR.* tensors; first keys: {sorted(sd)[:5]})"
        )
    res = 4 * 2 ** (n // 2 - 1)
    w = lambda i, axis: dims(sd, rf"layer{i}\.conv\.weight", axis)  # noqa: E731
    sizes = [vote(w(1, 1))]
    for k in range(1, n // 2 + 1):
        nxt = w(2 * k + 1, 1) if 2 * k < n else dims(sd, rf"output_{res}x{res}\.conv\.weight", 1)
        b = lambda i: dims(sd, rf"layer{i}\.wscale\.b", 0)  # noqa: E731
        sizes.append(vote(w(2 * k - 1, 0), b(2 * k - 1), w(2 * k, 0), w(2 * k, 1), b(2 * k), nxt))
    # The original's z equals depth@4x4; an unknown depth repeats the one before it.
    sizes[0] = sizes[0] or next((s for s in sizes[1:] if s), 512)
    for i in range(1, len(sizes)):
        sizes[i] = sizes[i] or sizes[i - 1]
    return sizes


def convert_state_dict(
    sd: Mapping[str, np.ndarray], output_tanh: bool = False, source="state dict"
):
    """``(module, params)`` from a state dict in either naming.

    Raises :class:`MismatchError` listing every missing, misshaped and unexpected tensor
    against the inferred ``sizes`` (``source`` names the file in its message).
    """
    old = _is_old(sd)
    if old:
        sd = rename_old(sd)
    sizes = infer_sizes(sd, source)
    module = proggan.Generator(tuple(sizes), output_tanh)
    table = {}
    for name in module.layers:
        table[f"{name}.conv.weight"] = (f"{name}/conv/kernel", OIHW_TO_HWIO)
        table[f"{name}.wscale.b"] = (f"{name}/wscale/b", IDENTITY)
    expected = proggan.abstract_params(module)
    params, problems = match_table(sd, table, expected, show=_old_name if old else str)
    if problems:
        raise MismatchError(f"{source} (Progressive GAN, sizes {sizes})", problems)
    return module, params


def convert(src: str, dst: str, output_tanh: bool = False, overwrite: bool = False) -> str:
    """Convert ``src`` (.pth) into the gdjax checkpoint directory ``dst``; returns its path.

    ``dst`` is checked first (:func:`converters.common.check_dst`) and written atomically.
    """
    check_dst(dst, overwrite)
    module, params = convert_state_dict(load_state_dict(src), output_tanh, source=src)
    extra = {"source": os.path.basename(src), "source_sha256": sha256(src)}
    return publish(dst, lambda tmp: proggan.save(tmp, module, params, **extra))


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m converters.proggan", description=__doc__)
    parser.add_argument("--src", required=True, help="original .pth checkpoint")
    parser.add_argument("--dst", required=True, help="output directory (must not exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --dst")
    parser.add_argument("--output_tanh", action="store_true", help="clamp output with hardtanh")
    args = parser.parse_args(argv)
    try:
        dst = convert(args.src, args.dst, args.output_tanh, args.overwrite)
    except (ConversionError, OSError) as e:
        return fail(e)
    config = proggan.checkpoint.read_config(dst, proggan.KIND)
    print(f"wrote {dst} (sizes {config['sizes']}, layers {proggan.layer_names(config['sizes'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
