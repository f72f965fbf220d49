"""Full-size UPP and ADE20K segmenters: our PyTorch reference vs the converted Flax model.

Random weights and random BN statistics, a 2x256x256 batch, converted through the CLI entry
point, compared on every stage output (relative 1e-4 of the stage's scale) and on the final
probabilities (absolute 1e-4).
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from converters import segmenter as conv  # noqa: E402
from gdjax import segmenter as S  # noqa: E402
from gdjax.models.checkpoint import ParamMismatchError  # noqa: E402
from tests import torch_segmenter as T  # noqa: E402

OBJECTS = ["-"] + [f"obj{i}" for i in range(1, 336)]
for _i, _n in {2: "sky", 5: "building", 6: "person", 9: "window", 16: "door"}.items():
    OBJECTS[_i] = _n
OBJECT_PART = {
    "sky": ["-", "cloud"],
    "building": ["-", "window", "door", "roof", "balcony"],
    "person": ["-", "leg", "head", "hair"],
    "obj7": ["-", "beam"],
}
LABELS = {
    "object": OBJECTS,
    "material": ["-"] + [f"mat{i}" for i in range(1, 26)],
    "scene": [f"scene{i}" for i in range(365)],
    "object_part": OBJECT_PART,
}
SLICES = [(0, 2), (2, 7), (7, 11), (11, 13)]


def _images(seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (2, 256, 256, 3)).astype(np.float32)


def _torch_input(images, bgr, scale, mean, std):
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    x = (x + 1) / 2 * scale
    if bgr:
        x = x.flip(1)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _run(tmp_path, encoder, decoder, labels, extra, images, prep, seg_size):
    g = torch.Generator().manual_seed(0)
    T.randomize_bn(encoder, g)
    T.randomize_bn(decoder, g)
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        x = _torch_input(images, *prep)
        eacts = encoder(x)
        out, dacts = decoder([eacts[f"layer{i}"] for i in range(1, 5)], seg_size)
    ref = {k: v.numpy() for k, v in {**eacts, **dacts}.items()}
    ref_out = {k: v.numpy() for k, v in out.items()}
    torch.save(encoder.state_dict(), tmp_path / "enc.pth")
    torch.save(decoder.state_dict(), tmp_path / "dec.pth")
    argv = ["--encoder", str(tmp_path / "enc.pth"), "--decoder", str(tmp_path / "dec.pth")]
    if labels:
        (tmp_path / "labels.json").write_text(json.dumps(labels))
        argv += ["--labels", str(tmp_path / "labels.json")]
    assert conv.main([*argv, "--dst", str(tmp_path / "seg"), *extra]) == 0
    seg = S.load(str(tmp_path / "seg"))
    (xin,) = S.preprocess(seg, jnp.asarray(images))
    got_out, acts = jax.jit(seg.module.apply, static_argnums=2)(seg.variables, xin, seg_size)
    return seg, ref, ref_out, acts, got_out


def _compare(ref, ref_out, acts, got_out):
    diffs = {}
    for k, r in ref.items():
        g = np.asarray(acts[k])
        r = np.moveaxis(r, 1, -1) if r.ndim == 4 else r
        scale = float(np.abs(r).max())
        diffs[k] = float(np.abs(g - r).max()) / scale
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * scale, err_msg=k)
    for k, r in ref_out.items():
        r = np.moveaxis(r, 1, -1) if r.ndim == 4 else r
        diffs["prob:" + k] = float(np.abs(np.asarray(got_out[k]) - r).max())
        np.testing.assert_allclose(np.asarray(got_out[k]), r, atol=1e-4, err_msg=k)
    print("max differences (stages: relative to max|ref|; prob: absolute):")
    for k, d in diffs.items():
        print(f"  {k:18s} {d:.2e}")


@pytest.mark.slow
def test_upp_full_size_matches_torch(tmp_path):
    torch.manual_seed(0)
    enc = T.ResNet()
    dec = T.UPerNet(336, 13, 26, 365, SLICES)
    images = _images(0)
    prep = (True, 255.0, (102.9801, 115.9465, 122.7717), (1.0, 1.0, 1.0))
    seg, ref, ref_out, acts, out = _run(tmp_path, enc, dec, LABELS, [], images, prep, (128, 128))
    _compare(ref, ref_out, acts, out)
    assert len(seg.labels) == 1 + 335 * 5 + 25 + 6  # extra: cloud roof balcony leg head hair
    labels = np.asarray(S.segment(seg, jnp.asarray(images), downsample=2))
    assert labels.shape == (2, 128, 128, 5)


def test_ade20k_full_size_matches_torch(tmp_path):
    torch.manual_seed(1)
    enc = T.ResNet(dilated=True)
    dec = T.PPMDeepsup(150)
    images = _images(1)
    prep = (False, 1.0, conv.ADE_MEAN, conv.ADE_STD)
    seg, ref, ref_out, acts, out = _run(tmp_path, enc, dec, None, [], images, prep, (256, 256))
    _compare(ref, ref_out, acts, out)
    assert seg.labels[0] == ("-", "object") and len(seg.labels) == 151


def _tiny_nets(kind="upp"):
    torch.manual_seed(2)
    if kind == "upp":
        enc = T.ResNet((8, 8, 16), (4, 8, 8, 16), (1, 1, 2, 1))
        dec = T.UPerNet(336, 13, 26, 365, SLICES, fc_dim=64, fpn_inplanes=(16, 32, 32, 64),
                        fpn_dim=8, ppm_dim=8)  # fmt: skip
    else:
        enc = T.ResNet((8, 8, 16), (4, 8, 8, 16), (1, 1, 2, 1), dilated=True)
        dec = T.PPMDeepsup(5, fc_dim=64, ppm_dim=8)
    return enc, dec


def _tiny(tmp_path, decoder_sd_edit=None, encoder_sd_edit=None, labels=LABELS, kind="upp"):
    """Save a tiny encoder/decoder pair (state dicts edited in place) and labels; the argv."""
    enc, dec = _tiny_nets(kind)
    esd, dsd = enc.state_dict(), dec.state_dict()
    for edit, sd in ((encoder_sd_edit, esd), (decoder_sd_edit, dsd)):
        if edit:
            edit(sd)
    torch.save(esd, tmp_path / "e.pth")
    torch.save(dsd, tmp_path / "d.pth")
    argv = ["--encoder", str(tmp_path / "e.pth"), "--decoder", str(tmp_path / "d.pth")]
    if labels is not None:
        (tmp_path / "labels.json").write_text(json.dumps(labels))
        argv += ["--labels", str(tmp_path / "labels.json")]
    return [*argv, "--dst", str(tmp_path / "out")]


def test_cli_subprocess_converts_tiny_upp(tmp_path):
    argv = _tiny(tmp_path)
    r = subprocess.run([sys.executable, "-m", "converters.segmenter", *argv],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    seg = S.load(str(tmp_path / "out"), quad=False)
    assert seg.module.planes == (4, 8, 8, 16) and seg.module.depths == (1, 1, 2, 1)
    assert seg.module.n_part == 13 and len(seg.labels) == 1 + 335 + 25 + 6


def _drop(prefix):
    def edit(sd):
        for k in [k for k in sd if k.startswith(prefix)]:
            del sd[k]

    return edit


def _set(key, *shape):
    def edit(sd):
        sd[key] = torch.zeros(shape)

    return edit


def _all(*edits):
    return lambda sd: [edit(sd) for edit in edits]


def _block_lines(module, prefix):
    """``encoder missing: …`` for every tensor of a reference module, in the listing's order
    (a module's tensors together, numbers in numeric order)."""
    natural = lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)]  # noqa: E731
    sd = {f"{prefix}{k}": v for k, v in module.state_dict().items()}
    keys = sorted((k for k in sd if not k.endswith("num_batches_tracked")), key=natural)
    return [f"missing: {k} (expected shape {tuple(sd[k].shape)})" for k in keys]


