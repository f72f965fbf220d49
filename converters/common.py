"""Shared pieces of the PyTorch -> Flax converters.

A converter is a table from source state-dict names to Flax parameter paths with a per-tensor
layout transform. These helpers read a ``.pth`` safely, apply such a table, and refuse to
produce a partial result: every missing, unexpected and misshaped name is reported at once.
torch is imported here and only here (and in the converter scripts), never by ``gdjax``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import numpy as np

from gdjax.models.checkpoint import ParamMismatchError, check_tree, unflatten

__all__ = [
    "ConversionError",
    "ParamMismatchError",
    "apply_table",
    "conv_oihw_to_hwio",
    "identity",
    "load_state_dict",
    "sha256",
]


class ConversionError(ValueError):
    """A source file that cannot be converted (unreadable, wrong format, wrong keys)."""


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Read a PyTorch checkpoint as ``{name: float32/int numpy array}`` on CPU.

    Accepts a bare state dict or one wrapped as ``{'state_dict': ...}``. Non-tensor entries
    (e.g. numeric metadata) are dropped. A missing, truncated or non-checkpoint file raises
    :class:`ConversionError` naming the file.
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file") from None
    except Exception as e:  # torch raises many types for corrupt/truncated archives
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({msg})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a state dict, found {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu()
            out[str(k)] = (t.float() if t.is_floating_point() else t).numpy()
    if not out:
        raise ConversionError(f"{path}: the state dict holds no tensors")
    return out


def identity(x: np.ndarray) -> np.ndarray:
    return x


def conv_oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    """PyTorch conv weight ``[O, I, kH, kW]`` -> Flax ``[kH, kW, I, O]``."""
    return np.transpose(w, (2, 3, 1, 0))


Transform = Callable[[np.ndarray], np.ndarray]


def apply_table(
    sd: Mapping[str, np.ndarray],
    table: Mapping[str, tuple[str, Transform]],
    expected: Mapping,
    what: str,
    ignore: Callable[[str], bool] = lambda k: False,
) -> dict:
    """Convert a state dict with ``table[source_name] = (flax/path, transform)``.

    ``expected`` is the target tree (e.g. ``jax.eval_shape(model.init, ...)['params']``).
    Source keys absent from the table are "unexpected" unless ``ignore(key)``; table entries
    absent from the source are "missing"; shapes after the transform must match ``expected``.
    All problems are raised together in one :class:`ParamMismatchError`.
    """
    flat, problems = {}, []
    for key in sd:
        if key not in table and not ignore(key):
            problems.append(f"unexpected: {key} (shape {tuple(sd[key].shape)})")
    for key, (path, fn) in table.items():
        if key not in sd:
            problems.append(f"missing: {key} (for {path})")
            continue
        flat[path] = np.asarray(fn(sd[key]), dtype=np.float32)
    params = unflatten(flat)
    try:
        check_tree(params, expected, what)
    except ParamMismatchError as e:
        # Missing sources were reported by source name above; keep the rest (shapes, and
        # target paths that no table entry produces).
        targets = {path for path, _ in table.values()}
        for line in str(e).splitlines()[1:]:
            line = line.strip()
            if not (line.startswith("missing: ") and line.split()[1] in targets):
                problems.append(line)
    if problems:
        raise ParamMismatchError(f"{what}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return params
