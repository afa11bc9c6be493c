"""k-reciprocal re-ranking (Zhong, Zheng, Cao and Li, "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), in two conventions: the authors' released code (the default)
and the paper's equations taken literally.

The queries and the gallery form one set of N elements with a distance d(i, j) between any
two.  `rerank` uses the squared Euclidean distance of L2-normalised features (2 - 2 cos, which
ranks exactly like the protocols' -(q @ g.T)); `rerank_distances` uses the matrices it is given.
Both conventions share these steps:

- N(i, k): the k + 1 first entries of i's ranking (i itself first unless it ties at distance 0
  with a lower index; ties are broken by index, a stable sort);
- R(i, k) = {j in N(i, k) : i in N(j, k)}, the k-reciprocal neighbours (paper Eq. 4);
- R*(i, k) = R(i, k) joined with R(q, k/2) for each q in R(i, k) that overlaps R(i, k) enough
  (Eq. 6);
- V[i, j] > 0 for j in R*(i, k1) only, from exp(-d(i, j)) (Eq. 9);
- local query expansion: V[i] <- the mean of V[j] over the first k2 entries of i's ranking,
  i itself included (Eq. 12), skipped when k2 = 1;
- a Jaccard distance d_J between the rows of V (Eq. 11), mixed with the original distance:
  d* = (1 - lambda) d_J + lambda d, queries against the gallery (Eq. 13).

convention="released" (default) follows `re_ranking` in the authors' Python code
(zhunzhong07/person-re-ranking, python-version/re_ranking_ranklist.py) and the copies the
community evaluates with:

- d is rescaled: every distance is divided by the maximum of its column of the N x N matrix,
  and the matrix is transposed, so row i becomes d(., i) / max_m d(m, i) (for a symmetric d, i's
  distances over their largest);  this rescaled d ranks the elements, weights V and enters d*;
- k/2 is round(k1 / 2) (half to even, as np.around), with no floor at 1;
- a candidate q joins R* when |R(q, k/2) & R(i, k1)| > 2/3 |R(q, k/2)| (strictly greater);
- V[i, j] = exp(-d(i, j)) / sum over j' in R*(i, k1) of exp(-d(i, j')): each row sums to one;
- d_J(i, j) = 1 - s / (2 - s) with s = sum_m min(V[i, m], V[j, m]) (2 - s is the sum of the
  maxima when both rows sum to one, which query expansion preserves).

convention="paper" takes the equations literally: d not rescaled, k/2 = max(1, round(k1 / 2)),
the >= 2/3 rule of Eq. 6, V[i, j] = exp(-d(i, j)) unnormalised, and
d_J = 1 - sum min / sum max.  The two give different numbers (and can give different rankings).

Which code uses which: the released convention is what reid-strong-baseline and mangye16's
AGW code (ReID-Survey, utils/re_ranking.py: `re_ranking(probFea, galFea, k1, k2, lambda_value)`,
d = squared Euclidean distance of the features as given), torchreid (torchreid/utils/rerank.py),
fast-reid (fastreid/evaluation/rerank.py) and mangye16's Cross-Modal-Re-ID-baseline
(PAMI23_Unsupervised/reid/utils/rerank.py) ship, and so what re-ranked numbers from work built
on them (VI-ReID papers among it) use.
The distance-matrix form `re_ranking(q_g_dist, q_q_dist, g_g_dist, ...)` (the authors' Python
code, torchreid, fast-reid) squares the distances it is given before rescaling; torchreid's
engine passes it squared Euclidean distances (`metric="euclidean"`), so torchreid re-ranks the
fourth power of the Euclidean distance.  `rerank_distances` does not square: to reproduce the
distance-matrix form, pass the squares of what it would be passed.  fast-reid's evaluator
(TEST.RERANK) calls a third variant, `compute_jaccard_distance` in fastreid/utils/compute_dist.py,
that normalises V but neither rescales d nor mixes inside; its numbers follow neither
convention exactly.  djanet computes in float64 (the copies use float32, some float16 for V) and
breaks ranking ties by index (they use NumPy's default, unstable, argsort), so they agree with
it to their precision where there are no exact ties.

Neighbour lists are clamped to N when k1 or k2 exceed it.  In the released convention an element
whose distances are all 0 (every element identical to it) keeps d = 0 instead of 0 / 0.

Memory: nothing N x N is held.  Distances are computed in row blocks (from features) to find
each element's neighbours, and, in the released convention, its maximum in the same pass (the
row maximum: for a symmetric d it is the column maximum; `rerank_distances` reads the columns of
the matrix it builds, as the released code does); V is sparse (a few dozen entries per row); the
Jaccard numerators are accumulated from V's shared columns, a bounded chunk of queries at a
time.  The output (queries x gallery, float64) is the largest array.  `reference_rerank` is the
paper convention's plain per-query loop the tests and the benchmark compare against (the tests
hold their own per-query loop for the released convention).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CONVENTIONS", "RerankConfig", "rerank", "rerank_distances", "reference_rerank"]

CONVENTIONS = ("released", "paper")   # the authors' released code (default); the paper's equations
_BLOCK_ELEMENTS = 1 << 22     # distances per row block (~32 MiB of float64)
_PAIR_BUDGET = 1 << 21        # (query entry, gallery entry) pairs expanded at once in the Jaccard step


@dataclass(frozen=True)
class RerankConfig:
    """The paper's three parameters (its defaults, which the community uses unchanged) and the
    convention: "released" (the authors' code, as the community runs it) or "paper"."""
    k1: int = 20                  # size of the k-reciprocal neighbour sets
    k2: int = 6                   # ranking entries averaged by the local query expansion
    lambda_value: float = 0.3     # weight of the original distance against the Jaccard distance
    convention: str = "released"  # see the module docstring

    def __post_init__(self):
        _check_params(self.k1, self.k2, self.lambda_value, self.convention)


def _check_params(k1, k2, lambda_value, convention="released") -> None:
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"re-ranking k1={k1!r}; expected an integer >= 1 (the paper uses 20)")
    if int(k2) != k2 or k2 < 1:
        raise ValueError(f"re-ranking k2={k2!r}; expected an integer >= 1 (the paper uses 6)")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"re-ranking lambda={lambda_value!r}; expected a value in [0, 1] (the paper uses 0.3)")
    if convention not in CONVENTIONS:
        raise ValueError(f"re-ranking convention={convention!r}; expected one of {', '.join(map(repr, CONVENTIONS))}")


