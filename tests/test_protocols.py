"""Gallery sampling (seeded and from rand_perm), evaluate_split, ProtocolResult and combine."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from djanet.metrics import eval_llcm, eval_sysu
from djanet.protocols import (ProtocolResult, combine, distance, evaluate_split, rank1_without_twins,
                              regdb_twins, sample_llcm_gallery, sample_sysu_gallery,
                              sample_sysu_gallery_from_perm)

try:
    from djanet.data.readers import EvalSplit, ImageList
except ImportError:                     # stand-ins with the same fields
    from dataclasses import dataclass

    @dataclass
    class ImageList:
        paths: list
        pids: np.ndarray
        cams: np.ndarray
        labels: np.ndarray
        modality: str

        def __len__(self):
            return len(self.paths)

    @dataclass
    class EvalSplit:
        dataset: str
        query: ImageList
        gallery: ImageList
        mode: str
        direction: str
        root: str


def _images(spec, modality, prefix="/d/cam{c}/{p:04d}/{k:04d}.jpg", seed=0):
    """ImageList from {(pid, cam): n_images}, deliberately in shuffled order."""
    items = [(prefix.format(c=c, p=p, k=k + 1), p, c) for (p, c), n in spec.items() for k in range(n)]
    random.Random(seed).shuffle(items)
    pids = np.array([p for _, p, _ in items], np.int64)
    return ImageList([i[0] for i in items], pids, np.array([c for *_, c in items], np.int64),
                     pids.copy(), modality)


SYSU_GALLERY = {(p, c): n for p in (2, 5, 9) for c, n in ((1, 12), (2, 3), (4, 11), (5, 1)) if (p, c) != (5, 4)}


def test_sysu_single_shot_follows_the_community_loop():
    g = _images(SYSU_GALLERY, "visible")
    for trial in (0, 3):
        random.seed(trial)                            # the community code, written out
        want = []
        for pid in (2, 5, 9):
            for cam in (1, 2, 4, 5):
                files = sorted(p for p, pp, cc in zip(g.paths, g.pids, g.cams) if (pp, cc) == (pid, cam))
                if files:
                    want.append(random.choice(files))
        assert [g.paths[i] for i in sample_sysu_gallery(g, trial, "all")] == want
    assert len(sample_sysu_gallery(g, 0, "all")) == 11                 # (5, cam4) is absent
    idx = sample_sysu_gallery(g, 0, "indoor")
    assert len(idx) == 6 and set(g.cams[idx]) == {1, 2}
    assert not np.array_equal(sample_sysu_gallery(g, 0), sample_sysu_gallery(g, 1))
    np.testing.assert_array_equal(sample_sysu_gallery(g, 4), sample_sysu_gallery(g, 4))


def test_sysu_multi_shot_counts():
    g = _images(SYSU_GALLERY, "visible")
    idx = sample_sysu_gallery(g, 0, "all", shot=10)
    per_folder = {}
    for i in idx:
        per_folder[g.pids[i], g.cams[i]] = per_folder.get((g.pids[i], g.cams[i]), 0) + 1
    assert per_folder == {k: min(n, 10) for k, n in SYSU_GALLERY.items()}
    assert len(set(idx.tolist())) == len(idx)
    with pytest.raises(ValueError, match="shot must be 1"):
        sample_sysu_gallery(g, 0, shot=3)
    with pytest.raises(ValueError, match="unknown SYSU-MM01 mode"):
        sample_sysu_gallery(g, 0, mode="outdoor")


def test_sysu_gallery_from_rand_perm():
    g = _images(SYSU_GALLERY, "visible")
    # trial t picks position (t % n) + 1 of each folder's sorted files, then the following ones
    perm = {(c, p): np.array([np.roll(np.arange(1, n + 1), -t) for t in range(3)])
            for (p, c), n in SYSU_GALLERY.items()}
    idx = sample_sysu_gallery_from_perm(g, perm, 1, "all")
    want = [f"/d/cam{c}/{p:04d}/{(1 % n) + 1:04d}.jpg" for p in (2, 5, 9) for c in (1, 2, 4, 5)
            if (n := SYSU_GALLERY.get((p, c)))]
    assert [g.paths[i] for i in idx] == want
    multi = sample_sysu_gallery_from_perm(g, perm, 0, "all", shot=10)
    assert len(multi) == sum(min(n, 10) for n in SYSU_GALLERY.values())
    with pytest.raises(ValueError, match="trial 5 out of range"):
        sample_sysu_gallery_from_perm(g, perm, 5)
    with pytest.raises(ValueError, match="no entry for camera 1, identity 2"):
        sample_sysu_gallery_from_perm(g, {k: v for k, v in perm.items() if k != (1, 2)}, 0)


def test_llcm_one_image_per_identity_and_camera():
    spec = {(p, c): 1 + (p * c) % 4 for p in (1, 3, 4) for c in (1, 2, 5, 9)}
    g = _images(spec, "visible")
    idx = sample_llcm_gallery(g, 2)
    assert sorted(zip(g.pids[idx].tolist(), g.cams[idx].tolist())) == sorted(spec)
    np.testing.assert_array_equal(idx, sample_llcm_gallery(g, 2))
    assert any(not np.array_equal(sample_llcm_gallery(g, t), idx) for t in range(5))


def _features(pids, seed, dim=16, noise=0.8):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).standard_normal((20, dim))
    return (centers[pids] + noise * rng.standard_normal((len(pids), dim))).astype(np.float32)


def _sysu_split(mode="all"):
    q = _images({(p, c): 4 for p in (2, 5, 9) for c in (3, 6)}, "infrared", seed=1)
    return EvalSplit("sysu", q, _images(SYSU_GALLERY, "visible"), mode, "i2v", "/nonexistent")


def test_evaluate_split_sysu():
    split = _sysu_split()
    qf, gf = _features(split.query.pids, 1), _features(split.gallery.pids, 2)
    res = evaluate_split(split, qf, gf, trials=3, feature_name="pool")
    assert [r["trial"] for r in res.rows] == [0, 1, 2] and len(res.rows) == 3
    idx = sample_sysu_gallery(split.gallery, 1)
    cmc, mAP, mINP = eval_sysu(distance(qf, gf)[:, idx], split.query.pids, split.gallery.pids[idx],
                               split.query.cams, split.gallery.cams[idx])
    row = res.rows[1]
    assert (row["r1"], row["mAP"], row["mINP"]) == (cmc[0], mAP, mINP)
    assert row["r20"] == cmc[-1] and row["n_gallery"] == 11 and row["n_query"] == 24
    assert res.mean["mAP"] == pytest.approx(np.mean([r["mAP"] for r in res.rows]))
    assert res.std["r1"] == pytest.approx(np.std([r["r1"] for r in res.rows]))
    assert res.cmc.shape == (20,) and res.cmc[-1] == 1.0
    assert all(0 <= r[k] <= 1 for r in res.rows for k in ("r1", "r5", "r10", "r20", "mAP", "mINP"))
    assert "single-shot" in res.gallery and res.label == "sysu all-search i2v (pool)"


def test_result_table_frame_and_json():
    split = _sysu_split("indoor")
    res = evaluate_split(split, _features(split.query.pids, 1), _features(split.gallery.pids, 2),
                         trials=2, shot=10)
    text = str(res)
    assert "sysu indoor-search i2v (bn)" in text and "multi-shot" in text
    assert "mean" in text and f"{100 * res.mean['mAP']:.2f}" in text
    df = res.to_frame()
    assert list(df.columns) == ["R1", "R5", "R10", "R20", "mAP", "mINP"]
    assert list(df.index) == [0, 1, "mean", "std"]
    assert df.loc["mean", "mAP"] == pytest.approx(100 * res.mean["mAP"])
    back = ProtocolResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.rows == res.rows and back.mean == res.mean
    np.testing.assert_allclose(back.cmc, res.cmc)


def test_evaluate_split_llcm_and_regdb_and_combine():
    q = _images({(p, c): 2 for p in (1, 3, 4) for c in (1, 2, 4)}, "infrared", seed=2)
    g = _images({(p, c): 3 for p in (1, 3, 4) for c in (1, 2, 3, 5)}, "visible", seed=3)
    llcm = evaluate_split(EvalSplit("llcm", q, g, "all", "i2v", "/x"), _features(q.pids, 4),
                          _features(g.pids, 5), trials=4)
    assert len(llcm.rows) == 4 and all(r["n_gallery"] == 12 for r in llcm.rows)
    assert "gallery side is sampled" in llcm.gallery
    idx = sample_llcm_gallery(g, 0)
    cmc, mAP, _ = eval_llcm(distance(_features(q.pids, 4), _features(g.pids, 5))[:, idx],
                            q.pids, g.pids[idx], q.cams, g.cams[idx])
    assert llcm.rows[0]["mAP"] == mAP

    results = []
    for seed in range(3):
        split = EvalSplit("regdb", q, g, "all", "v2t", "/x")
        results.append(evaluate_split(split, _features(q.pids, seed), _features(g.pids, 10 + seed),
                                      trials=10))
        assert len(results[-1].rows) == 1 and results[-1].rows[0]["n_gallery"] == len(g)
    both = combine(results)
    assert [r["trial"] for r in both.rows] == [1, 2, 3]
    assert both.mean["mAP"] == pytest.approx(np.mean([r.rows[0]["mAP"] for r in results]))
    with pytest.raises(ValueError, match="labels differ"):
        combine([results[0], llcm])
    with pytest.raises(ValueError, match="at least one"):
        combine([])


def test_evaluate_split_bad_input():
    split = _sysu_split()
    qf, gf = _features(split.query.pids, 1), _features(split.gallery.pids, 2)
    with pytest.raises(ValueError, match="gallery_feat has 3 rows"):
        evaluate_split(split, qf, gf[:3])
    with pytest.raises(ValueError, match="query_feat has 2 rows"):
        evaluate_split(split, qf[:2], gf)
    with pytest.raises(ValueError, match="unknown dataset 'market'"):
        evaluate_split(EvalSplit("market", split.query, split.gallery, "all", "i2v", "/x"), qf, gf)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_split(split, np.full_like(qf, np.nan), gf)


def test_baselines_are_seeded_and_random_sits_at_chance(sysu_root):
    """On the tiny synthetic set: random features land near the chance rank-1 of the gallery;
    rerunning gives the same numbers (seeded)."""
    from djanet.data import read_test
    from djanet.evaluate import split_baselines

    split = read_test("sysu", sysu_root)
    a = split_baselines(split, (32, 16), trials=10, seed=0)
    b = split_baselines(split, (32, 16), trials=10, seed=0)
    assert set(a) == {"pixels", "random"}
    assert a["random"].mean == b["random"].mean and a["pixels"].mean == b["pixels"].mean
    ids = len(set(split.query.pids))
    assert abs(a["random"].mean["r1"] - 1 / ids) < 0.25          # 2 test ids: chance 0.5
    assert a["random"].feature == "random" and len(a["random"].rows) == 10


def _regdb_images(modality, letter, pids=(3, 7, 8), per=4):
    folder = "Visible" if modality == "visible" else "Thermal"
    paths = [f"/r/{folder}/{p}/male_back_{letter}_{p:05d}_{k}.bmp" for p in pids for k in range(1, per + 1)]
    ids = np.repeat(np.array(pids, np.int64), per)
    return ImageList(paths, ids, np.full(len(ids), 1 if letter == "v" else 2), ids.copy(), modality)


def test_regdb_twins_and_rank1_without_them():
    q, g = _regdb_images("visible", "v"), _regdb_images("infrared", "t")
    twins = regdb_twins(q, g)
    assert twins.sum() == len(q) and (twins.sum(1) == 1).all()
    i, j = np.nonzero(twins)
    assert all(q.paths[a].split("_")[-1] == g.paths[b].split("_")[-1] for a, b in zip(i, j))
    split = EvalSplit("regdb", q, g, "all", "v2t", "/r")
    # features that match the moment (the image itself, then its pose): each query finds its
    # twin, and without it another person in the same pose
    number = np.array([int(p.split("_")[-1][0]) - 1 for p in q.paths])
    pose = np.hstack([np.eye(len(q)), 0.5 * np.eye(4)[number]])
    assert evaluate_split(split, pose, pose).mean["r1"] == 1.0
    assert rank1_without_twins(split, pose, pose) == 0.0
    # features that know the person: the twin is not needed
    person = np.hstack([np.eye(3)[[(3, 7, 8).index(p) for p in q.pids]], 0.01 * np.eye(4)[number]])
    assert rank1_without_twins(split, person, person) == 1.0
    with pytest.raises(ValueError, match="twins exist only in 'regdb'"):
        rank1_without_twins(EvalSplit("sysu", q, g, "all", "i2v", "/r"), person, person)
    bad = ImageList(["/r/Thermal/3/a.bmp"], np.array([3]), np.array([2]), np.array([3]), "infrared")
    with pytest.raises(ValueError, match="a.bmp: no image number"):
        regdb_twins(q, bad)


def test_regdb_twins_with_neighbouring_frames():
    """A walk's frames k - 1 and k + 1 are near-twins too: with neighbours=1, frames 1..4 of a
    person leave out 2, 3, 3 and 2 images of that person; with neighbours=3 all four."""
    q, g = _regdb_images("visible", "v"), _regdb_images("infrared", "t")
    assert regdb_twins(q, g, neighbours=1).sum(1).tolist() == [2, 3, 3, 2] * 3
    assert regdb_twins(q, g, neighbours=3).sum() == 3 * 16
    assert (regdb_twins(q, g, neighbours=1) >= regdb_twins(q, g)).all()
    with pytest.raises(ValueError, match="neighbours=-1"):
        regdb_twins(q, g, neighbours=-1)
    # features along each person's walk (frames 0.1 rad apart, people 1 rad apart): without the
    # twin the nearest is the next frame of the same person; with all of a person's frames out
    # (neighbours=3), another person
    frame = np.array([int(p.split("_")[-1][0]) for p in q.paths])
    angle = 0.1 * frame + 1.0 * np.array([(3, 7, 8).index(p) for p in q.pids])
    walk = np.stack([np.cos(angle), np.sin(angle)], 1)
    split = EvalSplit("regdb", q, g, "all", "v2t", "/r")
    assert rank1_without_twins(split, walk, walk, neighbours=0) == 1.0
    assert rank1_without_twins(split, walk, walk, neighbours=1) == 1.0     # frames 2 away
    assert rank1_without_twins(split, walk, walk, neighbours=3) == 0.0
