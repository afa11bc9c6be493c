"""djanet.gap at its edges: zero spreads, the smallest valid inputs, the chance test's boundary,
repeatability, input dtypes and the tables' shape. Each expected value is worked out beside it."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from djanet.gap import (_above_chance, centre_by_modality, cross_modal_share, feature_spread, gap_table,
                        modality_classifier_accuracy, modality_gap, pair_distances)


def two_people():
    """Identity 0: visible (0,0), (0,2); infrared (3,4), (3,6). Identity 1 the same, 10 to the right."""
    x = np.array([[0, 0], [0, 2], [3, 4], [3, 6], [10, 0], [10, 2], [13, 4], [13, 6]], float)
    return x, np.array([0, 0, 0, 0, 1, 1, 1, 1]), np.array([0, 0, 1, 1, 0, 0, 1, 1])


def test_ratios_do_not_depend_on_the_scale():
    x, p, m = two_people()
    big, small = modality_gap(x, p, m), modality_gap(0.01 * x, p, m)      # distances well below 1
    # centroids (5, 1) and (8, 5): 5 apart; spread 1 in every group; within pairs 2; cross pairs
    # |(3,4)|=5, |(3,6)|=sqrt45, |(3,2)|=sqrt13, |(3,4)|=5 -> mean (10 + sqrt45 + sqrt13) / 4
    cross = (10 + math.sqrt(45) + math.sqrt(13)) / 4
    assert big["centroid_ratio"] == pytest.approx(5.0) and small["centroid_ratio"] == pytest.approx(5.0)
    assert big["pos_ratio"] == pytest.approx(cross / 2) and small["pos_ratio"] == pytest.approx(cross / 2)
    assert small["within_pos"] == pytest.approx(0.02) and small["within_id_spread"] == pytest.approx(0.01)


def test_identical_images_give_infinite_ratios():
    x, p, m = two_people()
    x[1], x[3], x[5], x[7] = x[0], x[2], x[4], x[6]          # each group's two images coincide
    gap = modality_gap(x, p, m)
    assert gap["within_pos"] == 0 and gap["within_id_spread"] == 0
    assert gap["pos_ratio"] == math.inf and gap["centroid_ratio"] == math.inf


def test_one_within_pair_and_one_cross_pair_are_enough():
    # identity 0: two visible images (the one within pair); identity 1: one of each (the one cross
    # pair); identity 2: one infrared image
    x = np.array([[0, 0], [0, 2], [5, 0], [5, 3], [9, 9]], float)
    gap = modality_gap(x, np.array([0, 0, 1, 1, 2]), np.array([0, 0, 0, 1, 1]), folds=2)
    assert gap["within_pos"] == pytest.approx(2.0) and gap["cross_pos"] == pytest.approx(3.0)
    assert gap["pos_ratio"] == pytest.approx(1.5)


def test_no_identity_in_both_modalities_is_refused_by_name():
    x = np.array([[0, 0], [0, 2], [5, 0], [5, 3]], float)
    with pytest.raises(ValueError, match=r"^need identities with >= 2 images in a modality and identities "
                                         r"present in both modalities to measure the gap$"):
        modality_gap(x, np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), folds=2)


def test_gap_numbers_are_computed_in_float64_whatever_the_input():
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((40, 16)).astype(np.float32)
    p, m = np.repeat(np.arange(10), 4), np.tile([0, 0, 1, 1], 10)
    a, b = modality_gap(x32, p, m), modality_gap(x32.astype(np.float64), p, m)
    for key in ("centroid_dist", "within_id_spread", "cross_pos", "within_pos"):
        assert a[key] == pytest.approx(b[key], rel=1e-13, abs=0)
    c = cross_modal_share(x32, p, np.tile([1, 2, 3, 3], 10), m)
    d = cross_modal_share(x32.astype(np.float64), p, np.tile([1, 2, 3, 3], 10), m)
    assert c == pytest.approx(d, rel=1e-13, abs=0, nan_ok=True)


def test_cross_modal_share_needs_both_modalities():
    with pytest.raises(ValueError, match=r"^cross_modal_share needs images of both modalities$"):
        cross_modal_share(np.eye(3), [0, 1, 2], [1, 2, 1], [0, 0, 0])


def test_the_chance_test_uses_the_binomial_standard_error():
    """Three people, two visible cameras each: chance 1/3 per query, 6 queries, so two standard
    errors are 2 sqrt((1/3)(2/3)/6) = 0.385. Five hits of six (0.833) clear it by 0.5: defined.
    (With 1 + chance in place of 1 - chance the bar would be 0.544, and the share nan.)"""
    x = np.array([[1, 0, 0], [1, 0.05, 0], [0, 1, 0], [0.05, 1, 0], [0, 0, 1], [0.9, 0, 0.436],
                  [1, 0, 0.1], [0, 1, 0.1], [0, 0.1, 1]], float)
    pids = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2])
    cams = np.array([1, 2, 1, 2, 1, 2, 3, 3, 3])
    mods = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    share = cross_modal_share(x, pids, cams, mods)
    assert share["chance_within"] == pytest.approx(1 / 3) and share["r1_within"] == pytest.approx(5 / 6)
    assert share["r1_cross"] == pytest.approx(1.0) and share["chance_cross"] == pytest.approx(1 / 3)
    assert share["cross_share"] == pytest.approx(1.0 / ((5 / 6 - 1 / 3) / (2 / 3)))       # 4/3


def test_above_chance_is_undefined_at_certainty_and_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # 0/0 and x/0 are expected, not warned about
        k = _above_chance(np.array([0.5, 1.0, 0.75]), np.array([1.0, 1.0, 0.5]))
    assert np.isnan(k[0]) and np.isnan(k[1]) and k[2] == pytest.approx(0.5)


def test_feature_spread_samples_rows_without_replacement_and_repeatably():
    # 50 orthogonal directions: any 40 distinct ones are sqrt(2) apart pairwise (a repeated row
    # would add zero distances)
    assert feature_spread(np.eye(50), max_rows=40) == pytest.approx(math.sqrt(2))
    assert feature_spread(np.array([[0.1, 0], [0, 0.1]])) == pytest.approx(math.sqrt(2))   # two short rows
    x = np.random.default_rng(1).standard_normal((30, 5))
    assert feature_spread(x, max_rows=10) == feature_spread(x, max_rows=10) == feature_spread(x, 10, seed=0)
    assert feature_spread(x, max_rows=10) != feature_spread(x, 10, seed=1)
    big = np.random.default_rng(2).standard_normal((2001, 3))
    assert feature_spread(big) == feature_spread(big, max_rows=2000)     # the default keeps 2000 rows


def test_centre_by_modality_takes_integers_and_short_rows():
    x = np.array([[1, 3], [3, 3], [0, 0], [0, 2]])                 # integers; visible mean (2,3), infrared (0,1)
    np.testing.assert_allclose(centre_by_modality(x, [0, 0, 1, 1], normalise=False),
                               [[-1, 0], [1, 0], [0, -1], [0, 1]])
    short = np.array([[0.1, 0.3], [0.3, 0.3], [0.0, 0.0], [0.0, 0.2]])   # centred rows of length 0.1
    np.testing.assert_allclose(centre_by_modality(short, [0, 0, 1, 1]), [[-1, 0], [1, 0], [0, -1], [0, 1]])


def test_modality_classifier_is_repeatable_and_uses_five_folds_by_default():
    rng = np.random.default_rng(3)
    m = np.repeat([0, 1], 30)
    x = rng.standard_normal((60, 4)) + 0.6 * m[:, None]
    acc = modality_classifier_accuracy(x, m)
    assert acc == modality_classifier_accuracy(x, m) == modality_classifier_accuracy(x, m, folds=5, seed=0)


def test_gap_table_has_one_row_per_named_set():
    x, p, m = two_people()
    table = gap_table({"a": (x, p, m), "b": (2 * x, p, m)}, folds=2)
    assert list(table.index) == ["a", "b"] and table.index.name == "features"
    assert table.loc["b", "centroid_dist"] == pytest.approx(2 * table.loc["a", "centroid_dist"])
    assert table["n"].tolist() == [8, 8] and table["dim"].tolist() == [2, 2]
    assert table["n"].dtype.kind == "i" and table["dim"].dtype.kind == "i"
    assert table.loc["a", "pos_ratio"] == pytest.approx(modality_gap(x, p, m, folds=2)["pos_ratio"])


def test_pair_distances_are_repeatable_and_sample_positives_down():
    rng = np.random.default_rng(4)
    x, pids, mods = rng.standard_normal((12, 3)), np.repeat([0, 1], 6), np.tile([0, 1], 6)
    a, b = pair_distances(x, pids, mods, max_pairs=10), pair_distances(x, pids, mods, max_pairs=10)
    pd.testing.assert_frame_equal(a, b)
    same = a[a["identity"] == "same"]
    assert len(same) == 10                                 # 30 positive pairs, 10 kept
    assert len(set(same["distance"].round(12))) == 10      # ten different pairs, none twice
    assert len(a) == 20


def test_bad_modality_input_is_named():
    from djanet.gap import _as_modality
    with pytest.raises(ValueError, match=r"^modality has shape \(2,\); expected \(3,\) like features' first axis$"):
        _as_modality([0, 1], 3)
    with pytest.raises(ValueError, match=r"^unknown modality label 'x'; expected 'visible' or 'infrared'$"):
        _as_modality(["visible", "x", "y"], 3)
    with pytest.raises(ValueError, match=r"^modality values \[0, 1, 2\]; expected 0 \(visible\) and 1 \(infrared\)$"):
        _as_modality([2, 0, 1], 3)
    with pytest.raises(ValueError, match=r"^features have shape \(4,\); expected \(N, D\)$"):
        modality_gap(np.zeros(4), [0, 0, 1, 1], [0, 1, 0, 1])


def test_chance_counts_only_allowed_candidates():
    from djanet.gap import _nearest_hits
    q, g = np.zeros((2, 1)), np.array([[0.0], [1.0], [2.0]])
    exclude = np.array([[False, True, True],       # one candidate left, of the query's identity
                        [True, True, True]])       # none left
    hit, chance = _nearest_hits(q, g, np.array([7, 7]), np.array([7, 8, 7]), exclude=exclude)
    assert chance.tolist() == [1.0, 0.0]
    assert hit[0] == 1.0


def far_from_the_origin():
    """Ten people, four images each (two per modality), 0.01 apart around a common point at 1000:
    float32 can hold these values, but squared distances expanded in float32 lose them."""
    rng = np.random.default_rng(5)
    p, m = np.repeat(np.arange(10), 4), np.tile([0, 0, 1, 1], 10)
    centre = rng.standard_normal((10, 8))[p]
    x = (1000 + 0.01 * (centre + 0.1 * rng.standard_normal((40, 8)))).astype(np.float32)
    return x, p, m


def test_rankings_and_distances_far_from_the_origin_are_those_of_float64():
    from djanet.gap import cross_rank1_per_identity
    x32, p, m = far_from_the_origin()
    x64 = x32.astype(np.float64)
    r1 = cross_rank1_per_identity(x32, p, m)
    pd.testing.assert_series_equal(r1, cross_rank1_per_identity(x64, p, m))
    assert r1.name == "r1_cross" and r1.mean() == 1.0          # each person's images are nearest their own
    cams = np.tile([1, 2, 3, 3], 10)
    assert cross_modal_share(x32, p, cams, m) == pytest.approx(cross_modal_share(x64, p, cams, m), rel=1e-12)
    assert feature_spread(x32) == pytest.approx(feature_spread(x64), rel=1e-9)
    a, b = pair_distances(x32, p, m, max_pairs=50), pair_distances(x64, p, m, max_pairs=50)
    np.testing.assert_allclose(a["distance"], b["distance"], rtol=1e-12)


def test_pair_distances_defaults_and_exact_positive_count():
    rng = np.random.default_rng(6)
    x, pids, mods = rng.standard_normal((8, 2)), np.repeat([0, 1], 4), np.tile([0, 1], 4)
    pd.testing.assert_frame_equal(pair_distances(x, pids, mods), pair_distances(x, pids, mods, 20000, seed=0))
    assert not pair_distances(x, pids, mods, seed=1).equals(pair_distances(x, pids, mods))
    # 12 positive pairs and max_pairs=12: every pair kept, in order (no draw from the generator)
    same = pair_distances(x, pids, mods, max_pairs=12)
    same = same[same["identity"] == "same"]["distance"].to_numpy()
    by_hand = [np.linalg.norm(x[i] - x[j]) for start in (0, 4) for i in range(start, start + 4)
               for j in range(i + 1, start + 4)]
    np.testing.assert_allclose(same, by_hand, rtol=1e-14)


def test_positives_are_sampled_without_replacement():
    rng = np.random.default_rng(7)
    x, pids, mods = rng.standard_normal((15, 4)), np.zeros(15, int), np.tile([0, 1, 1], 5)
    same = pair_distances(x, pids, mods, max_pairs=60)          # 105 positive pairs, 60 kept
    assert len(same) == 60 and same["distance"].round(12).nunique() == 60


def test_negatives_are_every_ordered_pair_of_identities_alike():
    # four people, one image each, at 0, 1, 3 and 7: pairs with the first image are 1, 3 or 7 apart,
    # half of the 12 ordered pairs of different people
    x, pids = np.array([[0.0], [1.0], [3.0], [7.0]]), np.arange(4)
    neg = pair_distances(x, pids, np.array([0, 1, 0, 1]), max_pairs=4000)
    assert len(neg) == 4000 and set(neg["identity"]) == {"different"}
    assert neg["distance"].isin([1.0, 3.0, 7.0]).mean() == pytest.approx(0.5, abs=0.03)


def bootstrap_by_hand(ids_w, hit_w, chance_w, ids_c, hit_c, chance_c, draws, seed):
    """The percentile bootstrap over identities written out draw by draw: the same generator draws
    (a multinomial count per identity), every sum a Python loop."""
    ids = sorted(set(ids_w) | set(ids_c))
    counts = np.random.default_rng(seed).multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=draws)

    def above_chance(q_ids, hits, chances, weight):
        n = sum(weight[i] for i in q_ids)
        if n == 0:
            return math.nan
        r = sum(weight[i] * h for i, h in zip(q_ids, hits)) / n
        c = sum(weight[i] * h for i, h in zip(q_ids, chances)) / n
        return (r - c) / (1 - c) if c < 1 else math.nan

    shares = []
    for row in counts:
        weight = dict(zip(ids, row))
        den = above_chance(ids_w, hit_w, chance_w, weight)
        num = above_chance(ids_c, hit_c, chance_c, weight)
        if den > 0 and math.isfinite(num / den):
            shares.append(num / den)
    if len(shares) < draws / 2:
        return math.nan, math.nan
    return float(np.percentile(shares, 2.5)), float(np.percentile(shares, 97.5))


def test_share_interval_against_a_bootstrap_written_out():
    from djanet.gap import _share_interval
    rng = np.random.default_rng(8)
    ids_w = np.repeat(np.arange(10), 3)                 # visible queries of people 0-9
    ids_c = np.repeat(np.arange(11), 2)                 # infrared queries: person 10 has no visible query
    hit_w, hit_c = (rng.random(30) < 0.7).astype(float), (rng.random(22) < 0.4).astype(float)
    chance_w, chance_c = rng.uniform(0.05, 0.2, 30), rng.uniform(0.05, 0.2, 22)
    got = _share_interval(ids_w, hit_w, chance_w, ids_c, hit_c, chance_c)
    want = bootstrap_by_hand(ids_w, hit_w, chance_w, ids_c, hit_c, chance_c, draws=1000, seed=0)
    assert got == pytest.approx(want, rel=1e-12) and got[0] < got[1]


def test_share_interval_needs_half_the_draws_defined():
    """Person 0 is found (rank-1 1, chance 1/2), person 1 never (0, 1/2): a draw of person 0 twice
    defines the share (1), any draw holding person 1 does not (above-chance rank-1 0 or below)."""
    from djanet.gap import _share_interval
    args = ([0, 1], [1.0, 0.0], [0.5, 0.5], [0, 1], [1.0, 1.0], [0.5, 0.5])

    def defined_draws(draws, seed):
        rows = np.random.default_rng(seed).multinomial(2, [0.5, 0.5], size=draws)
        return int((rows[:, 0] == 2).sum())

    half = next(s for s in range(100) if defined_draws(2, s) == 1)       # 1 of 2 defined: enough
    assert _share_interval(*args, draws=2, seed=half) == (1.0, 1.0)
    third = next(s for s in range(100) if defined_draws(3, s) == 1)      # 1 of 3: not enough
    low, high = _share_interval(*args, draws=3, seed=third)
    assert math.isnan(low) and math.isnan(high)


def noisy_modalities():
    """60 images, 48 visible and 12 infrared; the modality shows only in feature 0, at a scale of
    0.01 against noise of 1 elsewhere: a set on which feature scaling, class weights, the
    regularisation strength, the folds and the seed each change the classifier's score."""
    rng = np.random.default_rng(0)
    m = np.r_[np.zeros(48, int), np.ones(12, int)]
    x = rng.standard_normal((60, 8))
    x[:, 0] = 0.01 * (rng.standard_normal(60) + 1.2 * m)
    return x, np.repeat(np.arange(12), 5), m


