"""Segmenter pieces without torch: resampling operators, label numbering, quad, API."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdjax import segmenter as S
from gdjax.models.labels import Vocab, connected_components, label_maps, quad_channels
from gdjax.models.resample import adaptive_avg_matrix, bilinear_matrix, prroi_matrix, resample

# The Broden+ label tables of the upp segmenter (CSAILVision/unifiedparsing,
# meta_file/joint_dataset/*.csv, MIT license): not shipped; see README, "Development".
UPP_CSV = os.environ.get("GDJAX_UPP_LABELS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "reference", "upp_labels"
)


def _bilinear_zero_outside(x, y, xx):
    """f(y, x) = sum X[h, w] tri(y - h) tri(x - w), samples outside the map are 0."""
    h, w = x.shape
    xp = np.pad(x, ((0, 1), (0, 1)))
    y0, x0 = np.floor(y).astype(int), np.floor(xx).astype(int)
    fy, fx = y - y0, xx - x0
    return (
        xp[y0, x0] * (1 - fy) * (1 - fx)
        + xp[y0 + 1, x0] * fy * (1 - fx)
        + xp[y0, x0 + 1] * (1 - fy) * fx
        + xp[y0 + 1, x0 + 1] * fy * fx
    )


@pytest.mark.parametrize("pooled", [3, 6, 1, 2])
def test_prroi_matches_brute_force_integral(pooled):
    x = np.random.default_rng(pooled).normal(size=(8, 8))
    b = 8.0 / pooled
    k = int(160 * b)  # midpoint samples per bin and axis
    want = np.zeros((pooled, pooled))
    for p in range(pooled):
        ys = b * p + (np.arange(k) + 0.5) * b / k
        for q in range(pooled):
            xs = b * q + (np.arange(k) + 0.5) * b / k
            yy, xx = np.meshgrid(ys, xs, indexing="ij")
            want[p, q] = _bilinear_zero_outside(x, yy, xx).mean()  # / nominal bin area
    got = resample(jnp.asarray(x, jnp.float32)[None, :, :, None], prroi_matrix(pooled, 8),
                   prroi_matrix(pooled, 8))[0, :, :, 0]  # fmt: skip
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    if pooled in (3, 6):  # bins not aligned with pixels: adaptive average pooling differs
        area = adaptive_avg_matrix(pooled, 8) @ x @ adaptive_avg_matrix(pooled, 8).T
        assert np.abs(area - want).max() > 1e-2


def test_prroi_constant_map_fades_at_the_border():
    m = prroi_matrix(1, 8)
    np.testing.assert_allclose(m.sum(), 1 - 0.5 / 8, rtol=1e-6)


def test_bilinear_matrix_is_torch_half_pixel():
    np.testing.assert_allclose(
        bilinear_matrix(4, 2), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]], atol=1e-7
    )
    np.testing.assert_allclose(  # shrinking: two taps, no antialiasing
        bilinear_matrix(2, 4), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]], atol=1e-7
    )


VOCAB = Vocab(
    objects=("-", "wall", "sky", "building", "person", "door"),
    materials=("-", "brick", "wood"),
    part_owners=((2, ("-", "cloud")), (3, ("-", "door", "roof")), (4, ("-", "head"))),
    n_owners_used=3,
    quad=True,
)


def test_label_numbering_hand_example():
    names = [n for n, _ in VOCAB.labels]
    assert names[:6] == ["-", "wall", "sky", "building", "person", "door"]
    assert names[6:11] == ["-t"[1:] and f"{o}-t" for o in VOCAB.objects[1:]]
    assert names[11] == "wall-l" and names[16] == "wall-b" and names[21] == "wall-r"
    assert names[26:] == ["brick", "wood", "cloud", "roof", "head"]
    assert [c for _, c in VOCAB.labels][25:] == ["part"] + ["material"] * 2 + ["part"] * 3
    assert VOCAB.part_maps == ((0, 28), (0, 5, 29), (0, 30))
    assert VOCAB.categories == ("object", "part", "material")
    # object map, material argmax and part argmax per owner slice, 1 x 1 x 3 pixels
    obj = np.eye(6)[[3, 2, 4]][None, None]
    mat = np.eye(3)[[1, 0, 2]][None, None]
    part = np.concatenate([np.eye(2)[[0, 1, 0]], np.eye(3)[[2, 0, 1]], np.eye(2)[[1, 1, 1]]], -1)[
        None, None
    ]
    got = label_maps(VOCAB, {"object": obj, "material": mat, "part": part})
    # building pixel: roof (29); sky pixel: cloud (28); person pixel: head (30)
    np.testing.assert_array_equal(got[0, 0], [[3, 26, 29], [2, 0, 28], [4, 27, 30]])


def test_upp_vocabulary_has_1729_labels():
    if not os.path.isdir(UPP_CSV):
        pytest.skip(f"upp label tables not found at {UPP_CSV} (set GDJAX_UPP_LABELS)")
    from gdjax.models.labels import upp_vocab_from_tables

    read = lambda f: [r for r in csv.DictReader(open(os.path.join(UPP_CSV, f)))]  # noqa: E731
    objects = [r["name"] for r in read("object.csv")]
    materials = [r["name"] for r in read("material.csv")]
    parts = {
        r["object_name"]: r["part_names"].split(";") for r in read("object_part_hierarchy.csv")
    }
    v = upp_vocab_from_tables(objects, materials, parts)
    assert len(v.labels) == 1729 and len(objects) == 336
    assert v.labels[1676] == ("brick", "material") and v.labels[1701] == ("cloud", "part")
    assert v.labels[336] == ("wall-t", "part") and v.labels[1675] == (objects[335] + "-r", "part")
    assert v.part_maps[1][1:3] == (9, 16)  # building's window and door are objects


QUAD_OBJ = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 2], [3, 0, 1, 1]])


def test_quad_hand_example():
    got = np.asarray(quad_channels(jnp.asarray(QUAD_OBJ), 5))
    vert = [[6, 6, 0, 7], [16, 16, 0, 17], [0, 0, 0, 17], [18, 0, 16, 16]]
    horiz = [[11, 21, 0, 22], [11, 21, 0, 22], [0, 0, 0, 22], [23, 0, 11, 21]]
    np.testing.assert_array_equal(got[..., 0], vert)
    np.testing.assert_array_equal(got[..., 1], horiz)
    skip = np.asarray(quad_channels(jnp.asarray(QUAD_OBJ), 5, skip_last=True))
    np.testing.assert_array_equal(skip[3, 2:], 0)  # the last component in raster order
    np.testing.assert_array_equal(skip[:3], got[:3])
    diag = np.asarray(quad_channels(jnp.asarray([[1, 0], [0, 1]]), 5))  # 8-connectivity
    np.testing.assert_array_equal(diag[..., 0], [[6, 0], [0, 16]])


def _bfs_components(x):
    h, w = x.shape
    out = np.full((h, w), h * w)
    for s in range(h * w):
        i, j = divmod(s, w)
        if x[i, j] == 0 or out[i, j] < h * w:
            continue
        stack, out[i, j] = [(i, j)], s
        while stack:
            a, b = stack.pop()
            for da in (-1, 0, 1):
                for db in (-1, 0, 1):
                    c, d = a + da, b + db
                    if 0 <= c < h and 0 <= d < w and out[c, d] == h * w and x[c, d] == x[a, b]:
                        out[c, d] = s
                        stack.append((c, d))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_connected_components_match_bfs(seed):
    x = np.random.default_rng(seed).integers(0, 3, (13, 17))
    np.testing.assert_array_equal(
        np.asarray(connected_components(jnp.asarray(x))), _bfs_components(x)
    )


TINY = {
    "kind": "segmenter",
    "model": {"stem": [4, 4, 8], "planes": [4, 4, 8, 8], "depths": [1, 1, 1, 1], "n_object": 6,
              "n_material": 3, "n_part": 7, "fpn_dim": 8, "ppm_dim": 8},
    "vocab": {"objects": list(VOCAB.objects), "materials": list(VOCAB.materials),
              "part_owners": [[o, list(p)] for o, p in VOCAB.part_owners], "n_owners_used": 3,
              "quad": True},
    "preprocess": {"seg_sizes": [32]},
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    return S.create(TINY, key=jax.random.key(3))


def _images(n=2, size=32, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, size, size, 3), minval=-1, maxval=1)


def test_segment_shapes_compile_once_and_roundtrip(tiny, tmp_path):
    x = _images()
    before = S.segment._cache_size()
    a = S.segment(tiny, x, downsample=2)
    S.segment(tiny, _images(seed=1), downsample=2)
    assert S.segment._cache_size() == before + 1
    assert a.shape == (2, 16, 16, 5) and a.dtype == jnp.int32
    assert int(a.max()) < len(tiny.labels)
    S.save(str(tmp_path / "seg"), tiny)
    back = S.load(str(tmp_path / "seg"))
    np.testing.assert_array_equal(np.asarray(S.segment(back, x, downsample=2)), np.asarray(a))
    assert back.labels == tiny.labels


@pytest.mark.slow
def test_class_score_values_and_gradients(tiny):
    x = _images()
    p = S.probabilities(tiny, x)
    obj = np.asarray(jnp.argmax(p["object"], -1))
    score, mask = S.class_score(tiny, x, 27)  # material 'wood'
    np.testing.assert_allclose(score, p["material"][..., 2], atol=1e-5)
    np.testing.assert_array_equal(mask, np.asarray(jnp.argmax(p["material"], -1)) == 2)
    score, mask = S.class_score(tiny, x, 5)  # door: object + building's part
    part = np.asarray(jnp.argmax(p["part"][..., 2:5], -1))
    np.testing.assert_allclose(score, p["object"][..., 5] + p["part"][..., 3], atol=1e-5)
    np.testing.assert_array_equal(mask, (obj == 5) | ((obj == 3) & (part == 1)))
    for label in (5, 29):  # object+part, part only ('roof')
        g = jax.grad(lambda im, c=label: S.class_score(tiny, im, c)[0].sum())(x)
        assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0
    with pytest.raises(ValueError, match="quad"):
        S.class_score(tiny, x, 7)


def test_train_mode_logits_and_batch_stats(tiny):
    (x,) = S.preprocess(tiny, _images())
    (out, acts), upd = tiny.module.apply(
        tiny.variables, x, (32, 32), train=True, softmax=False, mutable=["batch_stats"]
    )
    assert out["object"].shape == (2, 32, 32, 6) and "batch_stats" in upd
    assert acts["layer4"].shape == (2, 1, 1, 32)


def test_quad_segmenter_runs_in_the_sharded_cache(tiny, tmp_path):
    # The dissection cache runs the segmenter under shard_map; the quad sub-labels' while_loop
    # must type-check there (its loop flag is varying over the batch axis).
    from gdjax import proggan
    from gdjax.dissect import cache
    from gdjax.report import draw

    module, params = proggan.init((16, 16, 16, 8, 8), seed=0)  # 32x32 images
    fn = cache.model_fn(module, params, tiny, ["layer4"], 2, images=True)
    z = proggan.sample_z(8, 1, 16)
    got = cache.collect(str(tmp_path / "c"), z, fn, batch_size=4, micro=2)
    images = module.apply({"params": params}, jnp.asarray(z))[0]
    np.testing.assert_array_equal(got.labels, np.asarray(S.segment(tiny, images, 2)))
    assert got.labels.shape == (8, 16, 16, 5) and got.labels[..., 3:].max() > 0
    diff = np.abs(got.images.astype(int) - draw.to_uint8(images).astype(int))
    assert got.images.dtype == np.uint8 and diff.max() <= 1  # float rounding at .5 boundaries
