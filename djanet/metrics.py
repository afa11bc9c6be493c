"""Ranking metrics for VI-ReID: CMC, mAP and mINP under the community protocols.

Written from the protocol notes (shared/reference/protocols.md), with nothing added to any
score.  Conventions, shared by every function here:

- ``distmat[i, j]`` is the distance from query i to gallery j; smaller = closer.
- Ranking is ascending distance; exact ties are broken by gallery order (a stable sort).
- A per-query *removal rule* drops gallery entries; ranks count in the kept list only.
  SYSU-MM01: a query from camera 3 ignores every gallery image from camera 2.
  LLCM: drop gallery images with the query's identity AND the query's camera.  RegDB: none.
- A query with no true match left is *invalid*: skipped for AP, INP and the standard CMC.
- AP = mean over true matches of (matches so far) / (rank of that match);
  INP = (number of matches) / (rank of the last match); mAP, mINP = means over valid queries.
- Standard CMC (RegDB): hit@k = a true match among the first k kept entries.
- Identity-deduplicated CMC (SYSU-MM01, LLCM): the kept ranking turned into the list of
  distinct gallery identities (first occurrence of each); hit@k = the query identity among
  the first k.  Invalid queries count as misses but the sum is divided by the number of
  valid queries, as the community code does.
- ``max_rank`` is clamped to the gallery size; the returned CMC has that length.

Why it is fast without sorting: AP and INP only need the ranks of the true matches, and a
match's rank is one plus the number of kept entries that precede it -- one comparison pass
over the row per match (a query has a handful of matches, a gallery has thousands of
entries).  The deduplicated CMC only needs which identities have an entry before the first
match.  Rows are processed in cache-sized blocks.  When a block has many matches per query
a stable sort is cheaper, and is used instead.  `reference_eval` at the bottom is the plain
per-query loop the tests and the benchmark compare against.
"""
from __future__ import annotations

import numpy as np

__all__ = ["eval_sysu", "eval_regdb", "eval_llcm", "evaluate", "REMOVAL_RULES",
           "reference_eval", "reference_eval_sysu", "reference_eval_regdb", "reference_eval_llcm"]

REMOVAL_RULES = ("none", "sysu", "llcm")

_BLOCK_ELEMENTS = 1 << 17   # distances per block of rows: ~1 MiB of float64 stays in cache
_SORT_ABOVE = 24            # more matches than this in a block's query: rank by stable sort


# ----------------------------------------------------------------------------- public API
def eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 20):
    """SYSU-MM01: cam3 queries ignore cam2 gallery images; identity-deduplicated CMC.

    Returns (cmc, mAP, mINP): cmc a float array of length min(max_rank, n_gallery).
    """
    return evaluate(distmat, q_pids, g_pids, q_camids, g_camids, removal="sysu", dedup=True,
                    max_rank=max_rank)


def eval_regdb(distmat, q_pids, g_pids, max_rank: int = 20):
    """RegDB: no removal, standard CMC.  Returns (cmc, mAP, mINP)."""
    return evaluate(distmat, q_pids, g_pids, removal="none", dedup=False, max_rank=max_rank)


def eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 20):
    """LLCM: drop same identity and same camera; identity-deduplicated CMC.  Returns (cmc, mAP, mINP)."""
    return evaluate(distmat, q_pids, g_pids, q_camids, g_camids, removal="llcm", dedup=True,
                    max_rank=max_rank)


def kept_mask(removal: str, q_pids, g_pids, q_camids=None, g_camids=None) -> np.ndarray:
    """(n_query, n_gallery) bool: the gallery entries each query keeps under a removal rule.

    'sysu': a camera-3 query drops every camera-2 entry; 'llcm': drop the query's identity seen by
    the query's camera; 'none': keep all.  For figures (rank lists); the metrics apply the same
    rules internally without building this matrix.
    """
    _check_removal(removal)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    keep = np.ones((len(q_pids), len(g_pids)), dtype=bool)
    if removal == "sysu":
        keep &= ~((np.asarray(q_camids)[:, None] == 3) & (np.asarray(g_camids)[None, :] == 2))
    elif removal == "llcm":
        keep &= ~((q_pids[:, None] == g_pids[None, :])
                  & (np.asarray(q_camids)[:, None] == np.asarray(g_camids)[None, :]))
    return keep


