"""The test protocols around the metrics: gallery sampling per trial, and tidy results.

SYSU-MM01 (query = infrared cam3 + cam6; gallery = visible cams 1,2,4,5 'all' or 1,2
'indoor') and LLCM sample their gallery anew for each trial, as the community code does:
trial t seeds Python's `random` with t, loops over the sorted identities and, for each,
over the cameras in order, and picks one image of each existing (identity, camera) folder
with `random.choice(sorted(files))`.  SYSU multi-shot takes 10 images per identity and camera
(`random.sample`, or all when fewer).  SYSU can instead read the dataset's official
permutations (exp/rand_perm_cam.mat).  RegDB has no sampling: one split is one trial; its
10-trial protocol (one model per split) is `combine` over per-split results.

Distances are `-(q @ g.T)` on L2-normalised features (the community's choice; Euclidean
distance on normalised features ranks the same).  Features are normalised here, which
changes nothing for features that already are.  Only attributes of the split objects are
used (`EvalSplit`/`ImageList` from djanet.data.readers), so any object with them works.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .data.readers import DATASETS, SYSU_INDOOR_CAMS, SYSU_VIS_CAMS
from .metrics import eval_llcm, eval_regdb, eval_sysu

__all__ = ["SYSU_CAMERAS", "ProtocolResult", "evaluate_split", "combine", "distance",
           "sample_sysu_gallery", "sample_sysu_gallery_from_perm", "sample_llcm_gallery",
           "regdb_twins", "rank1_without_twins", "METRICS"]

SYSU_CAMERAS = {"all": SYSU_VIS_CAMS, "indoor": SYSU_INDOOR_CAMS}   # gallery cameras, sampling order
METRICS = ("r1", "r5", "r10", "r20", "mAP", "mINP")
_MULTI_SHOT = 10                                          # images per (identity, camera)


# ----------------------------------------------------------------------------- gallery sampling
def _folders(images, cams: Sequence[int] | None = None) -> dict[tuple[int, int], list[int]]:
    """{(pid, cam): indices of its images sorted by path}: one entry per image folder."""
    out: dict[tuple[int, int], list[int]] = {}
    pids, cams_all = np.asarray(images.pids), np.asarray(images.cams)
    for i in sorted(range(len(images.paths)), key=lambda k: str(images.paths[k])):
        c = int(cams_all[i])
        if cams is None or c in cams:
            out.setdefault((int(pids[i]), c), []).append(i)
    return out


def _sysu_folders(gallery, mode: str, shot: int):
    """(pid, cam, sorted file indices) of each gallery folder, in the community's loop order:
    identities ascending, then cameras in the order of SYSU_CAMERAS[mode]."""
    cams = _sysu_cams(mode)
    _check_shot(shot)
    folders = _folders(gallery, cams)
    for pid in sorted({p for p, _ in folders}):
        for cam in cams:
            if folders.get((pid, cam)):
                yield pid, cam, folders[pid, cam]


def sample_sysu_gallery(gallery, trial: int, mode: str = "all", shot: int = 1) -> np.ndarray:
    """Indices into `gallery` of SYSU-MM01's seeded gallery for `trial` (0-based, the seed).

    single-shot: one `random.choice` per (identity, camera) folder; multi-shot (`shot=10`):
    `random.sample` of 10 (all when fewer).  Identities ascending, cameras in the order of
    SYSU_CAMERAS[mode], as the community code loops.
    """
    rng = random.Random(trial)            # same stream as random.seed(trial) + random.choice
    picked: list[int] = []
    for pid, cam, files in _sysu_folders(gallery, mode, shot):
        if shot == 1:
            picked.append(rng.choice(files))
        else:
            picked.extend(rng.sample(files, _MULTI_SHOT) if len(files) >= _MULTI_SHOT else files)
    return np.asarray(picked, dtype=np.int64)


def sample_sysu_gallery_from_perm(gallery, rand_perm: dict, trial: int, mode: str = "all",
                                  shot: int = 1) -> np.ndarray:
    """Indices into `gallery` chosen by the official permutations (exp/rand_perm_cam.mat).

    `rand_perm[(cam, pid)]` is a (trials, n) array of 1-based positions in the folder's sorted
    file list (djanet.data.readers.read_rand_perm); trial t uses row t, its first image
    (single-shot) or first 10 (multi-shot).
    """
    picked: list[int] = []
    for pid, cam, files in _sysu_folders(gallery, mode, shot):
        perm = rand_perm.get((cam, pid))
        if perm is None:
            raise ValueError(f"rand_perm has no entry for camera {cam}, identity {pid}, "
                             f"whose gallery folder has {len(files)} images")
        perm = np.atleast_2d(np.asarray(perm))
        if not 0 <= trial < perm.shape[0]:
            raise ValueError(f"trial {trial} out of range: rand_perm for camera {cam}, identity "
                             f"{pid} has {perm.shape[0]} trials (0..{perm.shape[0] - 1})")
        pos = perm[trial, : (1 if shot == 1 else _MULTI_SHOT)].astype(np.int64) - 1
        if pos.min() < 0 or pos.max() >= len(files):
            raise ValueError(f"rand_perm for camera {cam}, identity {pid}, trial {trial} has "
                             f"positions {pos + 1} outside 1..{len(files)}")
        picked.extend(files[k] for k in pos)
    return np.asarray(picked, dtype=np.int64)


def sample_llcm_gallery(gallery, trial: int) -> np.ndarray:
    """Indices into `gallery` of LLCM's gallery for `trial`: one image per (identity, camera).

    `random.seed(trial)`; identities ascending, cameras ascending; `random.choice(sorted(files))`.
    """
    folders = _folders(gallery)
    rng = random.Random(trial)
    cams = sorted({c for _, c in folders})
    return np.asarray([rng.choice(folders[p, c]) for p in sorted({p for p, _ in folders})
                       for c in cams if (p, c) in folders], dtype=np.int64)


def _sysu_cams(mode: str) -> tuple[int, ...]:
    if mode not in SYSU_CAMERAS:
        raise ValueError(f"unknown SYSU-MM01 mode {mode!r}; expected one of {tuple(SYSU_CAMERAS)}")
    return SYSU_CAMERAS[mode]


def _check_shot(shot: int) -> None:
    if shot not in (1, _MULTI_SHOT):
        raise ValueError(f"shot must be 1 (single-shot) or {_MULTI_SHOT} (multi-shot), got {shot}")


# ----------------------------------------------------------------------------- results
@dataclass
class ProtocolResult:
    """Per-trial R1/R5/R10/R20/mAP/mINP (fractions in [0, 1]) with their labels.

    Printing shows percentages with 2 decimals; `std` is the population std over trials.
    """
    dataset: str
    mode: str
    direction: str
    feature: str
    gallery: str                          # how the gallery was formed, in words
    rows: list[dict[str, float]]          # one per trial: trial, r1..mINP, n_query, n_gallery
    cmc_curves: np.ndarray = field(repr=False)   # (trials, max_rank)
    # per trial, what the official test script would print for the same ranking (its constants
    # added; djanet.official_script); only when asked for, never the result itself
    script_rows: list[dict[str, float]] | None = None

    @property
    def mean(self) -> dict[str, float]:
        return {k: float(np.mean([r[k] for r in self.rows])) for k in METRICS}

    @property
    def std(self) -> dict[str, float]:
        return {k: float(np.std([r[k] for r in self.rows])) for k in METRICS}

    @property
    def script_mean(self) -> dict[str, float] | None:
        """Mean over trials of `script_rows`, or None when they were not computed."""
        if not self.script_rows:
            return None
        return {k: float(np.mean([r[k] for r in self.script_rows])) for k in METRICS}

    @property
    def cmc(self) -> np.ndarray:
        """Mean CMC curve over trials (fractions), cmc[k-1] = Rank-k."""
        return np.asarray(self.cmc_curves).mean(axis=0)

    @property
    def label(self) -> str:
        mode = f" {self.mode}-search" if self.dataset == "sysu" else ""
        return f"{self.dataset}{mode} {self.direction} ({self.feature})"

    def to_frame(self):
        """Per-trial rows plus 'mean' and 'std' rows, in percent; columns R1..mINP."""
        import pandas as pd
        names = {"r1": "R1", "r5": "R5", "r10": "R10", "r20": "R20", "mAP": "mAP", "mINP": "mINP"}
        df = pd.DataFrame([{names[k]: 100 * r[k] for k in METRICS} for r in self.rows],
                          index=pd.Index([r["trial"] for r in self.rows], name="trial"))
        df.loc["mean"] = [100 * self.mean[k] for k in METRICS]
        df.loc["std"] = [100 * self.std[k] for k in METRICS]
        df.attrs.update(dataset=self.dataset, mode=self.mode, direction=self.direction,
                        feature=self.feature, gallery=self.gallery)
        return df

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: plain floats, ints and strings."""
        out = {"dataset": self.dataset, "mode": self.mode, "direction": self.direction,
               "feature": self.feature, "gallery": self.gallery,
               "rows": [{k: (v if isinstance(v, str) else float(v) if k in METRICS else int(v))
                         for k, v in r.items()} for r in self.rows],
               "mean": self.mean, "std": self.std,
               "cmc": [float(x) for x in self.cmc],
               "cmc_curves": [[float(x) for x in c] for c in np.asarray(self.cmc_curves)]}
        if self.script_rows:
            out["official_script"] = {"rows": [{k: float(r[k]) for k in METRICS} for r in self.script_rows],
                                      "mean": self.script_mean}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProtocolResult":
        return cls(dataset=d["dataset"], mode=d["mode"], direction=d["direction"],
                   feature=d["feature"], gallery=d["gallery"], rows=[dict(r) for r in d["rows"]],
                   cmc_curves=np.asarray(d["cmc_curves"], dtype=np.float64),
                   script_rows=d["official_script"]["rows"] if "official_script" in d else None)

    def __str__(self) -> str:
        head = f"{self.label}: {len(self.rows)} trial(s); gallery: {self.gallery}"
        cols = "".join(f"{c:>8s}" for c in ("R1", "R5", "R10", "R20", "mAP", "mINP"))
        lines = [head, f"{'trial':>6s}{cols}"]
        for r in self.rows:
            lines.append(f"{str(r['trial']):>6s}" + "".join(f"{100 * r[k]:8.2f}" for k in METRICS))
        if len(self.rows) > 1:
            for name, vals in (("mean", self.mean), ("std", self.std)):
                lines.append(f"{name:>6s}" + "".join(f"{100 * vals[k]:8.2f}" for k in METRICS))
        if self.script_mean:
            lines.append(f"{'script':>6s}" + "".join(f"{100 * self.script_mean[k]:8.2f}" for k in METRICS)
                         + "   <- what the official test script would print: constants added, not a result")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def combine(results: Sequence[ProtocolResult]) -> ProtocolResult:
    """One result holding the per-trial rows of several (e.g. RegDB's 10 splits): mean/std over all.

    Rows are renumbered 1..n when their trial labels would repeat.
    """
    results = list(results)
    if not results:
        raise ValueError("combine() needs at least one ProtocolResult, got none")
    first = results[0]
    for r in results[1:]:
        if (r.dataset, r.mode, r.direction, r.feature) != (first.dataset, first.mode,
                                                            first.direction, first.feature):
            raise ValueError(f"cannot combine {r.label} with {first.label}: labels differ")
    rows = [dict(row) for r in results for row in r.rows]
    if len({row["trial"] for row in rows}) < len(rows):
        for i, row in enumerate(rows, 1):
            row["trial"] = i
    n = min(np.asarray(r.cmc_curves).shape[1] for r in results)
    curves = np.concatenate([np.asarray(r.cmc_curves)[:, :n] for r in results])
    gallery = first.gallery if all(r.gallery == first.gallery for r in results) else "mixed"
    script = ([row for r in results for row in r.script_rows]
              if all(r.script_rows for r in results) else None)
    return ProtocolResult(first.dataset, first.mode, first.direction, first.feature, gallery,
                          rows, curves, script)


