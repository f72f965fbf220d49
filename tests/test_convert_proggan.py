"""Converter equivalence: PyTorch reference -> .pth -> CLI -> gdjax.proggan.load, every layer."""

import os

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
        torch.save(sd, tmp_path / f"{name}.pth")
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


def test_bad_files_fail_with_every_problem_listed(tmp_path, capsys):
    net = reference(SMALL)
    sd = net.state_dict()
    # Mismatched: one key missing, one extra, one misshaped -> one error naming all three.
    bad = dict(sd)
    del bad["layer3.wscale.b"]
    bad["layer9.extra"] = torch.zeros(3)
    bad["layer2.conv.weight"] = torch.zeros(32, 32, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ParamMismatchError) as err:
        convert.convert(str(tmp_path / "bad.pth"), str(tmp_path / "bad"))
    msg = str(err.value)
    assert "missing: layer3.wscale.b" in msg
    assert "unexpected: layer9.extra" in msg
    assert "misshaped: layer2/conv/kernel has shape (1, 1, 32, 32), expected (3, 3, 32, 32)" in msg
    assert not os.path.exists(tmp_path / "bad")  # never a partial result
    # The CLI turns it into an error message and a non-zero exit, no traceback.
    assert convert.main(["--src", str(tmp_path / "bad.pth"), "--dst", str(tmp_path / "b")]) == 1
    assert "3 problem(s)" in capsys.readouterr().err
    # Truncated and corrupt files.
    torch.save(sd, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    for name in ["trunc.pth", "junk.pth", "missing.pth"]:
        with pytest.raises(ConversionError, match=name):
            convert.convert(str(tmp_path / name), str(tmp_path / "x"))
    # Not a generator at all.
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ConversionError, match="not a Progressive GAN state dict"):
        convert.convert(str(tmp_path / "other.pth"), str(tmp_path / "x"))