def _half(k1: int, released: bool = False) -> int:
    """k/2 of the expansion step: round half to even (np.around); the paper form keeps it >= 1."""
    half = int(round(k1 / 2))
    return half if released else max(1, half)


# ----------------------------------------------------------------------------- distances
class _FeatureDistances:
    """Squared Euclidean distances between rows of `x`, computed on demand, self-distance exactly 0."""

    def __init__(self, x: np.ndarray):
        self.x, self.n = x, len(x)
        self.sq = np.einsum("ij,ij->i", x, x)

    def rows(self, a: int, b: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.n if stop is None else stop
        d = self.sq[a:b, None] + self.sq[None, start:stop] - 2.0 * (self.x[a:b] @ self.x[start:stop].T)
        d = np.maximum(d, 0.0).astype(np.float64, copy=False)
        r = np.arange(max(a, start), min(b, stop))
        d[r - a, r - start] = 0.0
        return d

    def at(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """d(i[t], j[t]) for each t, gathering feature rows a bounded chunk of pairs at a time."""
        out = np.empty(len(i), dtype=np.float64)
        step = max(1, _BLOCK_ELEMENTS // (2 * self.x.shape[1]))
        for a in range(0, len(i), step):
            ii, jj = i[a:a + step], j[a:a + step]
            dot = np.einsum("ij,ij->i", self.x[ii], self.x[jj])
            out[a:a + step] = np.maximum(self.sq[ii] + self.sq[jj] - 2.0 * dot, 0.0)
        out[i == j] = 0.0
        return out


class _MatrixDistances:
    """Distances read from a full (N, N) matrix."""

    def __init__(self, d: np.ndarray):
        self.d, self.n = d, len(d)

    def rows(self, a: int, b: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.asarray(self.d[a:b, start:stop], dtype=np.float64)

    def at(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.asarray(self.d[i, j], dtype=np.float64)


class _RowScaled:
    """d(i, j) / scale[i]: the released convention's rescaled distances, from any of the above."""

    def __init__(self, base, scale: np.ndarray):
        self.base, self.scale, self.n = base, scale, base.n

    def rows(self, a: int, b: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.base.rows(a, b, start, stop) / self.scale[a:b, None]

    def at(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return self.base.at(i, j) / self.scale[i]


# ----------------------------------------------------------------------------- public API
def rerank(query_feat: np.ndarray, gallery_feat: np.ndarray, k1: int = 20, k2: int = 6,
           lambda_value: float = 0.3, convention: str = "released") -> np.ndarray:
    """Re-ranked (n_query, n_gallery) distances from features (L2-normalised here).

    d is the squared Euclidean distance of the normalised features (2 - 2 cos), so the
    original ranking is the protocols' one; it is what the released feature-based
    `re_ranking(probFea, galFea, ...)` starts from when given normalised features.  `convention`
    is "released" (the authors' code: d rescaled, V rows normalised) or "paper" (the equations
    literally); see the module docstring.  Smaller = closer, as everywhere in djanet.
    """
    _check_params(k1, k2, lambda_value, convention)
    q, g = _as_2d(query_feat, "query_feat"), _as_2d(gallery_feat, "gallery_feat")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query_feat has {q.shape[1]} dimensions but gallery_feat has {g.shape[1]}")
    x = np.concatenate([q, g])
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12).astype(x.dtype)
    return _rerank(_FeatureDistances(x), len(q), k1, k2, lambda_value, convention)


def rerank_distances(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = 20, k2: int = 6,
                     lambda_value: float = 0.3, convention: str = "released") -> np.ndarray:
    """Re-ranked (n_query, n_gallery) distances from the three distance matrices, used as given.

    Unlike the released `re_ranking(q_g_dist, q_q_dist, g_g_dist)`, which squares its inputs,
    nothing is squared here: pass squared Euclidean distances to match `rerank`, or the squares
    of what the released function would be passed to reproduce it (torchreid passes squared
    Euclidean distances, so its d is their square).  In the released convention the matrix's
    columns are read as rows (its column maximum, then transpose), as the released code does;
    for symmetric matrices that changes nothing.  Holds the full (N, N) matrix; for large sets
    use `rerank` on features instead.
    """
    _check_params(k1, k2, lambda_value, convention)
    d = _full_matrix(q_g, q_q, g_g)
    if convention == "released":
        d = d.T
    return _rerank(_MatrixDistances(d), len(q_g), k1, k2, lambda_value, convention)


def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, dim), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf values")
    return x


def _full_matrix(q_g, q_q, g_g) -> np.ndarray:
    q_g, q_q, g_g = (np.asarray(a, dtype=np.float64) for a in (q_g, q_q, g_g))
    nq, ng = q_g.shape if q_g.ndim == 2 else (-1, -1)
    if q_g.ndim != 2 or q_q.shape != (nq, nq) or g_g.shape != (ng, ng) or nq == 0 or ng == 0:
        raise ValueError(f"expected q_g (n_query, n_gallery), q_q (n_query, n_query) and g_g (n_gallery, "
                         f"n_gallery), got {q_g.shape}, {q_q.shape}, {g_g.shape}")
    d = np.block([[q_q, q_g], [q_g.T, g_g]])
    if not np.isfinite(d).all():
        raise ValueError("the distance matrices hold NaN or inf values")
    return d


# ----------------------------------------------------------------------------- vectorised core
def _rerank(dist, n_query: int, k1: int, k2: int, lambda_value: float, convention: str = "released") -> np.ndarray:
    _check_params(k1, k2, lambda_value, convention)
    released = convention == "released"
    n = dist.n
    m1, mh, mq = min(k1, n - 1) + 1, min(_half(k1, released), n - 1) + 1, min(k2, n)
    ranked, row_max = _nearest(dist, max(m1, mq), rescale=released)   # (n, m): i itself first
    if released:
        dist = _RowScaled(dist, row_max)
    nbr1, nbrh = ranked[:, :m1], ranked[:, :mh]
    rec1, rech = _reciprocal(nbr1), _reciprocal(nbrh)
    rows, cols = _expanded_sets(nbr1, rec1, nbrh, rech, strict=released)
    vals = np.exp(-dist.at(rows, cols))
    if released:                                                    # each row of V sums to one
        vals /= np.bincount(rows, weights=vals, minlength=n)[rows]
    ptr = _row_pointers(rows, n)
    rows, cols, vals = _query_expansion(ranked[:, :mq], ptr, cols, vals, n)
    return _jaccard_mix(dist, rows, cols, vals, n_query, lambda_value, released)


def _block_rows(n_cols: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(n_cols, 1))


def _nearest(dist, m: int, rescale: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, m) indices of each row's m smallest distances, ascending, ties by index (stable).

    With `rescale`, also each row's maximum (1 where it is 0), and the rows are ranked after
    division by it, as the released code ranks its rescaled matrix: one pass over the blocks."""
    n, step = dist.n, _block_rows(dist.n)
    out = np.empty((n, m), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float64) if rescale else None
    for a in range(0, n, step):
        b = min(a + step, n)
        d = dist.rows(a, b)
        if rescale:
            mx = d.max(axis=1)
            mx[mx <= 0] = 1.0
            row_max[a:b] = mx
            d = d / mx[:, None]
        out[a:b] = _smallest(d, m)
    return out, row_max


def _smallest(d: np.ndarray, m: int) -> np.ndarray:
    if m >= d.shape[1]:
        return np.argsort(d, axis=1, kind="stable")
    kth = np.partition(d, m - 1, axis=1)[:, m - 1:m]
    less = d < kth
    tied = d == kth
    take = less | (tied & (np.cumsum(tied, axis=1) <= m - less.sum(axis=1, keepdims=True)))
    cols = np.nonzero(take)[1].reshape(len(d), m)              # ascending index within each row
    order = np.argsort(np.take_along_axis(d, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def _reciprocal(nbr: np.ndarray) -> np.ndarray:
    """mask[i, t]: nbr[i, t] counts i among its own neighbours (the k-reciprocal relation)."""
    n, m = nbr.shape
    mask = np.empty((n, m), dtype=bool)
    step = max(1, _BLOCK_ELEMENTS // (m * m))
    for a in range(0, n, step):
        b = min(a + step, n)
        mask[a:b] = (nbr[nbr[a:b]] == np.arange(a, b)[:, None, None]).any(axis=2)
    return mask


def _expanded_sets(nbr1, rec1, nbrh, rech, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) pairs of R*(i, k1) for every i, sorted by row then column.

    A candidate's R(q, k/2) joins when its overlap with R(i, k1) is >= 2/3 of its size (the
    paper), or > 2/3 with `strict` (the released code)."""
    n, m1 = nbr1.shape
    mh = nbrh.shape[1]
    size_h = rech.sum(axis=1)
    rows_out, cols_out = [], []
    step = max(1, _BLOCK_ELEMENTS // (m1 * mh * m1))
    for a in range(0, n, step):
        b = min(a + step, n)
        r_idx, r_ok = nbr1[a:b], rec1[a:b]                      # R(i, k1): members and validity
        cand, cand_ok = nbrh[r_idx], rech[r_idx]                # R(q, k1/2) for each q in N(i, k1)
        in_r = ((cand[..., None] == r_idx[:, None, None, :]) & r_ok[:, None, None, :]).any(axis=3)
        inter = (in_r & cand_ok).sum(axis=2)
        enough = 3 * inter > 2 * size_h[r_idx] if strict else 3 * inter >= 2 * size_h[r_idx]
        accept = r_ok & enough
        members = np.concatenate([np.where(r_ok, r_idx, n),
                                  np.where(accept[:, :, None] & cand_ok, cand, n).reshape(b - a, -1)], axis=1)
        members.sort(axis=1)
        keep = members < n
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]
        r, c = np.nonzero(keep)
        rows_out.append(r + a)
        cols_out.append(members[r, c])
    return np.concatenate(rows_out), np.concatenate(cols_out)


def _row_pointers(rows: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])


def _gather(ptr: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the entries of rows `which` (in that order) and, for each, its index into `which`."""
    counts = ptr[which + 1] - ptr[which]
    owner = np.repeat(np.arange(len(which)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return ptr[which][owner] + offsets, owner


def _query_expansion(first, ptr, cols, vals, n):
    """V[i] <- mean of V[j] for j in first[i] (i's first k2 ranking entries): sparse, summed by key."""
    k2 = first.shape[1]
    if k2 == 1:
        return np.repeat(np.arange(n), np.diff(ptr)), cols, vals
    pos, owner = _gather(ptr, first.ravel())
    keys = (owner // k2) * n + cols[pos]                      # (row i, column) of each contribution
    uniq, inverse = np.unique(keys, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=vals[pos], minlength=len(uniq))
    return uniq // n, uniq % n, summed / k2


def _jaccard_mix(dist, rows, cols, vals, n_query, lambda_value, released=False):
    """d* for queries x gallery; d_J's denominator is sum max = |V_i| + |V_j| - sum min (paper)
    or 2 - sum min (released: its rows sum to one)."""
    n = dist.n
    n_gallery = n - n_query
    row_sums = None if released else np.bincount(rows, weights=vals, minlength=n)
    g_sel = rows >= n_query                                   # gallery entries, grouped by column
    order = np.argsort(cols[g_sel], kind="stable")
    g_rows, g_cols, g_vals = rows[g_sel][order] - n_query, cols[g_sel][order], vals[g_sel][order]
    col_ptr = np.concatenate([[0], np.cumsum(np.bincount(g_cols, minlength=n))])
    q_ptr = _row_pointers(rows[~g_sel], n_query)
    q_cols, q_vals = cols[~g_sel], vals[~g_sel]
    # pairs each query expands to: one per (query entry, gallery entry sharing its column)
    running = np.concatenate([[0], np.cumsum(np.diff(col_ptr)[q_cols])])
    cost = running[q_ptr[1:]] - running[q_ptr[:-1]]
    out = np.empty((n_query, n_gallery), dtype=np.float64)
    max_rows = max(1, _BLOCK_ELEMENTS // max(n_gallery, 1))
    a = 0
    while a < n_query:
        b = a + 1
        total = cost[a]
        while b < n_query and b - a < max_rows and total + cost[b] <= _PAIR_BUDGET:
            total += cost[b]
            b += 1
        lo, hi = q_ptr[a], q_ptr[b]
        entry_rows = np.repeat(np.arange(b - a), np.diff(q_ptr[a:b + 1]))
        pos, owner = _gather(col_ptr, q_cols[lo:hi])
        mins = np.minimum(q_vals[lo:hi][owner], g_vals[pos])
        s_min = np.bincount(entry_rows[owner] * n_gallery + g_rows[pos], weights=mins,
                            minlength=(b - a) * n_gallery).reshape(b - a, n_gallery)
        union = 2.0 - s_min if released else row_sums[a:b, None] + row_sums[None, n_query:] - s_min
        jaccard = 1.0 - s_min / union
        out[a:b] = (1.0 - lambda_value) * jaccard + lambda_value * dist.rows(a, b, n_query, n)
        a = b
    return out


# ----------------------------------------------------------------------------- reference
def reference_rerank(q_g, q_q, g_g, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """The paper convention's steps one element at a time, with Python sets: slow, for tests and
    benchmarks.  Equals `rerank_distances(..., convention="paper")`, not the default."""
    _check_params(k1, k2, lambda_value)
    d = _full_matrix(q_g, q_q, g_g)
    n, n_query = len(d), len(q_g)
    ranking = [np.argsort(d[i], kind="stable") for i in range(n)]

    def neighbours(i, k):                                    # N(i, k): i itself and its k nearest
        return ranking[i][: min(k, n - 1) + 1]

    def reciprocal(i, k):                                    # R(i, k)
        return {int(j) for j in neighbours(i, k) if i in neighbours(int(j), k)}

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for q in r:
            r_half = reciprocal(q, _half(k1, released=False))
            if 3 * len(r & r_half) >= 2 * len(r_half):
                expanded |= r_half
        for j in expanded:
            v[i, j] = np.exp(-d[i, j])
    v_qe = np.stack([v[ranking[i][: min(k2, n)]].mean(axis=0) for i in range(n)])
    out = np.empty((n_query, n - n_query))
    for i in range(n_query):
        for j in range(n - n_query):
            a, b = v_qe[i], v_qe[n_query + j]
            jaccard = 1.0 - np.minimum(a, b).sum() / np.maximum(a, b).sum()
            out[i, j] = (1.0 - lambda_value) * jaccard + lambda_value * d[i, n_query + j]
    return out
