"""Boring artifacts: parameter trees as orbax checkpoints plus a JSON config sidecar.

A gdjax model directory holds ``config.json`` (``{"kind": ..., ...}``) and ``params/`` (an orbax
``StandardCheckpointer`` tree). Restoring goes through an abstract target built from the
config, and any difference between stored and expected parameters is reported in full.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

CONFIG = "config.json"
PARAMS = "params"


class ParamMismatchError(ValueError):
    """Raised when a parameter tree differs from the expected one; lists every difference."""


def flatten(tree: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """Nested dict -> ``{"a/b/c": leaf}``."""
    out: dict[str, Any] = {}

    def walk(node, prefix):
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{prefix}{sep}{k}" if prefix else str(k))
        else:
            out[prefix] = node

    walk(tree, "")
    return out


def unflatten(flat: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """``{"a/b/c": leaf}`` -> nested dict."""
    out: dict[str, Any] = {}
    for path, leaf in flat.items():
        node = out
        *parents, last = path.split(sep)
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def mismatches(got: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Every missing, unexpected and misshaped leaf between two (nested) trees, as text lines.

    Leaves may be arrays, ``jax.ShapeDtypeStruct`` or orbax metadata: only ``.shape`` is read.
    """
    g, e = flatten(got), flatten(expected)
    lines = [f"missing: {k} (expected shape {_shape(e[k])})" for k in e if k not in g]
    lines += [f"unexpected: {k} (shape {_shape(g[k])})" for k in g if k not in e]
    lines += [
        f"misshaped: {k} has shape {_shape(g[k])}, expected {_shape(e[k])}"
        for k in e
        if k in g and _shape(g[k]) != _shape(e[k])
    ]
    return lines


def check_tree(got: Mapping[str, Any], expected: Mapping[str, Any], what: str) -> None:
    """Raise :class:`ParamMismatchError` listing *every* difference, or return quietly."""
    lines = mismatches(got, expected)
    if lines:
        raise ParamMismatchError(
            f"{what}: {len(lines)} parameter mismatch(es):\n  " + "\n  ".join(lines)
        )


def save(directory: str, params: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """Write ``params`` (orbax) and ``config`` (JSON, must contain ``kind``) to ``directory``."""
    import orbax.checkpoint as ocp

    if "kind" not in config:
        raise ValueError("checkpoint config needs a 'kind' entry")
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    params = jax.tree.map(np.asarray, dict(params))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.join(directory, PARAMS), params, force=True)
    with open(os.path.join(directory, CONFIG), "w") as f:
        json.dump(dict(config), f, indent=2, sort_keys=True)
    return directory


def read_config(directory: str, kind: str) -> dict[str, Any]:
    """Read ``config.json`` of a gdjax model directory, insisting on ``kind``."""
    path = os.path.join(directory, CONFIG)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory!r} is not a directory (expected a gdjax {kind})")
    if not os.path.isfile(path) or not os.path.isdir(os.path.join(directory, PARAMS)):
        raise ValueError(
            f"{directory!r} is not a gdjax {kind} checkpoint: it needs {CONFIG} and {PARAMS}/"
        )
    with open(path) as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    if config.get("kind") != kind:
        raise ValueError(f"{directory!r} holds a {config.get('kind')!r}, not a gdjax {kind}")
    return config


def restore(directory: str, expected: Mapping[str, Any]) -> dict[str, Any]:
    """Restore ``params/`` into the shapes and dtypes of ``expected`` (arrays or structs).

    Stored and expected trees are compared first, so a checkpoint of another configuration
    fails with the full list of differences instead of a partial load.
    """
    import orbax.checkpoint as ocp

    path = os.path.join(os.path.abspath(directory), PARAMS)
    with ocp.StandardCheckpointer() as ckpt:
        stored = ckpt.metadata(path).item_metadata
        check_tree(getattr(stored, "tree", stored), expected, f"checkpoint {directory!r}")
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(_shape(x), x.dtype), expected)
        return ckpt.restore(path, target)
