"""Convert a StyleGAN2 generator to gdjax: official ``.pkl`` or rosinality-style ``.pt``.

    python -m converters.stylegan2 --src stylegan2-ffhq-256x256.pkl --dst models/ffhq256
    python -m converters.stylegan2 --src 550000.pt --dst models/ffhq256

* Official stylegan2-ada-pytorch / stylegan3-repository pickles (``{'G_ema': …, 'G': …}``): the
  pickle's networks carry their own source code (``torch_utils.persistence``), which is never
  run. A restricted unpickler turns every class it meets into an inert placeholder that keeps
  only its pickled state, rebuilds tensors through torch's storage loader (``weights_only``),
  and reads the module tree, ``init_kwargs`` and attributes (``conv_clamp``, the mapping's
  learning-rate multiplier) as data. ``G_ema`` is converted (``G`` if there is none).
* rosinality/stylegan2-pytorch checkpoints (``{'g_ema': state dict, 'latent_avg': …}`` or a
  bare state dict) are read with the same restricted unpickler (their ``args`` namespace stays
  a placeholder). Without ``latent_avg`` the truncation centre is the mean ``w`` of 10,000
  latents (seed 0), recorded in ``config.json``.

Sizes come from a vote over every tensor that shows them; the resampling filters must be the
[1,3,3,1] filter. Every missing, misshaped and unexpected tensor is reported in one error
(names as in the file); nothing is written unless the whole tree maps.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
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
    dims,
    fail,
    publish,
    sha256,
    vote,
)
from gdjax.models import stylegan2

# --- reading without running the pickle's code ----------------------------------------------


class Inert:
    """What an unknown pickled class or function becomes: it records, it never runs anything."""

    module, qualname = "?", "?"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state, self.items, self.list = args, kwargs, None, {}, []

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.list.append(value)

    def extend(self, values):
        self.list.extend(values)

    def __repr__(self):
        return f"<inert {self.module}.{self.qualname}>"


class Persistent(Inert):
    """A ``torch_utils.persistence`` object: its class name and pickled ``__dict__`` only (the
    source code in its metadata is kept as text and never executed)."""

    @classmethod
    def rebuild(cls, meta):
        obj = cls()
        meta = dict(meta) if isinstance(meta, Mapping) else {}
        obj.qualname, obj.state = str(meta.get("class_name")), meta.get("state")
        obj.module = "torch_utils.persistence"
        return obj


class EasyDict(dict):
    """``dnnlib.EasyDict`` as a plain dict (attribute access is all it adds)."""


_placeholders: dict[tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    if (module, name) not in _placeholders:
        _placeholders[module, name] = type(name, (Inert,), {"module": module, "qualname": name})
    return _placeholders[module, name]


def _load_storage(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    import torch

    if not isinstance(storage, torch.storage.TypedStorage):
        raise ConversionError("a tensor in the file is not backed by a torch storage")
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _first(data, *unused):
    return data


def _rebuild_from_type(func, new_type, args, state):
    return func(*args)


_SAFE = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _first,
    ("torch._utils", "_rebuild_parameter_with_state"): _first,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): Persistent.rebuild,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the functions in ``_SAFE`` (tensor rebuilding, OrderedDict); every other
    global becomes an :class:`Inert` placeholder, so unpickling runs no code from the file."""

    def find_class(self, module, name):
        if (module, name) in _SAFE:
            return _SAFE[module, name]
        import torch

        if module == "torch" and name.endswith("Storage"):  # legacy typed storages by name
            return getattr(torch, name)
        return _placeholder(module, name)


class _RestrictedPickle:
    """A ``pickle_module`` for ``torch.load`` whose unpickler is :class:`RestrictedUnpickler`."""

    Unpickler = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    load = staticmethod(lambda f, **kw: RestrictedUnpickler(f, **kw).load())


def read(path: str):
    """The unpickled top-level object of ``path`` (a plain pickle, or a torch.save file)."""
    import torch

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConversionError(f"{path}: a directory, not a checkpoint file") from None
    legacy = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
    try:
        if head.startswith(b"PK\x03\x04") or legacy in head[:32]:
            return torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle
            )
        if head.startswith(b"\x80"):
            with open(path, "rb") as f:
                return RestrictedUnpickler(f).load()
    except ConversionError:
        raise
    except Exception as e:  # corrupt or truncated files raise many types
        why = f"{type(e).__name__}: {e}"
        raise ConversionError(f"{path}: cannot read it as a pickle ({why})") from None
    raise ConversionError(f"{path}: neither a pickle nor a torch.save file")


