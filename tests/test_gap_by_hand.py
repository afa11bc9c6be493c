"""`djanet.gap` on inputs small enough to work out by hand.

`tests/test_gap.py` checks the gap numbers statistically, which a wrong spread (root-mean-square
instead of mean) or a squared ratio passes.  Here every number is exact: points on a line or on
Pythagorean triples, the arithmetic in a comment beside each expected value, and the cases
lopsided (unequal group sizes, unequal pair counts) so that each plausible misreading of a
definition -- pairs vs points, identities vs images, numerator vs denominator -- gives another
number.
"""
from __future__ import annotations

import numpy as np
import pytest

from djanet.gap import (centre_by_modality, cross_modal_share, cross_rank1_per_identity, feature_spread,
                        first_identities, modality_classifier_accuracy, modality_gap, pair_distances)

S2, S97 = np.sqrt(2.0), np.sqrt(97.0)

# Visible images on y = 0, infrared on y = 12, so every cross-modal distance is a (5, 12, 13) or
# (0, 12, 12) triangle.  Groups: visible id 0 has 3 images, infrared id 1 has 2, the others 1.
GAP_X = np.array([[-5, 0], [0, 0], [5, 0],  # A B C: id 0 visible
                  [0, 12],                  # D:     id 0 infrared
                  [8, 0],                   # E:     id 1 visible
                  [8, 12], [13, 12]],       # F G:   id 1 infrared
                 dtype=float)
GAP_PIDS = np.array([0, 0, 0, 0, 1, 1, 1])
GAP_MODS = np.array(["visible"] * 3 + ["infrared", "visible", "infrared", "IR"])


def test_modality_gap_every_number_by_hand():
    """Each key of `modality_gap`, from the definitions in djanet/gap.py's docstrings.

    Spread: the code averages, over the (identity, modality) groups with >= 2 images, each group's
    mean distance to its centroid.  The module docstring ("mean distance of an image to the
    centroid of its identity in its own modality") could also be read per image; this case makes
    the readings differ: per group 35/12, per image of those groups 15/5 = 3, per image with the
    singletons (distance 0) 15/7.  The test pins the per-group reading the code uses.
    """
    g = modality_gap(GAP_X, GAP_PIDS, GAP_MODS)
    assert set(g) == {"modality_acc", "centroid_ratio", "pos_ratio", "centroid_dist", "within_id_spread",
                      "cross_pos", "within_pos", "n", "dim"}
    assert g["n"] == 7 and g["dim"] == 2
    # y alone separates the modalities (0 vs 12): every fold classifies perfectly
    assert g["modality_acc"] == 1.0
    # visible mean: x (-5 + 0 + 5 + 8) / 4 = 2, y 0; infrared mean: x (0 + 8 + 13) / 3 = 7, y 12
    # |(7, 12) - (2, 0)| = |(5, 12)| = 13   (mean of identity centroids instead: |(1.25, 12)| != 13)
    assert g["centroid_dist"] == pytest.approx(13.0)
    # id 0 visible: centroid (0, 0), distances 5, 0, 5 -> mean 10/3   (RMS: sqrt(50/3) = 4.08)
    # id 1 infrared: centroid (10.5, 12), distances 2.5, 2.5 -> mean 2.5
    # mean over the two groups: (10/3 + 5/2) / 2 = 35/12
    assert g["within_id_spread"] == pytest.approx(35 / 12)
    # 13 / (35/12) = 156/35
    assert g["centroid_ratio"] == pytest.approx(156 / 35)
    # same id, same modality, pairs i < j: AB 5, AC 10, BC 5 (id 0); FG 5 (id 1) -> 25 / 4 pairs
    # (mean of the groups' means instead: (20/3 + 5) / 2 = 35/6)
    assert g["within_pos"] == pytest.approx(25 / 4)
    # same id, other modality: DA 13, DB 12, DC 13 (id 0); EF 12, EG 13 (id 1) -> 63 / 5 pairs
    # (mean of the identities' means instead: (38/3 + 25/2) / 2 = 151/12)
    assert g["cross_pos"] == pytest.approx(63 / 5)
    # cross over within: (63/5) / (25/4) = 252/125 = 2.016
    assert g["pos_ratio"] == pytest.approx(252 / 125)


def test_modality_gap_ignores_the_order_of_images():
    """Shuffling the rows (labels along) changes no number: groups come from labels, not positions."""
    order = np.array([6, 0, 4, 3, 1, 5, 2])
    a = modality_gap(GAP_X, GAP_PIDS, GAP_MODS)
    b = modality_gap(GAP_X[order], GAP_PIDS[order], GAP_MODS[order], folds=3)
    assert {k: v for k, v in b.items() if k != "modality_acc"} == pytest.approx(
        {k: v for k, v in a.items() if k != "modality_acc"})


