"""k-reciprocal re-ranking: the vectorised version against per-query loops of both conventions (the
authors' released code, written out here; the paper's equations, djanet.rerank.reference_rerank),
a case computed by hand, and the test-time options (flip, re-rank) wired through the protocols."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from djanet import rerank as rr
from djanet.rerank import RerankConfig, reference_rerank, rerank, rerank_distances


def features(n_query, n_gallery, dim, seed, ids=None):
    """Random unit features; with `ids`, clustered by identity so neighbour sets overlap."""
    rng = np.random.default_rng(seed)
    n = n_query + n_gallery
    x = rng.standard_normal((n, dim))
    if ids:
        x = 0.6 * x + 2.0 * rng.standard_normal((ids, dim))[rng.integers(0, ids, n)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n_query], x[n_query:]


def blocks(q, g):
    x = np.vstack([q, g])
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    nq = len(q)
    return d[:nq, nq:], d[:nq, :nq], d[nq:, nq:]


def released_reference(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    """The authors' released re_ranking, one element at a time, written here from its conventions
    (sharing nothing with djanet.rerank): the (N, N) matrix divided by its column maxima and
    transposed; k-reciprocal sets from a stable ranking; a candidate's round(k1/2)-reciprocal set
    joins when more than 2/3 of it lies in R(i, k1); V rows exp(-d) over their sum; V averaged over
    the k2 first ranking entries; d_J = 1 - s / (2 - s); d* = (1 - lam) d_J + lam d, queries x gallery."""
    d = np.block([[np.asarray(q_q, float), np.asarray(q_g, float)],
                  [np.asarray(q_g, float).T, np.asarray(g_g, float)]])
    col_max = d.max(axis=0)
    d = (d / np.where(col_max > 0, col_max, 1.0)).T
    n, nq = len(d), len(q_g)
    order = [list(np.argsort(d[i], kind="stable")) for i in range(n)]

    def k_reciprocal(i, k):
        return [j for j in order[i][:k + 1] if i in order[j][:k + 1]]

    half = int(np.around(k1 / 2))
    v = np.zeros((n, n))
    for i in range(n):
        r = k_reciprocal(i, k1)
        members = set(r)
        for c in r:
            rc = k_reciprocal(c, half)
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                members.update(rc)
        idx = sorted(members)
        w = np.exp(-d[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = np.array([v[order[i][:k2]].mean(axis=0) for i in range(n)])
    out = np.empty((nq, n - nq))
    for i in range(nq):
        for j in range(nq, n):
            s = np.minimum(v[i], v[j]).sum()
            out[i, j - nq] = (1 - lam) * (1 - s / (2 - s)) + lam * d[i, j]
    return out


def assert_same_top1(got, expected, tol=1e-9):
    """Every query's top-1 under `got` is a top-1 under `expected` (equal when there are no ties)."""
    top = got.argmin(axis=1)
    best = expected[np.arange(len(expected)), top]
    assert (best <= expected.min(axis=1) + tol).all(), np.nonzero(best > expected.min(axis=1) + tol)


CASES = [
    (7, 9, 4, None, 3, 2, 0.3),
    (30, 40, 8, 6, 20, 6, 0.3),        # the paper's parameters
    (25, 35, 6, 5, 5, 3, 0.5),
    (12, 10, 5, None, 4, 1, 0.0),      # no query expansion, pure Jaccard distance
    (10, 12, 3, 3, 40, 30, 0.3),       # k1 and k2 larger than the set: clamped
    (3, 2, 4, None, 1, 1, 1.0),        # the smallest sets; lambda = 1 keeps the original distance
]