# --- the official module tree ---------------------------------------------------------------


def module_state_dict(obj, prefix: str = "") -> dict:
    """The ``state_dict()`` of a placeholder ``nn.Module``: its ``_parameters``, ``_buffers``
    and submodules' entries under dotted names."""
    state = obj.state if isinstance(obj, Inert) else None
    if not isinstance(state, Mapping):
        return {}
    out = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for k, v in (state.get(group) or {}).items():
            if v is not None and k not in skip:
                out[prefix + k] = v
    for k, m in (state.get("_modules") or {}).items():
        out |= module_state_dict(m, f"{prefix}{k}.")
    return out


def _modules(obj, prefix=""):
    """``(dotted name, placeholder)`` of every module in the tree, the root first."""
    yield prefix.rstrip("."), obj
    state = obj.state if isinstance(obj, Inert) and isinstance(obj.state, Mapping) else {}
    for k, m in (state.get("_modules") or {}).items():
        yield from _modules(m, f"{prefix}{k}.")


def _attr(obj, name, default=None):
    state = obj.state if isinstance(obj, Inert) and isinstance(obj.state, Mapping) else {}
    return state.get(name, default)


def official_hyper(g, source: str) -> dict:
    """What the shapes do not say, read as data from the pickled generator and checked."""
    kwargs = dict(_attr(g, "_init_kwargs") or {})
    mods = dict(_modules(g))
    names = {m.qualname for m in mods.values() if isinstance(m, Inert)}
    if "SynthesisInput" in names or any(re.fullmatch(r"L\d+_\d+_\d+", k.split(".")[-1])
                                        for k in mods):  # fmt: skip
        raise ConversionError(f"{source}: a StyleGAN3 (alias-free) generator; only StyleGAN2 "
                              "generators convert")  # fmt: skip
    c_dim = _attr(g, "c_dim", kwargs.get("c_dim", 0)) or 0
    if c_dim:
        raise ConversionError(f"{source}: a conditional generator (c_dim={c_dim}); only "
                              "unconditional generators convert")  # fmt: skip
    hyper = {"z_dim": _attr(g, "z_dim", kwargs.get("z_dim")),
             "w_dim": _attr(g, "w_dim", kwargs.get("w_dim")),
             "resolution": _attr(g, "img_resolution", kwargs.get("img_resolution"))}  # fmt: skip
    layers = [m for k, m in mods.items() if re.fullmatch(r"synthesis\.b\d+\.(conv[01]|torgb)", k)]
    clamps = {_attr(m, "conv_clamp") for m in layers}
    if len(clamps) > 1:
        raise ConversionError(f"{source}: layers with different conv_clamp {sorted(clamps)}")
    hyper["conv_clamp"] = clamps.pop() if clamps else None
    archs = {
        _attr(m, "architecture") for k, m in mods.items() if re.fullmatch(r"synthesis\.b\d+", k)
    }
    if archs - {"skip", None}:
        raise ConversionError(f"{source}: synthesis architecture {sorted(archs)}; only 'skip' "
                              "(StyleGAN2's default) converts")  # fmt: skip
    fc0 = mods.get("mapping.fc0")
    if fc0 is not None and _attr(fc0, "bias_gain") is not None:
        hyper["lr_multiplier"] = float(_attr(fc0, "bias_gain"))
    return hyper


# --- rosinality names -> official names -----------------------------------------------------


def _ros_block(k: int) -> str:
    return f"synthesis.b{2 ** (k + 3)}"