# ----------------------------------------------------------------------------- RegDB twins
_IMAGE_NUMBER = re.compile(r"_(\d+)\.[A-Za-z]+$")


def _image_numbers(images) -> np.ndarray:
    numbers = []
    for path in images.paths:
        m = _IMAGE_NUMBER.search(str(path))
        if m is None:
            raise ValueError(f"{path}: no image number; RegDB files end in _<number>.bmp "
                             "(e.g. Visible/1/male_back_v_01323_3.bmp)")
        numbers.append(int(m.group(1)))
    return np.asarray(numbers)


def regdb_twins(query, gallery, neighbours: int = 0) -> np.ndarray:
    """(n_query, n_gallery) mask of each query's *twin*: the gallery image of the same person with
    the same image number, and with `neighbours` > 0 also those up to that many frames away.

    RegDB's dual camera takes its visible image k and thermal image k of a person at one moment,
    so a twin shares the query's pose, crop and scale to within the two lenses' offset; the
    frames k - 1 and k + 1 of the same walk differ from it by a step of the gait. Matching the
    silhouette finds them (grey pixels do) whatever the person's identity cues. The synthetic
    layout numbers its frames so; on the real files this takes the last number of
    ``..._v_NNNNN_k.bmp`` / ``..._t_NNNNN_k.bmp`` as the frame, which is an assumption.
    """
    if neighbours < 0:
        raise ValueError(f"neighbours={neighbours}; expected 0 (the twin alone) or more frames")
    same_person = np.asarray(query.pids)[:, None] == np.asarray(gallery.pids)[None]
    gap = np.abs(_image_numbers(query)[:, None] - _image_numbers(gallery)[None])
    return same_person & (gap <= neighbours)