def evaluate(distmat, q_pids, g_pids, q_camids=None, g_camids=None, removal: str = "none",
             dedup: bool = False, max_rank: int = 20):
    """CMC, mAP and mINP with a named removal rule ('none' | 'sysu' | 'llcm').

    `dedup=True` gives the identity-deduplicated CMC.  Returns (cmc, mAP, mINP) with cmc a
    float64 array of length min(max_rank, n_gallery) and mAP, mINP Python floats in [0, 1].
    """
    distmat, q_pids, g_pids, q_camids, g_camids, max_rank = _check(
        distmat, q_pids, g_pids, q_camids, g_camids, removal, max_rank)
    n_q, n_g = distmat.shape
    col = np.arange(n_g)
    # the gallery grouped by identity: table[g] lists identity g's columns in gallery order
    perm = np.argsort(g_pids, kind="stable")
    g_sorted = g_pids[perm]
    g_starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    sizes = np.diff(np.r_[g_starts, n_g])
    ids, K = g_sorted[g_starts], int(sizes.max())
    table = np.full((len(ids) + 1, K), -1, np.int64)    # last row: "identity not in gallery"
    table[np.repeat(np.arange(len(ids)), sizes), col - np.repeat(g_starts, sizes)] = perm
    q_group = np.minimum(np.searchsorted(ids, q_pids), len(ids) - 1)
    q_group = np.where(ids[q_group] == q_pids, q_group, len(ids))
    # for the deduplicated CMC: padded with each identity's first column (OR is idempotent)
    id_columns = np.where(table[:-1] >= 0, table[:-1], table[:-1, :1]).T.copy()
    cam2 = np.flatnonzero(g_camids == 2) if removal == "sysu" else None

    first_hist = np.zeros(n_g + 1, np.int64)    # valid queries by rank of first hit
    ap_sum = inp_sum = 0.0
    n_valid = 0
    # compare in the input's precision: exact, and float32 halves the memory traffic
    dtype = distmat.dtype if distmat.dtype in (np.float32, np.float64) else np.float64
    block = max(1, _BLOCK_ELEMENTS // n_g)
    # Buffers allocated once: fresh blocks of this size would each cost page faults.
    d_buf = np.empty((min(block, n_q), n_g), dtype)
    bool_bufs = (np.empty(d_buf.shape, bool), np.empty(d_buf.shape, bool))
    for s in range(0, n_q, block):
        e = min(n_q, s + block)
        d = d_buf[: e - s]
        np.copyto(d, distmat[s:e], casting="unsafe")  # a copy we may overwrite
        if not np.isfinite(d).all():
            i, j = np.argwhere(~np.isfinite(d))[0]
            raise ValueError(f"distmat has a non-finite value {d[i, j]} at query {s + i}, "
                             f"gallery {j}; expected finite distances")
        n = e - s
        rix = np.arange(n)[:, None]
        cand = table[q_group[s:e]]                  # (n, K) gallery columns of the query's identity
        ok = cand >= 0
        # removal rule: removed entries become +inf, so they never precede a match
        if removal == "sysu":
            cam3 = np.flatnonzero(q_camids[s:e] == 3)
            if len(cam3) and len(cam2):
                d[np.ix_(cam3, cam2)] = np.inf
                ok[cam3] &= g_camids[cand[cam3]] != 2
        elif removal == "llcm":
            gone = ok & (g_camids[cand] == q_camids[s:e, None])
            d[np.broadcast_to(rix, cand.shape)[gone], cand[gone]] = np.inf
            ok &= ~gone
        counts = ok.sum(axis=1)
        valid = counts > 0
        if not valid.any():
            continue
        # true matches per query by (distance, gallery order); candidates are in gallery order
        vals = np.where(ok, d[rix, cand], np.inf)
        order = np.argsort(vals, axis=1, kind="stable")
        vals = np.take_along_axis(vals, order, axis=1)
        cand = np.take_along_axis(cand, order, axis=1)
        ranks, before0 = _match_ranks(d, vals, cand, counts, col, want_before=dedup, bufs=bool_bufs)
        rv, cv, kv = ranks[valid], counts[valid], np.arange(1, K + 1)[None, :]
        used = kv <= cv[:, None]
        ap = np.where(used, kv / np.where(used, rv, 1.0), 0.0).sum(axis=1) / cv
        inp = cv / rv[np.arange(len(cv)), cv - 1]
        ap_sum += ap.sum()
        inp_sum += inp.sum()
        n_valid += len(cv)
        if dedup:
            # an identity precedes the query's identity iff one of its kept entries precedes
            # the first true match: count those identities instead of building the list
            if K <= 64:
                seen = before0[:, id_columns[0]]
                for k in range(1, K):
                    seen |= before0[:, id_columns[k]]
            else:
                seen = np.logical_or.reduceat(before0[:, perm], g_starts, axis=1)
            first = seen.sum(axis=1) + 1
        else:
            first = rv[:, 0].astype(np.int64)
        first_hist += np.bincount(first, minlength=n_g + 1)[: n_g + 1]
    if n_valid == 0:
        raise ValueError(f"no query has a true match in the gallery after the '{removal}' removal "
                         f"rule ({n_q} queries, {n_g} gallery entries); check the ids and cameras")
    cmc = np.cumsum(first_hist[1:])[:max_rank] / n_valid
    return cmc.astype(np.float64), float(ap_sum / n_valid), float(inp_sum / n_valid)


# ----------------------------------------------------------------------------- internals
def _check_removal(removal: str) -> None:
    if removal not in REMOVAL_RULES:
        raise ValueError(f"unknown removal rule {removal!r}; expected one of {REMOVAL_RULES}")


def _check(distmat, q_pids, g_pids, q_camids, g_camids, removal, max_rank):
    _check_removal(removal)
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (n_query, n_gallery), got shape {distmat.shape}")
    if not (np.issubdtype(distmat.dtype, np.floating) or np.issubdtype(distmat.dtype, np.integer)):
        raise ValueError(f"distmat must hold real numbers, got dtype {distmat.dtype}")
    n_q, n_g = distmat.shape
    q_pids, g_pids = np.asarray(q_pids).reshape(-1), np.asarray(g_pids).reshape(-1)
    if n_q == 0 or len(q_pids) == 0:
        raise ValueError(f"empty query set: distmat shape {distmat.shape}, {len(q_pids)} query ids")
    if n_g == 0 or len(g_pids) == 0:
        raise ValueError(f"empty gallery: distmat shape {distmat.shape}, {len(g_pids)} gallery ids")
    if len(q_pids) != n_q:
        raise ValueError(f"q_pids has {len(q_pids)} entries but distmat has {n_q} rows (queries)")
    if len(g_pids) != n_g:
        raise ValueError(f"g_pids has {len(g_pids)} entries but distmat has {n_g} columns (gallery)")
    if removal != "none":
        if q_camids is None or g_camids is None:
            raise ValueError(f"the '{removal}' removal rule needs q_camids and g_camids")
        q_camids, g_camids = np.asarray(q_camids).reshape(-1), np.asarray(g_camids).reshape(-1)
        if len(q_camids) != n_q:
            raise ValueError(f"q_camids has {len(q_camids)} entries but distmat has {n_q} rows")
        if len(g_camids) != n_g:
            raise ValueError(f"g_camids has {len(g_camids)} entries but distmat has {n_g} columns")
    else:
        q_camids = g_camids = None
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    return distmat, q_pids, g_pids, q_camids, g_camids, min(int(max_rank), n_g)


def _count(mask):
    """Row sums of a boolean matrix (uint16 accumulation is ~4x faster than int64)."""
    acc = np.uint16 if mask.shape[1] < 65536 else np.int64
    return mask.view(np.uint8).sum(axis=1, dtype=acc).astype(np.int64)


def _match_ranks(d, vals, cand, counts, col, want_before=False, bufs=None):
    """Ranks (1-based, in the kept list) of the true matches of a block of queries.

    `vals`/`cand` (n, K): each query's match distances and columns sorted by (distance,
    gallery order), the first `counts` of each row real.  Removed entries of `d` are +inf, so
    they are never counted before a match.  Returns ranks (n, K) (unused slots: nan) and, if
    `want_before`, for the queries with a match, the mask of entries ranked before their
    first match.  Exact ties are broken by gallery order.
    """
    n, n_g = d.shape
    has = counts > 0
    ranks = np.full(vals.shape, np.nan)
    before0 = None
    if counts.max() > _SORT_ABOVE:                  # many matches: one stable sort is cheaper
        rank_of = np.empty(d.shape, np.int64)
        np.put_along_axis(rank_of, np.argsort(d, axis=1, kind="stable"),
                          np.arange(1, n_g + 1)[None, :], axis=1)
        used = np.arange(vals.shape[1])[None, :] < counts[:, None]
        ranks[used] = rank_of[np.nonzero(used)[0], cand[used]]
        if want_before:
            before0 = rank_of[has] < ranks[has, :1]
        return ranks, before0
    lt_buf, le_buf = bufs if bufs is not None else (np.empty(d.shape, bool), np.empty(d.shape, bool))
    for m in range(int(counts.max())):
        r = np.flatnonzero(counts > m)
        t, j = vals[r, m, None], cand[r, m, None]
        dr = d if len(r) == n else d[r]
        lt, le = lt_buf[: len(r)], le_buf[: len(r)]
        np.less(dr, t, out=lt)
        n_lt = _count(lt)
        np.less_equal(dr, t, out=le)
        # le holds lt, the match itself, and any entry at exactly the match's distance
        if np.count_nonzero(le) > n_lt.sum() + len(r):
            tied = np.flatnonzero(_count(le) - n_lt > 1)
            lt[tied] |= (dr[tied] == t[tied]) & (col[None, :] < j[tied])
            n_lt[tied] = _count(lt[tied])
        ranks[r, m] = n_lt + 1
        if m == 0 and want_before:
            before0 = lt.copy()                     # rows: the queries with a match
    return ranks, before0


# ----------------------------------------------------------------------------- _reference
# A straightforward per-query loop written from the protocol text.  Slow on purpose (one
# stable sort per query); the tests and benchmarks/bench_metrics.py compare against it.
def reference_eval(distmat, q_pids, g_pids, q_camids=None, g_camids=None, removal="none",
                   dedup=False, max_rank=20):
    distmat = np.asarray(distmat, dtype=np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    n_q, n_g = distmat.shape
    max_rank = min(max_rank, n_g)
    cmc_rows, aps, inps = [], [], []
    n_valid = 0
    for i in range(n_q):
        order = np.argsort(distmat[i], kind="stable")
        if removal == "sysu":
            keep = ~((q_camids[i] == 3) & (g_camids[order] == 2))
        elif removal == "llcm":
            keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        else:
            keep = np.ones(n_g, bool)
        ranked = g_pids[order][keep]
        hits = (ranked == q_pids[i]).astype(np.float64)
        if not hits.any():
            if dedup:
                cmc_rows.append(np.zeros(max_rank))
            continue
        n_valid += 1
        if dedup:
            _, first = np.unique(ranked, return_index=True)
            ids = ranked[np.sort(first)]
            row = np.cumsum(ids == q_pids[i])[:max_rank].astype(np.float64)
        else:
            row = np.minimum(np.cumsum(hits), 1)[:max_rank]
        # a kept list shorter than max_rank: the hit, once made, stays made
        cmc_rows.append(np.pad(row, (0, max_rank - len(row)), mode="edge"))
        positions = np.flatnonzero(hits) + 1.0
        aps.append(np.mean(np.arange(1, len(positions) + 1) / positions))
        inps.append(len(positions) / positions[-1])
    if n_valid == 0:
        raise ValueError("no query has a true match")
    cmc = np.sum(cmc_rows, axis=0) / n_valid
    return cmc, float(np.mean(aps)), float(np.mean(inps))


def reference_eval_sysu(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, "sysu", True, max_rank)


def reference_eval_regdb(distmat, q_pids, g_pids, max_rank=20):
    return reference_eval(distmat, q_pids, g_pids, None, None, "none", False, max_rank)


def reference_eval_llcm(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    return reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, "llcm", True, max_rank)
