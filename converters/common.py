"""Shared pieces of the PyTorch -> Flax converters.

A converter is a table from source state-dict names to Flax parameter paths with a per-tensor
:class:`Layout`. These helpers read a ``.pth`` safely, infer sizes by a vote over every tensor
that shows them (so one damaged tensor or a deleted block cannot derail the inference), match
the table against the expected tree and report every missing, unexpected and misshaped source
name at once (:class:`MismatchError`), and publish the result directory only when complete.
torch is imported here and only here (and in the converter scripts), never by ``gdjax``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np

from gdjax.models.checkpoint import CONFIG, ParamMismatchError, check_tree, flatten, unflatten

__all__ = [
    "IDENTITY",
    "OIHW_TO_HWIO",
    "ArgumentParser",
    "ConversionError",
    "Layout",
    "MismatchError",
    "ParamMismatchError",
    "check_dst",
    "dims",
    "fail",
    "indices",
    "load_state_dict",
    "match_table",
    "publish",
    "read_json",
    "sha256",
    "vote",
    "width",
]


class ConversionError(ValueError):
    """Input that cannot be converted (unreadable file, wrong format, refused destination)."""


class MismatchError(ConversionError, ParamMismatchError):
    """A source that does not fit the inferred model: ``problems`` lists every bad name."""

    def __init__(self, what: str, problems: Iterable[str]):
        self.what, self.problems = what, list(problems)
        super().__init__(f"{self.summary}:\n  " + "\n  ".join(self.problems))

    @property
    def summary(self) -> str:
        n = len(self.problems)
        return f"{self.what}: {n} problem{'s' if n != 1 else ''}"


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Legacy (pre-1.6) torch.save files open with this magic number, pickled as a LONG1.
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _file_kind(path: str) -> str:
    """``'zip'``, ``'pickle'`` (legacy torch.save) or ``'plain pickle'`` for a file torch may
    read (torch decides); :class:`ConversionError` for anything else."""
    not_ckpt = lambda why: ConversionError(f"{path}: not a PyTorch checkpoint ({why})")
    if os.path.isdir(path):
        raise not_ckpt("a directory")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file") from None
    except OSError as e:
        raise ConversionError(f"{path}: cannot read it ({e.strerror})") from None
    if not head:
        raise not_ckpt("an empty file")
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            raise not_ckpt("a truncated or corrupt zip archive") from None
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            raise not_ckpt("a zip archive without data.pkl")
        return "zip"
    if head.startswith(b"\x80"):  # a pickle protocol >= 2: legacy torch.save or plain pickle
        return "pickle" if _LEGACY_MAGIC in head[:32] else "plain pickle"
    if b"\0" not in head:
        text = head.decode("utf-8", errors="replace").strip().splitlines()
        first = text[0] if text else ""
        first = first[:40] + "…" if len(first) > 40 else first
        raise not_ckpt(f"a text file beginning {first!r}")
    raise not_ckpt("neither a zip archive nor a pickle")


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Read a PyTorch checkpoint as ``{name: float32/int numpy array}`` on CPU.

    Accepts a bare state dict or one wrapped as ``{'state_dict': ...}``. Non-tensor entries
    (e.g. numeric metadata) are dropped. Only tensors and plain containers are unpickled
    (``weights_only``). Anything else raises :class:`ConversionError` saying in one line
    what the file is instead (a directory, empty, text, truncated, a pickled list …).
    """
    kind = _file_kind(path)
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/truncated archives
        if m := re.search(r"Unsupported global: GLOBAL (\S+)", str(e)):
            raise ConversionError(
                f"{path}: not a plain state dict (it pickles {m.group(1)}, which is never "
                "unpickled here; save model.state_dict() instead)"
            ) from None
        why = {
            "zip": "a truncated or corrupt zip archive",
            "pickle": "a truncated, corrupt or unsupported legacy torch.save file",
            "plain pickle": "a Python pickle not written by torch.save",
        }[kind]
        raise ConversionError(f"{path}: not a PyTorch checkpoint ({why})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ConversionError(
            f"{path}: not a PyTorch checkpoint (it holds a {type(obj).__name__}, not a state dict)"
        )
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu()
            out[str(k)] = (t.float() if t.is_floating_point() else t).numpy()
    if not out:
        keys = [str(k) for k in list(obj)[:5]]
        raise ConversionError(f"{path}: not a PyTorch checkpoint (a dict without tensors: {keys})")
    return out


def read_json(path: str) -> dict:
    """A JSON object from ``path``; :class:`ConversionError` in one line if it is not one."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConversionError(f"{path}: cannot read it ({e})") from None
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


# --- inference by vote ----------------------------------------------------------------------


def dims(sd: Mapping[str, np.ndarray], pattern: str, axis: int, div: int = 1) -> list[int]:
    """``shape[axis] // div`` of every tensor whose name fullmatches ``pattern`` (if divisible)."""
    rx = re.compile(pattern)
    return [
        int(v.shape[axis]) // div
        for k, v in sd.items()
        if rx.fullmatch(k) and v.ndim > axis and v.shape[axis] > 0 and v.shape[axis] % div == 0
    ]


def vote(*candidates: Iterable[int], default: int | None = None) -> int | None:
    """The most common value among all candidates (the first seen wins a tie), or ``default``.

    Sizes are inferred this way from every tensor that shows them, so one misshaped tensor is
    outvoted and reported as misshaped instead of changing the inferred architecture.
    """
    counts = Counter(c for cs in candidates for c in cs)
    return counts.most_common(1)[0][0] if counts else default


