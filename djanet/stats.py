"""Seed statistics for an ablation: mean ± std per variant, paired differences with a t interval.

Why paired: every variant of a study trains with the same seeds, and a seed fixes the identities
and images each step sees (the sampler and the per-epoch random state are seeded by it), so the
difference to the baseline seed by seed cancels what a seed makes easy or hard for every variant.
Why Student's t: with a handful of seeds the standard deviation is itself uncertain; the 95%
interval of the mean difference is mean ± t(0.975, n-1) · sd / √n (sd with ddof=1). With 3 seeds
t = 4.30, with 2 seeds t = 12.7: few seeds only resolve large differences, and the interval says
how large.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = ("variant", "metric", "n", "mean", "std", "paired_n", "diff", "diff_low", "diff_high",
                   "half_width", "level", "excludes_zero")


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n) of the finite values; std is NaN below two values."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan"), 0
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else float("nan"), len(x)


def paired_interval(diffs: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean of paired differences and its two-sided t interval at `level`.

    Returns ``n``, ``mean``, ``sd`` (ddof=1), ``half_width``, ``low``, ``high`` and
    ``excludes_zero``; the interval is NaN (and excludes nothing) with fewer than two pairs.
    """
    from scipy.stats import t

    if not 0 < level < 1:
        raise ValueError(f"level={level}; expected a confidence level between 0 and 1, e.g. 0.95")
    mean, sd, n = mean_std(diffs)
    half = float(t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
    low, high = mean - half, mean + half
    return {"n": n, "mean": mean, "sd": sd, "half_width": half, "low": low, "high": high,
            "excludes_zero": bool(n > 1 and (low > 0 or high < 0))}


def summarise(frame: pd.DataFrame, metrics: Sequence[str], baseline: str | None = "agw",
              group: str = "variant", pair: str = "seed", level: float = 0.95) -> pd.DataFrame:
    """One row per (variant, metric): mean ± std over seeds, and the paired difference to `baseline`.

    The difference is variant minus baseline, over the seeds both have a finite value for; the
    baseline's own rows, and every row when `baseline` is None or absent, have NaN differences.
    Variants keep their order of first appearance in `frame`.
    """
    missing = [c for c in (group, pair, *metrics) if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the frame; it has {list(frame.columns)}")
    if frame.duplicated([group, pair]).any():
        dup = [getattr(v, "item", lambda v=v: v)() for v in frame.loc[frame.duplicated([group, pair]),
                                                                         [group, pair]].iloc[0]]
        raise ValueError(f"{group}={dup[0]!r}, {pair}={dup[1]!r} appears twice; expected one row per run")
    base = frame[frame[group] == baseline].set_index(pair) if baseline is not None else frame.iloc[:0]
    rows = []
    for name, sub in frame.groupby(group, sort=False):
        sub = sub.set_index(pair)
        for metric in metrics:
            mean, std, n = mean_std(sub[metric])
            row = {"variant": name, "metric": metric, "n": n, "mean": mean, "std": std, "level": level}
            if name != baseline and len(base):
                both = sub[metric].to_frame("v").join(base[metric].rename("b"), how="inner")
                both = both[np.isfinite(both["v"]) & np.isfinite(both["b"])]
                ci = paired_interval((both["v"] - both["b"]).tolist(), level)
                row.update(paired_n=ci["n"], diff=ci["mean"], diff_low=ci["low"], diff_high=ci["high"],
                           half_width=ci["half_width"], excludes_zero=ci["excludes_zero"])
            else:
                row.update(paired_n=0, diff=np.nan, diff_low=np.nan, diff_high=np.nan, half_width=np.nan,
                           excludes_zero=False)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