def test_classifier_on_separable_and_inseparable_features():
    """Balanced accuracy: 1.0 when one coordinate splits the modalities, exactly 0.5 when the
    features are all the same (every image gets one class: recalls 1 and 0)."""
    mods = np.array([0, 1, 0, 0, 1, 0, 0, 1, 0, 1])       # 6 visible, 4 infrared: unbalanced on purpose
    x = np.column_stack([np.arange(10.0), 10.0 * mods])
    assert modality_classifier_accuracy(x, mods) == 1.0
    # plain accuracy would be 6/10 or 4/10 per fold here, never exactly 0.5
    assert modality_classifier_accuracy(np.ones((10, 3)), mods) == 0.5


def test_feature_spread_mean_over_pairs_of_directions():
    """Rows point along +x, +y, -x at norms 2, 3, 7: the norms must not matter."""
    x = np.array([[2.0, 0.0], [0.0, 3.0], [-7.0, 0.0]])
    # unit rows (1,0), (0,1), (-1,0): pairs sqrt(2), 2, sqrt(2) -> mean (2 + 2 sqrt 2) / 3
    assert feature_spread(x) == pytest.approx((2 + 2 * S2) / 3)
    # two rows drawn out of three: one of the pair distances above
    assert min(abs(feature_spread(x, max_rows=2) - d) for d in (S2, 2.0)) < 1e-9


def test_centre_by_modality_by_hand():
    """Each modality loses its own mean (not the overall one); rows interleaved on purpose."""
    x = np.array([[0, 0], [5, 5], [3, 0], [5, 9], [0, 6]], dtype=float)
    mods = ["visible", "infrared", "vis", "thermal", "Visible"]
    # visible (0,0), (3,0), (0,6): mean (1, 2); infrared (5,5), (5,9): mean (5, 7)
    raw = np.array([[-1, -2], [0, -2], [2, -2], [0, 2], [-1, 4]], dtype=float)
    np.testing.assert_allclose(centre_by_modality(x, mods, normalise=False), raw)
    # norms sqrt 5, 2, sqrt 8, 2, sqrt 17
    norms = np.sqrt([5.0, 4.0, 8.0, 4.0, 17.0])
    np.testing.assert_allclose(centre_by_modality(x, mods), raw / norms[:, None])


def test_cross_rank1_per_identity_by_hand():
    """Infrared queries, visible gallery; swapping the modalities gives another answer."""
    x = np.array([[0.0], [10.0], [1.0], [2.0], [7.0], [9.0]])
    pids = np.array([0, 1, 0, 0, 0, 1])
    mods = np.array(["visible", "visible", "infrared", "nir", "ir", "infrared"])
    # id 0 infrared at 1, 2 -> nearest visible 0 (id 0): hits; at 7 -> nearest 10 (id 1): miss -> 2/3
    # id 1 infrared at 9 -> nearest 10: hit -> 1
    assert cross_rank1_per_identity(x, pids, mods).to_dict() == pytest.approx({0: 2 / 3, 1: 1.0})
    # modalities swapped: visible queries 0 -> 1 (id 0), 10 -> 9 (id 1): both hits
    swapped = np.where(np.isin(mods, ["visible"]), "infrared", "visible")
    assert cross_rank1_per_identity(x, pids, swapped).to_dict() == pytest.approx({0: 1.0, 1: 1.0})


