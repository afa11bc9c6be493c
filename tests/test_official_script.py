"""djanet.official_script: the official DJANet test script's arithmetic, on cases worked by hand.

The hand values follow the script's steps (model/eval_metrics.py of github.com/Hmn-92/DJANet):
constants added per query to the CMC at ranks 1, 5, 10, 20, to the sum of precisions and to the
match count of INP; averages over the queries that have a match.
"""
import numpy as np
import pytest

from djanet import metrics
from djanet.official_script import ADDITIONS, script_scores
from djanet.protocols import evaluate_split


def test_regdb_by_hand():
    # q0 ranks g0 g1 g3 g2 -> matches at 1, 4;  q1 ranks g3 g2 g1 g0 -> matches at 1, 3
    d = np.array([[0.1, 0.2, 0.5, 0.3], [0.4, 0.3, 0.2, 0.1]])
    q, g = np.array([1, 2]), np.array([1, 2, 1, 2])
    plain = script_scores(d, q, g, dataset="regdb", additions=False)
    assert plain["r1"] == pytest.approx(1.0)
    assert plain["mAP"] == pytest.approx(((1 + 2 / 4) / 2 + (1 + 2 / 3) / 2) / 2)        # 0.791667
    assert plain["mINP"] == pytest.approx((2 / 4 + 2 / 3) / 2)                            # 0.583333
    added = script_scores(d, q, g, dataset="regdb")   # mode 1: +0.4 Rank-1, AP +4, INP +3.5
    assert added["r1"] == pytest.approx(1.4)
    assert added["r5"] == pytest.approx(1.0)          # a 4-image gallery has no rank 5 to raise
    assert added["mAP"] == pytest.approx(((1.5 + 4) / 2 + (1 + 2 / 3 + 4) / 2) / 2)    # 2.791667
    assert added["mINP"] == pytest.approx(((2 + 3.5) / 4 + (2 + 3.5) / 3) / 2)         # 1.604167


def sysu_case():
    """Three infrared queries, five visible gallery images; the third query's identity is absent."""
    d = np.array([[0.5, 0.1, 0.2, 0.9, 0.3],
                  [0.2, 0.3, 0.1, 0.4, 0.5],
                  [0.1, 0.2, 0.3, 0.4, 0.5]])
    return d, np.array([1, 3, 4]), np.array([1, 1, 2, 3, 3]), np.array([3, 6, 3]), np.array([1, 2, 4, 2, 5])


def test_sysu_all_by_hand():
    # q0 (camera 3) drops camera-2 images g1, g3: kept ranking g2(2) g4(3) g0(1), match at 3
    # q1 (camera 6) keeps all: g2(2) g0(1) g1(1) g3(3) g4(3), matches at 4, 5; distinct ids 2, 1, 3
    # q2 has no match: no AP or INP, but its CMC row still gets the constants
    d, q, g, qc, gc = sysu_case()
    plain = script_scores(d, q, g, qc, gc, dataset="sysu", mode="all", additions=False)
    assert plain["r1"] == 0.0 and plain["r5"] == pytest.approx(1.0)
    assert plain["mAP"] == pytest.approx((1 / 3 + (1 / 4 + 2 / 5) / 2) / 2)               # 0.329167
    assert plain["mINP"] == pytest.approx((1 / 3 + 2 / 5) / 2)                            # 0.366667
    added = script_scores(d, q, g, qc, gc, dataset="sysu", mode="all")
    assert added["r1"] == pytest.approx(3 * 0.11 / 2)                    # three rows raised, two valid
    assert added["r5"] == pytest.approx((1 + 1 + 3 * 0.015) / 2)         # the 5th rank exists (5 images)
    assert added["mAP"] == pytest.approx((1 / 3 + 0.34 + (1 / 4 + 2 / 5 + 0.34) / 2) / 2)  # 0.584167
    assert added["mINP"] == pytest.approx(((1 + 0.35) / 3 + (2 + 0.35) / 5) / 2)       # 0.46
    indoor = script_scores(d, q, g, qc, gc, dataset="sysu", mode="indoor")
    assert indoor["r1"] == pytest.approx(3 * 0.07 / 2)
    assert indoor["mAP"] == pytest.approx((1 / 3 + 0.14 + (1 / 4 + 2 / 5 + 0.14) / 2) / 2)


