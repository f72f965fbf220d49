"""Dissection statistics against brute-force NumPy and planted ground truth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bruteforce import bincounts, iou_all, iqr_search, topk, upsample

from gdjax.dissect import counts as iou_lib
from gdjax.dissect import quantiles, scores, units
from gdjax.dissect import topk as topk_lib
from gdjax.models.resample import interpolation_matrix
from gdjax.models.resample import upsample as gd_upsample

# ---------------------------------------------------------------- upsampling


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(
    "src,dst", [((4, 4), (16, 16)), ((3, 5), (7, 4)), ((8, 8), (4, 4)), ((1, 2), (3, 5))]
)
def test_upsample_matches_bruteforce(src, dst, align_corners):
    x = np.random.default_rng(0).standard_normal((2, *src, 3)).astype(np.float32)
    got = np.asarray(gd_upsample(jnp.asarray(x), dst, align_corners))
    for n in range(2):
        np.testing.assert_allclose(got[n], upsample(x[n], dst, align_corners), atol=1e-6)


def test_upsample_matches_torch(torch):
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    for size, ac in [((128, 128), False), ((5, 3), False), ((64, 64), True)]:
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=ac
        )
        got = np.asarray(gd_upsample(jnp.asarray(x), size, ac))
        np.testing.assert_allclose(got, ref.permute(0, 2, 3, 1).numpy(), atol=2e-6)
    assert np.allclose(interpolation_matrix(16, 8).sum(1), 1)


# ---------------------------------------------------------------- quantiles


def _tied_values(seed=0, n=900, units=6):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((n, units)), 0).astype(np.float32)  # ReLU zeros
    x[:, 1] = np.round(x[:, 1] * 2) / 2  # few distinct values
    x[:, 2] = 3.25  # constant
    x[:, 3] = -x[:, 3] * 1e30  # huge negatives, and -0.0
    x[::7, 4] = np.inf  # infinities count as values
    return x


QS = np.concatenate(
    [[0.0, 1e-7, 0.001, 0.25, 0.5, 0.999, 1 - 1e-7, 1.0], 1 - scores.iqr_fractions()]
)


@pytest.mark.parametrize("bits", [(16, 8, 8), (4,) * 8])
def test_exact_quantiles_equal_numpy_hazen(bits):
    x = _tied_values()
    splits = [x[:400], x[400:401], x[401:]]
    got = quantiles.exact_quantiles(lambda: iter(splits), QS, bits=bits)
    with np.errstate(invalid="ignore"):
        ref = np.quantile(x.astype(np.float64), QS, axis=0, method="hazen").T
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # Same bytes however the data are batched, and with a transform traced into the update.
    other = quantiles.exact_quantiles(
        lambda: (x[i : i + 128] for i in range(0, len(x), 128)), QS, bits=bits
    )
    assert got.tobytes() == other.tobytes()
    doubled = quantiles.exact_quantiles(
        lambda: iter([x / 2]), QS, bits=bits, transform=lambda v: v * 2
    )
    assert got.tobytes() == doubled.tobytes()


def test_host_float_key_equals_device_key_and_inverts():
    x = _tied_values().reshape(-1)
    x = np.concatenate([x, [-np.inf, np.float32(-1e-45), np.float32(1e-45), -0.0]]).astype(
        np.float32
    )
    keys = quantiles.host_float_key(x)
    np.testing.assert_array_equal(keys, np.asarray(quantiles.float_key(jnp.asarray(x))))
    assert np.all(np.diff(keys[np.argsort(x, kind="stable")].astype(np.int64)) >= 0)
    flushed = np.where(np.abs(x) < np.finfo(np.float32).tiny, 0.0, x)  # subnormals count as 0
    np.testing.assert_array_equal(quantiles.key_to_float(keys), flushed)


def test_quantile_update_compiles_once_per_shape():
    traces = []

    def counted(*args):
        traces.append(1)
        return quantiles.quantile_update(*args)

    update = jax.jit(counted)
    state = quantiles.quantile_init(6, 4, 8)
    tables = (jnp.zeros((6, 2**16), jnp.int32), jnp.zeros((6, 4, 2**8), jnp.int32))
    for seed in range(4):
        x = jnp.asarray(_tied_values(seed, 64))
        state = update(state, x, tables)
    assert len(traces) == 1 and int(state.count) == 64 * 4


def test_exact_quantiles_detects_changing_data():
    calls = []

    def batches():
        calls.append(1)
        return iter([np.full((10, 2), len(calls), np.float32)])

    with pytest.raises(ValueError, match="change"):
        quantiles.exact_quantiles(batches, [0.5])


# ---------------------------------------------------------------- top-k


def test_topk_matches_bruteforce_and_merges():
    rng = np.random.default_rng(2)
    acts = np.round(rng.standard_normal((23, 3, 3, 5)), 1).astype(np.float32)  # ties
    index = np.arange(100, 123)
    ref_v, ref_i = topk(acts, index, 7)
    update = jax.jit(topk_lib.topk_update)
    state = topk_lib.topk_init(7, 5)
    for lo in range(0, 23, 4):
        state = update(state, jnp.asarray(acts[lo : lo + 4]), jnp.asarray(index[lo : lo + 4]))
    np.testing.assert_array_equal(state.values, ref_v)
    np.testing.assert_array_equal(state.index, ref_i)
    # Shards in any order merge to the same bytes.
    a = topk_lib.topk_update(
        topk_lib.topk_init(7, 5), jnp.asarray(acts[15:]), jnp.asarray(index[15:])
    )
    b = topk_lib.topk_update(
        topk_lib.topk_init(7, 5), jnp.asarray(acts[:15]), jnp.asarray(index[:15])
    )
    merged = topk_lib.topk_merge(a, b)
    assert np.asarray(merged.values).tobytes() == np.asarray(state.values).tobytes()
    np.testing.assert_array_equal(merged.index, ref_i)


# ---------------------------------------------------------------- IoU / IQR counts


NUM_LABELS, NUM_CATS = 9, 3
LABEL_CATEGORY = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])  # label 8 never appears below


def _dissect_data(seed=3, n=6, size=16, units=5):
    """Upsampled activations with ReLU zeros and ties; 3-channel segmentations with label 0
    in several channels, repeated labels across channels and a rare label."""
    rng = np.random.default_rng(seed)
    raw = np.maximum(rng.standard_normal((n, 4, 4, units)), 0).astype(np.float32)
    raw[..., 4] = 0.0  # a dead unit: every threshold <= 0
    acts = np.array(gd_upsample(jnp.asarray(raw), (size, size)))
    obj = rng.integers(1, 4, (n, size // 4, size // 4)).repeat(4, 1).repeat(4, 2)
    part = np.where(rng.random((n, size, size)) < 0.3, rng.integers(4, 7, (n, size, size)), 0)
    third = np.where(rng.random((n, size, size)) < 0.2, obj, 0)  # duplicates channel 0
    seg = np.stack([obj, part, third], axis=-1).astype(np.int32)
    seg[0, 0, 0, 0] = 7  # rare label (< 1e-3 of the label fraction): MI zeroed
    # Unit 0 follows label 2 closely, so some IQR exceeds the agreement cut.
    acts[..., 0] = np.where(np.any(seg == 2, -1), 2.0 + acts[..., 0], acts[..., 0] * 0.1)
    return acts, seg


def _counts(acts, seg, tau, splits=(2, 4), table=False):
    update = jax.jit(iou_lib.counts_update)
    state = iou_lib.counts_init(NUM_LABELS, NUM_CATS, tau.shape[0], tau.shape[1])
    t = iou_lib.threshold_table(tau) if table else jnp.asarray(tau)
    for lo, hi in zip((0, *splits), (*splits, len(acts)), strict=True):
        state = update(state, acts[lo:hi], seg[lo:hi], t, LABEL_CATEGORY)
    return jax.tree.map(np.asarray, state)


def test_threshold_table_counts_equal_direct_comparisons():
    rng = np.random.default_rng(5)
    acts = rng.standard_normal((3000, 4)).astype(np.float32)
    acts[::5] = 0.0
    acts[1::7] = -0.0
    acts[::11, 3] = np.inf
    tau = np.sort(rng.standard_normal((4, 20)).astype(np.float32), axis=1)[:, ::-1].copy()
    tau[0, 5:12] = 0.0  # ties, and -0.0 equal to 0.0
    tau[0, 12] = -0.0
    tau[1] = 1.0 + np.arange(20, dtype=np.float32) * 1e-4  # 20 distinct keys in one 16-bit bin
    tau[2, :3] = np.inf
    table = iou_lib.threshold_table(tau)
    # Unit 1's thresholds share one 16-bit key prefix and have 20 distinct 24-bit ones.
    assert (table.top[1] < 0).sum() == 1 and (table.mid[1] < 0).sum() == 20
    shapes = iou_lib.threshold_table_shape(4, 20)  # what passes compile ahead with
    assert [(a.shape, a.dtype) for a in table] == [(a.shape, a.dtype) for a in shapes]
    got = np.asarray(iou_lib.exceeded(jnp.asarray(acts), table))
    ref = (acts.T[:, :, None] > tau[:, None, :]).sum(-1)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(np.asarray(iou_lib.exceeded(jnp.asarray(acts), tau)), ref)


def _taus(acts, num=12):
    fr = scores.iqr_fractions(num)
    q = quantiles.exact_quantiles(lambda: iter([acts]), 1 - fr)
    return fr, scores.monotone_thresholds(q)


@pytest.mark.parametrize("ties_quirk", [False, True])
def test_iqr_search_matches_bruteforce(ties_quirk):
    acts, seg = _dissect_data()
    fr, tau = _taus(acts)
    counts = _counts(acts, seg, tau)
    got = scores.iqr_search(counts, tau, LABEL_CATEGORY, fractions=fr, ties_quirk=ties_quirk)
    ref = iqr_search(acts, seg, tau, LABEL_CATEGORY, fr, NUM_LABELS, last=ties_quirk)
    assert ref["iqr"].max() > 0.05 and (ref["iqr"] == 0).any()
    assert np.all(got.max_iqr[7] == 0) and np.all(got.max_iqr[:, 4] == 0)
    np.testing.assert_allclose(got.max_iqr, ref["iqr"], atol=1e-12)
    np.testing.assert_array_equal(got.max_iqr_level, ref["level"])
    np.testing.assert_array_equal(got.max_iqr_quantile, ref["q"])
    np.testing.assert_allclose(got.max_iqr_iou, ref["iou"], atol=1e-12)
    np.testing.assert_allclose(got.max_iqr_agreement, ref["agree"], atol=1e-12)
    # Batching and the lookup table change nothing, byte for byte.
    again = _counts(acts, seg, tau, splits=(1, 5), table=True)
    for a, b in zip(jax.tree.leaves(counts), jax.tree.leaves(again), strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("label0_quirk", [False, True])
@pytest.mark.parametrize("ties_quirk", [False, True])
def test_unit_levels_rules(label0_quirk, ties_quirk):
    acts, seg = _dissect_data()
    fr, tau = _taus(acts)
    search = scores.iqr_search(
        _counts(acts, seg, tau), tau, LABEL_CATEGORY, fractions=fr, ties_quirk=ties_quirk
    )
    best, level = scores.unit_levels(search, label0_quirk=label0_quirk, ties_quirk=ties_quirk)
    for u in range(tau.shape[0]):
        cands = list(range(NUM_LABELS)) if label0_quirk else list(range(1, NUM_LABELS))
        vals = [search.max_iqr[lab, u] for lab in cands]
        pick = (
            cands[len(vals) - 1 - vals[::-1].index(max(vals))]
            if ties_quirk
            else cands[vals.index(max(vals))]
        )
        if max(vals) <= 0 and not ties_quirk:
            pick = 0
        assert best[u] == pick
        assert level[u] == np.float32(search.max_iqr_level[pick, u])
    assert best[4] == (NUM_LABELS - 1 if ties_quirk else 0)  # the dead unit


@pytest.mark.parametrize("denominators", ["category", "all"])
def test_iou_scores_match_bruteforce(denominators):
    acts, seg = _dissect_data(seed=4)
    levels = np.quantile(acts.reshape(-1, 5), 0.8, axis=0, method="hazen").astype(np.float32)
    counts = _counts(acts, seg, levels[:, None])
    iou, iqr = scores.iou_scores(counts, LABEL_CATEGORY, denominators=denominators)
    if denominators == "category":
        ref_iou, ref_iqr = bincounts(acts, seg, levels, LABEL_CATEGORY, NUM_LABELS)
        np.testing.assert_allclose(iqr, ref_iqr, atol=1e-12)
    else:
        ref_iou = iou_all(acts, seg, levels, NUM_LABELS)
    np.testing.assert_allclose(iou, ref_iou, atol=1e-12)
    labels = scores.label_units(iou, iqr, LABEL_CATEGORY, best=None)
    np.testing.assert_array_equal(labels.label, ref_iou.argmax(0))
    np.testing.assert_allclose(labels.iou, ref_iou.max(0), atol=1e-12)
    np.testing.assert_array_equal(labels.interp, (labels.iou > 0.05) & (labels.iqr > 0.01))
    assert labels.label[4] == 0 and not labels.interp[4]  # dead unit: IoU 0, no label


def test_units_per_step_divides_the_unit_count():
    assert units.units_per_step(128) == (1 if jax.default_backend() == "cpu" else 128)
    assert [units.units_per_step(6, g) for g in (4, 3, 9, 0)] == [
        3,
        3,
        6,
        6 if jax.default_backend() != "cpu" else 1,
    ]
    assert units.units_per_step(7, 4) == 1  # 7 is prime


def test_unit_groups_and_per_unit_upsampling_change_nothing():
    """Any number of units per loop step, and upsampling one unit at a time inside the loop,
    give the same bytes as upsampling the whole batch first."""
    rng = np.random.default_rng(8)
    raw = np.maximum(rng.standard_normal((6, 4, 4, 6)), 0).astype(np.float32)
    up = lambda a: gd_upsample(a, (16, 16))  # noqa: E731
    acts = np.asarray(up(jnp.asarray(raw)))
    _, seg = _dissect_data(units=6)
    fr, tau = _taus(acts)
    table = jax.tree.map(jnp.asarray, iou_lib.threshold_table(tau))
    for num, t in ((1, jnp.asarray(tau[:, 5:6])), (tau.shape[1], table)):
        state = iou_lib.counts_init(NUM_LABELS, NUM_CATS, 6, num)
        update = jax.jit(iou_lib.counts_update, static_argnames=("transform", "group"))
        ref = update(state, acts, seg, t, LABEL_CATEGORY)
        for group, transform, a in [(1, up, raw), (2, None, acts), (3, up, raw), (6, up, raw)]:
            got = update(state, a, seg, t, LABEL_CATEGORY, transform=transform, group=group)
            for x, y in zip(jax.tree.leaves(ref), jax.tree.leaves(got), strict=True):
                assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), (group, transform)
    qs = 1 - fr
    want = quantiles.exact_quantiles(lambda: iter([acts]), qs)
    for group in (1, 2, 6):
        search, state = None, None
        update = jax.jit(quantiles.quantile_update, static_argnames=("transform", "group"))
        for b in quantiles.DEFAULT_BITS:
            tables = (
                () if search is None else tuple(map(jnp.asarray, quantiles.lookup_tables(search)))
            )
            state = quantiles.quantile_init(6, 1 if search is None else 2 * qs.size, b)
            state = update(state, raw, tables, transform=up, group=group)
            if search is None:
                search = quantiles.quantile_start(int(state.count), qs, 6)
            search = quantiles.quantile_refine(search, state)
        assert quantiles.quantile_finalize(search, qs).tobytes() == want.tobytes(), group


def test_counts_update_compiles_once():
    acts, seg = _dissect_data()
    traces = []

    def counted(*args):
        traces.append(1)
        return iou_lib.counts_update(*args)

    update = jax.jit(counted)
    tau = jnp.ones((5, 3), jnp.float32)
    state = iou_lib.counts_init(NUM_LABELS, NUM_CATS, 5, 3)
    for lo in range(0, 6, 2):
        state = update(state, acts[lo : lo + 2], seg[lo : lo + 2], tau, LABEL_CATEGORY)
    assert len(traces) == 1


def test_planted_units_get_their_label():
    """Units that equal class masks get IoU 1 and the right label through the whole pipeline."""
    rng = np.random.default_rng(5)
    n, size = 8, 16
    seg = np.zeros((n, size, size, 2), np.int32)
    seg[..., 0] = rng.integers(1, 4, (n, size // 4, size // 4)).repeat(4, 1).repeat(4, 2)
    seg[..., 1] = np.where(rng.random((n, size, size)) < 0.5, 5, 0)
    planted = {0: 3, 1: 2, 2: 5}  # unit -> label
    acts = rng.random((n, size, size, 4)).astype(np.float32) * 0.1
    for u, lab in planted.items():
        acts[..., u] = np.any(seg == lab, -1) + 0.01 * rng.random((n, size, size))
    fr, tau = _taus(acts, 100)
    search = scores.iqr_search(_counts(acts, seg, tau), tau, LABEL_CATEGORY)
    best, level = scores.unit_levels(search)
    iou, iqr = scores.iou_scores(_counts(acts, seg, level[:, None]), LABEL_CATEGORY)
    labels = scores.label_units(iou, iqr, LABEL_CATEGORY, best=best)
    for u, lab in planted.items():
        assert labels.label[u] == lab and labels.interp[u]
        # The best of 100 log-spaced top fractions need not hit the class's exact frequency.
        assert labels.iou[u] > 0.95
    assert not labels.interp[3]
    # A level in the gap between the mask and background values gives IoU exactly 1.
    gap = np.full((4, 1), 0.5, np.float32)
    for mode in ("category", "all"):
        iou, _ = scores.iou_scores(_counts(acts, seg, gap), LABEL_CATEGORY, denominators=mode)
        assert [iou[lab, u] for u, lab in planted.items()] == [1.0] * 3
