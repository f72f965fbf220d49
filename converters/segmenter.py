"""Convert CSAIL segmenter checkpoints (UPP UPerNet or ADE20K PPM) to a gdjax segmenter.

    python -m converters.segmenter --encoder encoder_epoch_40.pth \\
        --decoder decoder_epoch_40.pth --labels labels.json --dst models/upp

The kind (``upp`` / ``ade20k``) is inferred from the decoder keys unless ``--kind`` is given.
Stem and stage widths, head sizes and the part-head size come from a vote over every tensor
that shows them (``labels.json`` counts as one voice for a head's size), depths from the
highest block index, so a deleted block or a misshaped tensor is reported by name instead of
changing the inferred architecture. The table is generated from the Flax tree by the rename
rule ``a/b/kernel <-> a.b.weight`` (BN: ``scale/bias`` in ``params``, ``mean/var`` <->
``running_mean/running_var`` in ``batch_stats``), and every missing, unexpected or misshaped
key of *both* files, and every label count that does not fit its head, is reported in one
error (the reference loads with ``strict=False``; we never do). ``num_batches_tracked`` is
ignored. An existing ``--dst`` is replaced only with ``--overwrite``, once the new one is
complete.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import NamedTuple

import jax

from converters.common import (
    IDENTITY,
    OIHW_TO_HWIO,
    ArgumentParser,
    ConversionError,
    MismatchError,
    check_dst,
    dims,
    fail,
    indices,
    load_state_dict,
    match_table,
    publish,
    read_json,
    sha256,
    vote,
    width,
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
_BN = r"(weight|bias|running_mean|running_var)"
ADE_MEAN, ADE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_UPP = ("ppm_conv.", "ppm_last_conv.", "fpn_in.", "fpn_out.", "conv_fusion.", "object_head.")
_ADE = ("ppm.", "conv_last.", "cbr_deepsup.", "conv_last_deepsup.")


def infer_kind(dec) -> str:
    """``'upp'`` or ``'ade20k'``: whichever decoder's module names hold more of the keys."""
    upp = sum(k.startswith(_UPP) for k in dec)
    ade = sum(k.startswith(_ADE) for k in dec)
    if upp or ade:
        return "upp" if upp >= ade else "ade20k"
    raise ConversionError(
        "cannot infer the segmenter kind: the decoder has no ppm_conv/fpn_in/... keys "
        f"(upp UPerNet) nor ppm/conv_last/... keys (ADE20K PPM) (first keys: {sorted(dec)[:5]})"
    )


def _is_resnet(sd) -> bool:
    return any(re.match(r"(conv1|bn1|layer[1-4]\.\d+)\.", k) for k in sd)


