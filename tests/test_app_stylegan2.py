"""The paint engine on a StyleGAN2: strokes resume from the cached activation *and* carry (the
generator's latents and skip image), and equal the same edit made in a full run."""

import jax
import numpy as np
import pytest
from test_stylegan2_edits import G, random_params

pytest.importorskip("fastapi")

from gdjax import intervene, proggan  # noqa: E402
from gdjax.app import engine  # noqa: E402
from gdjax.errors import InputError  # noqa: E402
from gdjax.models import stylegan2  # noqa: E402
from gdjax.report import draw  # noqa: E402

LAYER = "b8.conv1"  # [N, 8, 8, 12]


def test_strokes_on_a_stylegan2_equal_the_full_run():
    params = random_params(stylegan2.abstract_params(G), 1)
    levels = engine.level_table(G, params, LAYER, samples=20)
    eng = engine.Engine(G, params, LAYER, levels=levels)
    h, w, c = eng._hshape()
    rng = np.random.RandomState(0)
    mask = np.zeros((h, w), np.float32)
    mask[2:5, 3:6] = 1
    alpha = np.zeros((h, w, c), np.float32)
    alpha[..., [1, 4, 7]] = mask[..., None]
    value = np.broadcast_to(rng.uniform(1, 3, size=c).astype(np.float32), (h, w, c)).copy()
    ids = [3, 0, 5]
    images, _ = eng.generate(ids=ids, alpha=alpha, value=value)
    plain, _ = eng.generate(ids=ids)

    z = proggan.sample_z(6, 1, G.z_dim)[ids]
    full = jax.jit(lambda p, z, e: intervene.generate(G, p, z, e))
    want = draw.to_uint8(np.asarray(full(params, z, intervene.make(LAYER, alpha, value))))
    want_plain = draw.to_uint8(np.asarray(full(params, z, ())))
    assert np.abs(images.astype(int) - want.astype(int)).max() <= 1
    assert np.abs(plain.astype(int) - want_plain.astype(int)).max() <= 1
    assert np.abs(images.astype(int) - plain.astype(int)).max() > 20  # the stroke shows

    # An activation stored without its carry cannot be resumed; with it, it renders as its id.
    entry = eng.activations([3])[0]
    hh, carry = entry
    with pytest.raises(InputError, match="carry"):
        eng.put("x", hh)
    batch = jax.tree.map(lambda x: x[None], carry)
    eng.put("x", hh, carry=batch)
    again, _ = eng.render([eng.activation("x")], alpha, value)
    np.testing.assert_array_equal(again[0], images[0])
