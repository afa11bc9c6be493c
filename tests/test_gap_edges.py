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