def rank1_without_twins(split, query_feat: np.ndarray, gallery_feat: np.ndarray,
                        neighbours: int = 1) -> float:
    """Rank-1 of a RegDB split with each query's twin and its `neighbours` frames on either side
    taken out of its gallery (`regdb_twins`): how often the nearest *other* image is the same
    person, so matching the pose of one moment of the walk cannot score. Chance with RegDB's ten
    frames per person and modality and neighbours=1: 7 or 8 of about 957 candidates."""
    if split.dataset != "regdb":
        raise ValueError(f"rank1_without_twins: dataset={split.dataset!r}; twins exist only in "
                         "'regdb' (simultaneous visible/thermal pairs)")
    d = distance(query_feat, gallery_feat)
    d[regdb_twins(split.query, split.gallery, neighbours)] = np.inf
    g_pids = np.asarray(split.gallery.pids)
    return float(np.mean(g_pids[np.argmin(d, axis=1)] == np.asarray(split.query.pids)))


# ----------------------------------------------------------------------------- evaluation
def distance(query_feat: np.ndarray, gallery_feat: np.ndarray) -> np.ndarray:
    """-(q @ g.T) after L2 normalisation: smaller = more similar (negative cosine similarity)."""
    q, g = _normalise(query_feat, "query_feat"), _normalise(gallery_feat, "gallery_feat")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query_feat has {q.shape[1]} dimensions but gallery_feat has {g.shape[1]}")
    return -(q @ g.T)