def rosinality_names(sd: Mapping) -> dict[str, tuple[str, int]]:
    """``{rosinality key: (official key, leading singleton dims to drop)}`` for the keys of
    ``sd`` that have an official counterpart (filters and unknown keys are left out)."""
    out = {}
    conv = {"conv.weight": ("weight", 1), "conv.modulation.weight": ("affine.weight", 0),
            "conv.modulation.bias": ("affine.bias", 0), "noise.weight": ("noise_strength", 1),
            "activate.bias": ("bias", 0)}  # fmt: skip
    rgb = {"conv.weight": ("weight", 1), "conv.modulation.weight": ("affine.weight", 0),
           "conv.modulation.bias": ("affine.bias", 0), "bias": ("bias", -1)}  # fmt: skip
    for key in sd:
        if m := re.fullmatch(r"style\.(\d+)\.(weight|bias)", key):
            out[key] = (f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}", 0)
        elif key == "input.input":
            out[key] = ("synthesis.b4.const", 1)
        elif m := re.fullmatch(r"conv1\.(.+)", key):
            if m.group(1) in conv:
                out[key] = (f"synthesis.b4.conv1.{conv[m.group(1)][0]}", conv[m.group(1)][1])
        elif m := re.fullmatch(r"to_rgb1\.(.+)", key):
            if m.group(1) in rgb:
                out[key] = (f"synthesis.b4.torgb.{rgb[m.group(1)][0]}", rgb[m.group(1)][1])
        elif m := re.fullmatch(r"convs\.(\d+)\.(.+)", key):
            i = int(m.group(1))
            if m.group(2) in conv:
                name, drop = conv[m.group(2)]
                out[key] = (f"{_ros_block(i // 2)}.conv{i % 2}.{name}", drop)
        elif m := re.fullmatch(r"to_rgbs\.(\d+)\.(.+)", key):
            if m.group(2) in rgb:
                name, drop = rgb[m.group(2)]
                out[key] = (f"{_ros_block(int(m.group(1)))}.torgb.{name}", drop)
        elif m := re.fullmatch(r"noises\.noise_(\d+)", key):
            i = int(m.group(1))
            layer = (
                "synthesis.b4.conv1" if i == 0 else f"{_ros_block((i - 1) // 2)}.conv{(i - 1) % 2}"
            )
            out[key] = (f"{layer}.noise_const", 2)
    return out


def _squeeze(x: np.ndarray, drop: int) -> np.ndarray:
    if drop == -1:  # to_rgb bias [1, 3, 1, 1] -> [3]
        return x.reshape(-1) if x.ndim == 4 and x.shape[0] == 1 and x.shape[2:] == (1, 1) else x
    lead = x.shape[:drop]
    return x.reshape(x.shape[drop:]) if len(lead) == drop and all(d == 1 for d in lead) else x


def _all_rosinality_keys(n_mlp: int = 16, log_size: int = 10) -> list[str]:
    """Every rosinality key up to 1024x1024 (to name missing tensors as the file would)."""
    conv = ["conv.weight", "conv.modulation.weight", "conv.modulation.bias", "noise.weight",
            "activate.bias"]  # fmt: skip
    rgb = ["conv.weight", "conv.modulation.weight", "conv.modulation.bias", "bias"]
    keys = [f"style.{i}.{p}" for i in range(1, n_mlp + 1) for p in ("weight", "bias")]
    keys += ["input.input", *(f"conv1.{c}" for c in conv), *(f"to_rgb1.{c}" for c in rgb)]
    keys += [f"convs.{i}.{c}" for i in range(2 * (log_size - 2)) for c in conv]
    keys += [f"to_rgbs.{i}.{c}" for i in range(log_size - 2) for c in rgb]
    keys += [f"noises.noise_{i}" for i in range(2 * (log_size - 2) + 1)]
    return keys


def from_rosinality(sd: Mapping) -> tuple[dict, dict]:
    """``(official-named state dict, {official key: rosinality key})``; keys without a
    counterpart keep their name (reported unexpected unless they are resampling filters)."""
    names = rosinality_names(sd)
    show = {
        new: k for k, (new, _) in rosinality_names(dict.fromkeys(_all_rosinality_keys())).items()
    }
    out = {}
    for k, v in sd.items():
        if k in names:
            new, drop = names[k]
            out[new], show[new] = _squeeze(v, drop), k
        else:
            out[k] = v
    return out, show


# --- the table ------------------------------------------------------------------------------

DENSE = Layout(lambda w: w.T, lambda s: (s[1], s[0]))
CHW_TO_HWC = Layout(lambda w: np.transpose(w, (1, 2, 0)), lambda s: (s[2], s[0], s[1]))
_FILTER = re.compile(r".*(resample_filter|blur\.kernel|upsample\.kernel)")