def test_cross_modal_share_by_hand():
    """Three ids, visible cameras 1 and 2 with unequal counts, one visible and one infrared miss."""
    x = np.array([[0.0], [10.0], [20.0],          # visible, camera 1: ids 0, 1, 2
                  [1.0], [11.0], [21.0], [14.0],  # visible, camera 2: ids 0, 1, 2, 2
                  [2.0], [12.0], [23.0], [5.0]])  # infrared, camera 3: ids 0, 1, 2, 2
    pids = np.array([0, 1, 2, 0, 1, 2, 2, 0, 1, 2, 2])
    cams = np.array([1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
    mods = ["visible"] * 7 + ["infrared"] * 4
    s = cross_modal_share(x, pids, cams, mods)
    # camera-1 queries against camera 2 {1, 11, 21, 14}: 0 -> 1, 10 -> 11, 20 -> 21: hits
    # camera-2 queries against camera 1 {0, 10, 20}: 1 -> 0, 11 -> 10, 21 -> 20 hits; 14 -> 10 (id 1) miss
    assert s["r1_within"] == pytest.approx(6 / 7)
    # chance: camera-1 queries 1/4, 1/4, 2/4 (id 2 has two camera-2 images); camera-2 ones 1/3 each
    # (1/4 + 1/4 + 2/4 + 4 * 1/3) / 7 = (7/3) / 7 = 1/3   (leaving out only the query: 10/42)
    assert s["chance_within"] == pytest.approx(1 / 3)
    # infrared against all 7 visible: 2 -> 1, 12 -> 11, 23 -> 21 hits; 5 -> 1 (id 0) miss -> 3/4
    assert s["r1_cross"] == pytest.approx(3 / 4)
    # chance: 2/7, 2/7, 3/7, 3/7 -> 10/28 = 5/14
    assert s["chance_cross"] == pytest.approx(5 / 14)
    # k_cross = (3/4 - 5/14) / (9/14) = 11/18; k_within = (6/7 - 1/3) / (2/3) = 11/14
    # share = (11/18) / (11/14) = 7/9   (plain ratio of rank-1s: 7/8; inverted: 9/7)
    assert s["cross_share"] == pytest.approx(7 / 9)


def test_cross_share_interval_collapses_when_every_identity_scores_alike():
    """Each identity: both visible images hit across cameras, one infrared image of two hits.
    Every bootstrap draw then has the same rank-1s and chances, so the interval is a point."""
    vis = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0]          # id k at 10k (camera 1) and 10k + 1 (camera 2)
    ir = [2.0, 12.0, 22.0, 13.0, 23.0, 3.0]           # ids 0, 1, 2 near their own; then near the next id
    x = np.array(vis + ir)[:, None]
    pids = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2])
    cams = np.array([1, 2] * 3 + [3] * 6)
    s = cross_modal_share(x, pids, cams, ["visible"] * 6 + ["infrared"] * 6)
    # within: all hit, chance 1/3 -> k 1; noise 2 sqrt((1/3)(2/3)/6) = 0.385 < 2/3: defined
    # cross: 3 of 6 hit, chance 2/6 -> k = (1/2 - 1/3) / (2/3) = 1/4
    assert (s["r1_within"], s["r1_cross"]) == (1.0, 0.5)
    assert (s["chance_within"], s["chance_cross"]) == pytest.approx((1 / 3, 1 / 3))
    assert (s["cross_share"], s["share_low"], s["share_high"]) == pytest.approx((0.25, 0.25, 0.25))


def test_cross_share_is_nan_at_exactly_two_standard_errors():
    """Two ids, all within hits: r1 1, chance 1/2, noise 2 sqrt((1/2)(1/2)/4) = 1/2 = 1 - 1/2.
    "Within two standard errors" includes the boundary, so the share is undefined."""
    x = np.array([[0.0], [1.0], [10.0], [11.0], [2.0], [12.0]])
    s = cross_modal_share(x, np.array([0, 0, 1, 1, 0, 1]), np.array([1, 2, 1, 2, 3, 3]),
                          ["visible"] * 4 + ["infrared"] * 2)
    assert s["r1_within"] == 1.0 and s["chance_within"] == 0.5 and s["r1_cross"] == 1.0
    assert np.isnan(s["cross_share"]) and np.isnan(s["share_low"]) and np.isnan(s["share_high"])


def test_pair_distances_by_hand():
    """All positive pairs, labelled; every negative is one of the six id-0 x id-1 pairs."""
    x = np.array([[0, 0], [3, 4], [6, 0], [6, 8], [-3, 4]], dtype=float)   # A B C (id 0), D E (id 1)
    pids = np.array([0, 0, 0, 1, 1])
    mods = ["visible", "infrared", "visible", "infrared", "visible"]
    df = pair_distances(x, pids, mods, max_pairs=50)
    pos = df[df.identity == "same"]
    # AB 5 cross, AC 6 within, BC 5 cross (id 0); DE |(9, 4)| = sqrt 97 cross (id 1)
    assert list(pos.modality) == ["cross", "within", "cross", "cross"]
    np.testing.assert_allclose(pos.distance, [5.0, 6.0, 5.0, S97])
    neg = df[df.identity == "different"]
    assert len(neg) == 50
    # AD 10 cross, AE 5 within, BD 5 within, BE 6 cross, CD 8 cross, CE sqrt 97 within
    expected = {(10.0, "cross"), (5.0, "within"), (6.0, "cross"), (8.0, "cross"), (round(S97, 9), "within")}
    assert {(round(d, 9), m) for d, m in zip(neg.distance, neg.modality)} == expected


def test_first_identities_takes_the_lowest_ids_not_the_first_seen():
    pids = np.array([5, -1, 5, 2, 9, -1])
    # lowest id -1: images 1 and 5; then 2: image 3
    np.testing.assert_array_equal(first_identities(pids, 1), [False, True, False, False, False, True])
    np.testing.assert_array_equal(first_identities(pids, 2), [False, True, False, True, False, True])
