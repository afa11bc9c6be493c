"""Modality-gap numbers on synthetic Gaussian features whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from djanet.gap import (centre_by_modality, cross_modal_share, cross_rank1_per_identity, feature_spread,
                        first_identities, gap_table, modality_gap, pair_distances, split_gap)


def _features(shift: float, ids: int = 20, per: int = 6, dim: int = 16, seed: int = 0):
    """Identity centres plus noise; infrared images moved by `shift` along a fixed direction."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3.0, (ids, dim))
    pids = np.repeat(np.arange(ids), 2 * per)
    modality = np.tile(np.array(["visible"] * per + ["infrared"] * per), ids)
    x = centres[pids] + rng.normal(0, 1.0, (len(pids), dim))
    direction = np.zeros(dim)
    direction[0] = 1.0
    x[modality == "infrared"] += shift * direction
    return x, pids, modality


def test_no_gap_gives_chance_accuracy_and_unit_ratio():
    g = modality_gap(*_features(0.0))
    assert abs(g["modality_acc"] - 0.5) < 0.15
    assert abs(g["pos_ratio"] - 1.0) < 0.05
    assert g["centroid_ratio"] < 0.3
    assert g["n"] == 240 and g["dim"] == 16


def test_large_shift_is_separable_and_far():
    g = modality_gap(*_features(10.0))
    assert g["modality_acc"] > 0.98
    assert g["centroid_ratio"] == pytest.approx(10.0 / g["within_id_spread"], rel=0.1)
    assert g["centroid_ratio"] > 2.0
    assert g["pos_ratio"] > 2.0


def test_gap_grows_with_shift_and_table_has_rows():
    sets = {f"shift {s}": _features(s) for s in (0.0, 1.0, 4.0)}
    df = gap_table(sets)
    assert list(df.index) == ["shift 0.0", "shift 1.0", "shift 4.0"]
    assert df["pos_ratio"].is_monotonic_increasing
    assert df["centroid_ratio"].is_monotonic_increasing
    assert df["modality_acc"].iloc[-1] > df["modality_acc"].iloc[0]


def test_modality_as_ints_matches_strings():
    x, p, m = _features(2.0)
    a = modality_gap(x, p, m)
    b = modality_gap(x, p, (m == "infrared").astype(int))
    assert a == b


def test_bad_inputs_name_the_problem():
    x, p, m = _features(0.0)
    with pytest.raises(ValueError, match="unknown modality label 'rgb'"):
        modality_gap(x, p, np.where(m == "visible", "rgb", m))
    with pytest.raises(ValueError, match=r"pids have shape \(3,\)"):
        modality_gap(x, p[:3], m)
    with pytest.raises(ValueError, match="at least 2 images of each modality"):
        modality_gap(x, p, np.array(["visible"] * len(x)))


def test_pair_distances_labels_and_counts():
    x, p, m = _features(5.0, ids=5, per=3)
    df = pair_distances(x, p, m, max_pairs=100)
    pos = df[df.identity == "same"]
    assert len(pos) == 5 * 15  # C(6, 2) pairs per identity
    assert (pos.modality == "cross").sum() == 5 * 9
    assert (df.identity == "different").sum() == 100
    within = pos[pos.modality == "within"].distance.mean()
    cross = pos[pos.modality == "cross"].distance.mean()
    assert cross > within


def test_cross_modal_share_by_hand():
    """Four ids, two visible cameras and one infrared image each; features placed by hand."""
    x = np.array([[0.0], [0.1], [10.0], [10.1], [20.0], [20.1], [30.0], [30.1],  # visible, cams 1, 2
                  [0.2], [10.2], [0.3], [10.3]])    # infrared: ids 0, 1 right; ids 2, 3 land on 0, 1
    pids = np.array([0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3])
    cams = np.array([1, 2] * 4 + [3] * 4)
    mods = ["visible"] * 8 + ["infrared"] * 4
    s = cross_modal_share(x, pids, cams, mods)
    assert s["r1_within"] == 1.0          # each visible image finds its id in the other camera
    assert s["chance_within"] == 0.25     # one of the other camera's four images is the query's id
    assert s["r1_cross"] == 0.5 and s["chance_cross"] == 0.25    # two of the eight visible images
    assert s["cross_share"] == pytest.approx((0.5 - 0.25) / (1.0 - 0.25))
    x[10], x[11] = 20.05, 30.05           # every infrared image on its id: matching survives untouched
    assert cross_modal_share(x, pids, cams, mods)["cross_share"] == 1.0


