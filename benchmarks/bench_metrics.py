"""Vectorised metrics vs the per-query reference loop, and k-reciprocal re-ranking, at SYSU-MM01
and LLCM sizes.

    python benchmarks/bench_metrics.py            # SYSU 3,803 x 301 x 10 trials; LLCM 7,166 x 3,159
    python benchmarks/bench_metrics.py --quick    # smaller, for a smoke test
    python benchmarks/bench_metrics.py --rerank-only
    python benchmarks/bench_metrics.py --rerank-only --protocols sysu   # re-ranking at SYSU-MM01 size only

Re-ranking (djanet.rerank.rerank, k1=20, k2=6, lambda=0.3) runs on 2,048-dimensional features
(ResNet-50's) shaped like one trial of each protocol, on one BLAS thread (threadpoolctl, when
installed; otherwise set OPENBLAS_NUM_THREADS=1), in both conventions: "released" (the authors'
code, the default) and "paper" (the equations literally).  The time of one trial for each,
interleaved, best of --repeat, their ratio, the peak memory NumPy allocated (tracemalloc) and
how many queries keep the same top-1 under both are printed; the paper convention is first
checked against the per-query reference on a small subset (the tests check both).

Inputs are synthetic but shaped like the real protocols: identity-structured random features
(L2-normalised, distance -(q @ g.T)), SYSU query cameras 3/6 against gallery cameras 1/2/4/5
(one image per identity and camera, 301 images), LLCM 7,166 infrared queries against one
visible image per (identity, camera) for 351 identities x 9 cameras (3,159: the largest the
LLCM single-shot gallery can be).  Both implementations run in this process on the same
inputs, interleaved, best of --repeat runs each; their results are checked equal before the
times are printed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from djanet.metrics import eval_llcm, eval_sysu, reference_eval_llcm, reference_eval_sysu  # noqa: E402


def _features(pids, centers, rng, noise=1.2):
    f = centers[pids] + noise * rng.standard_normal((len(pids), centers.shape[1]))
    return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)


def sysu_inputs(n_query=3803, n_ids=96, trials=10, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_ids, 64))
    q_pids = np.sort(rng.integers(0, n_ids, n_query))
    q_cams = rng.choice([3, 6], n_query)
    qf = _features(q_pids, centers, rng)
    pairs = [(p, c) for p in range(n_ids) for c in (1, 2, 4, 5)]
    out = []
    for _ in range(trials):            # a fresh single-shot gallery per trial, 301 images
        keep = np.sort(rng.choice(len(pairs), 301, replace=False))
        g_pids = np.array([pairs[k][0] for k in keep])
        g_cams = np.array([pairs[k][1] for k in keep])
        gf = _features(g_pids, centers, rng)
        out.append((-(qf @ gf.T), q_pids, g_pids, q_cams, g_cams))
    return out


def llcm_inputs(n_query=7166, n_ids=351, n_cams=9, seed=1):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_ids, 64))
    q_pids = np.sort(rng.integers(0, n_ids, n_query))
    q_cams = rng.choice([1, 2, 4, 5, 6, 7, 8, 9], n_query)     # LLCM has no infrared cam3
    g_pids = np.repeat(np.arange(n_ids), n_cams)
    g_cams = np.tile(np.arange(1, n_cams + 1), n_ids)
    distmat = -(_features(q_pids, centers, rng) @ _features(g_pids, centers, rng).T)
    return [(distmat, q_pids, g_pids, q_cams, g_cams)]


def timed(fn, inputs):
    t0 = time.perf_counter()
    out = [fn(*x) for x in inputs]
    return time.perf_counter() - t0, out


def compare(name, fast, slow, inputs, repeat):
    """Interleaved runs; the best time of each (the machine may be shared)."""
    t_fast = t_slow = float("inf")
    for _ in range(repeat):
        t, r_fast = timed(fast, inputs)
        t_fast = min(t_fast, t)
        t, r_slow = timed(slow, inputs)
        t_slow = min(t_slow, t)
    for a, b in zip(r_fast, r_slow):
        assert np.allclose(a[0], b[0], rtol=0, atol=1e-9) and abs(a[1] - b[1]) < 1e-9 \
            and abs(a[2] - b[2]) < 1e-9, f"{name}: vectorised and reference results differ"
    shape = inputs[0][0].shape
    print(f"{name:5s} {shape[0]:>5d} x {shape[1]:<5d} x {len(inputs):>2d} trial(s)  "
          f"vectorised {t_fast:7.3f} s   reference loop {t_slow:7.3f} s   ratio {t_slow / t_fast:6.1f}x   "
          f"(R1 {100 * r_fast[0][0][0]:.2f}, mAP {100 * r_fast[0][1]:.2f})")
    return t_slow / t_fast


def rerank_features(n_query, n_gallery, n_ids, dim=2048, seed=2):
    """Identity-clustered float32 features, queries and gallery drawn from the same identities."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_ids, dim)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, n_ids, n_query), rng.integers(0, n_ids, n_gallery)
    return _features(q_pids, centers, rng, noise=1.5), _features(g_pids, centers, rng, noise=1.5)


