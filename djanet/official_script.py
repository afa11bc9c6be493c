"""What the official DJANet test script would print for a ranking: the protocol plus its constants.

The official `model/eval_metrics.py` (github.com/Hmn-92/DJANet) computes the community protocol
and, in the modes its `test.py` passes, adds constants per query before averaging:

* CMC: ``+c_k`` to each query's cumulative match at ranks 1, 5, 10 and 20;
* AP: ``(sum of precisions at the matches + a) / matches``;
* INP: ``(matches + b) / rank of the last match``.

SYSU-MM01 uses its `--mode` (all or indoor); RegDB always mode 1 (both search directions);
LLCM always mode 2.  `ADDITIONS` records those constants as data.  With ``additions=False`` this
is the plain protocol again, which the tests check against `djanet.metrics`; with them it is the
kind of number in the paper's tables.  Kept apart from `djanet.metrics` on purpose: nothing in
this package reports these numbers as its own, the report prints them beside the protocol's,
labelled as the official script's arithmetic.

Two details follow the script: on SYSU-MM01 and LLCM a query with no true match still gets the
CMC constants, and the CMC sum is divided by the number of queries *with* a match; the CMC lists
are cut at 30 ranks (SYSU-MM01) or 20 (RegDB, LLCM).  Where the deduplicated identity list is
shorter than that (a gallery of fewer than 20 identities, on which the script itself fails), the
list's last value repeats.  Exact distance ties are broken by gallery order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Additions", "ADDITIONS", "script_scores"]


@dataclass(frozen=True)
class Additions:
    """Constants the official script adds to each query's scores before averaging."""
    cmc: dict[int, float]     # rank -> added to that query's cumulative match at the rank
    ap: float                 # added to the sum of precisions, before dividing by the matches
    inp: float                # added to the number of matches, before dividing by the last rank
    script_mode: str          # the mode argument the official test script passes
    max_rank: int             # length of the official CMC list


ADDITIONS: dict[tuple[str, str], Additions] = {
    ("sysu", "all"): Additions({1: 0.11, 5: 0.015, 10: 0.025, 20: 0.011}, 0.34, 0.35, "all", 30),
    ("sysu", "indoor"): Additions({1: 0.07, 5: 0.015, 10: 0.01, 20: 0.0016}, 0.14, 0.19, "indoor", 30),
    ("regdb", "all"): Additions({1: 0.4, 5: 0.22, 10: 0.24, 20: 0.173}, 4.0, 3.5, "mode 1", 20),
    ("llcm", "all"): Additions({1: 0.16, 5: 0.12, 10: 0.12, 20: 0.08}, 0.25, 0.25, "mode 2", 20),
}


def _additions(dataset: str, mode: str) -> Additions:
    key = (dataset, mode if dataset == "sysu" else "all")
    if key not in ADDITIONS:
        raise ValueError(f"no official test-script mode for dataset {dataset!r}, mode {mode!r}; "
                         f"expected one of {sorted(ADDITIONS)}")
    return ADDITIONS[key]


def script_scores(distmat, q_pids, g_pids, q_camids=None, g_camids=None, *, dataset: str,
                  mode: str = "all", additions: bool = True) -> dict[str, float]:
    """R1, R5, R10, R20, mAP and mINP (fractions) as the official test script computes them.

    `distmat[i, j]` is the distance from query i to gallery entry j (smaller = closer), as for
    `djanet.metrics`; cameras are needed for SYSU-MM01 and LLCM.  A plain loop over queries.
    """
    add = _additions(dataset, mode)
    d = np.asarray(distmat, dtype=np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    if d.shape != (len(q_pids), len(g_pids)):
        raise ValueError(f"distmat has shape {d.shape}, expected ({len(q_pids)}, {len(g_pids)}) "
                         "from the query and gallery ids")
    if dataset != "regdb" and (q_camids is None or g_camids is None):
        raise ValueError(f"{dataset}: the official script's removal rule needs q_camids and g_camids")
    n_q, n_g = d.shape
    max_rank = min(add.max_rank, n_g)
    plus = dict(add.cmc) if additions else {}
    a, b = (add.ap, add.inp) if additions else (0.0, 0.0)
    cmc_rows, aps, inps = [], [], []
    for i in range(n_q):
        order = np.argsort(d[i], kind="stable")
        ranked_pids = g_pids[order]
        if dataset == "sysu":
            keep = ~((q_camids[i] == 3) & (np.asarray(g_camids)[order] == 2))
        elif dataset == "llcm":
            keep = ~((ranked_pids == q_pids[i]) & (np.asarray(g_camids)[order] == q_camids[i]))
        else:
            keep = np.ones(n_g, bool)
        ranked_pids = ranked_pids[keep]
        hits = ranked_pids == q_pids[i]
        if dataset == "regdb":
            if not hits.any():
                continue
            row = np.minimum(np.cumsum(hits), 1)[:max_rank].astype(np.float64)
        else:   # every query, matched or not: the distinct identities in rank order
            first_seen = np.sort(np.unique(ranked_pids, return_index=True)[1])
            row = np.cumsum(ranked_pids[first_seen] == q_pids[i])[:max_rank].astype(np.float64)
        row = np.pad(row, (0, max_rank - len(row)), mode="edge")
        for rank, value in plus.items():
            if rank <= max_rank:
                row[rank - 1] += value
        cmc_rows.append(row)
        if not hits.any():
            continue
        positions = np.flatnonzero(hits) + 1                    # 1-based ranks of the matches
        precisions = np.arange(1, len(positions) + 1) / positions
        aps.append((precisions.sum() + a) / len(positions))
        inps.append((len(positions) + b) / positions[-1])
    if not aps:
        raise ValueError(f"no query has a true match in the gallery ({n_q} queries, {n_g} entries)")
    cmc = np.sum(cmc_rows, axis=0) / len(aps)
    at = lambda k: float(cmc[min(k, max_rank) - 1])             # noqa: E731
    return {"r1": at(1), "r5": at(5), "r10": at(10), "r20": at(20),
            "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps))}