def test_cross_modal_share_of_random_features_is_chance_not_survival():
    """The plain ratio of two chance-level rank-1s is about 1; above chance there is nothing."""
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(60), 6)
    mods = np.tile(["visible"] * 4 + ["infrared"] * 2, 60)
    cams = np.tile([1, 2, 1, 2, 3, 3], 60)
    x = rng.normal(size=(len(pids), 32))
    s = cross_modal_share(x, pids, cams, mods)
    assert abs(s["r1_within"] - s["chance_within"]) < 0.05 and s["chance_within"] == pytest.approx(1 / 60)
    assert np.isnan(s["cross_share"])     # nothing within the visible modality to survive
    ids = np.eye(60)[pids] * 10.0         # identity in the visible images only; infrared stays random
    s = cross_modal_share(np.hstack([x, ids * (mods == "visible")[:, None]]), pids, cams, mods)
    assert s["r1_within"] > 0.9 and abs(s["cross_share"]) < 0.1
    assert s["share_low"] < 0 < s["share_high"] < 0.2         # chance across: the interval holds 0


def test_cross_modal_share_of_aligned_and_shifted_features():
    x, pids, mods = _features(0.0)
    cams = np.where(mods == "visible", np.tile(np.arange(6) % 2 + 1, 40), 3)
    aligned = cross_modal_share(x, pids, cams, mods)["cross_share"]
    shifted = cross_modal_share(*_features(30.0)[:2], cams, mods)["cross_share"]
    assert aligned > 0.8 and shifted < 0.3
    s = cross_modal_share(x, pids, cams, mods)
    assert s["share_low"] <= aligned <= s["share_high"] and s["share_high"] - s["share_low"] < 0.4
    with pytest.raises(ValueError, match="both modalities"):
        cross_modal_share(x[:6], pids[:6], cams[:6], ["visible"] * 6)


def test_centring_removes_an_offset_gap_but_not_a_scrambled_one():
    x, pids, mods = _features(30.0)
    cams = np.where(mods == "visible", np.tile(np.arange(6) % 2 + 1, 40), 3)
    centred = centre_by_modality(x, mods)
    assert np.allclose(np.linalg.norm(centred, axis=1), 1.0)
    raw_centred = centre_by_modality(x, mods, normalise=False)
    for m in ("visible", "infrared"):
        assert np.allclose(raw_centred[mods == m].mean(0), 0)
    assert modality_gap(x, pids, mods)["modality_acc"] > 0.95
    assert modality_gap(centred, pids, mods)["modality_acc"] < 0.7      # the offset was all of it
    assert cross_modal_share(centred, pids, cams, mods)["cross_share"] > 0.8
    # infrared identities scrambled: no offset to remove, and centring cannot bring them back
    scrambled = x.copy()
    ir = mods == "infrared"
    scrambled[ir] = x[ir][np.random.default_rng(1).permutation(int(ir.sum()))] - 30.0 * np.eye(16)[0]
    assert cross_modal_share(centre_by_modality(scrambled, mods), pids, cams, mods)["cross_share"] < 0.3
    with pytest.raises(ValueError, match="expected \\(N, D\\)"):
        centre_by_modality(np.zeros(4), ["visible"] * 4)


def test_cross_modal_share_with_one_visible_camera_leaves_the_query_out():
    x = np.array([[0.0], [0.1], [10.0], [10.1], [0.2], [10.2]])
    pids = np.array([0, 0, 1, 1, 0, 1])
    cams = np.array([1, 1, 1, 1, 2, 2])           # RegDB: one visible, one thermal camera
    s = cross_modal_share(x, pids, cams, ["visible"] * 4 + ["infrared"] * 2)
    assert s["r1_within"] == 1.0 and s["r1_cross"] == 1.0 and s["cross_share"] == 1.0
    assert s["chance_within"] == 1 / 3 and s["chance_cross"] == 0.5


