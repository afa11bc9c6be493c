"""Numbers for the modality gap: how far apart visible and infrared features lie.

Three complementary measures on a set of features with identity and modality labels:

* ``modality_acc``: balanced accuracy of a logistic-regression modality classifier,
  cross-validated over min(5, images of the smaller modality) folds. 0.5 means the features carry no modality information; 1.0
  means the two modalities are linearly separable.
* ``centroid_ratio``: distance between the visible and infrared centroids (each the mean of
  its modality's images, so every image counts once) divided by the within-identity spread:
  for each (identity, modality) group of two or more images, the mean Euclidean distance of
  its images to the group's centroid; then the mean over groups, each group counting once
  (groups of one image have no spread and are left out). Below ~1 the modality shift is
  smaller than an identity's own scatter.
* ``pos_ratio``: mean cross-modal positive distance (same identity, different modality)
  divided by mean within-modal positive distance (same identity, same modality), each a mean
  over all such pairs pooled across identities (an identity with more images has more pairs).
  1.0 means a matching image in the other modality is as close as one in the same modality.

And one retrieval measure that `pos_ratio` cannot mislead (`pos_ratio` also grows when
same-modality distances shrink faster than cross-modality ones):

* ``cross_share``: how much of within-modality matching survives across modalities, above
  chance: infrared->visible rank-1 divided by visible->visible rank-1 across cameras, on the same
  identities and the same visible gallery (`cross_modal_share`), each rank-1 first rescaled so
  that a random ranking scores 0 and a perfect one 1 (as Cohen's kappa rescales agreement).
  1.0 means that whatever a feature can match within the visible modality it also matches from
  infrared; 0 means infrared matching is no better than a random ranking.  The chance levels
  matter: the plain ratio of the two rank-1s gives random features about 1.0, a ratio of two
  chance levels.  Undefined (nan) unless visible->visible matching beats its chance level by more
  than two binomial standard errors (a one-sided test), since otherwise nothing is there to
  survive.  It comes with a 95% bootstrap interval over
  identities (``share_low``, ``share_high``): near chance both rank-1s are small and their
  ratio is mostly noise, which the interval shows and the point estimate cannot.

`feature_spread` says whether a feature has collapsed (every image pointing nearly the same way),
which the other numbers, all relative, cannot show.

`centre_by_modality` removes each modality's mean from its features: what the numbers lose then
was one offset between the modalities (a shift a test-time centring could undo); what they keep
is the part of the gap that lies in how identities are arranged.

Only NumPy and scikit-learn; features are used as given (pass L2-normalised features to
measure what retrieval sees).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

COLUMNS = ("modality_acc", "centroid_ratio", "pos_ratio")


def _as_modality(modality: Sequence | np.ndarray, n: int) -> np.ndarray:
    """Modality labels as 0/1 ints (0 = visible), from strings, bools or ints."""
    m = np.asarray(modality)
    if m.shape != (n,):
        raise ValueError(f"modality has shape {m.shape}; expected ({n},) like features' first axis")
    if m.dtype.kind in "USO":
        low = np.char.lower(m.astype(str))
        ok = np.isin(low, ["visible", "infrared", "vis", "ir", "nir", "thermal"])
        if not ok.all():
            raise ValueError(f"unknown modality label {str(m[~ok][0])!r}; expected 'visible' or 'infrared'")
        return (~np.isin(low, ["visible", "vis"])).astype(np.int64)
    values = set(np.unique(m).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"modality values {sorted(values)}; expected 0 (visible) and 1 (infrared)")
    return m.astype(np.int64)


def modality_classifier_accuracy(features: np.ndarray, modality: np.ndarray, folds: int = 5,
                                 seed: int = 0) -> float:
    """Cross-validated balanced accuracy of a linear modality classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(modality, minlength=2)
    k = int(min(folds, counts.min()))
    if k < 2:
        raise ValueError(f"need at least 2 images of each modality for the classifier; got {counts.tolist()}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = cross_val_score(clf, features, modality, cv=cv, scoring="balanced_accuracy")
    return float(scores.mean())


def centre_by_modality(features: np.ndarray, modality: Sequence | np.ndarray,
                       normalise: bool = True) -> np.ndarray:
    """Each modality's features minus that modality's mean, L2-normalised again (`normalise`).

    Separates the offset part of the modality gap (one vector between the two modalities' means)
    from the rest: a gap that is only an offset vanishes here, one in how identities are arranged
    does not.  An analysis tool, not part of the evaluation protocol (it uses every test image).
    """
    x = np.array(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features have shape {x.shape}; expected (N, D)")
    m = _as_modality(modality, len(x))
    for k in np.unique(m):
        x[m == k] -= x[m == k].mean(0)
    if normalise:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix via the Gram trick (no (N, M, D) intermediate)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _mean_pairwise(a: np.ndarray, b: np.ndarray | None = None) -> tuple[float, int]:
    """Sum and count of Euclidean distances between rows of a and b (a with itself: i < j)."""
    if b is None:
        if len(a) < 2:
            return 0.0, 0
        iu = np.triu_indices(len(a), 1)
        return float(_dist(a, a)[iu].sum()), len(iu[0])
    return float(_dist(a, b).sum()), len(a) * len(b)


def feature_spread(features: np.ndarray, max_rows: int = 2000, seed: int = 0) -> float:
    """Mean distance between two images' directions: the rows L2-normalised, then the mean
    pairwise Euclidean distance (0: every image points the same way; sqrt(2): orthogonal).

    Retrieval normalises before it ranks, so a feature whose images differ by 0.1 at norm 22 is
    a collapsed one however well its BatchNorm'd twin classifies: the batch-hard triplet on pooled
    features can collapse them that way (`djanet.losses.triplet_features`).  At most `max_rows`
    rows, drawn with `seed`.
    """
    x = np.asarray(features, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"feature_spread needs at least 2 rows; got {len(x)}")
    if len(x) > max_rows:
        x = x[np.random.default_rng(seed).choice(len(x), max_rows, replace=False)]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    total, count = _mean_pairwise(x)
    return total / count


def modality_gap(features: np.ndarray, pids: Sequence[int] | np.ndarray,
                 modality: Sequence | np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Modality-gap numbers of one feature set (see the module docstring).

    Returns a dict with ``modality_acc``, ``centroid_ratio``, ``pos_ratio`` and the raw
    parts: ``centroid_dist``, ``within_id_spread``, ``cross_pos``, ``within_pos``, ``n``, ``dim``.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features have shape {x.shape}; expected (N, D)")
    n = len(x)
    p = np.asarray(pids)
    if p.shape != (n,):
        raise ValueError(f"pids have shape {p.shape}; expected ({n},)")
    m = _as_modality(modality, n)

    acc = modality_classifier_accuracy(x, m, folds=folds, seed=seed)
    centroid_dist = float(np.linalg.norm(x[m == 0].mean(0) - x[m == 1].mean(0)))

    spreads: list[float] = []
    cross_sum = within_sum = 0.0
    cross_n = within_n = 0
    for pid in np.unique(p):
        groups = [x[(p == pid) & (m == k)] for k in (0, 1)]
        for g in groups:
            if len(g) >= 2:
                spreads.append(float(np.linalg.norm(g - g.mean(0), axis=1).mean()))
            s, c = _mean_pairwise(g)
            within_sum, within_n = within_sum + s, within_n + c
        if len(groups[0]) and len(groups[1]):
            s, c = _mean_pairwise(groups[0], groups[1])
            cross_sum, cross_n = cross_sum + s, cross_n + c
    if not spreads or within_n == 0 or cross_n == 0:
        raise ValueError("need identities with >= 2 images in a modality and identities present in "
                         "both modalities to measure the gap")
    spread = float(np.mean(spreads))
    cross_pos, within_pos = cross_sum / cross_n, within_sum / within_n
    return {
        "modality_acc": acc,
        "centroid_ratio": centroid_dist / spread if spread > 0 else float("inf"),
        "pos_ratio": cross_pos / within_pos if within_pos > 0 else float("inf"),
        "centroid_dist": centroid_dist,
        "within_id_spread": spread,
        "cross_pos": cross_pos,
        "within_pos": within_pos,
        "n": n,
        "dim": x.shape[1],
    }


def _nearest_hits(q: np.ndarray, g: np.ndarray, q_ids, g_ids, exclude: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per query: whether its nearest gallery image is its identity, and what a random ranking
    would score (the share of its allowed candidates that are its identity)."""
    d = _dist(q, g)
    allowed = np.ones(d.shape, dtype=bool) if exclude is None else ~exclude
    d[~allowed] = np.inf
    same = (q_ids[:, None] == g_ids[None, :]) & allowed
    chance = same.sum(1) / np.maximum(allowed.sum(1), 1)
    return (g_ids[np.argmin(d, axis=1)] == q_ids).astype(float), chance


def _above_chance(r1, chance):
    """k(r) = (r - chance) / (1 - chance): 0 for a random ranking, 1 for a perfect one."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(chance < 1.0, (r1 - chance) / (1.0 - chance), np.nan)


def first_identities(pids: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Mask of the images of the `k` lowest person ids.

    For close-up plots of a few people: a choice fixed by the ids alone, made before any model
    is looked at, so a picture cannot be picked for looking good.
    """
    if k < 1:
        raise ValueError(f"k={k}: expected at least one identity")
    pids = np.asarray(pids)
    return np.isin(pids, np.unique(pids)[:k])


def cross_rank1_per_identity(features: np.ndarray, pids, modality) -> pd.Series:
    """Per person: the share of their infrared images whose nearest visible image is their own.

    What a map coloured by identity shows one person at a time: near 1, the person's infrared
    images sit among their visible ones; 0, apart.  Indexed by person id.
    """
    x, p = np.asarray(features, dtype=np.float64), np.asarray(pids)
    ir = _as_modality(modality, len(x)) == 1
    hit, _ = _nearest_hits(x[ir], x[~ir], p[ir], p[~ir])
    return pd.Series(hit, index=p[ir]).groupby(level=0).mean().rename("r1_cross")


def cross_modal_share(features: np.ndarray, pids, cams, modality) -> dict[str, float]:
    """How much of within-modality matching survives across modalities, above chance.

    Gallery: every visible image.  ``r1_within``: each visible image queried against the visible
    images of *other* cameras (with a single visible camera, as RegDB: against every other visible
    image); ``r1_cross``: each infrared image queried against all visible images; ``chance_within``
    and ``chance_cross``: the rank-1 a random ranking scores on the same queries (the share of
    each query's candidates that are its identity); ``cross_share`` = k(r1_cross) / k(r1_within)
    with k(r) = (r - chance) / (1 - chance), nan unless r1_within exceeds its chance level by more
    than two binomial standard errors (one-sided: below chance is nan too; identities with no visible image in another camera still count as
    queries: they are a miss for both).  ``share_low`` and ``share_high``: a 95% bootstrap interval
    of ``cross_share`` over identities, which says how far one set of features can be trusted
    (near chance both rank-1s are small and their ratio is mostly noise).
    """
    x = np.asarray(features, dtype=np.float64)
    p, c = np.asarray(pids), np.asarray(cams)
    m = _as_modality(modality, len(x))
    vis, ir = m == 0, m == 1
    if not vis.any() or not ir.any():
        raise ValueError("cross_modal_share needs images of both modalities")
    if len(np.unique(c[vis])) > 1:
        exclude = c[vis][:, None] == c[vis][None, :]
    else:   # one visible camera (RegDB): leave the query itself out instead
        exclude = np.eye(int(vis.sum()), dtype=bool)
    hit_w, chance_w = _nearest_hits(x[vis], x[vis], p[vis], p[vis], exclude=exclude)
    hit_c, chance_c = _nearest_hits(x[ir], x[vis], p[ir], p[vis])
    within, chance_within = float(hit_w.mean()), float(chance_w.mean())
    cross, chance_cross = float(hit_c.mean()), float(chance_c.mean())
    noise = 2.0 * np.sqrt(chance_within * (1.0 - chance_within) / int(vis.sum()))
    defined = within - chance_within > noise
    share = (float(_above_chance(cross, chance_cross) / _above_chance(within, chance_within))
             if defined else float("nan"))
    low, high = _share_interval(p[vis], hit_w, chance_w, p[ir], hit_c, chance_c) if defined else (np.nan,) * 2
    return {"r1_within": within, "r1_cross": cross, "chance_within": chance_within,
            "chance_cross": chance_cross, "cross_share": share, "share_low": low, "share_high": high}


def _share_interval(ids_w, hit_w, chance_w, ids_c, hit_c, chance_c, level: float = 0.95,
                    draws: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `cross_share`, resampling identities (not images: one
    person's images are not independent draws).  The gallery stays fixed; each draw weighs every
    query by how often its identity was drawn."""
    ids = np.union1d(ids_w, ids_c)

    def per_id(q_ids, *values):   # (len(ids), 1 + len(values)): query count and sums per identity
        at = np.searchsorted(ids, q_ids)
        return np.stack([np.bincount(at, weights=v, minlength=len(ids))
                         for v in (np.ones(len(q_ids)), *values)], axis=1)

    w = np.random.default_rng(seed).multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=draws)
    sw, sc = w @ per_id(ids_w, hit_w, chance_w), w @ per_id(ids_c, hit_c, chance_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        num = _above_chance(sc[:, 1] / sc[:, 0], sc[:, 2] / sc[:, 0])
        den = _above_chance(sw[:, 1] / sw[:, 0], sw[:, 2] / sw[:, 0])
        share = np.where(den > 0, num / den, np.nan)
    share = share[np.isfinite(share)]
    if len(share) < draws / 2:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(share, tail)), float(np.percentile(share, 100 - tail))


def split_gap(features: Mapping[str, np.ndarray], split, feature: str = "bn",
              folds: int = 5, seed: int = 0) -> dict[str, float]:
    """The gap numbers of a test split's features, queries and the whole candidate gallery together.

    `features`: ``query_<feature>`` and ``gallery_<feature>`` arrays (what
    `djanet.evaluate.split_features` returns and `features_<direction>.npz` holds); `split`: the
    `EvalSplit` they come from (identities, cameras, modalities).  Returns ``cross_share`` and
    its interval (``share_low``, ``share_high``), ``r1_within``, ``r1_cross``, their chance
    levels, ``modality_acc``, ``centroid_ratio`` and ``pos_ratio``.
    """
    x = np.vstack([features[f"query_{feature}"], features[f"gallery_{feature}"]])
    pids = np.concatenate([split.query.pids, split.gallery.pids])
    cams = np.concatenate([split.query.cams, split.gallery.cams])
    mods = [split.query.modality] * len(split.query) + [split.gallery.modality] * len(split.gallery)
    out = {k: v for k, v in modality_gap(x, pids, mods, folds=folds, seed=seed).items() if k in COLUMNS}
    out.update(cross_modal_share(x, pids, cams, mods))
    return out


def gap_table(sets: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], folds: int = 5,
              seed: int = 0) -> pd.DataFrame:
    """One row of `modality_gap` numbers per named feature set (name -> (features, pids, modality))."""
    rows = {name: modality_gap(f, p, m, folds=folds, seed=seed) for name, (f, p, m) in sets.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "features"
    df[["n", "dim"]] = df[["n", "dim"]].astype(int)
    return df


def pair_distances(features: np.ndarray, pids: np.ndarray, modality: Sequence | np.ndarray,
                   max_pairs: int = 20000, seed: int = 0) -> pd.DataFrame:
    """Euclidean distances of sampled image pairs, labelled by identity and modality relation.

    Columns: ``distance``, ``identity`` ('same' | 'different'), ``modality`` ('within' | 'cross').
    Positives: every unordered pair of one identity's images, or a random ``max_pairs`` of them
    when there are more.  Negatives: up to ``max_pairs`` ordered pairs of different identities,
    drawn with replacement from ``4 * max_pairs`` random draws (fewer when most draws hit one
    identity), so a pair can repeat.
    """
    x = np.asarray(features, dtype=np.float64)
    p = np.asarray(pids)
    m = _as_modality(modality, len(x))
    rng = np.random.default_rng(seed)
    pos_i, pos_j = [], []
    for pid in np.unique(p):
        idx = np.flatnonzero(p == pid)
        a, b = np.triu_indices(len(idx), 1)
        pos_i.append(idx[a])
        pos_j.append(idx[b])
    pi, pj = np.concatenate(pos_i), np.concatenate(pos_j)
    if len(pi) > max_pairs:
        sel = rng.choice(len(pi), max_pairs, replace=False)
        pi, pj = pi[sel], pj[sel]
    ni, nj = rng.integers(0, len(x), 4 * max_pairs), rng.integers(0, len(x), 4 * max_pairs)
    neg = p[ni] != p[nj]
    ni, nj = ni[neg][:max_pairs], nj[neg][:max_pairs]
    i, j = np.concatenate([pi, ni]), np.concatenate([pj, nj])
    d = np.linalg.norm(x[i] - x[j], axis=1)
    return pd.DataFrame({
        "distance": d,
        "identity": np.where(p[i] == p[j], "same", "different"),
        "modality": np.where(m[i] == m[j], "within", "cross"),
    })

