"""Strict JAX settings for every test: implicit rank promotion is an error."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def torch():
    """The torch module, or a clean skip where the converting extra is not installed."""
    return pytest.importorskip("torch")
