"""A planted generator whose class is caused by known units, for ACE and ablation tests.

``z [N, 4]`` -> ``layer1 [N, 4, 4, 6]`` = softplus(z A + P) -> image ``[N, 8, 8, 3]`` (nearest
x2): red = tanh(2 (h1 + h3) - 7), green/blue read the other units only. The class is "red":
``score = sigmoid(10 (red - 0.2))``, ``mask = red > 0.2``; so units 1 and 3 cause it and no
other unit has any effect on it. Same call as :class:`gdjax.models.proggan.Generator`.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gdjax import ace, proggan

CAUSAL = (1, 3)


@dataclasses.dataclass(frozen=True)
class Planted:
    sizes: tuple = (4, 6)
    layers: tuple = ("layer1", "output_8x8")

    def apply(self, variables, x, start=None, stop=None, capture=(), edits=None):
        p = variables["params"]
        edits = edits or {}
        if start is None:
            h = jax.nn.softplus(jnp.einsum("nz,zc->nc", x, p["A"])[:, None, None, :] + p["P"][None])
            if "layer1" in edits:
                h = proggan.apply_edit(h, *edits["layer1"])
            if stop == "layer1":
                return h, {}
        else:
            h = x
        red = jnp.tanh(2 * jnp.einsum("nhwc,c->nhw", h, p["r"]) - 7)
        gb = jnp.tanh(jnp.einsum("nhwc,cd->nhwd", h, p["G"]) - 1)
        img = jnp.concatenate([red[..., None], gb], axis=-1)
        return jnp.repeat(jnp.repeat(img, 2, axis=1), 2, axis=2), {}


def make():
    rng = np.random.RandomState(0)
    r = np.zeros(6, np.float32)
    r[list(CAUSAL)] = 1.0
    G = rng.normal(size=(6, 2)).astype(np.float32)
    G[list(CAUSAL)] = 0.0
    params = {
        "A": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
        "P": jnp.asarray(rng.normal(size=(4, 4, 6)) * 0.7, jnp.float32),
        "r": jnp.asarray(r),
        "G": jnp.asarray(G),
    }
    return Planted(), params


def score(images):
    return jax.nn.sigmoid(10 * (images[..., 0] - 0.2))


def mask(images):
    return images[..., 0] > 0.2


FNS = ace.ClassFns(score, mask)