@pytest.mark.parametrize("nq, ng, dim, ids, k1, k2, lam", CASES + [
    (6, 8, 3, 2, 1, 3, 0.3),           # k1 = 1: round(1/2) = 0 in the released code
    (50, 60, 16, 8, 20, 6, 0.3),
])
def test_released_default_equals_the_per_query_reference(nq, ng, dim, ids, k1, k2, lam):
    q, g = features(nq, ng, dim, seed=nq * 100 + ng, ids=ids)
    q_g, q_q, g_g = blocks(q, g)
    expected = released_reference(q_g, q_q, g_g, k1, k2, lam)
    from_matrices = rerank_distances(q_g, q_q, g_g, k1, k2, lam)
    from_features = rerank(q, g, k1, k2, lam)
    np.testing.assert_allclose(from_matrices, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(from_features, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(from_matrices.argmin(1), expected.argmin(1))
    np.testing.assert_array_equal(from_features.argmin(1), expected.argmin(1))
    np.testing.assert_allclose(rerank(q, g, k1, k2, lam, convention="released"), from_features, rtol=0, atol=0)
    if lam == 1.0:                     # the original distance, rescaled by each query's maximum
        x = np.vstack([q, g])
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        np.testing.assert_allclose(expected, q_g / d[:nq].max(1, keepdims=True), atol=1e-12)


@pytest.mark.parametrize("nq, ng, dim, ids, k1, k2, lam", CASES)
def test_paper_option_equals_the_paper_reference(nq, ng, dim, ids, k1, k2, lam):
    q, g = features(nq, ng, dim, seed=nq * 100 + ng, ids=ids)
    q_g, q_q, g_g = blocks(q, g)
    expected = reference_rerank(q_g, q_q, g_g, k1, k2, lam)
    np.testing.assert_allclose(rerank_distances(q_g, q_q, g_g, k1, k2, lam, convention="paper"), expected,
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(rerank(q, g, k1, k2, lam, convention="paper"), expected, rtol=0, atol=1e-6)
    if lam == 1.0:
        np.testing.assert_allclose(expected, q_g, atol=1e-12)


def test_a_case_computed_by_hand():
    """Points 0 (query), 1 and 2 (gallery) at 0, 1, 2 on a line; squared distances 1, 4, 1.

    Column maxima 4, 1, 4, so d' rows are [0, 1/4, 1], [1, 0, 1], [1, 1/4, 0].  k1 = 1: rankings
    [0, 1, 2], [1, 0, 2] (tie by index), [2, 1, 0]; R(0) = R(1) = {0, 1}, R(2) = {2}; round(1/2) = 0
    adds nothing.  V0 = [1, e^-1/4, 0] / (1 + e^-1/4), V1 = [e^-1, 1, 0] / (1 + e^-1), V2 = [0, 0, 1];
    k2 = 1 keeps V.  s(0, 1) = e^-1 / (1 + e^-1) + e^-1/4 / (1 + e^-1/4), s(0, 2) = 0."""
    q_g, q_q, g_g = np.array([[1.0, 4.0]]), np.zeros((1, 1)), np.array([[0.0, 1.0], [1.0, 0.0]])
    a, b = np.exp(-0.25), np.exp(-1.0)
    s = b / (1 + b) + a / (1 + a)
    want = np.array([[0.5 * (1 - s / (2 - s)) + 0.5 * 0.25, 0.5 * 1.0 + 0.5 * 1.0]])
    np.testing.assert_allclose(rerank_distances(q_g, q_q, g_g, k1=1, k2=1, lambda_value=0.5), want,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(released_reference(q_g, q_q, g_g, 1, 1, 0.5), want, rtol=0, atol=1e-12)
    x = np.array([[0.0], [1.0], [2.0]])                       # the same points as features, unnormalised
    assert np.allclose(blocks(x[:1], x[1:])[0], q_g)


@pytest.mark.parametrize("k1, k2", [(3, 2), (5, 3), (20, 6), (60, 40)])
def test_released_default_with_exact_ties(monkeypatch, k1, k2):
    """Integer-valued features: many exactly equal distances, duplicated images, tiny row blocks."""
    rng = np.random.default_rng(k1)
    x = rng.integers(0, 3, (26, 3)).astype(float)
    x[20:23] = x[:3]                                          # exact duplicates across query and gallery
    q, g = x[:9], x[9:]
    q_g, q_q, g_g = blocks(q, g)                              # integers: exact whatever the formula
    monkeypatch.setattr(rr, "_BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(rr, "_PAIR_BUDGET", 16)
    expected = released_reference(q_g, q_q, g_g, k1, k2, 0.3)
    got = rerank_distances(q_g, q_q, g_g, k1, k2, 0.3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert_same_top1(got, expected)
    # features with four entries of +-1 have norm 2: normalising them, and every distance, is exact
    signs = rng.choice([-1.0, 1.0], (26, 4))
    f = np.zeros((26, 6))
    for i in range(26):
        f[i, rng.choice(6, 4, replace=False)] = signs[i]
    f[20:23] = f[:3]
    q, g = f[:9], f[9:]
    expected = released_reference(*blocks(q / 2, g / 2), k1, k2, 0.3)
    got = rerank(q, g, k1, k2, 0.3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert_same_top1(got, expected)


def test_released_reads_the_columns_of_an_asymmetric_matrix():
    """The released code divides by column maxima and transposes: the same for asymmetric input."""
    q, g = features(8, 11, 4, seed=9, ids=3)
    q_g, q_q, g_g = blocks(q, g)
    rng = np.random.default_rng(1)
    q_q = q_q + 0.05 * rng.random(q_q.shape)
    g_g = g_g + 0.05 * rng.random(g_g.shape)
    expected = released_reference(q_g, q_q, g_g, 4, 3, 0.3)
    np.testing.assert_allclose(rerank_distances(q_g, q_q, g_g, 4, 3, 0.3), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("convention", ["released", "paper"])
def test_ties_are_broken_by_index_in_both(monkeypatch, convention):
    """Duplicated gallery images (exact ties) and tiny row blocks (several per matrix)."""
    q, g = features(8, 10, 4, seed=3)
    g = np.vstack([g, g[:4], q[:2]])                     # exact duplicates of gallery and query rows
    q_g, q_q, g_g = blocks(q, g)
    monkeypatch.setattr(rr, "_BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(rr, "_PAIR_BUDGET", 16)
    reference = released_reference if convention == "released" else reference_rerank
    expected = reference(q_g, q_q, g_g, 5, 3, 0.3)
    np.testing.assert_allclose(rerank_distances(q_g, q_q, g_g, 5, 3, 0.3, convention=convention), expected,
                               rtol=0, atol=1e-6)


def test_the_expansion_step_adds_neighbours_and_changes_the_ranking():
    """Not a trivial case: R*(i) grows beyond R(i) for some elements, the strict (released) and
    non-strict (paper) 2/3 rules differ somewhere, and re-ranking reorders."""
    q, g = features(30, 40, 8, seed=5, ids=6)
    x = np.vstack([q, g])
    dist = rr._FeatureDistances(x)
    ranked, _ = rr._nearest(dist, 21)
    nbrh = ranked[:, :11]
    sets = {strict: rr._expanded_sets(ranked, rr._reciprocal(ranked), nbrh, rr._reciprocal(nbrh), strict=strict)
            for strict in (False, True)}
    grown = np.bincount(sets[True][0], minlength=len(x)) > rr._reciprocal(ranked).sum(1)
    assert grown.any()
    assert len(sets[False][0]) > len(sets[True][0])
    q_g = blocks(q, g)[0]
    for convention in ("released", "paper"):
        new = rerank(q, g, convention=convention)
        assert (np.argsort(new, axis=1)[:, :5] != np.argsort(q_g, axis=1)[:, :5]).any()
    assert not np.allclose(rerank(q, g), rerank(q, g, convention="paper"))


def test_config_defaults_to_the_released_convention():
    assert RerankConfig().convention == "released" == rr.CONVENTIONS[0]
    assert RerankConfig(20, 6, 0.3) == RerankConfig()               # positional arguments still work
    assert RerankConfig(convention="paper").convention == "paper"


def test_bad_parameters_and_inputs_are_named():
    with pytest.raises(ValueError, match="k1=0"):
        RerankConfig(k1=0)
    with pytest.raises(ValueError, match="lambda=1.5"):
        RerankConfig(lambda_value=1.5)
    with pytest.raises(ValueError, match="convention='zhong'.*'released', 'paper'"):
        RerankConfig(convention="zhong")
    q, g = features(3, 4, 5, seed=0)
    with pytest.raises(ValueError, match="query_feat has 5 dimensions but gallery_feat has 4"):
        rerank(q, g[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        rerank(np.full((2, 5), np.nan), g)
    with pytest.raises(ValueError, match="convention='torchreid'"):
        rerank(q, g, convention="torchreid")


def test_protocol_reranks_each_trials_gallery(llcm_root):
    """evaluate_split(rerank=...) scores exactly the re-ranked distances of each sampled gallery."""
    from djanet.data import read_test
    from djanet.metrics import eval_llcm
    from djanet.protocols import evaluate_split, sample_llcm_gallery
    split = read_test("llcm", llcm_root, direction="i2v")
    rng = np.random.default_rng(0)
    qf, gf = rng.standard_normal((len(split.query), 16)), rng.standard_normal((len(split.gallery), 16))
    cfg = RerankConfig(k1=6, k2=3)
    res = evaluate_split(split, qf, gf, trials=2, rerank=cfg)
    for row, t in zip(res.rows, (0, 1)):
        idx = sample_llcm_gallery(split.gallery, t)
        cmc, mAP, _ = eval_llcm(rerank(qf, gf[idx], 6, 3, 0.3), split.query.pids, split.gallery.pids[idx],
                                split.query.cams, split.gallery.cams[idx])
        assert row["r1"] == pytest.approx(cmc[0]) and row["mAP"] == pytest.approx(mAP)
    plain = evaluate_split(split, qf, gf, trials=2)
    assert [r["mAP"] for r in plain.rows] != [r["mAP"] for r in res.rows]


def test_protocol_honours_the_configs_convention(llcm_root):
    from djanet.data import read_test
    from djanet.metrics import eval_llcm
    from djanet.protocols import evaluate_split, sample_llcm_gallery
    split = read_test("llcm", llcm_root, direction="i2v")
    rng = np.random.default_rng(0)
    qf, gf = rng.standard_normal((len(split.query), 16)), rng.standard_normal((len(split.gallery), 16))
    res = evaluate_split(split, qf, gf, trials=1, rerank=RerankConfig(k1=6, k2=3, convention="paper"))
    idx = sample_llcm_gallery(split.gallery, 0)
    _, mAP, _ = eval_llcm(rerank(qf, gf[idx], 6, 3, 0.3, convention="paper"), split.query.pids,
                          split.gallery.pids[idx], split.query.cams, split.gallery.cams[idx])
    assert res.rows[0]["mAP"] == pytest.approx(mAP)
    released = evaluate_split(split, qf, gf, trials=1, rerank=RerankConfig(k1=6, k2=3))
    assert released.rows[0]["mAP"] != pytest.approx(mAP)   # the two conventions rank differently here


def test_flip_averages_with_the_mirrored_image(sysu_root):
    from djanet.config import get_config
    from djanet.data import ImageDataset, read_test
    from djanet.evaluate import extract_features
    from djanet.model import DJANet
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = DJANet.from_config(cfg.model, 4, cfg.data.img_size).eval()
    images = read_test("sysu", sysu_root).query
    sub = type(images)(paths=images.paths[:3], pids=images.pids[:3], cams=images.cams[:3],
                       labels=images.labels[:3], modality=images.modality)
    pool, bn = extract_features(model, sub, "infrared", cfg.data.img_size, flip=True)
    batch = torch.stack([ImageDataset(sub, cfg.data.img_size)[i][0] for i in range(3)])
    a, b = model.extract(batch, "infrared"), model.extract(batch.flip(3), "infrared")
    expected = torch.nn.functional.normalize(a[1] + b[1], dim=1).numpy()
    np.testing.assert_allclose(bn, expected, atol=1e-5)
    plain = extract_features(model, sub, "infrared", cfg.data.img_size)[1]
    assert np.abs(plain - bn).max() > 1e-3                  # the mirror changes something
    assert np.allclose(np.linalg.norm(pool, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_test_time_options_equal_four_evaluate_calls(tmp_path):
    """evaluate_test_time extracts features twice, not four times, and gives evaluate's numbers."""
    from djanet import train as engine
    from djanet.config import get_config
    from djanet.evaluate import TEST_TIME_OPTIONS, evaluate, evaluate_test_time, metrics_path
    cfg = get_config("tiny", cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path), device="cpu")
    run = engine.fit_or_load(cfg)
    got = evaluate_test_time(cfg, run.best, out_dir=tmp_path / "together")
    assert list(got) == list(TEST_TIME_OPTIONS)
    for name, (flip, rerank) in TEST_TIME_OPTIONS.items():
        want = evaluate(cfg, run.best, out_dir=tmp_path / name, flip=flip, rerank=rerank)
        key = next(k for k in want if k.split("/")[1].startswith("bn"))
        assert list(got[name]) == [key]
        assert [r["mAP"] for r in got[name][key].rows] == pytest.approx([r["mAP"] for r in want[key].rows])
        assert metrics_path(tmp_path / "together", flip, rerank).is_file()
    assert got["plain"]["i2v/bn"].rows != got["re-rank"]["i2v/bn+rerank"].rows
    assert sorted(p.name for p in (tmp_path / "together").glob("*.npz")) == ["features_i2v+flip.npz",
                                                                           "features_i2v.npz"]


def test_each_convention_writes_its_own_metrics_file(tmp_path):
    from djanet.evaluate import metrics_path
    released, paper = RerankConfig(), RerankConfig(convention="paper")
    assert metrics_path(tmp_path, rerank=released).name == "metrics+rerank.json"
    assert metrics_path(tmp_path, flip=True, rerank=paper).name == "metrics+flip+rerank-paper.json"
    assert metrics_path(tmp_path).name == "metrics.json"