def _encoder_arch(enc, dec, kind) -> tuple[dict, dict[str, str]]:
    """ResNet fields of the model config, and ``absent``: one line per wholly missing stage."""
    stages = {i: indices(enc, f"layer{i}") for i in range(1, 5)}
    deep = any(re.match(r"(conv|bn)[23]\.", k) for k in enc)
    deep = deep or dims(enc, r"conv1\.weight", 2) == [3]
    # Decoder convs that read stage i's output (4 * planes wide): used if the encoder has none.
    if kind == "upp":
        reads = {i: rf"fpn_in\.{i - 1}\.0" for i in (1, 2, 3)} | {4: r"ppm_conv\.\d+\.0"}
    else:
        reads = {3: r"cbr_deepsup\.0", 4: r"ppm\.\d+\.1"}
    planes, depths, absent = [], [], {}
    for i in range(1, 5):
        b = rf"layer{i}\.\d+\."
        own = width(
            enc,
            (b + r"conv[12]\.weight", 0),
            (b + r"conv[23]\.weight", 1),
            (b + rf"bn[12]\.{_BN}", 0),
            (b + rf"(conv3\.weight|bn3\.{_BN}|downsample\.0\.weight)", 0, 4),
            (b + rf"downsample\.1\.{_BN}", 0, 4),
            (rf"layer{i}\.[1-9]\d*\.conv1\.weight", 1, 4),
            (rf"layer{i + 1}\.0\.(conv1|downsample\.0)\.weight", 1, 4),  # reads stage i
        )
        read = dims(dec, rf"{reads[i]}\.weight", 1, 4) if i in reads else []
        planes.append(own or vote(read))
        depths.append(max(stages[i], default=0) + 1)
        if not stages[i]:
            absent[f"layer{i}."] = f"missing: layer{i}.* (the whole stage; its depth is unknown)"
    for i, p in enumerate(planes):  # a width nothing shows: the ResNet doubling rule
        planes[i] = p or (2 * planes[i - 1] if i else next((q // 2 for q in planes if q), 64))
    into1 = (r"layer1\.0\.(conv1|downsample\.0)\.weight", 1)
    if deep:
        stem = [
            width(enc, (r"conv1\.weight", 0), (rf"bn1\.{_BN}", 0), (r"conv2\.weight", 1)),
            width(enc, (r"conv2\.weight", 0), (rf"bn2\.{_BN}", 0), (r"conv3\.weight", 1)),
            width(enc, (r"conv3\.weight", 0), (rf"bn3\.{_BN}", 0), into1),
        ]
    else:
        stem = [width(enc, (r"conv1\.weight", 0), (rf"bn1\.{_BN}", 0), into1)] * 3
    stem = [s or planes[0] for s in stem]
    return {"stem": stem, "planes": planes, "depths": depths, "deep_stem": deep}, absent


def _scales(dec, prefix, concat, c5, ppm_dim, pool_scales) -> list[int]:
    """Pool scales for the decoder's pyramid branches ``{prefix}.{i}``.

    Their number is the larger of the highest branch index + 1 and what the input width of
    ``concat`` (``c5 + n * ppm_dim``, C5 the encoder's output width) says, so deleting the
    last branch cannot hide it.
    """
    n = max(indices(dec, prefix), default=-1) + 1
    for c in dims(dec, rf"{concat}\.weight", 1):
        if c > c5 and (c - c5) % ppm_dim == 0:
            n = max(n, (c - c5) // ppm_dim)
    if not pool_scales and n in (0, 4):
        return [1, 2, 3, 6]
    if not pool_scales or len(pool_scales) != n:
        raise ConversionError(
            f"the decoder has {n} pyramid pooling branches ({prefix}.0 … {prefix}.{n - 1}): "
            f"pass --pool-scales with {n} values"
        )
    return list(pool_scales)


def _head(dec, name, final, what, n_labels, problems, required=False, also=None) -> int:
    """A head's class count (0: no head) from its final conv (and ``also``, a pattern of other
    modules with one output per class) and, as one more voice, the labels."""
    if not required and not any(k.startswith(f"{name}.") for k in dec):
        if n_labels:
            problems.append(f"labels: {n_labels} {what} names but the decoder has no {name}")
        return 0
    pattern = re.escape(final) + (f"|{also}" if also else "")
    n = vote(
        dims(dec, rf"({pattern})\.(weight|bias)", 0), [n_labels] if n_labels else [], default=1
    )
    if n_labels is not None and n_labels != n:
        problems.append(f"labels: {n_labels} {what} names for {final}'s {n} classes")
    return n


class Inferred(NamedTuple):
    """What the state dicts and labels say: the kind, the model config (``SegmentationModel``
    fields), label problems, and encoder ``absent`` lines (:func:`~converters.common.match_table`).
    """

    kind: str
    model: dict
    problems: list[str]
    absent: dict[str, str]


def _labels_lists(labels: dict) -> tuple[list | None, list | None, dict]:
    objects, materials = labels.get("object"), labels.get("material")
    object_part = labels.get("object_part") or {}
    if objects is not None and not isinstance(objects, list):
        raise ConversionError("labels.json: 'object' is not a list")
    if materials is not None and not isinstance(materials, list):
        raise ConversionError("labels.json: 'material' is not a list")
    if not isinstance(object_part, dict) or not all(
        isinstance(p, list) for p in object_part.values()
    ):
        raise ConversionError("labels.json: 'object_part' is not a mapping of lists")
    return objects, materials, object_part


def _ade_names(labels: dict) -> tuple[list[str], list[str]]:
    entries = labels.get("labels", [])
    ok = lambda e: isinstance(e, str) or isinstance(e, dict) and isinstance(e.get("name"), str)
    if not isinstance(entries, list) or not all(ok(e) for e in entries):
        raise ConversionError("labels.json: 'labels' is not a list of names or {name, category}")
    names = [e["name"] if isinstance(e, dict) else e for e in entries]
    cats = [e.get("category", "object") if isinstance(e, dict) else "object" for e in entries]
    return (names[1:], cats[1:]) if names and names[0] == "-" else (names, cats)


def _default_names(what: str, n: int) -> list[str]:
    return ["-"] + [f"{what}{i}" for i in range(1, n)] if n else []


def _count(xs) -> int | None:
    return len(xs) if xs else None


def _upp_decoder(dec, labels, c5, pool_scales, problems) -> dict:
    objects, materials, object_part = _labels_lists(labels)
    parts = _count([p for ps in object_part.values() for p in ps])
    n_object = _head(dec, "object_head", "object_head.1", "object", _count(objects), problems, True)
    n_part = _head(dec, "part_head", "part_head.1", "part", parts, problems)
    n_material = _head(
        dec, "material_head", "material_head.1", "material", _count(materials), problems
    )
    n_scene = _head(dec, "scene_head", "scene_head.2", "scene", None, problems)
    names = objects or _default_names("object", n_object)
    strays = [o for o in object_part if o not in names]
    problems += [f"labels: object_part owner {o!r} is not an object" for o in strays]
    fpn = r"(ppm_last_conv|fpn_in\.\d+|fpn_out\.\d+\.0|conv_fusion|[a-z]+_head\.0)"
    fpn_dim = width(
        dec,
        (fpn + r"\.0\.weight", 0),
        (fpn + rf"\.1\.{_BN}", 0),
        (r"(fpn_out\.\d+\.0|[a-z]+_head\.0)\.0\.weight", 1),
        (r"([a-z]+_head\.1|scene_head\.2)\.weight", 1),
        (r"conv_fusion\.0\.weight", 1, 4),
        default=512,
    )
    ppm_dim = width(
        dec, (r"ppm_conv\.\d+\.0\.weight", 0), (rf"ppm_conv\.\d+\.1\.{_BN}", 0), default=512
    )
    return {
        "decoder": "upernet",
        "n_object": n_object,
        "n_part": n_part,
        "n_material": n_material,
        "n_scene": n_scene,
        "fpn_dim": fpn_dim,
        "ppm_dim": ppm_dim,
        "pool_scales": _scales(dec, "ppm_conv", "ppm_last_conv.0", c5, ppm_dim, pool_scales),
    }


def _ppm_decoder(dec, labels, c5, pool_scales, problems) -> dict:
    n_labels = _count(_ade_names(labels)[0])
    deep = "conv_last_deepsup"  # the deep-supervision classifier: one output per class too
    n_class = _head(dec, "conv_last", "conv_last.4", "class", n_labels, problems, True, deep)
    ppm_dim = width(
        dec,
        (r"ppm\.\d+\.1\.weight", 0),
        (rf"ppm\.\d+\.2\.{_BN}", 0),
        (r"conv_last\.0\.weight", 0),
        (rf"conv_last\.1\.{_BN}", 0),
        (r"conv_last\.4\.weight", 1),
        default=512,
    )
    return {
        "decoder": "ppm",
        "dilated": True,
        "n_object": n_class,
        "ppm_dim": ppm_dim,
        "pool_scales": _scales(dec, "ppm", "conv_last.0", c5, ppm_dim, pool_scales),
    }


def infer_model(enc, dec, labels=None, kind=None, pool_scales=None) -> Inferred:
    """The architecture from both state dicts' shapes (and ``labels.json``'s counts)."""
    enc_is_dec, dec_is_dec = (any(k.startswith(_UPP + _ADE) for k in sd) for sd in (enc, dec))
    if enc_is_dec and _is_resnet(dec):
        raise ConversionError("--encoder and --decoder are swapped (each holds the other)")
    if enc_is_dec:
        raise ConversionError("--encoder holds a segmentation decoder, not a ResNet encoder")
    if not dec_is_dec and _is_resnet(dec):
        raise ConversionError("--decoder holds a ResNet encoder, not a segmentation decoder")
    if not _is_resnet(enc):
        raise ConversionError(
            "the encoder is not a ResNet state dict: no conv1.* or layer1.* … layer4.* "
            f"tensors (first keys: {sorted(enc)[:5]})"
        )
    kind = kind or infer_kind(dec)
    if kind not in ("upp", "ade20k"):
        raise ConversionError(f"unknown kind {kind!r} (upp or ade20k)")
    model, absent = _encoder_arch(enc, dec, kind)
    problems = []
    decoder = _upp_decoder if kind == "upp" else _ppm_decoder
    model.update(decoder(dec, labels or {}, 4 * model["planes"][3], pool_scales, problems))
    return Inferred(kind, model, problems, absent)


def make_config(kind, model, labels=None, seg_sizes=None) -> dict:
    """The segmenter config (``gdjax.models.segmenter.from_config``) for an inferred model
    whose heads agree with ``labels`` (as :func:`infer_model` checked)."""
    labels = labels or {}
    if kind == "upp":
        objects, materials, object_part = _labels_lists(labels)
        objects = objects or _default_names("object", model["n_object"])
        materials = materials or _default_names("material", model["n_material"])
        if model["n_part"] and not object_part:
            raise ConversionError(
                f"the decoder has a part head ({model['n_part']} channels): pass --labels "
                "labels.json with 'object_part' to split it by owning object"
            )
        vocab = upp_vocab_from_tables(objects, materials, object_part, quad=True)
        prep = segmenter.Preprocess(seg_sizes=tuple(seg_sizes or (256,)))
    else:
        names, cats = _ade_names(labels)
        n_class = model["n_object"]
        if not names:
            names, cats = [f"class{i}" for i in range(1, n_class + 1)], ["object"] * n_class
        vocab = segmenter.Vocab(tuple(["-", *names]), tuple(["object", *cats]), offset=1)
        fmt = labels.get("imageformat") or {}
        if not isinstance(fmt, dict):
            raise ConversionError("labels.json: 'imageformat' is not an object")
        prep = segmenter.Preprocess(
            scale=1.0,
            bgr=fmt.get("byteorder", "RGB") == "BGR",
            mean=tuple(fmt.get("mean", ADE_MEAN)),
            std=tuple(fmt.get("stdev", ADE_STD)),
            seg_sizes=tuple(seg_sizes or labels.get("segsizes", (256,))),
        )
    return {
        "kind": segmenter.KIND,
        "source_kind": kind,
        "model": model,
        "vocab": dataclasses.asdict(vocab),
        "preprocess": dataclasses.asdict(prep),
    }


def _table(expected: dict, part: str) -> dict:
    """Source name -> (flax path, layout), generated from the expected variables."""
    table = {}
    for coll in ("params", "batch_stats"):
        for path in flatten(expected.get(coll, {}).get(part, {})):
            *mods, leaf = path.split("/")
            layout = OIHW_TO_HWIO if leaf == "kernel" else IDENTITY
            table[".".join([*mods, _LEAF[leaf]])] = (f"{coll}/{part}/{path}", layout)
    # Problems are listed in table order: a module's tensors together, layer10 after layer9.
    natural = lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]  # noqa: E731
    return dict(sorted(table.items(), key=lambda kv: natural(kv[0])))


def _expected(model: dict) -> dict:
    """Abstract variables of ``model`` (part slices do not change any shape)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}
    slices = ((0, model["n_part"]),) if model.get("n_part") else ()
    module = segmenter.SegmentationModel(**fields, part_slices=slices)
    return segmenter._abstract(module, segmenter.Preprocess())


def convert_state_dicts(
    enc, dec, labels=None, kind=None, pool_scales=None, seg_sizes=None, what="state dicts"
) -> tuple[dict, dict]:
    """``(config, variables)`` from the two state dicts and ``labels.json``'s contents.

    Raises one :class:`~converters.common.MismatchError` listing every problem of both files
    (lines start ``encoder``/``decoder``) and of the labels (``labels: …``).
    """
    inferred = infer_model(enc, dec, labels, kind, pool_scales)
    expected = _expected(inferred.model)
    out, problems = {}, []
    for part, sd in (("encoder", enc), ("decoder", dec)):
        exp = {c: {part: expected[c][part]} for c in expected if part in expected[c]}
        got, bad = match_table(
            sd,
            _table(expected, part),
            exp,
            ignore=lambda k: k.endswith("num_batches_tracked"),
            absent=inferred.absent if part == "encoder" else None,
        )
        problems += [f"{part} {line}" for line in bad]
        for c, tree in got.items():
            out.setdefault(c, {}).update(tree)
    problems += inferred.problems
    if problems:
        raise MismatchError(f"{what} ({inferred.kind} segmenter)", problems)
    return make_config(inferred.kind, inferred.model, labels, seg_sizes), out


def convert(
    encoder, decoder, dst, labels=None, kind=None, pool_scales=None, seg_sizes=None, overwrite=False
) -> str:
    """Convert ``encoder``/``decoder`` ``.pth`` (+ optional ``labels.json``) into ``dst``.

    ``dst`` is checked first (:func:`converters.common.check_dst`) and written atomically.
    """
    check_dst(dst, overwrite)
    table = read_json(labels) if labels else {}
    enc, dec = load_state_dict(encoder), load_state_dict(decoder)
    what = f"{encoder} + {decoder}"
    config, variables = convert_state_dicts(enc, dec, table, kind, pool_scales, seg_sizes, what)
    config["source"] = {"encoder": sha256(encoder), "decoder": sha256(decoder)}
    seg = segmenter.from_config(config, jax.tree.map(jax.numpy.asarray, variables))
    source = {"source": config["source"], "source_kind": config["source_kind"]}
    return publish(dst, lambda tmp: segmenter.save(tmp, seg, **source))


def main(argv=None) -> int:
    ap = ArgumentParser(prog="python -m converters.segmenter", description=__doc__)
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--labels", help="labels.json (required for upp's part head)")
    ap.add_argument("--dst", required=True, help="output directory (must not exist)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --dst")
    ap.add_argument("--kind", choices=["upp", "ade20k"])
    ap.add_argument("--pool-scales", type=int, nargs="+")
    ap.add_argument("--seg-sizes", type=int, nargs="+")
    a = ap.parse_args(argv)
    try:
        args = (a.labels, a.kind, a.pool_scales, a.seg_sizes, a.overwrite)
        out = convert(a.encoder, a.decoder, a.dst, *args)
    except (ConversionError, OSError) as e:
        return fail(e)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
