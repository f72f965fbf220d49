"""Run directories: the settings a resumable run records, and files written atomically.

Every resumable command (dissection, ACE, training) keeps its outputs in one directory that
starts with ``settings.json``. A rerun with equal settings resumes; other settings are refused
with the differing keys, or with ``overwrite`` replace the old run. Results are written through
a temporary file and renamed, so a run killed at any moment never leaves half a file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

import numpy as np

from gdjax.errors import InputError

__all__ = ["SETTINGS", "check_run", "write_json", "write_npz"]

SETTINGS = "settings.json"


def write_json(path: str, record: Any) -> str:
    """Write ``record`` as JSON atomically (a killed run never leaves half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_npz(path: str, arrays: Mapping[str, Any]) -> str:
    """Write ``arrays`` as ``.npz`` atomically (the file exists only when complete)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)
    return path


def check_run(
    directory: str, settings: Mapping[str, Any], what: str = "run", overwrite: bool = False
) -> bool:
    """Record ``settings`` in ``directory/settings.json``, or insist they equal the recorded ones.

    A resumable run calls this before it writes anything else. Equal settings: the run resumes
    (returns True). Other settings: :class:`InputError` naming the differing keys with their
    recorded values, unless ``overwrite``: then the old run's directory is emptied first.
    Returns whether an earlier run is being resumed.
    """
    path = os.path.join(directory, SETTINGS)
    settings = json.loads(json.dumps(dict(settings)))  # tuples -> lists, as stored
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        diff = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
        if not diff:
            return True
        if not overwrite:
            differ = ", ".join(f"{k}={old.get(k)!r}" for k in diff)
            raise InputError(
                f"{directory} holds a {what} with other settings ({differ}); "
                "pass --overwrite to replace it, or use another directory"
            )
        shutil.rmtree(directory)
    write_json(path, settings)
    return False
