"""Converter equivalence: PyTorch reference -> .pth -> CLI -> gdjax.proggan.load, every layer."""

import os
import pickle
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from converters import proggan as convert  # noqa: E402
from converters.common import ConversionError, ParamMismatchError  # noqa: E402
from gdjax import proggan  # noqa: E402
from tests.torch_proggan import Generator as TorchGenerator  # noqa: E402

LSUN256 = [512, 512, 512, 512, 256, 128, 64, 32]
SMALL = [16, 32, 16, 8]


def reference(sizes, seed=0):
    """A torch generator with N(0,1) conv weights (as equalized-LR training) and N(0,1) biases."""
    torch.manual_seed(seed)
    net = TorchGenerator(sizes).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    return net


def run_both(net, sizes, directory, n=2):
    z = proggan.sample_z(n, seed=1, dim=sizes[0])
    with torch.no_grad():
        image, acts = net.forward_all(torch.from_numpy(z))
    module, params = proggan.load(directory)
    got_image, got = module.apply({"params": params}, z, capture=module.layers)
    to_nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    return to_nhwc(image), {k: to_nhwc(v) for k, v in acts.items()}, np.asarray(got_image), got


@pytest.mark.parametrize("sizes", [SMALL, LSUN256], ids=["small", "lsun256"])
def test_cli_conversion_matches_every_layer(tmp_path, sizes, capsys):
    net = reference(sizes)
    src = str(tmp_path / "g.pth")
    torch.save(net.state_dict(), src)
    assert convert.main(["--src", src, "--dst", str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    image, acts, got_image, got = run_both(net, sizes, str(tmp_path / "out"))
    assert set(got) == set(acts)
    report = {}
    for name, want in acts.items():
        report[name] = float(np.abs(np.asarray(got[name]) - want).max())
        np.testing.assert_allclose(got[name], want, atol=1e-4, rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(got_image, image, atol=1e-4, rtol=1e-4)
    assert got_image.shape == (2, 4 * 2 ** (len(sizes) - 2), 4 * 2 ** (len(sizes) - 2), 3)
    print("max abs difference per layer:", report)  # quoted in the closing note (-s)
    config = proggan.checkpoint.read_config(str(tmp_path / "out"), "proggan")
    assert config["sizes"] == sizes and config["source"] == "g.pth"
    assert len(config["source_sha256"]) == 64


def test_old_naming_and_wrapped_dicts_convert_identically(tmp_path):
    net = reference(SMALL, seed=1)
    variants = {
        "plain": net.state_dict(),
        "wrapped": {"state_dict": net.state_dict(), "epoch": 3},
        "old": net.old_state_dict(),
        "old_wrapped": {"state_dict": net.old_state_dict()},
    }
    loaded = {}
    for name, sd in variants.items():
        # The old ones also in the pre-1.6 (non-zip) file format.
        torch.save(sd, tmp_path / f"{name}.pth", _use_new_zipfile_serialization="old" not in name)
        convert.convert(str(tmp_path / f"{name}.pth"), str(tmp_path / name))
        loaded[name] = proggan.load(str(tmp_path / name))[1]
    flat = {k: proggan.checkpoint.flatten(v) for k, v in loaded.items()}
    for name in variants:
        assert flat[name].keys() == flat["plain"].keys()
        for key in flat["plain"]:
            np.testing.assert_array_equal(flat[name][key], flat["plain"][key], err_msg=key)


def test_edit_alpha1_v0_equals_zeroing_channels_in_reference(tmp_path):
    net = reference(SMALL, seed=2)
    torch.save(net.state_dict(), tmp_path / "g.pth")
    convert.convert(str(tmp_path / "g.pth"), str(tmp_path / "g"))
    module, params = proggan.load(str(tmp_path / "g"))
    units = [0, 3, 7, 15]
    z = proggan.sample_z(2, seed=4, dim=SMALL[0])
    x = torch.from_numpy(z).view(2, -1, 1, 1)
    with torch.no_grad():
        for name, block in net.named_children():
            x = block(x)
            if name == "layer4":
                x[:, units] = 0.0
    alpha = np.zeros(SMALL[2], np.float32)
    alpha[units] = 1.0
    got, _ = module.apply({"params": params}, z, edits={"layer4": (alpha, np.zeros_like(alpha))})
    np.testing.assert_allclose(got, x.permute(0, 2, 3, 1).numpy(), atol=1e-4, rtol=1e-4)


def _damaged(sd, drop=(), add=None):
    sd = {k: v for k, v in sd.items() if not k.startswith(tuple(drop))}
    return {**sd, **(add or {})}


def _err_lines(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err.splitlines()


# Each case: (damage, the problem lines the user sees). SMALL = [16, 32, 16, 8]: layer1..6,
# output_16x16. Before the vote, deleting layer5 or widening one conv changed the inferred
# sizes and gave a misleading list (unexpected layer6.*, output_16x16.*; missing output_8x8.*).
DAMAGE = {
    "missing_block": (
        dict(drop=["layer5."]),
        [
            "missing: layer5.conv.weight (expected shape (8, 16, 3, 3))",
            "missing: layer5.wscale.b (expected shape (8,))",
        ],
    ),
    "missing_first_block": (  # z shows nowhere else: guessed as depth@4x4, as the original's
        dict(drop=["layer1."]),
        [
            "missing: layer1.conv.weight (expected shape (32, 32, 4, 4))",
            "missing: layer1.wscale.b (expected shape (32,))",
        ],
    ),
    "missing_output_block": (
        dict(drop=["output_16x16."]),
        [
            "missing: output_16x16.conv.weight (expected shape (3, 8, 1, 1))",
            "missing: output_16x16.wscale.b (expected shape (3,))",
        ],
    ),
    "misshaped_conv": (
        dict(add={"layer3.conv.weight": torch.zeros(17, 32, 3, 3)}),
        ["misshaped: layer3.conv.weight has shape (17, 32, 3, 3), expected (16, 32, 3, 3)"],
    ),
    "wrong_rank": (
        dict(add={"layer4.conv.weight": torch.zeros(16, 16)}),
        ["misshaped: layer4.conv.weight has shape (16, 16), expected (16, 16, 3, 3)"],
    ),
    "extra_keys": (
        dict(add={"layer7.conv.weight": torch.zeros(8, 8, 3, 3), "ema.decay": torch.zeros(())}),
        [
            "unexpected: layer7.conv.weight (shape (8, 8, 3, 3))",
            "unexpected: ema.decay (shape ())",
        ],
    ),
    "all_at_once": (
        dict(
            drop=["layer3.wscale.b", "layer5."],
            add={"layer9.extra": torch.zeros(3), "layer2.conv.weight": torch.zeros(32, 32, 1, 1)},
        ),
        [
            "misshaped: layer2.conv.weight has shape (32, 32, 1, 1), expected (32, 32, 3, 3)",
            "missing: layer3.wscale.b (expected shape (16,))",
            "missing: layer5.conv.weight (expected shape (8, 16, 3, 3))",
            "missing: layer5.wscale.b (expected shape (8,))",
            "unexpected: layer9.extra (shape (3,))",
        ],
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_state_dict_gives_one_error_listing_every_problem(tmp_path, capsys, case):
    damage, problems = DAMAGE[case]
    src, dst = str(tmp_path / "bad.pth"), str(tmp_path / "out")
    torch.save(_damaged(reference(SMALL).state_dict(), **damage), src)
    with pytest.raises(ParamMismatchError) as err:  # the library: one error, every problem
        convert.convert(src, dst)
    assert isinstance(err.value, ConversionError) and err.value.problems == problems
    n, sizes = len(problems), [32, *SMALL[1:]] if case == "missing_first_block" else SMALL
    assert convert.main(["--src", src, "--dst", dst]) == 2
    assert _err_lines(capsys) == [f"  {p}" for p in problems] + [
        f"error: {src} (Progressive GAN, sizes {sizes}): {n} problem{'s' * (n > 1)} (listed above)"
    ]
    assert not os.path.exists(dst) and os.listdir(tmp_path) == ["bad.pth"]  # nothing written


def test_old_naming_is_reported_in_old_names(tmp_path, capsys):
    sd = reference(SMALL).old_state_dict()
    sd = _damaged(sd, drop=["features.4."], add={"output.conv.weight": torch.zeros(3, 9, 1, 1)})
    torch.save(sd, tmp_path / "old.pth")
    src = str(tmp_path / "old.pth")
    assert convert.main(["--src", src, "--dst", str(tmp_path / "out")]) == 2
    assert _err_lines(capsys) == [
        "  missing: features.4.conv.weight (expected shape (8, 16, 3, 3))",
        "  missing: features.4.wscale.b (expected shape (8,))",
        "  misshaped: output.conv.weight has shape (3, 9, 1, 1), expected (3, 8, 1, 1)",
        f"error: {src} (Progressive GAN, sizes [16, 32, 16, 8]): 3 problems (listed above)",
    ]


def _write_not_checkpoints(d):
    """Files that are not PyTorch checkpoints -> the reason each error line gives."""
    torch.save(reference(SMALL).state_dict(), d / "good.pth")
    data = (d / "good.pth").read_bytes()
    (d / "trunc.pth").write_bytes(data[: len(data) // 2])
    torch.save(
        reference(SMALL).state_dict(), d / "legacy.pth", _use_new_zipfile_serialization=False
    )
    (d / "legacy_trunc.pth").write_bytes((d / "legacy.pth").read_bytes()[:300])
    (d / "empty.pth").write_bytes(b"")
    (d / "text.pth").write_text("this is not a checkpoint\n")
    torch.save([torch.zeros(2)], d / "list.pth")
    (d / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    torch.save(torch.nn.Linear(2, 2), d / "module.pth")
    torch.save({"epoch": 3}, d / "no_tensors.pth")
    (d / "adir").mkdir()
    return {
        "trunc.pth": "not a PyTorch checkpoint (a truncated or corrupt zip archive)",
        "legacy_trunc.pth": "not a PyTorch checkpoint "
        "(a truncated, corrupt or unsupported legacy torch.save file)",
        "empty.pth": "not a PyTorch checkpoint (an empty file)",
        "text.pth": "not a PyTorch checkpoint (a text file beginning 'this is not a checkpoint')",
        "list.pth": "not a PyTorch checkpoint (it holds a list, not a state dict)",
        "list.pkl": "not a PyTorch checkpoint (a Python pickle not written by torch.save)",
        "module.pth": "not a plain state dict (it pickles torch.nn.modules.linear.Linear, which "
        "is never unpickled here; save model.state_dict() instead)",
        "no_tensors.pth": "not a PyTorch checkpoint (a dict without tensors: ['epoch'])",
        "adir": "not a PyTorch checkpoint (a directory)",
        "missing.pth": "no such file",
    }


def test_not_a_checkpoint_is_one_plain_line(tmp_path, capsys):
    for name, why in _write_not_checkpoints(tmp_path).items():
        src = str(tmp_path / name)
        with pytest.raises(ConversionError, match=re.escape(f"{src}: {why}")):
            convert.convert(src, str(tmp_path / "out"))
        assert convert.main(["--src", src, "--dst", str(tmp_path / "out")]) == 2, name
        assert _err_lines(capsys) == [f"error: {src}: {why}"]
    # A state dict of something else.
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    src = str(tmp_path / "other.pth")
    assert convert.main(["--src", src, "--dst", str(tmp_path / "out")]) == 2
    assert _err_lines(capsys) == [
        f"error: {src}: not a Progressive GAN state dict (no layer{{i}}.*, features.{{i}}.* or "
        "output_RxR.* tensors; first keys: ['fc.weight'])"
    ]
    assert not os.path.exists(tmp_path / "out")


def _snapshot(d):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.rglob("*")) if p.is_file()}


def test_existing_dst_is_refused_before_reading_anything(tmp_path, capsys):
    dst = tmp_path / "models" / "church"
    dst.mkdir(parents=True)
    (dst / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    # The source does not even exist: the refusal comes first, so nothing was read.
    argv = ["--src", str(tmp_path / "missing.pth"), "--dst", str(dst)]
    assert convert.main(argv) == 2
    assert _err_lines(capsys) == [f"error: {dst} exists; pass --overwrite to replace it"]
    assert _snapshot(tmp_path) == before
    # --overwrite never replaces something that is not a gdjax model directory.
    torch.save(reference(SMALL).state_dict(), tmp_path / "g.pth")
    before = _snapshot(tmp_path)
    refusals = {
        dst: f"{dst} is not a gdjax model directory (no config.json)",
        tmp_path / "g.pth": f"{tmp_path / 'g.pth'} exists and is not a directory",
    }
    for target, why in refusals.items():
        argv = ["--src", str(tmp_path / "g.pth"), "--dst", str(target), "--overwrite"]
        assert convert.main(argv) == 2
        assert _err_lines(capsys) == [f"error: {why}; not replacing it"]
    assert _snapshot(tmp_path) == before


def test_overwrite_replaces_only_after_a_successful_conversion(tmp_path, capsys, monkeypatch):
    dst = str(tmp_path / "church")
    for seed in (0, 1):
        torch.save(reference(SMALL, seed=seed).state_dict(), tmp_path / f"g{seed}.pth")
    torch.save(_damaged(reference(SMALL).state_dict(), drop=["layer5."]), tmp_path / "bad.pth")
    assert convert.main(["--src", str(tmp_path / "g0.pth"), "--dst", dst]) == 0
    capsys.readouterr()
    old = _snapshot(tmp_path / "church")
    # A failing conversion, and a failing write, leave the old directory as it was.
    assert convert.main(["--src", str(tmp_path / "bad.pth"), "--dst", dst, "--overwrite"]) == 2
    assert _err_lines(capsys)[-1].startswith(f"error: {tmp_path / 'bad.pth'} (Progressive GAN")

    def full_disk(directory, *args, **kwargs):
        os.makedirs(os.path.join(directory, "params"))
        raise OSError(28, "No space left on device", directory)

    with monkeypatch.context() as m:
        m.setattr(convert.proggan, "save", full_disk)
        argv = ["--src", str(tmp_path / "g1.pth"), "--dst", dst, "--overwrite"]
        assert convert.main(argv) == 1
    (line,) = _err_lines(capsys)
    assert re.fullmatch(
        rf"error: {re.escape(str(tmp_path))}/\.church\.\w+\.tmp: No space left on device",
        line,
    ), line
    assert _snapshot(tmp_path / "church") == old
    # A successful one replaces it, with no temporary directory left beside it.
    assert convert.main(["--src", str(tmp_path / "g1.pth"), "--dst", dst, "--overwrite"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {dst} (sizes [16, 32, 16, 8]")
    config = proggan.checkpoint.read_config(dst, "proggan")
    assert config["source"] == "g1.pth" and config["source_sha256"] == convert.sha256(
        str(tmp_path / "g1.pth")
    )
    np.testing.assert_array_equal(
        proggan.load(dst)[1]["layer1"]["wscale"]["b"],
        reference(SMALL, seed=1).layer1.wscale.b.detach().numpy(),
    )
    assert sorted(os.listdir(tmp_path)) == ["bad.pth", "church", "g0.pth", "g1.pth"]


def test_usage_errors_end_in_one_error_line(capsys):
    with pytest.raises(SystemExit) as e:
        convert.main(["--src", "g.pth"])
    assert e.value.code == 2
    assert _err_lines(capsys)[-1] == "error: the following arguments are required: --dst"
