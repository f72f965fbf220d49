"""The procedural world: determinism, ranges, class statistics and context rules on exact masks."""

import functools
import hashlib

import numpy as np
import pytest

from gdjax import scenes
from gdjax.report import draw
from gdjax.world.scenes import (
    BUILDING,
    CLOUD,
    DOOR,
    GRASS,
    MOUNTAIN,
    ROAD,
    ROOF,
    SKY,
    TREE,
    WATER,
    WINDOW,
)

NUM = len(scenes.LABELS)
GROUND = (WATER, GRASS, ROAD)
ABOVE_HORIZON = (SKY, CLOUD, MOUNTAIN)
NATURE = ABOVE_HORIZON + GROUND  # neither tree nor a building part


@functools.lru_cache(maxsize=2)
def _scenes(n=500, size=64):
    return scenes.render(0, n, size)


def _neighbours(labels):
    """Labels of the (up, down, left, right) neighbour of every pixel, -1 outside the image."""
    p = np.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=-1)
    return p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]


def test_labels_and_categories():
    assert scenes.LABELS[0] == ("-", "object")
    assert scenes.CATEGORIES == ["object"]
    names = [name for name, _ in scenes.LABELS]
    assert len(set(names)) == NUM == 12
    assert {"sky", "cloud", "tree", "building", "roof", "window", "door"} <= set(names)
    assert all(cat in scenes.CATEGORIES for _, cat in scenes.LABELS)
    assert names[DOOR] == "door" and names[SKY] == "sky"


def test_deterministic_and_prefix_stable():
    images, labels = scenes.render(7, 40)  # crosses the internal chunk boundary
    again = scenes.render(7, 40)
    assert images.tobytes() == again[0].tobytes() and labels.tobytes() == again[1].tobytes()
    head = scenes.render(7, 5)
    np.testing.assert_array_equal(head[0], images[:5])
    np.testing.assert_array_equal(head[1], labels[:5])
    tail = scenes.render(7, 9, start=31)
    np.testing.assert_array_equal(tail[0], images[31:])
    np.testing.assert_array_equal(tail[1], labels[31:])
    other = scenes.render(8, 5)
    assert not np.array_equal(other[1], labels[:5])
    assert scenes.render(7, 0)[0].shape == (0, 64, 64, 3)


# sha256 of scenes.render(seed, n, size): (image bytes, float32; label bytes, int32). Computed
# from the renderer that made the shipped demo models' training data (numpy 2.4.6; the same with
# numpy's AVX-512 and AVX2 kernels switched off through NPY_DISABLE_CPU_FEATURES).
GOLDEN = {
    (0, 8, 64): (
        "adfe9ba6e6450a6e2dd89fdb38134e05ee78d77e3f0987a7c4deb523d72d1e07",
        "64b1792e60b35ada2ddb40b4aed4e610ac1501f48e9eeb920cd2fb0b1397cfb9",
    ),
    (1, 8, 64): (
        "60930ec2791cb3496b377627b4c5e899b86bf4bc8698e70b994a50a16189dca2",
        "31972f8d4aa8ccc661147f4d8ae99d0f8d834008ab71c72e15814736e112a109",
    ),
    (1000, 8, 64): (
        "ad4dd103c23958af9ed5a47038020078baab5146db2eb720fcd937339e13465d",
        "fd67d664b1f4ed2306026faf3843b844942c34406dea9db6039779e44f3335c9",
    ),
    (0, 8, 128): (
        "8d73cffe4d6bd1d04637cb533fa1db8e53467ab27a849a7a045ccf9ee2b36d36",
        "21b6538fd740de29865e38d35c630c8cf0441c42fd8a2d8370515cc93a64d850",
    ),
}


@pytest.mark.parametrize("seed,n,size", list(GOLDEN))
def test_golden_hashes(seed, n, size):
    images, labels = scenes.render(seed, n, size)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    got = tuple(hashlib.sha256(a.tobytes()).hexdigest() for a in (images, labels))
    want = GOLDEN[seed, n, size]
    changed = [what for what, a, b in zip(("images", "labels"), got, want, strict=True) if a != b]
    assert not changed, (
        f"the world changed: the {' and '.join(changed)} of scenes.render({seed}, {n}, {size}) "
        f"no longer match the golden hashes. The shipped demo models (gdjax/world/assets/demo) "
        f"were trained on this world; if the change is intended, retrain and re-export them "
        f"(examples/train_demo.py) and update GOLDEN to {got}"
    )


def test_jax_keys():
    jax = pytest.importorskip("jax")
    typed = scenes.render(jax.random.key(3), 3)
    raw = scenes.render(jax.random.PRNGKey(3), 3)
    np.testing.assert_array_equal(typed[0], raw[0])
    assert not np.array_equal(typed[1], scenes.render(jax.random.key(4), 3)[1])


def test_shapes_dtypes_ranges():
    images, labels = scenes.render(1, 20)
    assert images.shape == (20, 64, 64, 3) and images.dtype == np.float32
    assert labels.shape == (20, 64, 64) and labels.dtype == np.int32
    assert images.min() >= -1 and images.max() <= 1
    assert images.min() < -0.8 and images.max() > 0.8  # uses the range
    assert labels.min() >= 1 and labels.max() < NUM  # every pixel labelled