class Damage(NamedTuple):
    """A damaged tiny checkpoint and the problem lines the user sees for it."""

    lines: list[str]
    enc: Callable | None = None  # edits of the state dicts, in place
    dec: Callable | None = None
    labels: dict | None = LABELS
    kind: str = "upp"


_ENC, _DEC = _tiny_nets()
DAMAGE = {
    "encoder_missing_block": Damage(
        [f"encoder {line}" for line in _block_lines(_ENC.layer3[0], "layer3.0.")],
        enc=_drop("layer3.0."),
    ),
    "encoder_missing_stage": Damage(
        ["encoder missing: layer2.* (the whole stage; its depth is unknown)"],
        enc=_drop("layer2."),
    ),
    "encoder_misshaped_and_extra": Damage(
        [
            "encoder misshaped: layer1.0.conv2.weight has shape (4, 4, 1, 1), "
            "expected (4, 4, 3, 3)",
            "encoder unexpected: fc.weight (shape (10, 64))",
        ],
        enc=_all(_set("layer1.0.conv2.weight", 4, 4, 1, 1), _set("fc.weight", 10, 64)),
    ),
    "decoder_missing_pyramid_branch": Damage(  # the last: no index shows it, the widths do
        [f"decoder {line}" for line in _block_lines(_DEC.ppm_conv[3], "ppm_conv.3.")],
        dec=_drop("ppm_conv.3."),
    ),
    "decoder_misshaped_head": Damage(
        [
            "decoder misshaped: object_head.1.weight has shape (300, 8, 1, 1), "
            "expected (336, 8, 1, 1)"
        ],
        dec=_set("object_head.1.weight", 300, 8, 1, 1),
    ),
    "labels_vs_head": Damage(
        ["labels: 335 object names for object_head.1's 336 classes"],
        labels={**LABELS, "object": LABELS["object"][:-1]},
    ),
    "labels_for_a_missing_head": Damage(
        ["labels: 13 part names but the decoder has no part_head"],
        dec=_drop("part_head."),
    ),
    "labels_unknown_part_owner": Damage(
        [
            "labels: 15 part names for part_head.1's 13 classes",
            "labels: object_part owner 'moon' is not an object",
        ],
        labels={**LABELS, "object_part": {**OBJECT_PART, "moon": ["-", "crater"]}},
    ),
    "all_at_once": Damage(
        [
            "encoder misshaped: bn1.weight has shape (9,), expected (8,)",
            "decoder misshaped: conv_fusion.0.weight has shape (8, 31, 3, 3), "
            "expected (8, 32, 3, 3)",
            "decoder missing: fpn_in.0.1.running_var (expected shape (8,))",
            "decoder missing: object_head.1.bias (expected shape (336,))",
            "decoder unexpected: extra.weight (shape (3,))",
            "labels: 24 material names for material_head.1's 26 classes",
        ],
        enc=_set("bn1.weight", 9),
        dec=_all(
            _drop("object_head.1.bias"),
            _drop("fpn_in.0.1.running_var"),
            _set("extra.weight", 3),
            _set("conv_fusion.0.weight", 8, 31, 3, 3),
        ),
        labels={**LABELS, "material": LABELS["material"][:-2]},
    ),
    "ade20k_misshaped_head": Damage(
        ["decoder misshaped: conv_last.4.weight has shape (7, 8, 1, 1), expected (5, 8, 1, 1)"],
        dec=_set("conv_last.4.weight", 7, 8, 1, 1),
        labels=None,
        kind="ade20k",
    ),
    "ade20k_labels_vs_head": Damage(
        ["labels: 4 class names for conv_last.4's 5 classes"],
        labels={"labels": ["-", "sky", "tree", "road", "car"]},
        kind="ade20k",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_checkpoints_give_one_error_listing_every_problem(tmp_path, capsys, case):
    d = DAMAGE[case]
    argv = _tiny(tmp_path, d.dec, d.enc, d.labels, d.kind)
    args = dict(zip(argv[::2], argv[1::2], strict=True))
    enc, dec = conv.load_state_dict(args["--encoder"]), conv.load_state_dict(args["--decoder"])
    with pytest.raises(ParamMismatchError) as e:  # the library: one error, every problem
        conv.convert_state_dicts(enc, dec, d.labels)
    assert e.value.problems == d.lines
    assert conv.main(argv) == 2
    err = capsys.readouterr().err
    n, what = len(d.lines), f"{args['--encoder']} + {args['--decoder']} ({d.kind} segmenter)"
    assert err.splitlines() == [f"  {p}" for p in d.lines] + [
        f"error: {what}: {n} problem{'s' * (n > 1)} (listed above)"
    ]
    assert not (tmp_path / "out").exists()


def test_bad_inputs_are_one_plain_line(tmp_path, capsys):
    argv = _tiny(tmp_path)
    args = dict(zip(argv[::2], argv[1::2], strict=True))
    e, d, labels = args["--encoder"], args["--decoder"], args["--labels"]
    (tmp_path / "notes.txt").write_text("encoder weights are on the shared drive\n")
    (tmp_path / "trunc.pth").write_bytes((tmp_path / "d.pth").read_bytes()[:1000])
    (tmp_path / "bad.json").write_text("{'object': []}")
    (tmp_path / "list.json").write_text("[]")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    notes, trunc = str(tmp_path / "notes.txt"), str(tmp_path / "trunc.pth")
    cases = {
        (notes, d, labels): f"{notes}: not a PyTorch checkpoint "
        "(a text file beginning 'encoder weights are on the shared drive')",
        (e, trunc, labels): f"{trunc}: not a PyTorch checkpoint "
        "(a truncated or corrupt zip archive)",
        (e, str(tmp_path / "list.pth"), labels): f"{tmp_path / 'list.pth'}: not a PyTorch "
        "checkpoint (it holds a list, not a state dict)",
        (e, str(tmp_path), labels): f"{tmp_path}: not a PyTorch checkpoint (a directory)",
        (d, e, labels): "--encoder and --decoder are swapped (each holds the other)",
        (e, e, labels): "--decoder holds a ResNet encoder, not a segmentation decoder",
        (e, d, str(tmp_path / "bad.json")): f"{tmp_path / 'bad.json'}: not valid JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        (e, d, str(tmp_path / "list.json")): f"{tmp_path / 'list.json'}: expected a JSON "
        "object, found list",
        (e, d, str(tmp_path / "no.json")): f"{tmp_path / 'no.json'}: no such file",
    }
    for (enc, dec, lab), line in cases.items():
        argv = ["--encoder", enc, "--decoder", dec, "--labels", lab, "--dst", args["--dst"]]
        assert conv.main(argv) == 2, line
        assert capsys.readouterr().err.splitlines() == [f"error: {line}"]
    assert not (tmp_path / "out").exists()


def test_existing_dst_is_refused_then_replaced_with_overwrite(tmp_path, capsys):
    argv = _tiny(tmp_path)
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "config.json").write_text('{"kind": "segmenter"}')  # an older conversion
    os.utime(dst / "config.json", ns=(0, 0))
    # Refused before anything is read: the encoder here does not even exist.
    missing = ["--encoder", str(tmp_path / "none.pth"), *argv[2:]]
    for a in (argv, missing):
        assert conv.main(a) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"error: {dst} exists; pass --overwrite to replace it"
        ]
    assert os.listdir(dst) == ["config.json"] and (dst / "config.json").stat().st_mtime_ns == 0
    # A failed conversion with --overwrite leaves it too; a successful one replaces it.
    bad = _tiny(tmp_path, _drop("object_head."))
    assert conv.main([*bad, "--overwrite"]) == 2
    assert (dst / "config.json").read_text() == '{"kind": "segmenter"}'
    capsys.readouterr()
    argv = _tiny(tmp_path)
    assert conv.main([*argv, "--overwrite"]) == 0
    assert capsys.readouterr().out == f"{dst}\n"
    seg = S.load(str(dst), quad=False)
    assert seg.module.depths == (1, 1, 2, 1) and len(seg.labels) == 1 + 335 + 25 + 6
    assert sorted(os.listdir(tmp_path)) == ["d.pth", "e.pth", "labels.json", "out"]