def width(sd: Mapping[str, np.ndarray], *specs: tuple, default: int | None = None) -> int | None:
    """:func:`vote` over ``dims(sd, pattern, axis[, div])`` for each spec."""
    return vote(*(dims(sd, *spec) for spec in specs), default=default)


def indices(sd: Mapping[str, np.ndarray], prefix: str) -> set[int]:
    """The block numbers ``i`` of the names ``{prefix}.{i}.…`` (``prefix`` a regex)."""
    return {int(m.group(1)) for k in sd if (m := re.match(rf"{prefix}\.(\d+)\.", k))}


# --- the table ------------------------------------------------------------------------------


class Layout(NamedTuple):
    """A per-tensor transform to Flax's layout and the source shape a Flax shape comes from."""

    to_flax: Callable[[np.ndarray], np.ndarray]
    source_shape: Callable[[tuple[int, ...]], tuple[int, ...]]


IDENTITY = Layout(lambda x: x, tuple)
# PyTorch conv weight [O, I, kH, kW] <-> Flax kernel [kH, kW, I, O].
OIHW_TO_HWIO = Layout(
    lambda w: np.transpose(w, (2, 3, 1, 0)),
    lambda s: (s[3], s[2], s[0], s[1]) if len(s) == 4 else tuple(s),
)


def match_table(
    sd: Mapping[str, np.ndarray],
    table: Mapping[str, tuple[str, Layout]],
    expected: Mapping,
    ignore: Callable[[str], bool] = lambda k: False,
    absent: Mapping[str, str] | None = None,
    show: Callable[[str], str] = str,
) -> tuple[dict, list[str]]:
    """Convert ``sd`` by ``table[source_name] = (flax/path, layout)``; ``(params, problems)``.

    ``expected`` is the target tree (``jax.eval_shape`` of the model's init). Problems name
    *source* keys with source-layout shapes, in table order, then the unexpected keys:
    ``missing: K (expected shape S)``, ``misshaped: K has shape G, expected S``,
    ``unexpected: K (shape G)``. Source keys outside the table are unexpected unless
    ``ignore(key)``. ``absent`` maps a name prefix to one line that stands for all its
    missing keys (a part whose extent cannot be inferred because none of it is there).
    ``show`` renders a key as the file names it (e.g. back to an older naming).
    """
    want = flatten(expected)
    flat, problems, absent = {}, [], dict(absent or {})
    for key, (path, layout) in table.items():
        shape = layout.source_shape(tuple(want[path].shape))
        if key not in sd:
            prefix = next((p for p in absent if key.startswith(p)), None)
            if prefix is None:
                problems.append(f"missing: {show(key)} (expected shape {shape})")
            elif absent[prefix]:
                problems.append(absent[prefix])
                absent[prefix] = ""  # once per prefix
        elif tuple(sd[key].shape) != shape:
            got = tuple(sd[key].shape)
            problems.append(f"misshaped: {show(key)} has shape {got}, expected {shape}")
        else:
            flat[path] = np.asarray(layout.to_flax(sd[key]), dtype=np.float32)
    problems += [
        f"unexpected: {show(k)} (shape {tuple(v.shape)})"
        for k, v in sd.items()
        if k not in table and not ignore(k)
    ]
    params = unflatten(flat)
    if not problems:
        check_tree(params, expected, "converted tree")  # the table covers the tree exactly
    return params, problems


# --- the destination ------------------------------------------------------------------------


def check_dst(dst: str, overwrite: bool) -> None:
    """Refuse an existing ``dst`` unless ``overwrite``; never replace what is not a model dir.

    Called before anything is read, so a refusal is immediate and touches nothing.
    """
    if not os.path.lexists(dst):
        return
    if not overwrite:
        raise ConversionError(f"{dst} exists; pass --overwrite to replace it")
    if os.path.islink(dst) or not os.path.isdir(dst):
        raise ConversionError(f"{dst} exists and is not a directory; not replacing it")
    if os.listdir(dst) and not os.path.isfile(os.path.join(dst, CONFIG)):
        raise ConversionError(
            f"{dst} is not a gdjax model directory (no {CONFIG}); not replacing it"
        )


def publish(dst: str, write: Callable[[str], object]) -> str:
    """``write(tmp)`` into a new sibling of ``dst``, then move it into place; returns ``dst``.

    A failing ``write`` leaves no trace and an existing ``dst`` untouched; an existing ``dst``
    (allowed by :func:`check_dst`) is swapped out only after the new directory is complete.
    """
    dst = os.path.abspath(dst)
    parent, base = os.path.split(dst)
    created = []
    d = parent
    while not os.path.isdir(d):
        created.insert(0, d)
        d = os.path.dirname(d)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{base}.{uuid.uuid4().hex[:8]}.tmp")
    old = tmp[: -len(".tmp")] + ".old"
    os.mkdir(tmp)
    try:
        write(tmp)
        if os.path.lexists(dst):
            os.rename(dst, old)
        try:
            os.rename(tmp, dst)
        except OSError:
            if os.path.lexists(old):
                os.rename(old, dst)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return dst


# --- the command line -----------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors end, like every converter error, in one ``error:`` line."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def fail(e: Exception) -> int:
    """Print ``e`` for a terminal and return the exit code: a :class:`MismatchError`'s list
    first, then one ``error: …`` line. 2 for bad input, 1 for a system error (disk full…)."""
    if isinstance(e, MismatchError):
        for line in e.problems:
            print(f"  {line}", file=sys.stderr)
        print(f"error: {e.summary} (listed above)", file=sys.stderr)
        return 2
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    print(f"error: {e}", file=sys.stderr)
    return 2
