"""Full-size UPP and ADE20K segmenters: our PyTorch reference vs the converted Flax model.

Random weights and random BN statistics, a 2x256x256 batch, converted through the CLI entry
point, compared on every stage output (relative 1e-4 of the stage's scale) and on the final
probabilities (absolute 1e-4).
"""

import json
import subprocess
import sys

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


def _tiny(tmp_path, decoder_sd_edit=None):
    torch.manual_seed(2)
    enc = T.ResNet((8, 8, 16), (4, 8, 8, 16), (1, 1, 2, 1))
    dec = T.UPerNet(336, 13, 26, 365, SLICES, fc_dim=64, fpn_inplanes=(16, 32, 32, 64),
                    fpn_dim=8, ppm_dim=8)  # fmt: skip
    sd = dec.state_dict()
    if decoder_sd_edit:
        decoder_sd_edit(sd)
    torch.save(enc.state_dict(), tmp_path / "e.pth")
    torch.save(sd, tmp_path / "d.pth")
    (tmp_path / "labels.json").write_text(json.dumps(LABELS))
    return ["--encoder", str(tmp_path / "e.pth"), "--decoder", str(tmp_path / "d.pth"),
            "--labels", str(tmp_path / "labels.json"), "--dst", str(tmp_path / "out")]  # fmt: skip


def test_cli_subprocess_converts_tiny_upp(tmp_path):
    argv = _tiny(tmp_path)
    r = subprocess.run([sys.executable, "-m", "converters.segmenter", *argv],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    seg = S.load(str(tmp_path / "out"), quad=False)
    assert seg.module.planes == (4, 8, 8, 16) and seg.module.depths == (1, 1, 2, 1)
    assert seg.module.n_part == 13 and len(seg.labels) == 1 + 335 + 25 + 6


def test_converter_reports_every_problem_at_once(tmp_path):
    def edit(sd):
        del sd["object_head.1.bias"]
        del sd["fpn_in.0.1.running_var"]
        sd["extra.weight"] = torch.zeros(3)
        sd["conv_fusion.0.weight"] = torch.zeros(8, 31, 3, 3)

    argv = _tiny(tmp_path, edit)
    args = dict(zip(argv[::2], argv[1::2], strict=True))
    enc, dec = conv.load_state_dict(args["--encoder"]), conv.load_state_dict(args["--decoder"])
    config = conv.infer_config(enc, dec, LABELS)
    with pytest.raises(ParamMismatchError) as e:
        conv.convert_state_dicts(enc, dec, config)
    msg = str(e.value)
    for needle in ["object_head.1.bias", "fpn_in.0.1.running_var", "extra.weight",
                   "conv_fusion/0/kernel"]:  # fmt: skip
        assert needle in msg, msg
    assert "4 problem(s)" in msg
    assert conv.main(argv) == 1