def infer(sd: Mapping, hyper: Mapping, source: str) -> stylegan2.Generator:
    """The generator the (official-named) tensors describe, each size by a vote."""
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"synthesis\.b(\d+)\.", k))}
    res = hyper.get("resolution") or (max(blocks) if blocks else None)
    if not res or res & (res - 1) or res < 4:
        raise ConversionError(
            f"{source}: not a StyleGAN2 generator (no synthesis.bR.* / convs.* tensors; first "
            f"keys: {sorted(sd)[:5]})"
        )
    fcs = {int(m.group(1)) for k in sd if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k))}
    n_map = max(fcs) + 1 if fcs else 8
    z = vote([hyper["z_dim"]] if hyper.get("z_dim") else [], dims(sd, r"mapping\.fc0\.weight", 1))
    w = vote([hyper["w_dim"]] if hyper.get("w_dim") else [],
             dims(sd, r"mapping\.fc\d+\.weight", 0), dims(sd, r"mapping\.w_avg", 0),
             dims(sd, r"synthesis\.b\d+\.\w+\.affine\.weight", 1))  # fmt: skip
    channels = []
    for r in (2**i for i in range(2, int(np.log2(res)) + 1)):
        b = rf"synthesis\.b{r}"
        c = vote(dims(sd, rf"{b}\.conv[01]\.weight", 0), dims(sd, rf"{b}\.conv1\.weight", 1),
                 dims(sd, rf"{b}\.conv[01]\.bias", 0), dims(sd, rf"{b}\.const", 0),
                 dims(sd, rf"{b}\.(conv1|torgb)\.affine\.weight", 0),
                 dims(sd, rf"{b}\.torgb\.weight", 1),
                 dims(sd, rf"synthesis\.b{2 * r}\.conv0\.weight", 1))  # fmt: skip
        channels.append(c or (channels[-1] if channels else 512))
    return stylegan2.Generator(
        z_dim=z or w or 512, w_dim=w or z or 512, resolution=res, channels=tuple(channels),
        mapping_layers=n_map, lr_multiplier=hyper.get("lr_multiplier", 0.01),
        conv_clamp=hyper.get("conv_clamp"),
    )  # fmt: skip


def table(module: stylegan2.Generator) -> dict[str, tuple[str, Layout]]:
    """Official state-dict name -> (gdjax path, layout) for every parameter of ``module``."""
    t = {}
    for i in range(module.mapping_layers):
        t[f"mapping.fc{i}.weight"] = (f"mapping/fc{i}/weight", DENSE)
        t[f"mapping.fc{i}.bias"] = (f"mapping/fc{i}/bias", IDENTITY)
    t["mapping.w_avg"] = ("mapping/w_avg", IDENTITY)
    t["synthesis.b4.const"] = ("synthesis/b4/const", CHW_TO_HWC)
    for r in (2**i for i in range(2, int(np.log2(module.resolution)) + 1)):
        for layer in (["conv1"] if r == 4 else ["conv0", "conv1"]) + ["torgb"]:
            src, dst = f"synthesis.b{r}.{layer}", f"synthesis/b{r}/{layer}"
            t[f"{src}.weight"] = (f"{dst}/weight", OIHW_TO_HWIO)
            t[f"{src}.bias"] = (f"{dst}/bias", IDENTITY)
            t[f"{src}.affine.weight"] = (f"{dst}/affine/weight", DENSE)
            t[f"{src}.affine.bias"] = (f"{dst}/affine/bias", IDENTITY)
            if layer != "torgb":
                t[f"{src}.noise_const"] = (f"{dst}/noise_const", IDENTITY)
                t[f"{src}.noise_strength"] = (f"{dst}/noise_strength", IDENTITY)
    return t


def _check_filters(sd: Mapping, show) -> list[str]:
    problems = []
    for k, v in sd.items():
        if _FILTER.fullmatch(k):
            v = np.asarray(v, np.float64)
            f = v / v.sum() if v.shape == (4, 4) and v.sum() else None
            if f is None or np.abs(f - stylegan2.FILTER).max() > 1e-6:
                problems.append(f"unsupported: {show(k)} is not the [1,3,3,1] resampling filter")
    return problems


