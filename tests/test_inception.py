"""FID Inception: PyTorch reference -> .pth -> CLI -> gdjax, pool3 features and every block."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from converters import inception as convert  # noqa: E402
from converters.common import ConversionError, MismatchError  # noqa: E402
from gdjax.models import inception  # noqa: E402
from tests.torch_inception import calibrated, fid_input  # noqa: E402

BLOCKS = [n for n in inception.LAYERS if n not in ("pool", "logits")]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    net = calibrated(seed=0)
    d = tmp_path_factory.mktemp("inception")
    torch.save(net.state_dict(), d / "pt_inception.pth")
    assert convert.main(["--src", str(d / "pt_inception.pth"), "--dst", str(d / "out")]) == 0
    return net, str(d / "out"), d / "pt_inception.pth"


@pytest.mark.slow
def test_fid_features_at_299_match_reference_every_block(converted):
    """64x64 generated-like images through the whole FID extractor (clip, resize to 299,
    normalise, network): pool3 features and every block equal torch's to 1e-4."""
    net, out, _ = converted
    rng = np.random.default_rng(0)
    images = rng.uniform(-1.1, 1.1, (2, 64, 64, 3)).astype(np.float32)  # a little unclamped
    x01 = (torch.from_numpy(np.clip(images, -1, 1)).permute(0, 3, 1, 2) + 1) / 2
    with torch.no_grad():
        pool, acts = net.forward_all(fid_input(x01))
    module, variables = inception.load(out)
    got_pool, got = module.apply(variables, inception.prepare(images), capture=inception.LAYERS)
    np.testing.assert_allclose(
        inception.features(module, variables, images), got_pool, rtol=0, atol=0
    )
    assert got_pool.shape == (2, 2048) and float(pool.abs().mean()) > 0.1  # not a dead net
    np.testing.assert_allclose(got_pool, pool.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got["pool"], pool.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got["logits"], acts["logits"].numpy(), atol=1e-4, rtol=1e-4)
    worst = {}
    for name in BLOCKS:
        want = acts[name].permute(0, 2, 3, 1).numpy()
        assert got[name].shape == want.shape, name
        worst[name] = float(np.abs(np.asarray(got[name]) - want).max())
        np.testing.assert_allclose(got[name], want, atol=1e-4, rtol=1e-4, err_msg=name)
    assert got["Mixed_7c"].shape == (2, 8, 8, 2048)
    print("max abs difference per block:", worst, "pool:", np.abs(got_pool - pool.numpy()).max())


def test_prepare_equals_pytorch_fid_transform():
    """Upscaling (64 -> 299) and shrinking (331 -> 299, no antialiasing) like F.interpolate.

    torch computes the source coordinates in float32 (one ulp is 4e-6 near 64, 3e-5 near
    330), gdjax's matrices in float64: hence 1e-4 for pixel steps of up to 2. A resize off by
    half a pixel, or with antialiasing, misses by more than 0.1."""
    rng = np.random.default_rng(1)
    for size in (64, 331):
        images = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
        x01 = (torch.from_numpy(images).permute(0, 3, 1, 2) + 1) / 2
        want = fid_input(x01).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(inception.prepare(images), want, atol=1e-4, rtol=0)


def test_config_records_the_source(converted):
    _, out, src = converted
    config = inception.checkpoint.read_config(out, inception.KIND)
    assert config["num_classes"] == 1008 and config["source"] == "pt_inception.pth"
    assert config["source_sha256"] == convert.sha256(str(src))


def test_every_mismatch_in_one_error(converted):
    net, _, _ = converted
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    del sd["Mixed_6c.branch7x7_2.conv.weight"], sd["Mixed_7c.branch_pool.bn.running_var"]
    sd["Mixed_5b.branch5x5_2.conv.weight"] = np.zeros((64, 48, 3, 3), np.float32)
    sd["AuxLogits.fc.weight"] = np.zeros((1008, 768), np.float32)
    with pytest.raises(MismatchError) as e:
        convert.convert_state_dict(sd, "damaged.pth")
    assert e.value.problems == [
        "misshaped: Mixed_5b.branch5x5_2.conv.weight has shape (64, 48, 3, 3), "
        "expected (64, 48, 5, 5)",
        "missing: Mixed_6c.branch7x7_2.conv.weight (expected shape (160, 160, 1, 7))",
        "missing: Mixed_7c.branch_pool.bn.running_var (expected shape (192,))",
        "unexpected: AuxLogits.fc.weight (shape (1008, 768))",
    ]
    assert str(e.value).startswith("damaged.pth (FID Inception-v3, 1008 classes): 4 problems")


def test_cli_refuses_other_files_in_one_line(tmp_path, capsys):
    torch.save({"layer1.conv.weight": torch.zeros(2, 2, 3, 3)}, tmp_path / "g.pth")
    assert convert.main(["--src", str(tmp_path / "g.pth"), "--dst", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'g.pth'}: not an Inception-v3 state dict (no Conv2d_*/Mixed_* "
        "tensors; first keys: ['layer1.conv.weight'])"
    ]
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConversionError, match="no such file"):
        convert.convert(str(tmp_path / "none.pth"), str(tmp_path / "o"))