def _normalise(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, dim), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12).astype(x.dtype)


def _row(trial, cmc, mAP, mINP, n_query, n_gallery) -> dict[str, float]:
    at = lambda k: float(cmc[min(k, len(cmc)) - 1])       # noqa: E731  (saturated past the gallery)
    return {"trial": trial, "r1": at(1), "r5": at(5), "r10": at(10), "r20": at(20),
            "mAP": float(mAP), "mINP": float(mINP), "n_query": int(n_query), "n_gallery": int(n_gallery)}


def evaluate_split(split, query_feat: np.ndarray, gallery_feat: np.ndarray, trials: int = 10,
                   shot: int = 1, feature_name: str = "bn", rand_perm: dict | str | None = None,
                   max_rank: int = 20, rerank=None, official_script: bool = False) -> ProtocolResult:
    """Run the dataset's protocol on features of `split.query` and the FULL `split.gallery`.

    SYSU-MM01 and LLCM: `trials` gallery draws (seeds 0..trials-1), the gallery side sampled.
    SYSU also takes `shot` (1 or 10) and `rand_perm`: None = seeded sampling (the community's),
    a dict from read_rand_perm, or 'auto' = the dataset's exp/rand_perm_cam.mat when present.
    RegDB: one trial, the whole gallery (`trials` is ignored).
    `rerank` (a djanet.rerank.RerankConfig) re-ranks each trial's query x gallery distances: the
    k-reciprocal sets depend on the gallery, so they are built per trial.
    `official_script=True` also records, per trial, what the official DJANet test script would
    print for the same ranking (`script_rows`; djanet.official_script), for reports beside the
    protocol's numbers.
    """
    q, g = split.query, split.gallery
    if len(q) == 0:
        raise ValueError(f"{split.dataset} {split.direction}: the query set is empty")
    if len(g) == 0:
        raise ValueError(f"{split.dataset} {split.direction}: the gallery is empty")
    if len(query_feat) != len(q):
        raise ValueError(f"query_feat has {len(query_feat)} rows but split.query has {len(q)} images")
    if len(gallery_feat) != len(g):
        raise ValueError(f"gallery_feat has {len(gallery_feat)} rows but split.gallery has "
                         f"{len(g)} images (pass features of the full candidate gallery)")
    if int(trials) < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    dist = distance(query_feat, gallery_feat)
    q_pids, q_cams = np.asarray(q.pids), np.asarray(q.cams)
    g_pids, g_cams = np.asarray(g.pids), np.asarray(g.cams)
    dataset = split.dataset

    sample: Callable[[int], np.ndarray]
    if dataset == "regdb":
        metric = lambda d, idx: eval_regdb(d, q_pids, g_pids[idx], max_rank)        # noqa: E731
        trial_ids, gallery = [getattr(split, "trial", 1)], "whole test gallery (no sampling)"
        sample = lambda t: np.arange(len(g))                                         # noqa: E731
    elif dataset == "sysu":
        metric = lambda d, idx: eval_sysu(d, q_pids, g_pids[idx], q_cams, g_cams[idx],  # noqa: E731
                                          max_rank)
        if isinstance(rand_perm, str):
            if rand_perm != "auto":
                raise ValueError(f"rand_perm must be None, 'auto' or a dict, got {rand_perm!r}")
            from .data.readers import read_rand_perm
            rand_perm = read_rand_perm(split.root)
        kind = "single-shot" if shot == 1 else f"multi-shot ({_MULTI_SHOT} per identity and camera)"
        if rand_perm is None:
            sample = lambda t: sample_sysu_gallery(g, t, split.mode, shot)           # noqa: E731
            gallery = f"{kind}, seeded by trial"
        else:
            sample = lambda t: sample_sysu_gallery_from_perm(g, rand_perm, t, split.mode, shot)  # noqa: E731
            gallery = f"{kind}, from rand_perm_cam.mat"
        trial_ids = list(range(trials))
    elif dataset == "llcm":
        metric = lambda d, idx: eval_llcm(d, q_pids, g_pids[idx], q_cams, g_cams[idx],  # noqa: E731
                                          max_rank)
        sample = lambda t: sample_llcm_gallery(g, t)                                  # noqa: E731
        gallery = "one image per (identity, camera), seeded by trial; the gallery side is sampled"
        trial_ids = list(range(trials))
    else:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")

    rows, curves, script_rows = [], [], []
    for t in trial_ids:
        idx = sample(t)
        if len(idx) == 0:
            raise ValueError(f"{dataset} {split.mode}: trial {t} sampled an empty gallery; check "
                             f"the gallery cameras {sorted(set(g_cams.tolist()))}")
        if rerank is not None:
            from .rerank import rerank as k_reciprocal
            trial_dist = k_reciprocal(query_feat, np.asarray(gallery_feat)[idx], rerank.k1, rerank.k2,
                                      rerank.lambda_value, convention=rerank.convention)
        else:
            trial_dist = dist[:, idx]
        cmc, mAP, mINP = metric(trial_dist, idx)
        rows.append(_row(t, cmc, mAP, mINP, len(q), len(idx)))
        curves.append(np.pad(cmc, (0, max_rank - len(cmc)), mode="edge"))
        if official_script:
            from .official_script import script_scores
            script_rows.append(script_scores(trial_dist, q_pids, g_pids[idx], q_cams, g_cams[idx],
                                             dataset=dataset, mode=split.mode))
    return ProtocolResult(dataset, split.mode, split.direction, feature_name, gallery, rows,
                          np.asarray(curves), script_rows or None)
