"""The shipped demo GAN draws the demo world: the quality bars of issue 4, measured here."""

import numpy as np
import pytest

from gdjax import demo, proggan, scenes
from gdjax.models import checkpoint
from gdjax.world import quality

N = 1000


@pytest.fixture(scope="module")
def report():
    (module, params), seg = demo.load_models()
    z = proggan.sample_z(N, 1, module.sizes[0])
    gen = lambda s, k: np.asarray(module.apply({"params": params}, z[s : s + k])[0])  # noqa: E731
    return quality.compare(
        seg, gen, lambda s, k: scenes.render(101, k, start=s)[0],
        lambda s, k: scenes.render(202, k, start=s)[0], n=N,
    )  # fmt: skip


def test_shipped_generator_shape_and_recipe():
    module, params = demo.generator()
    assert module.sizes == (128, 128, 128, 64, 32, 16)
    images, acts = module.apply({"params": params}, proggan.sample_z(2, 1, 128), capture=["layer4"])
    assert images.shape == (2, 64, 64, 3) and acts["layer4"].shape == (2, 8, 8, 128)
    config = checkpoint.read_config(demo.GENERATOR, proggan.KIND)
    assert config["trained_images"] > 0 and "train_demo.py --what=generator" in config["recipe"]


def test_class_frequencies_within_30_percent(report):
    rendered = np.array(report["frequency_rendered"])
    rel = np.array(report["relative_error"])
    big = [i for i in range(1, len(rendered)) if rendered[i] >= 0.01]
    assert len(big) == 11  # every class covers >= 1% of rendered pixels
    bad = {report["labels"][i]: round(float(rel[i]), 3) for i in big if abs(rel[i]) > 0.30}
    assert not bad, f"classes off by more than 30%: {bad}"


def test_every_class_in_at_least_5_percent_of_images(report):
    presence = np.array(report["presence_generated"])[1:]
    assert presence.min() >= 0.05, dict(zip(report["labels"][1:], presence.round(3), strict=True))


def test_frechet_distance_within_5x_of_the_rendered_floor(report):
    assert report["fd_floor"] > 0
    assert report["fd"] <= 5 * report["fd_floor"], (report["fd"], report["fd_floor"])
