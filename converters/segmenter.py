"""Convert CSAIL segmenter checkpoints (UPP UPerNet or ADE20K PPM) to a gdjax segmenter.

    python -m converters.segmenter --encoder encoder_epoch_40.pth \\
        --decoder decoder_epoch_40.pth --labels labels.json --dst models/upp

The kind (``upp`` / ``ade20k``) is inferred from the decoder keys unless ``--kind`` is given;
stem and stage widths, depths, head sizes and the part-head size come from tensor shapes. The
table is generated from the Flax tree by the rename rule ``a/b/kernel <-> a.b.weight`` (BN:
``scale/bias`` in ``params``, ``mean/var`` <-> ``running_mean/running_var`` in ``batch_stats``),
and every missing, unexpected or misshaped key of *both* files is reported in one error
(the reference loads with ``strict=False``; we never do). ``num_batches_tracked`` is ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys

import jax

from converters.common import (
    ConversionError,
    ParamMismatchError,
    apply_table,
    conv_oihw_to_hwio,
    identity,
    load_state_dict,
    sha256,
)
from gdjax import segmenter
from gdjax.models.checkpoint import flatten
from gdjax.models.labels import upp_vocab_from_tables

_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}
ADE_MEAN, ADE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def infer_kind(dec) -> str:
    if "ppm_last_conv.0.weight" in dec:
        return "upp"
    if "conv_last.4.weight" in dec:
        return "ade20k"
    raise ConversionError(
        "cannot infer the segmenter kind: the decoder has neither ppm_last_conv.0.weight "
        "(upp UPerNet) nor conv_last.4.weight (ADE20K PPM); pass --kind"
    )


def _encoder_arch(enc) -> dict:
    need = ["conv1.weight"] + [f"layer{i}.0.conv1.weight" for i in range(1, 5)]
    missing = [k for k in need if k not in enc]
    if missing:
        raise ConversionError(f"encoder is not a ResNet state dict; missing {missing}")
    deep = "conv2.weight" in enc
    stem = [enc[f"conv{i}.weight"].shape[0] for i in ((1, 2, 3) if deep else (1,))]
    depths = []
    for i in range(1, 5):
        blocks = {int(m.group(1)) for k in enc if (m := re.match(rf"layer{i}\.(\d+)\.", k))}
        depths.append(max(blocks) + 1)
    planes = [enc[f"layer{i}.0.conv1.weight"].shape[0] for i in range(1, 5)]
    return {"stem": stem if deep else stem * 3, "planes": planes, "depths": depths,
            "deep_stem": deep}  # fmt: skip


def _count(sd, pattern) -> int:
    return len({m.group(1) for k in sd if (m := re.match(pattern, k))})


def _scales(n: int, pool_scales) -> list[int]:
    scales = list(pool_scales) if pool_scales else ([1, 2, 3, 6] if n == 4 else None)
    if scales is None or len(scales) != n:
        raise ConversionError(f"the decoder has {n} pyramid pooling branches: pass --pool-scales")
    return scales


def infer_config(enc, dec, labels=None, kind=None, pool_scales=None, seg_sizes=None) -> dict:
    """Segmenter config (``gdjax.models.segmenter.from_config``) from state-dict shapes, labels."""
    kind = kind or infer_kind(dec)
    model = _encoder_arch(enc)
    labels = labels or {}
    shape = lambda k: dec[k].shape if k in dec else (0,)  # noqa: E731
    if kind == "upp":
        n = _count(dec, r"ppm_conv\.(\d+)\.0\.weight")
        model.update(
            decoder="upernet",
            n_object=shape("object_head.1.weight")[0],
            n_part=shape("part_head.1.weight")[0],
            n_material=shape("material_head.1.weight")[0],
            n_scene=shape("scene_head.2.weight")[0],
            fpn_dim=shape("ppm_last_conv.0.weight")[0],
            ppm_dim=shape("ppm_conv.0.0.weight")[0],
            pool_scales=_scales(n, pool_scales),
        )
        objects = labels.get("object") or ["-"] + [
            f"object{i}" for i in range(1, model["n_object"])
        ]
        materials = labels.get("material") or (
            ["-"] + [f"material{i}" for i in range(1, model["n_material"])]
            if model["n_material"]
            else []
        )
        object_part = labels.get("object_part", {})
        if model["n_part"] and not object_part:
            raise ConversionError(
                f"the decoder has a part head ({model['n_part']} channels): pass --labels "
                "labels.json with 'object_part' to split it by owning object"
            )
        n_parts = sum(len(p) for p in object_part.values())
        checks = [("object", len(objects), model["n_object"]),
                  ("material", len(materials), model["n_material"]),
                  ("part", n_parts, model["n_part"])]  # fmt: skip
        bad = [f"{w}: labels {a} vs head {b}" for w, a, b in checks if a != b]
        if bad:
            raise ConversionError("labels.json does not match the decoder: " + "; ".join(bad))
        vocab = upp_vocab_from_tables(objects, materials, object_part, quad=True)
        prep = segmenter.Preprocess(seg_sizes=tuple(seg_sizes or (256,)))
    elif kind == "ade20k":
        n = _count(dec, r"ppm\.(\d+)\.1\.weight")
        n_class = shape("conv_last.4.weight")[0]
        model.update(
            decoder="ppm",
            dilated=True,
            n_object=n_class,
            ppm_dim=shape("ppm.0.1.weight")[0],
            pool_scales=_scales(n, pool_scales),
        )
        names = [e["name"] if isinstance(e, dict) else e for e in labels.get("labels", [])]
        cats = [e.get("category", "object") if isinstance(e, dict) else "object"
                for e in labels.get("labels", [])]  # fmt: skip
        if names and names[0] == "-":
            names, cats = names[1:], cats[1:]
        if not names:
            names, cats = [f"class{i}" for i in range(1, n_class + 1)], ["object"] * n_class
        if len(names) != n_class:
            raise ConversionError(f"labels.json has {len(names)} labels, the head {n_class}")
        vocab = segmenter.Vocab(tuple(["-", *names]), tuple(["object", *cats]), offset=1)
        fmt = labels.get("imageformat", {})
        prep = segmenter.Preprocess(
            scale=1.0,
            bgr=fmt.get("byteorder", "RGB") == "BGR",
            mean=tuple(fmt.get("mean", ADE_MEAN)),
            std=tuple(fmt.get("stdev", ADE_STD)),
            seg_sizes=tuple(seg_sizes or labels.get("segsizes", (256,))),
        )
    else:
        raise ConversionError(f"unknown kind {kind!r} (upp or ade20k)")
    return {
        "kind": segmenter.KIND,
        "source_kind": kind,
        "model": model,
        "vocab": dataclasses.asdict(vocab),
        "preprocess": dataclasses.asdict(prep),
    }


def _table(expected: dict, part: str) -> dict:
    """Source name -> (flax path, transform), generated from the expected variables."""
    table = {}
    for coll in ("params", "batch_stats"):
        for path in flatten(expected.get(coll, {}).get(part, {})):
            *mods, leaf = path.split("/")
            fn = conv_oihw_to_hwio if leaf == "kernel" else identity
            table[".".join([*mods, _LEAF[leaf]])] = (f"{coll}/{part}/{path}", fn)
    return table


def convert_state_dicts(enc, dec, config) -> dict:
    """Variables ``{'params', 'batch_stats'}`` from the two state dicts; raises one
    :class:`ParamMismatchError` listing every problem of both files."""
    module, _, prep = segmenter._parts(config)
    expected = segmenter._abstract(module, prep)
    out, problems = {}, []
    for part, sd in (("encoder", enc), ("decoder", dec)):
        exp = {c: {part: expected[c][part]} for c in expected if part in expected[c]}
        try:
            got = apply_table(sd, _table(expected, part), exp, part,
                              ignore=lambda k: k.endswith("num_batches_tracked"))  # fmt: skip
        except ParamMismatchError as e:
            problems += [f"{part} {line.strip()}" for line in str(e).splitlines()[1:]]
            continue
        for c, tree in got.items():
            out.setdefault(c, {}).update(tree)
    if problems:
        raise ParamMismatchError(
            f"segmenter checkpoint: {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        )
    return out


def convert(encoder, decoder, dst, labels=None, kind=None, pool_scales=None, seg_sizes=None):
    """Convert ``encoder``/``decoder`` ``.pth`` (+ optional ``labels.json``) into ``dst``."""
    enc, dec = load_state_dict(encoder), load_state_dict(decoder)
    table = {}
    if labels:
        with open(labels) as f:
            table = json.load(f)
    config = infer_config(enc, dec, table, kind, pool_scales, seg_sizes)
    variables = convert_state_dicts(enc, dec, config)
    config["source"] = {"encoder": sha256(encoder), "decoder": sha256(decoder)}
    seg = segmenter.from_config(config, jax.tree.map(jax.numpy.asarray, variables))
    return segmenter.save(dst, seg, source=config["source"], source_kind=config["source_kind"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.segmenter", description=__doc__)
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--labels", help="labels.json (required for upp's part head)")
    ap.add_argument("--dst", required=True)
    ap.add_argument("--kind", choices=["upp", "ade20k"])
    ap.add_argument("--pool-scales", type=int, nargs="+")
    ap.add_argument("--seg-sizes", type=int, nargs="+")
    a = ap.parse_args(argv)
    try:
        out = convert(a.encoder, a.decoder, a.dst, a.labels, a.kind, a.pool_scales, a.seg_sizes)
    except (ConversionError, ParamMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