def test_class_statistics():
    _, labels = _scenes()
    freq = scenes.class_frequencies(labels, NUM)
    presence = np.array([(labels == k).any((1, 2)).mean() for k in range(NUM)])
    # Measured on scenes 0..499 of seed 0 (sky .. door); tolerances allow libm differences.
    want_freq = [0, 0.3247, 0.0182, 0.0406, 0.0184, 0.2921, 0.0448, 0.0291]
    want_freq += [0.1496, 0.0398, 0.0245, 0.0183]
    want_presence = [0, 1, 0.886, 0.874, 0.46, 1, 0.59, 0.832, 0.93, 0.93, 0.922, 0.92]
    np.testing.assert_allclose(freq, want_freq, atol=0.002)
    np.testing.assert_allclose(presence, want_presence, atol=0.01)
    assert freq[0] == 0 and np.all(freq[1:] >= 0.015) and np.all(presence[1:] >= 0.4)
    np.testing.assert_allclose(freq.sum(), 1)


def test_horizon_separates_sky_from_ground():
    _, labels = _scenes()
    rows = np.arange(64)[None, :, None]
    lowest_sky = np.where(np.isin(labels, ABOVE_HORIZON), rows, -1).max(1)
    highest_ground = np.where(np.isin(labels, (GRASS, ROAD)), rows, 64).min(1)
    lowest_water = np.where(labels == WATER, rows, -1).max(1)
    highest_water = np.where(labels == WATER, rows, 64).min(1)
    assert np.all(lowest_sky < highest_ground) and np.all(lowest_sky < highest_water)
    assert np.all(lowest_water < highest_ground)  # the lake lies behind grass and road
    for v in _neighbours(labels):  # clouds only in the sky: never next to water or ground
        assert not np.any((labels == CLOUD) & np.isin(v, GROUND))


def test_windows_and_doors_only_in_walls():
    _, labels = _scenes()
    up, down, left, right = _neighbours(labels)
    window = labels == WINDOW
    for v in (up, down, left, right):
        assert not np.any(window & np.isin(v, NATURE))
    door = labels == DOOR
    for v in (up, left, right):
        assert not np.any(door & np.isin(v, NATURE))
    assert not np.any(door & np.isin(down, ABOVE_HORIZON + (WATER,)))
    # Door bottoms stand on the ground line: below them grass or road unless a closer object.
    bottom = door & (down != DOOR) & (down >= 0)
    on_ground = np.isin(down[bottom], (GRASS, ROAD)).mean()
    assert on_ground > 0.9, on_ground  # measured 0.935
    assert np.isin(down[bottom], (GRASS, ROAD, TREE, BUILDING, ROOF, WINDOW)).all()


def test_roofs_and_standing_objects():
    _, labels = _scenes()
    down = _neighbours(labels)[1]
    roof = labels == ROOF
    # Roofs sit on walls: the eaves' overhang aside, below a roof's lower edge is its building.
    bottom = roof & (down != ROOF) & (down >= 0)
    on_wall = np.isin(down[bottom], (BUILDING, WINDOW, DOOR)).mean()
    assert on_wall > 0.9, on_wall  # measured 0.935
    # Buildings stand on the ground below the lake: under the lowest wall pixel of every column
    # lies grass, road, or a closer tree or building, never sky, mountain or water.
    rows = np.arange(64)[None, :, None]
    lowest = np.where(labels == BUILDING, rows, -1).max(1)  # [n, W]
    n, w = np.nonzero((lowest >= 0) & (lowest < 63))
    below = labels[n, lowest[n, w] + 1, w]
    assert not np.isin(below, ABOVE_HORIZON + (WATER,)).any()
    # Trees stand on the ground too; a crown may hang over sky or water beside its trunk.
    lowest = np.where(labels == TREE, rows, -1).max((1, 2))
    has = (lowest >= 0) & (lowest < 63)
    base = [labels[i, lowest[i] + 1][labels[i, lowest[i]] == TREE] for i in np.nonzero(has)[0]]
    standing = np.mean(
        [np.isin(b, (GRASS, ROAD, BUILDING, ROOF, WINDOW, DOOR)).all() for b in base]
    )
    assert standing > 0.98, standing  # measured 0.998
    # Mountains rise from the horizon: below a mountain pixel never sky or cloud.
    assert not np.any((labels == MOUNTAIN) & np.isin(down, (SKY, CLOUD)))


def test_size_128_is_the_same_world_scaled():
    small = scenes.render(2, 24, 64)[1]
    images, big = scenes.render(2, 24, 128)
    assert images.shape == (24, 128, 128, 3) and big.shape == (24, 128, 128)
    assert big.min() >= 1 and images.min() >= -1 and images.max() <= 1
    agree = (big[:, ::2, ::2] == small).mean()
    assert agree > 0.9, agree
    np.testing.assert_allclose(
        scenes.class_frequencies(big, NUM), scenes.class_frequencies(small, NUM), atol=0.01
    )


def test_class_frequencies_brute_force():
    labels = np.random.default_rng(0).integers(0, 5, (3, 7, 9))
    freq = scenes.class_frequencies(labels, 6)
    want = [np.mean(labels == k) for k in range(6)]
    np.testing.assert_allclose(freq, want)


def test_palette_and_colorize():
    big, small = draw.palette(300), draw.palette(12)
    np.testing.assert_array_equal(big[:12], small)
    assert big.dtype == np.uint8 and big.shape == (300, 3)
    assert tuple(big[0]) == (0, 0, 0)
    assert len(np.unique(big, axis=0)) == 300
    labels = np.array([[0, 1, 299], [-1, 5, 5]])
    rgb = draw.colorize(labels)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 2], big[299])
    np.testing.assert_array_equal(rgb[1, 0], (0, 0, 0))
