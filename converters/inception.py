"""Convert pytorch-fid's FID Inception weights (``pt_inception-2015-12-05-*.pth``) to gdjax.

    python -m converters.inception --src pt_inception-2015-12-05-6726825d.pth --dst models/inception

The file is the 2015 TensorFlow Inception graph ported to torchvision's ``Inception3`` naming
(``Mixed_6b.branch7x7_2.conv.weight``, ``….bn.running_mean``, ``fc.weight``; 1008 classes, no
auxiliary head). The table is generated from :class:`gdjax.models.inception.InceptionV3`'s
expected variables: each Flax path ``coll/A/B/leaf`` comes from the source name ``A.B.<leaf>``
(``kernel`` -> ``weight`` OIHW->HWIO, ``scale`` -> ``weight``, ``mean``/``var`` ->
``running_mean``/``running_var``, the ``fc`` kernel transposed). The number of classes is read
from ``fc.weight``. Every missing, unexpected and misshaped tensor is reported in one error;
nothing is written unless everything maps; an existing ``--dst`` is replaced only with
``--overwrite``. No download: the weights are the file you pass.
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
    Layout,
    MismatchError,
    check_dst,
    fail,
    load_state_dict,
    match_table,
    publish,
    sha256,
    width,
)
from gdjax.models import inception
from gdjax.models.checkpoint import flatten

# torch Linear weight [O, I] <-> Flax Dense kernel [I, O].
TRANSPOSE = Layout(lambda w: np.transpose(w), lambda s: tuple(reversed(s)))
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias",
         "mean": "running_mean", "var": "running_var"}  # fmt: skip


def table(expected: Mapping) -> dict:
    """Source name -> (Flax path, layout) for every variable of ``expected``."""
    out = {}
    for path in flatten(expected):
        coll, *mods, leaf = path.split("/")
        if leaf == "kernel":
            layout = TRANSPOSE if mods == ["fc"] else OIHW_TO_HWIO
        else:
            layout = IDENTITY
        out[".".join([*mods, _LEAF[leaf]])] = (path, layout)
    # Problems are listed in table order: a module's tensors together, Mixed_5b before Mixed_6a.
    natural = lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]  # noqa: E731
    return dict(sorted(out.items(), key=lambda kv: natural(kv[0])))


def convert_state_dict(sd: Mapping[str, np.ndarray], source: str = "state dict"):
    """``(module, variables)``; :class:`MismatchError` lists every bad tensor."""
    if not any(re.match(r"(Conv2d_\w+|Mixed_\w+)\.", k) for k in sd):
        raise ConversionError(
            f"{source}: not an Inception-v3 state dict (no Conv2d_*/Mixed_* tensors; first "
            f"keys: {sorted(sd)[:5]})"
        )
    classes = width(sd, (r"fc\.weight", 0), (r"fc\.bias", 0), default=1008)
    module = inception.InceptionV3(classes)
    expected = inception.abstract_variables(classes)
    variables, problems = match_table(
        sd, table(expected), expected, ignore=lambda k: k.endswith("num_batches_tracked")
    )
    if problems:
        raise MismatchError(f"{source} (FID Inception-v3, {classes} classes)", problems)
    return module, variables


def convert(src: str, dst: str, overwrite: bool = False) -> str:
    """Convert ``src`` (.pth) into the gdjax checkpoint directory ``dst``; returns its path."""
    check_dst(dst, overwrite)
    module, variables = convert_state_dict(load_state_dict(src), source=src)
    extra = {"source": os.path.basename(src), "source_sha256": sha256(src)}
    return publish(dst, lambda tmp: inception.save(tmp, module, variables, **extra))


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m converters.inception", description=__doc__)
    parser.add_argument("--src", required=True, help="pytorch-fid pt_inception-2015-12-05-*.pth")
    parser.add_argument("--dst", required=True, help="output directory (must not exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --dst")
    args = parser.parse_args(argv)
    try:
        dst = convert(args.src, args.dst, args.overwrite)
    except (ConversionError, OSError) as e:
        return fail(e)
    print(f"wrote {dst} (FID Inception-v3, pool3 features of 2048)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