def test_split_gap_joins_query_and_gallery_of_a_test_split():
    """Infrared queries and a visible gallery, as a SYSU-MM01 test split holds them."""
    from types import SimpleNamespace

    x, p, m = _features(3.0)
    cams = np.where(m == "visible", 1 + np.arange(len(m)) % 2, 3)
    ir, vis = m == "infrared", m == "visible"

    class Side(SimpleNamespace):
        def __len__(self):
            return len(self.pids)

    split = SimpleNamespace(query=Side(pids=p[ir], cams=cams[ir], modality="infrared"),
                            gallery=Side(pids=p[vis], cams=cams[vis], modality="visible"))
    got = split_gap({"query_bn": x[ir], "gallery_bn": x[vis]}, split)
    xs, ps, cs = np.vstack([x[ir], x[vis]]), np.concatenate([p[ir], p[vis]]), np.concatenate([cams[ir], cams[vis]])
    ms = ["infrared"] * int(ir.sum()) + ["visible"] * int(vis.sum())
    expect = {k: modality_gap(xs, ps, ms)[k] for k in ("modality_acc", "centroid_ratio", "pos_ratio")}
    expect.update(cross_modal_share(xs, ps, cs, ms))
    assert got == pytest.approx(expect)
    assert set(got) == {"modality_acc", "centroid_ratio", "pos_ratio", "r1_within", "r1_cross", "cross_share",
                         "chance_within", "chance_cross", "share_low", "share_high"}


def test_feature_spread_measures_directions_not_norms():
    # Scaled copies of one vector point the same way: 0.  Two orthogonal directions, half the
    # rows each: the mean over the 6 pairs of 4 rows is (4 * sqrt(2) + 2 * 0) / 6.
    assert feature_spread(np.array([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])) == pytest.approx(0.0, abs=1e-7)
    x = np.array([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 5.0]])
    assert feature_spread(x) == pytest.approx(4 * np.sqrt(2) / 6)
    # A collapsed feature: a common vector of norm ~22 plus deviations of 0.1 (what the pooled
    # features of a from-scratch DJANet looked like), against the same deviations alone.
    rng = np.random.default_rng(0)
    dev = rng.normal(0, 0.1 / np.sqrt(2 * 64), (200, 64))
    assert feature_spread(22 / 8 * np.ones(64) + dev) < 0.01
    assert feature_spread(dev) > 1.3
    assert feature_spread(dev, max_rows=50) == pytest.approx(feature_spread(dev), rel=0.05)
    with pytest.raises(ValueError, match="at least 2 rows; got 1"):
        feature_spread(np.ones((1, 3)))


def test_first_identities_keeps_every_image_of_the_lowest_ids_only():
    pids = np.array([7, 3, 3, 9, 1, 7, 9, 1])
    np.testing.assert_array_equal(first_identities(pids, 2), [False, True, True, False, True, False, False, True])
    assert first_identities(pids, 10).all()
    with pytest.raises(ValueError, match="k=0"):
        first_identities(pids, 0)


def test_cross_rank1_per_identity_counts_each_persons_infrared_hits():
    # person 1: both infrared images beside their visible one; person 2: one of two beside person 1's
    x = np.array([[0.0, 0.0], [5.0, 5.0],                 # visible: person 1, person 2
                  [0.1, 0.0], [0.0, 0.1],                 # infrared, person 1
                  [4.9, 5.0], [0.2, 0.2]])                # infrared, person 2
    pids = np.array([1, 2, 1, 1, 2, 2])
    mod = np.array(["visible", "visible", "infrared", "infrared", "infrared", "infrared"])
    per = cross_rank1_per_identity(x, pids, mod)
    assert per.to_dict() == {1: 1.0, 2: 0.5}


def test_cross_share_interval_is_wide_when_both_rank1s_are_near_chance():
    """A weak network matches a few images above chance within the visible modality and a few
    across: the point estimate is a ratio of two small numbers, and the bootstrap over
    identities says how loose it is.  A strong one gets a tight interval."""
    rng = np.random.default_rng(1)
    n = 96
    pids = np.repeat(np.arange(n), 6)
    mods = np.tile(["visible"] * 4 + ["infrared"] * 2, n)
    cams = np.tile([1, 2, 1, 2, 3, 3], n)

    def share(identity: float):   # noise plus a one-hot identity code of that length
        return cross_modal_share(np.hstack([rng.normal(size=(len(pids), 32)), np.eye(n)[pids] * identity]),
                                 pids, cams, mods)
    weak, strong = share(1.8), share(4.0)
    assert weak["r1_within"] < 0.1 and strong["r1_within"] > 0.6
    for s in (weak, strong):
        assert s["share_low"] <= s["cross_share"] <= s["share_high"]
    assert weak["share_high"] - weak["share_low"] > 1.0 > 4 * (strong["share_high"] - strong["share_low"])
