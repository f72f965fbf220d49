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


# Measured by this module's report (N = 1000, latents sample_z(N, 1), rendered seeds 101 and 202;
# the same as `python examples/eval_gan.py`), per class: generated vs rendered pixel frequency,
# relative error, share of generated images containing the class (of rendered ones).
#   sky       0.3336 0.3304 +0.010  1.000 (1.000)    road      0.0501 0.0483 +0.038  0.866 (0.622)
#   cloud     0.0165 0.0174 -0.054  0.856 (0.866)    tree      0.0247 0.0288 -0.144  0.955 (0.822)
#   mountain  0.0460 0.0404 +0.138  0.999 (0.907)    building  0.1415 0.1451 -0.025  0.910 (0.923)
#   water     0.0175 0.0174 +0.001  0.726 (0.430)    roof      0.0357 0.0397 -0.098  0.896 (0.923)
#   grass     0.2978 0.2926 +0.018  1.000 (1.000)    window    0.0212 0.0224 -0.055  0.846 (0.912)
#                                                    door      0.0155 0.0175 -0.115  0.813 (0.896)
# Fréchet distance 9.329, floor 4.763, ratio 1.96. The bars below sit just outside these numbers
# (worst: tree -14%, water in 72.6% of images, ratio 1.96), so a worse generator fails them.
MAX_RELATIVE_ERROR = 0.20
MIN_PRESENCE = 0.60
MAX_FD_RATIO = 2.5


@pytest.mark.slow
def test_class_frequencies_within_20_percent(report):
    rendered = np.array(report["frequency_rendered"])
    rel = np.array(report["relative_error"])
    big = [i for i in range(1, len(rendered)) if rendered[i] >= 0.01]
    assert len(big) == 11  # every class covers >= 1% of rendered pixels
    bad = {
        report["labels"][i]: round(float(rel[i]), 3)
        for i in big
        if abs(rel[i]) > MAX_RELATIVE_ERROR
    }
    assert not bad, f"classes off by more than {MAX_RELATIVE_ERROR:.0%}: {bad}"


@pytest.mark.slow
def test_every_class_in_at_least_60_percent_of_images(report):
    presence = np.array(report["presence_generated"])[1:]
    assert presence.min() >= MIN_PRESENCE, dict(
        zip(report["labels"][1:], presence.round(3), strict=True)
    )


@pytest.mark.slow
def test_frechet_distance_within_2_5x_of_the_rendered_floor(report):
    assert report["fd_floor"] > 0
    assert report["fd"] <= MAX_FD_RATIO * report["fd_floor"], (report["fd"], report["fd_floor"])
