"""CMC / mAP / mINP: worked examples, edge cases, and the vectorised code against a plain loop."""
from __future__ import annotations

import numpy as np
import pytest

from djanet import metrics
from djanet.metrics import eval_llcm, eval_regdb, eval_sysu, evaluate, reference_eval

# A 3 x 4 example used throughout; gallery ids and cameras, query ids.
#   gallery:  g0 (id 1, cam 1)  g1 (id 2, cam 2)  g2 (id 1, cam 2)  g3 (id 3, cam 4)
DIST = np.array([[0.1, 0.2, 0.3, 0.4],
                 [0.1, 0.4, 0.2, 0.3],
                 [0.4, 0.3, 0.1, 0.2]])
Q_PIDS = np.array([1, 2, 3])
G_PIDS = np.array([1, 2, 1, 3])
G_CAMS = np.array([1, 2, 2, 4])


def test_regdb_hand_worked():
    # q0 (id 1): ranking g0 g1 g2 g3 -> ids 1 2 1 3: matches at ranks 1, 3
    #    AP = (1/1 + 2/3) / 2 = 5/6, INP = 2/3, first hit at rank 1
    # q1 (id 2): ranking g0 g2 g3 g1 -> ids 1 1 3 2: match at rank 4; AP = 1/4, INP = 1/4
    # q2 (id 3): ranking g2 g3 g1 g0 -> ids 1 3 2 1: match at rank 2; AP = 1/2, INP = 1/2
    # CMC: rank1 {q0} 1/3, rank2 {q0,q2} 2/3, rank3 2/3, rank4 all 1
    # mAP = (5/6 + 1/4 + 1/2) / 3 = 19/36;  mINP = (2/3 + 1/4 + 1/2) / 3 = 17/36
    cmc, mAP, mINP = eval_regdb(DIST, Q_PIDS, G_PIDS, max_rank=4)
    np.testing.assert_allclose(cmc, [1 / 3, 2 / 3, 2 / 3, 1.0])
    assert mAP == pytest.approx(19 / 36) and mINP == pytest.approx(17 / 36)
    assert isinstance(mAP, float) and isinstance(mINP, float)


def test_dedup_cmc_hand_worked():
    # distinct identities in ranked order: q0 [1,2,3] hit 1; q1 [1,3,2] hit 3; q2 [1,3,2] hit 2
    cmc, mAP, _ = evaluate(DIST, Q_PIDS, G_PIDS, removal="none", dedup=True, max_rank=4)
    np.testing.assert_allclose(cmc, [1 / 3, 2 / 3, 1.0, 1.0])
    assert mAP == pytest.approx(19 / 36)          # dedup changes the CMC only


def test_sysu_hand_worked():
    # query cams 3, 6, 3: cam3 queries ignore the cam2 gallery images g1 and g2.
    # q0 (id 1, cam3): kept g0 g3 -> ids 1 3: rank 1; AP = INP = 1
    # q1 (id 2, cam6): nothing removed: AP = INP = 1/4; distinct ids 1 3 2 -> hit at 3
    # q2 (id 3, cam3): kept g3 (0.2) g0 (0.4) -> ids 3 1: rank 1; AP = INP = 1
    # CMC (dedup): [2/3, 2/3, 1, 1]; mAP = mINP = (1 + 1/4 + 1) / 3 = 3/4
    cmc, mAP, mINP = eval_sysu(DIST, Q_PIDS, G_PIDS, np.array([3, 6, 3]), G_CAMS, max_rank=4)
    np.testing.assert_allclose(cmc, [2 / 3, 2 / 3, 1.0, 1.0])
    assert mAP == pytest.approx(0.75) and mINP == pytest.approx(0.75)


def test_llcm_hand_worked_with_invalid_queries_and_clamped_rank():
    # query cams 1, 2, 4. q0 (id 1, cam1) loses g0 -> kept g1 g2 g3 = ids 2 1 3: rank 2,
    # AP = INP = 1/2, distinct ids 2 1 3 -> hit at 2.  q1 (id 2, cam2) loses g1, its only
    # match: invalid.  q2 (id 3, cam4) loses g3: invalid.  One valid query; max_rank 10 -> 4.
    cmc, mAP, mINP = eval_llcm(DIST, Q_PIDS, G_PIDS, np.array([1, 2, 4]), G_CAMS, max_rank=10)
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0, 1.0])
    assert mAP == pytest.approx(0.5) and mINP == pytest.approx(0.5)


def test_ties_follow_gallery_order():
    # all distances equal: the order is g0 (id 2), g1 (id 1), g2 (id 1) -> ranks 2 and 3
    # AP = (1/2 + 2/3) / 2 = 7/12, INP = 2/3
    cmc, mAP, mINP = eval_regdb(np.zeros((1, 3)), [1], [2, 1, 1])
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0])
    assert mAP == pytest.approx(7 / 12) and mINP == pytest.approx(2 / 3)
    # a match tied with a later non-match ranks first
    assert eval_regdb(np.zeros((1, 2)), [1], [1, 2])[1] == 1.0


def test_query_with_every_gallery_image_removed_is_skipped():
    # q0 (cam3) loses the whole cam2 gallery; q1 (cam6) has its match at rank 2
    d = np.array([[0.1, 0.2], [0.3, 0.1]])
    cmc, mAP, mINP = eval_sysu(d, [1, 1], [1, 2], [3, 6], [2, 2])
    np.testing.assert_allclose(cmc, [0.0, 1.0])
    assert mAP == 0.5 and mINP == 0.5


def test_float32_and_integer_inputs():
    d32 = DIST.astype(np.float32)
    np.testing.assert_allclose(eval_regdb(d32, Q_PIDS, G_PIDS)[0], [1 / 3, 2 / 3, 2 / 3, 1.0])
    assert eval_regdb((DIST * 10).astype(int), Q_PIDS, G_PIDS)[1] == pytest.approx(19 / 36)