@contextlib.contextmanager
def one_blas_thread():
    """Limit NumPy's BLAS to one thread where threadpoolctl can; say what was done."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield "BLAS threads not limited (threadpoolctl missing): set OPENBLAS_NUM_THREADS=1"
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield "one BLAS thread (threadpoolctl)"


def bench_rerank(name, n_query, n_gallery, n_ids, repeat):
    import tracemalloc

    from djanet.rerank import CONVENTIONS, reference_rerank, rerank
    qf, gf = rerank_features(n_query, n_gallery, n_ids)
    small_q, small_g = qf[:60].astype(np.float64), gf[:50].astype(np.float64)
    x = np.vstack([small_q, small_g])
    d = np.maximum(2 - 2 * x @ x.T, 0)
    np.fill_diagonal(d, 0)
    ref = reference_rerank(d[:60, 60:], d[:60, :60], d[60:, 60:])
    assert np.abs(rerank(small_q, small_g, convention="paper") - ref).max() < 1e-6, \
        f"{name}: paper-convention re-ranking differs from the reference"
    best, out, peak = {c: float("inf") for c in CONVENTIONS}, {}, {}
    for _ in range(repeat):                  # interleaved: the machine may be shared
        for c in CONVENTIONS:
            t0 = time.perf_counter()
            out[c] = rerank(qf, gf, convention=c)
            best[c] = min(best[c], time.perf_counter() - t0)
    for c in CONVENTIONS:
        tracemalloc.start()
        rerank(qf, gf, convention=c)
        peak[c] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    n = n_query + n_gallery
    same_top1 = (out["released"].argmin(1) == out["paper"].argmin(1)).mean()
    print(f"{name:5s} re-ranking {n_query:>5d} x {n_gallery:<5d} (N = {n}, dim {qf.shape[1]}), one trial:")
    for c in CONVENTIONS:
        print(f"      {c:8s} {best[c]:7.2f} s   peak NumPy memory {peak[c] / 2**20:6.0f} MiB")
    print(f"      released / paper time ratio {best['released'] / best['paper']:.2f}   "
          f"same top-1 under both: {100 * same_top1:.1f}% of queries   (output {out['paper'].nbytes / 2**20:.0f} MiB; "
          f"a dense N x N float64 matrix would be {8 * n ** 2 / 2**20:.0f} MiB)")
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small inputs (a smoke test)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repetitions; best time kept")
    ap.add_argument("--rerank-only", action="store_true", help="time only the re-ranking")
    ap.add_argument("--protocols", nargs="+", choices=("sysu", "llcm"), default=["sysu", "llcm"],
                    help="which protocols' sizes to time re-ranking at")
    args = ap.parse_args(argv)
    print(f"numpy {np.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if not args.rerank_only:
        if args.quick:
            sysu, llcm = sysu_inputs(n_query=400, trials=2), llcm_inputs(n_query=500, n_ids=60)
        else:
            sysu, llcm = sysu_inputs(), llcm_inputs()
        compare("SYSU", eval_sysu, reference_eval_sysu, sysu, args.repeat)
        compare("LLCM", eval_llcm, reference_eval_llcm, llcm, args.repeat)
    sizes = {"sysu": ("SYSU", 400, 301, 96), "llcm": ("LLCM", 500, 600, 60)} if args.quick else \
        {"sysu": ("SYSU", 3803, 301, 96), "llcm": ("LLCM", 7166, 3159, 351)}
    with one_blas_thread() as threads:
        print(f"re-ranking on {threads}")
        for p in args.protocols:
            bench_rerank(*sizes[p], 1 if args.quick else args.repeat)


if __name__ == "__main__":
    main()
