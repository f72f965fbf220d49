"""A persistent cache of compiled XLA programs, so a rerun skips compilation.

A dissection compiles the networks' program and a handful of statistics programs: for the demo
models about 1.5 s and 1.3 s of one core, a fifth of the run on two cores. JAX can keep
compiled programs on disk, keyed by the program, the backend and the JAX version; a rerun, a
resumed run or a dissection of another model with layers of the same shapes then loads them
(about 0.25 s each for the two groups). ``examples/dissect.py`` turns it on (``--xla_cache``);
library functions never do it behind the caller's back.
"""

from __future__ import annotations

import os

import jax

DEFAULT = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "gdjax", "xla")


def enable(directory: str | None = DEFAULT, min_compile_seconds: float = 0.05) -> str | None:
    """Keep every program that took at least ``min_compile_seconds`` to compile in
    ``directory`` (created; ``~`` expanded) and load it from there next time. ``None`` or
    ``""`` leaves the cache off. Returns the directory used, or ``None``."""
    if not directory:
        return None
    if min_compile_seconds < 0:
        raise ValueError(f"min_compile_seconds must be >= 0, got {min_compile_seconds}")
    from jax.experimental.compilation_cache import compilation_cache

    path = os.path.abspath(os.path.expanduser(directory))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()  # JAX reads the settings once, at its first compilation
    return path