def convert_state_dict(sd: Mapping, hyper: Mapping | None = None, show=None, source="state dict"):
    """``(module, params, notes)`` from an official-named state dict of numpy arrays.

    ``hyper``: what the pickle says beyond shapes; ``show`` maps official names back to the
    file's names for messages. Raises :class:`MismatchError` listing every problem.
    """
    from converters.common import match_table

    show_map = dict(show or {})
    show_fn = lambda k: show_map.get(k, k)  # noqa: E731
    module = infer(sd, dict(hyper or {}), source)
    notes = {}
    sd = dict(sd)
    if "mapping.w_avg" not in sd:
        notes["w_avg"] = "mean w of 10000 latents (seed 0): the source has none"
    expected = stylegan2.abstract_params(module)
    tab = table(module)
    if "mapping.w_avg" not in sd:
        tab.pop("mapping.w_avg")
        expected = {**expected, "mapping": {k: v for k, v in expected["mapping"].items()
                                            if k != "w_avg"}}  # fmt: skip
    params, problems = match_table(
        sd, tab, expected, ignore=lambda k: bool(_FILTER.fullmatch(k)), show=show_fn
    )
    problems += _check_filters(sd, show_fn)
    if problems:
        what = (f"{source} (StyleGAN2 {module.resolution}x{module.resolution}, z {module.z_dim}, "
                f"w {module.w_dim}, channels {list(module.channels)})")  # fmt: skip
        raise MismatchError(what, problems)
    if "w_avg" in notes:
        params = stylegan2.with_mean_w(module, {**params, "mapping": {
            **params["mapping"], "w_avg": np.zeros(module.w_dim, np.float32)}})  # fmt: skip
        params = {k: dict(v) for k, v in params.items()}
    return module, params, notes


def _numpy(sd: Mapping) -> dict[str, np.ndarray]:
    import torch

    out = {}
    for k, v in sd.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            out[str(k)] = (v.float() if v.is_floating_point() else v).numpy()
    return out


def load(path: str):
    """``(module, params, info)`` from an official ``.pkl`` or a rosinality-style ``.pt``."""
    obj = read(path)
    if isinstance(obj, Mapping) and ("G_ema" in obj or "G" in obj):
        g = obj.get("G_ema", obj.get("G"))
        hyper = official_hyper(g, path)
        sd = _numpy(module_state_dict(g))
        if not sd:
            raise ConversionError(f"{path}: its generator holds no tensors")
        module, params, notes = convert_state_dict(sd, hyper, source=path)
        return module, params, {"source_format": "stylegan2-ada-pytorch pickle", **notes}
    if isinstance(obj, Mapping) and isinstance(obj.get("g_ema"), Mapping):
        sd, avg = obj["g_ema"], obj.get("latent_avg")
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        sd, avg = obj["state_dict"], None
    elif isinstance(obj, Mapping):
        sd, avg = obj, None
    else:
        raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a StyleGAN2 checkpoint")
    sd = _numpy(sd)
    if not sd:
        raise ConversionError(f"{path}: no tensors (expected 'G_ema', 'g_ema' or a state dict)")
    fmt = "official state dict"
    show = {}
    if any(k.startswith(("style.", "convs.", "to_rgb")) for k in sd):
        sd, show = from_rosinality(sd)
        fmt = "rosinality stylegan2-pytorch"
        if avg is not None:
            sd["mapping.w_avg"] = _numpy({"a": avg})["a"].reshape(-1)
            show["mapping.w_avg"] = "latent_avg"
    module, params, notes = convert_state_dict(sd, {}, show, source=path)
    return module, params, {"source_format": fmt, **notes}


def convert(src: str, dst: str, overwrite: bool = False) -> str:
    """Convert ``src`` into the gdjax checkpoint directory ``dst`` (checked first, written
    atomically); returns its path."""
    check_dst(dst, overwrite)
    module, params, info = load(src)
    extra = {"source": os.path.basename(src), "source_sha256": sha256(src), **info}
    return publish(dst, lambda tmp: stylegan2.save(tmp, module, params, **extra))


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m converters.stylegan2", description=__doc__)
    parser.add_argument("--src", required=True, help="official .pkl or rosinality .pt")
    parser.add_argument("--dst", required=True, help="output directory (must not exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --dst")
    args = parser.parse_args(argv)
    try:
        dst = convert(args.src, args.dst, args.overwrite)
    except (ConversionError, OSError) as e:
        return fail(e)
    module, _ = stylegan2.load(dst)
    print(f"wrote {dst} (StyleGAN2 {module.resolution}x{module.resolution}, layers "
          f"{', '.join(module.layers)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
