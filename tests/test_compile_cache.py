"""The persistent compilation cache: programs land on disk and a later compilation loads them."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from gdjax import compile_cache


@pytest.fixture
def restore_cache_settings():
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")  # fmt: skip
    before = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def test_programs_are_stored_and_loaded(tmp_path, restore_cache_settings):
    events = []

    def listen(event, **kwargs):
        events.append(event)

    path = compile_cache.enable(str(tmp_path / "xla"), min_compile_seconds=0.0)
    assert path == str(tmp_path / "xla")

    def f(x):
        return jnp.cumsum(jnp.sin(x) * 3.0 + 1.0)

    x = jnp.arange(17, dtype=jnp.float32)
    want = np.cumsum(np.sin(np.arange(17, dtype=np.float32)) * 3 + 1)
    np.testing.assert_allclose(jax.jit(f)(x), want, rtol=1e-5)
    stored = os.listdir(path)
    assert stored, "nothing was written to the cache directory"
    jax.clear_caches()  # as a new process would be
    jax.monitoring.register_event_listener(listen)
    try:
        np.testing.assert_allclose(jax.jit(f)(x), want, rtol=1e-5)
    finally:
        jax.monitoring.unregister_event_listener(listen)
    assert "/jax/compilation_cache/cache_hits" in events
    assert sorted(os.listdir(path)) == sorted(stored)  # loaded, not compiled and stored again


def test_off_and_bad_settings(tmp_path, restore_cache_settings):
    before = jax.config.jax_compilation_cache_dir
    assert compile_cache.enable("") is None and compile_cache.enable(None) is None
    assert jax.config.jax_compilation_cache_dir == before
    with pytest.raises(ValueError, match="min_compile_seconds must be >= 0, got -1"):
        compile_cache.enable(str(tmp_path), min_compile_seconds=-1)