@pytest.mark.parametrize("message, call", [
    ("q_pids has 2 entries", lambda: eval_regdb(DIST, [1, 2], G_PIDS)),
    ("g_pids has 3 entries", lambda: eval_regdb(DIST, Q_PIDS, [1, 2, 3])),
    ("g_camids has 2 entries", lambda: eval_sysu(DIST, Q_PIDS, G_PIDS, [3, 3, 3], [1, 2])),
    ("empty query set", lambda: eval_regdb(np.zeros((0, 4)), [], G_PIDS)),
    ("empty gallery", lambda: eval_regdb(np.zeros((3, 0)), Q_PIDS, [])),
    ("non-finite value nan at query 1, gallery 2",
     lambda: eval_regdb(np.where(np.arange(12).reshape(3, 4) == 6, np.nan, DIST), Q_PIDS, G_PIDS)),
    ("non-finite value inf", lambda: eval_regdb(DIST + np.inf, Q_PIDS, G_PIDS)),
    ("no query has a true match", lambda: eval_regdb(DIST, [7, 8, 9], G_PIDS)),
    ("must be 2-D", lambda: eval_regdb(DIST[0], Q_PIDS, G_PIDS)),
    ("max_rank must be >= 1", lambda: eval_regdb(DIST, Q_PIDS, G_PIDS, max_rank=0)),
    ("unknown removal rule", lambda: evaluate(DIST, Q_PIDS, G_PIDS, removal="market")),
    ("needs q_camids", lambda: evaluate(DIST, Q_PIDS, G_PIDS, removal="llcm")),
])
def test_bad_input_raises(message, call):
    with pytest.raises(ValueError, match=message):
        call()


def _random_case(rng, n_q, n_g, n_ids, integer):
    q_pids, g_pids = rng.integers(0, n_ids, n_q), rng.integers(0, n_ids, n_g)
    q_cams, g_cams = rng.choice([1, 2, 3, 4, 5, 6], n_q), rng.choice([1, 2, 3, 4, 5, 6], n_g)
    d = rng.integers(0, 4, (n_q, n_g)) if integer else rng.standard_normal((n_q, n_g))
    return d.astype(rng.choice([np.float32, np.float64])), q_pids, g_pids, q_cams, g_cams


def _assert_same(got, want):
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-9)
    assert abs(got[1] - want[1]) <= 1e-9 and abs(got[2] - want[2]) <= 1e-9


@pytest.mark.parametrize("removal, dedup", [("none", False), ("none", True), ("sysu", True),
                                            ("sysu", False), ("llcm", True), ("llcm", False)])
def test_vectorised_equals_reference_loop(removal, dedup):
    rng = np.random.default_rng(10 * ("none", "sysu", "llcm").index(removal) + dedup)
    checked = 0
    for case in range(150):
        n_q, n_g = rng.integers(1, 30), rng.integers(1, 40)
        args = _random_case(rng, n_q, n_g, rng.integers(1, 8), integer=case % 2 == 0)
        max_rank = int(rng.integers(1, 50))
        try:
            want = reference_eval(*args, removal=removal, dedup=dedup, max_rank=max_rank)
        except ValueError:
            with pytest.raises(ValueError, match="no query has a true match"):
                evaluate(*args, removal=removal, dedup=dedup, max_rank=max_rank)
            continue
        _assert_same(evaluate(*args, removal=removal, dedup=dedup, max_rank=max_rank), want)
        checked += 1
    assert checked > 100


def test_large_blocks_many_matches_and_big_identities(monkeypatch):
    """The stable-sort path (many matches per query), the reduceat path (identities with many
    gallery images), and several row blocks, all against the reference loop."""
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 500)     # several blocks of rows
    rng = np.random.default_rng(3)
    for integer in (True, False):
        for n_ids in (1, 2, 40):                             # 1-2 ids: > 24 matches, > 64 per id
            args = _random_case(rng, 37, 150, n_ids, integer)
            for removal, dedup in (("none", False), ("sysu", True), ("llcm", True)):
                try:
                    want = reference_eval(*args, removal=removal, dedup=dedup)
                except ValueError:
                    continue
                _assert_same(evaluate(*args, removal=removal, dedup=dedup), want)


def test_named_evaluators_match_reference():
    rng = np.random.default_rng(7)
    d, qp, gp, qc, gc = _random_case(rng, 60, 80, 10, integer=True)
    _assert_same(eval_sysu(d, qp, gp, qc, gc), metrics.reference_eval_sysu(d, qp, gp, qc, gc))
    _assert_same(eval_llcm(d, qp, gp, qc, gc), metrics.reference_eval_llcm(d, qp, gp, qc, gc))
    _assert_same(eval_regdb(d, qp, gp), metrics.reference_eval_regdb(d, qp, gp))


def test_kept_mask_applies_the_removal_rules():
    from djanet.metrics import kept_mask
    q_pids, g_pids = np.array([1, 2]), np.array([1, 1, 2])
    q_cams, g_cams = np.array([3, 6]), np.array([2, 6, 6])
    assert kept_mask("none", q_pids, g_pids).all()
    np.testing.assert_array_equal(kept_mask("sysu", q_pids, g_pids, q_cams, g_cams),
                                  [[False, True, True], [True, True, True]])
    np.testing.assert_array_equal(kept_mask("llcm", q_pids, g_pids, q_cams, g_cams),
                                  [[True, True, True], [True, True, False]])
    with pytest.raises(ValueError, match="unknown removal rule 'market'"):
        kept_mask("market", q_pids, g_pids)