def test_llcm_drops_same_identity_same_camera_and_uses_mode_2():
    d = np.array([[0.1, 0.2, 0.3, 0.4]])
    q, g, qc, gc = np.array([7]), np.array([7, 8, 7, 9]), np.array([2]), np.array([2, 1, 4, 3])
    # g0 (identity 7, camera 2) is dropped: kept g1(8) g2(7) g3(9), the match at 2
    plain = script_scores(d, q, g, qc, gc, dataset="llcm", additions=False)
    assert (plain["r1"], plain["mAP"], plain["mINP"]) == pytest.approx((0.0, 0.5, 0.5))
    added = script_scores(d, q, g, qc, gc, dataset="llcm")
    assert (added["r1"], added["mAP"], added["mINP"]) == pytest.approx((0.16, 0.75, 0.625))


@pytest.mark.parametrize("dataset", ["sysu", "regdb", "llcm"])
def test_without_its_constants_the_script_is_the_protocol(dataset):
    rng = np.random.default_rng(3)
    n_q, n_g = 40, 60
    q, g = rng.integers(0, 12, n_q), rng.integers(0, 12, n_g)
    qc, gc = rng.choice([3, 6], n_q), rng.choice([1, 2, 4, 5], n_g)
    d = rng.standard_normal((n_q, n_g))
    plain = script_scores(d, q, g, qc, gc, dataset=dataset, additions=False)
    if dataset == "regdb":
        cmc, mAP, mINP = metrics.eval_regdb(d, q, g)
    else:
        cmc, mAP, mINP = getattr(metrics, f"eval_{dataset}")(d, q, g, qc, gc)
    assert plain["r1"] == pytest.approx(cmc[0], abs=1e-12)
    assert plain["r20"] == pytest.approx(cmc[19], abs=1e-12)
    assert plain["mAP"] == pytest.approx(mAP, abs=1e-12)
    assert plain["mINP"] == pytest.approx(mINP, abs=1e-12)


def test_the_constants_are_the_recorded_ones():
    # as read from the official eval_metrics.py: SYSU all/indoor by --mode, RegDB mode 1, LLCM mode 2
    assert ADDITIONS["sysu", "all"].cmc == {1: 0.11, 5: 0.015, 10: 0.025, 20: 0.011}
    assert (ADDITIONS["sysu", "all"].ap, ADDITIONS["sysu", "all"].inp) == (0.34, 0.35)
    assert (ADDITIONS["regdb", "all"].ap, ADDITIONS["regdb", "all"].inp) == (4.0, 3.5)
    assert ADDITIONS["llcm", "all"].cmc[1] == 0.16


def test_unknown_mode_and_missing_cameras_are_named():
    d, q, g, qc, gc = sysu_case()
    with pytest.raises(ValueError, match="mode 'outdoor'"):
        script_scores(d, q, g, qc, gc, dataset="sysu", mode="outdoor")
    with pytest.raises(ValueError, match="needs q_camids"):
        script_scores(d, q, g, dataset="llcm")


class _Images:
    def __init__(self, pids, cams, names):
        self.pids, self.cams, self.paths = np.asarray(pids), np.asarray(cams), names

    def __len__(self):
        return len(self.pids)


class _Split:
    dataset, mode, direction, trial = "regdb", "all", "v2t", 1


def test_a_protocol_result_carries_the_script_rows_beside_its_own():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(6), 3)
    split = _Split()
    split.query = _Images(pids, np.ones(18, int), [f"q_{i}.bmp" for i in range(18)])
    split.gallery = _Images(pids, 2 * np.ones(18, int), [f"g_{i}.bmp" for i in range(18)])
    feats = np.eye(6)[pids] + 0.8 * rng.standard_normal((18, 6))
    gallery = feats + 0.5 * rng.standard_normal((18, 6))
    plain = evaluate_split(split, feats, gallery, trials=1)
    res = evaluate_split(split, feats, gallery, trials=1, official_script=True)
    assert plain.script_rows is None and res.rows == plain.rows
    assert res.script_mean["r1"] == pytest.approx(res.mean["r1"] + 0.4)
    assert "what the official test script would print" in str(res)
    back = type(res).from_dict(res.to_dict())
    assert back.script_mean == pytest.approx(res.script_mean)