def test_modality_classifier_is_a_scaled_balanced_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler
    x, _, m = noisy_modalities()
    scores = []
    for train, test in StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(x, m):
        scaler = StandardScaler().fit(x[train])
        clf = LogisticRegression(class_weight="balanced", C=1.0, max_iter=2000).fit(scaler.transform(x[train]), m[train])
        pred = clf.predict(scaler.transform(x[test]))
        scores.append(np.mean([np.mean(pred[m[test] == k] == k) for k in (0, 1)]))   # balanced accuracy
    assert modality_classifier_accuracy(x, m) == pytest.approx(np.mean(scores), rel=1e-12)


def test_folds_and_seed_reach_the_classifier():
    x, p, m = noisy_modalities()
    asked = modality_classifier_accuracy(x, m, folds=3, seed=4)
    assert asked != modality_classifier_accuracy(x, m)              # this set tells them apart
    assert modality_gap(x, p, m, folds=3, seed=4)["modality_acc"] == asked
    assert modality_gap(x, p, m)["modality_acc"] == modality_classifier_accuracy(x, m, folds=5, seed=0)
    assert gap_table({"a": (x, p, m)}, folds=3, seed=4).loc["a", "modality_acc"] == asked
    default = gap_table({"a": (x, p, m)})
    assert default.loc["a", "modality_acc"] == modality_classifier_accuracy(x, m, folds=5, seed=0)
    assert list(default.columns) == list(modality_gap(x, p, m))     # no stray column


def test_split_gap_passes_folds_and_seed_on():
    from types import SimpleNamespace

    from djanet.gap import split_gap
    x, p, m = noisy_modalities()
    order = np.r_[np.flatnonzero(m == 1), np.flatnonzero(m == 0)]      # infrared queries first, as stacked
    x, p, m = x[order], p[order], m[order]
    ir, vis = m == 1, m == 0

    class Side(SimpleNamespace):
        def __len__(self):
            return len(self.pids)

    split = SimpleNamespace(query=Side(pids=p[ir], cams=np.full(ir.sum(), 3), modality="infrared"),
                            gallery=Side(pids=p[vis], cams=1 + np.arange(vis.sum()) % 2, modality="visible"))
    feats = {"query_bn": x[ir], "gallery_bn": x[vis]}
    assert split_gap(feats, split, folds=3, seed=4)["modality_acc"] == modality_classifier_accuracy(x, m, 3, 4)
    assert split_gap(feats, split)["modality_acc"] == modality_classifier_accuracy(x, m, 5, 0)
