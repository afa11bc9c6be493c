"""k-reciprocal re-ranking: the vectorised version against the paper's steps one query at a time,
and the test-time options (flip, re-rank) wired through the protocols."""
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


@pytest.mark.parametrize("nq, ng, dim, ids, k1, k2, lam", [
    (7, 9, 4, None, 3, 2, 0.3),
    (30, 40, 8, 6, 20, 6, 0.3),        # the paper's parameters
    (25, 35, 6, 5, 5, 3, 0.5),
    (12, 10, 5, None, 4, 1, 0.0),      # no query expansion, pure Jaccard distance
    (10, 12, 3, 3, 40, 30, 0.3),       # k1 and k2 larger than the set: clamped
    (3, 2, 4, None, 1, 1, 1.0),        # the smallest sets; lambda = 1 keeps the original distance
])
def test_vectorised_equals_the_per_query_reference(nq, ng, dim, ids, k1, k2, lam):
    q, g = features(nq, ng, dim, seed=nq * 100 + ng, ids=ids)
    q_g, q_q, g_g = blocks(q, g)
    expected = reference_rerank(q_g, q_q, g_g, k1, k2, lam)
    np.testing.assert_allclose(rerank_distances(q_g, q_q, g_g, k1, k2, lam), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rerank(q, g, k1, k2, lam), expected, rtol=0, atol=1e-6)
    if lam == 1.0:
        np.testing.assert_allclose(expected, q_g, atol=1e-12)


def test_ties_are_broken_by_index_in_both(monkeypatch):
    """Duplicated gallery images (exact ties) and tiny row blocks (several per matrix)."""
    q, g = features(8, 10, 4, seed=3)
    g = np.vstack([g, g[:4], q[:2]])                     # exact duplicates of gallery and query rows
    q_g, q_q, g_g = blocks(q, g)
    monkeypatch.setattr(rr, "_BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(rr, "_PAIR_BUDGET", 16)
    expected = reference_rerank(q_g, q_q, g_g, 5, 3, 0.3)
    np.testing.assert_allclose(rerank_distances(q_g, q_q, g_g, 5, 3, 0.3), expected, rtol=0, atol=1e-6)


def test_the_expansion_step_adds_neighbours_and_changes_the_ranking():
    """Not a trivial case: R*(i) grows beyond R(i) for some elements, and re-ranking reorders."""
    q, g = features(30, 40, 8, seed=5, ids=6)
    x = np.vstack([q, g])
    dist = rr._FeatureDistances(x)
    ranked = rr._nearest(dist, 21)
    nbrh = ranked[:, :11]
    rows, _ = rr._expanded_sets(ranked, rr._reciprocal(ranked), nbrh, rr._reciprocal(nbrh))
    grown = np.bincount(rows, minlength=len(x)) > rr._reciprocal(ranked).sum(1)
    assert grown.any()
    q_g = blocks(q, g)[0]
    new = rerank(q, g)
    assert (np.argsort(new, axis=1)[:, :5] != np.argsort(q_g, axis=1)[:, :5]).any()


def test_bad_parameters_and_inputs_are_named():
    with pytest.raises(ValueError, match="k1=0"):
        RerankConfig(k1=0)
    with pytest.raises(ValueError, match="lambda=1.5"):
        RerankConfig(lambda_value=1.5)
    q, g = features(3, 4, 5, seed=0)
    with pytest.raises(ValueError, match="query_feat has 5 dimensions but gallery_feat has 4"):
        rerank(q, g[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        rerank(np.full((2, 5), np.nan), g)


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
