"""Both StyleGAN2 converters against our PyTorch references (tests/torch_stylegan2.py).

Random weights at 16x16 and 256x256: a fake official ``.pkl`` (our reference's modules pickled
as ``torch_utils.persistence`` objects of classes named like the official ones, with source
code that would leave a marker file if anything ran it) and a rosinality-style ``.pt``
(``{'g_ema': state dict, 'latent_avg': …, 'args': Namespace}``) are converted, and every
synthesis layer, style vector and the image match the reference within 1e-4.
"""

import argparse
import os
import pickle
import sys
import types

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from converters import stylegan2 as conv  # noqa: E402
from converters.common import ConversionError, MismatchError  # noqa: E402
from gdjax.models import stylegan2  # noqa: E402
from tests import torch_stylegan2 as ref  # noqa: E402
from tests.test_stylegan2 import run  # noqa: E402

SIZES = {16: (32, 24, 16), 256: (32, 32, 16, 16, 8, 8, 8)}
Z = 24
OFFICIAL = ["Generator", "MappingNetwork", "FullyConnectedLayer", "SynthesisNetwork",
            "SynthesisBlock", "SynthesisLayer", "ToRGBLayer"]  # fmt: skip


def _fake_namespace(marker: str):
    """Modules named like the official ones, holding what pickling them needs."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # what loading the real thing would run
        raise AssertionError("the converter ran the pickle's reconstruction function")

    _reconstruct_persistent_obj.__module__ = persistence.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = util.__name__, "EasyDict"
    util.EasyDict = EasyDict
    source = f"open({marker!r}, 'w').write('the pickle ran its code')\n"

    def reduce(self):
        state = dict(self.__dict__)
        meta = dict(type="class", version=4, module_src=source,
                    class_name=type(self).__name__, state=state)  # fmt: skip
        return (_reconstruct_persistent_obj, (meta,))

    mods = {"torch_utils": types.ModuleType("torch_utils"),
            "torch_utils.persistence": persistence,
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}  # fmt: skip
    return mods, EasyDict, reduce


def write_official_pkl(path, g_ema, g, marker):
    with pytest.MonkeyPatch.context() as mp:
        mods, EasyDict, reduce = _fake_namespace(marker)
        for name, mod in mods.items():
            mp.setitem(sys.modules, name, mod)
        for cls in OFFICIAL:
            mp.setattr(getattr(ref, cls), "__reduce__", reduce, raising=False)
        for m in (g_ema, g):
            m._init_kwargs = EasyDict(
                z_dim=m.z_dim, w_dim=m.w_dim, c_dim=0, img_resolution=m.img_resolution,
                img_channels=3, mapping_kwargs=EasyDict(num_layers=2),
                synthesis_kwargs=EasyDict(channel_base=32768, conv_clamp=None),
            )  # fmt: skip
        data = {"G": g, "D": None, "G_ema": g_ema, "augment_pipe": None,
                "training_set_kwargs": EasyDict(resolution=g.img_resolution)}  # fmt: skip
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    assert b"the pickle ran its code" in open(path, "rb").read()  # the code is in the file


def _official(res, seed):
    g = ref.Generator(Z, Z, res, SIZES[res], mapping_layers=2)
    return ref.randomize(g, seed).eval()


def _rosinality(res, seed):
    g = ref.RosinalityGenerator(res, Z, 2, SIZES[res])
    return ref.randomize(g, seed).eval()


def _compare(module, params, torch_acts, torch_img, z):
    names = [*module.layers[:-1], *module.style_layers]
    img, acts = run(module, params, z, capture=names)
    for name in names:
        want = torch_acts[name].detach().numpy()
        want = np.transpose(want, (0, 2, 3, 1)) if want.ndim == 4 else want
        np.testing.assert_allclose(np.asarray(acts[name]), want, rtol=0, atol=1e-4, err_msg=name)
    want = np.transpose(torch_img.detach().numpy(), (0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(img), want, rtol=0, atol=1e-4, err_msg="image")


@pytest.fixture(scope="module", params=[16, 256])
def res(request):
    return request.param


def test_official_pickle_matches_reference_without_running_its_code(tmp_path, res):
    marker = str(tmp_path / "ran")
    g_ema, g = _official(res, 1), _official(res, 2)
    path = str(tmp_path / "network-snapshot.pkl")
    write_official_pkl(path, g_ema, g, marker)
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "training"):
        assert name not in sys.modules
    module, params, info = conv.load(path)
    assert not os.path.exists(marker)
    assert info["source_format"] == "stylegan2-ada-pytorch pickle"
    assert (module.resolution, module.z_dim, module.w_dim, module.mapping_layers) == (res, Z, Z, 2)
    assert tuple(module.channels) == SIZES[res] and module.lr_multiplier == 0.01
    z = np.random.RandomState(0).standard_normal((2, Z)).astype(np.float32)
    with torch.no_grad():
        img, acts = g_ema(torch.from_numpy(z))  # G_ema, not G, is the one converted
    _compare(module, params, acts, img, z)
    if res == 16:  # truncation towards w_avg on the first 3 ws, as the reference's mapping
        trunc = stylegan2.from_config(stylegan2.config(module), truncation_psi=0.6,
                                      truncation_cutoff=3)  # fmt: skip
        with torch.no_grad():
            img, acts = g_ema(torch.from_numpy(z), psi=0.6, cutoff=3)
        _compare(trunc, params, acts, img, z)


def test_rosinality_state_dict_matches_reference(tmp_path, res):
    g = _rosinality(res, 3)
    avg = torch.randn(1, Z)
    path = str(tmp_path / "550000.pt")
    torch.save({"g_ema": g.state_dict(), "latent_avg": avg[0],
                "args": argparse.Namespace(size=res)}, path)  # fmt: skip
    module, params, info = conv.load(path)
    assert info["source_format"] == "rosinality stylegan2-pytorch" and "w_avg" not in info
    np.testing.assert_array_equal(np.asarray(params["mapping"]["w_avg"]), avg[0].numpy())
    z = np.random.RandomState(1).standard_normal((2, Z)).astype(np.float32)
    with torch.no_grad():
        img, acts = g(torch.from_numpy(z))
    _compare(module, params, acts, img, z)
    if res == 16:
        trunc = stylegan2.from_config(stylegan2.config(module), truncation_psi=0.5)
        with torch.no_grad():
            img, acts = g(torch.from_numpy(z), truncation=0.5, truncation_latent=avg)
        _compare(trunc, params, acts, img, z)


def test_rosinality_without_latent_avg_gets_the_mean_w(tmp_path):
    g = _rosinality(16, 4)
    path = str(tmp_path / "g.pt")
    torch.save(g.state_dict(), path)
    module, params, info = conv.load(path)
    assert "w_avg" in info
    zs = jax.random.normal(jax.random.PRNGKey(0), (10_000, Z))
    with torch.no_grad():
        w = g.style(torch.from_numpy(np.array(zs))).mean(0).numpy()
    np.testing.assert_allclose(np.asarray(params["mapping"]["w_avg"]), w, rtol=0, atol=1e-4)


def test_one_error_lists_every_mismatch(tmp_path):
    sd = _rosinality(16, 5).state_dict()
    del sd["convs.1.conv.weight"]
    sd["style.2.bias"] = torch.zeros(7)
    sd["to_rgbs.0.conv.modulation.weight"] = torch.zeros(3, 3)
    sd["extra.weight"] = torch.zeros(2)
    sd["convs.0.conv.blur.kernel"] = torch.ones(4, 4)
    path = str(tmp_path / "bad.pt")
    torch.save({"g_ema": sd}, path)
    with pytest.raises(MismatchError) as e:
        conv.load(path)
    problems = e.value.problems
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    for needle in ["missing: convs.1.conv.weight", "misshaped: style.2.bias",
                   "misshaped: to_rgbs.0.conv.modulation.weight", "unexpected: extra.weight",
                   "unsupported: convs.0.conv.blur.kernel"]:  # fmt: skip
        assert needle in text, text


def test_refusals_are_one_line(tmp_path):
    (tmp_path / "text.pkl").write_text("hello")
    with pytest.raises(ConversionError, match="neither a pickle"):
        conv.load(str(tmp_path / "text.pkl"))
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ConversionError, match="holds a list"):
        conv.load(str(tmp_path / "list.pkl"))
    marker = str(tmp_path / "ran")
    g = _official(16, 6)
    g.c_dim = 10
    write_official_pkl(str(tmp_path / "cond.pkl"), g, g, marker)
    with pytest.raises(ConversionError, match="conditional generator"):
        conv.load(str(tmp_path / "cond.pkl"))
    assert not os.path.exists(marker)


def test_command_line_writes_a_loadable_directory(tmp_path, capsys):
    g = _rosinality(16, 7)
    src, dst = str(tmp_path / "g.pt"), str(tmp_path / "out")
    torch.save({"g_ema": g.state_dict(), "latent_avg": torch.zeros(Z)}, src)
    assert conv.main(["--src", src, "--dst", dst]) == 0
    assert conv.main(["--src", src, "--dst", dst]) == 2  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    module, params = stylegan2.load(dst)
    z = np.random.RandomState(2).standard_normal((1, Z)).astype(np.float32)
    with torch.no_grad():
        img, _ = g(torch.from_numpy(z))
    out, _ = run(module, params, z)
    np.testing.assert_allclose(np.asarray(out), img.numpy().transpose(0, 2, 3, 1), atol=1e-4)
