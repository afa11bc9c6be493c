"""Tables and sentences that read a study's summary (`djanet.study`) for a page.

The interpreting text of the book's ablation page is computed here from the numbers, never
written by hand: a variant is called better or worse than the baseline only when the 95% interval
of its paired difference excludes zero, and `resolution` says how large a difference the seeds
could have detected at all.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .study import GAP, RANKED, RETRIEVAL


def _digits(metric: str) -> int:
    return 0 if metric == "train_s" else 2 if metric in GAP else 1


def _fmt(value: float, metric: str, sign: str = "") -> str:
    """A number with the digits its metric deserves (percent: 1, ratios: 2, seconds: 0)."""
    return f"{value:{sign}.{_digits(metric)}f}"


def mean_std_table(summary: pd.DataFrame, metrics: Sequence[str] = (*RETRIEVAL, *GAP)) -> pd.DataFrame:
    """Variant x metric table of 'mean ± std' strings (std over seeds, ddof=1), with the seed count."""
    table = {}
    for (label, metric), r in summary.set_index(["label", "metric"]).iterrows():
        if metric in metrics:
            cell = _fmt(r["mean"], metric) + ("" if np.isnan(r["std"]) else f" ± {_fmt(r['std'], metric)}")
            table.setdefault(label, {"seeds": int(r["n"])})[metric] = cell
    return pd.DataFrame(table).T[["seeds", *[m for m in metrics if m in set(summary["metric"])]]]


def difference_table(summary: pd.DataFrame, metrics: Sequence[str] = (*RETRIEVAL, *GAP)) -> pd.DataFrame:
    """Variant x metric table of 'difference [95% interval]' to the baseline; '*' where it excludes zero."""
    rows = summary[summary["paired_n"] > 0]
    table = {}
    for (label, metric), r in rows.set_index(["label", "metric"]).iterrows():
        if metric in metrics:
            interval = "" if np.isnan(r["half_width"]) else \
                f" [{_fmt(r['diff_low'], metric)}, {_fmt(r['diff_high'], metric)}]"
            table.setdefault(label, {"seeds": int(r["paired_n"])})[metric] = \
                _fmt(r["diff"], metric, "+") + interval + (" *" if r["excludes_zero"] else "")
    if not table:
        return pd.DataFrame()
    return pd.DataFrame(table).T[["seeds", *[m for m in metrics if m in set(rows["metric"])]]]


def conclusions(summary: pd.DataFrame, metrics: Sequence[str] = ("R1", "mAP", "cross_share"),
                baseline: str = "agw") -> list[str]:
    """One sentence per (variant, metric) saying what its paired interval allows one to conclude.

    A variant is called ahead of or behind the baseline only when its interval excludes zero;
    otherwise the sentence says the seeds cannot tell them apart and how wide the interval is.
    """
    base = summary.loc[summary["variant"] == baseline, "label"]
    base_label = base.iloc[0] if len(base) else baseline
    out = []
    for _, r in summary[(summary["paired_n"] > 0) & summary["metric"].isin(metrics)].iterrows():
        m = r["metric"]
        unit = " points" if m in RETRIEVAL else " s" if m == "train_s" else ""
        what = f"{r['label']} vs {base_label}, {m}: {_fmt(r['diff'], m, '+')}{unit}"
        if np.isnan(r["half_width"]):
            out.append(f"{what} from {int(r['paired_n'])} seed: no interval, so no conclusion.")
            continue
        interval = (f" ({r['level']:.0%} interval {_fmt(r['diff_low'], m)} to {_fmt(r['diff_high'], m)}, "
                    f"{int(r['paired_n'])} seeds)")
        if r["excludes_zero"]:
            verdict = "higher" if r["diff"] > 0 else "lower"
            if m in RANKED:
                verdict = ("better" if r["diff"] > 0 else "worse") + f" ({verdict})"
            out.append(f"{what}{interval}: the interval excludes zero, so it is {verdict} than {base_label}.")
        else:
            out.append(f"{what}{interval}: the interval includes zero, so these seeds cannot tell the two apart.")
    return out


def resolution(summary: pd.DataFrame, metrics: Sequence[str] = ("R1", "mAP")) -> list[str]:
    """How large a difference the study could have detected: the range of interval half-widths."""
    out = []
    rows = summary[(summary["paired_n"] > 1) & summary["metric"].isin(metrics)]
    for m, sub in rows.groupby("metric", sort=False):
        unit = " points" if m in RETRIEVAL else ""
        n = sorted(set(sub["paired_n"].astype(int)))
        low, high = _fmt(sub["half_width"].min(), m), _fmt(sub["half_width"].max(), m)
        width = f"±{low}" if low == high else f"±{low} to ±{high}"
        out.append(f"{m}: with {'/'.join(map(str, n))} paired seeds the {sub['level'].iloc[0]:.0%} intervals reach "
                   f"{width}{unit} around the measured difference; a true difference smaller than that could "
                   "not be told from zero.")
    return out


def provenance_table(prov: dict) -> pd.DataFrame:
    """The provenance of a study as a two-column table for a page (paths as given, config left out)."""
    machine = prov.get("machine") or {}
    commit = prov.get("commit") or "unknown (no git checkout)"
    if prov.get("code_changed_since_commit"):
        commit += " (with uncommitted changes to djanet/)"
    data = prov.get("data_root") or f"synthetic {prov.get('dataset')} layout, data seed {prov.get('synthetic_seed')}"
    steps = prov.get("max_steps_per_epoch")
    translator = prov.get("translator")
    rows = {
        "command": prov.get("command"), "commit": commit, "date": prov.get("date"),
        "machine": f"{machine.get('hostname')}: {machine.get('cpu')}, {machine.get('cores')} cores"
                   + (f", {machine['gpu']}" if machine.get("gpu") else ""),
        "device / threads": f"{prov.get('device')} / {prov.get('threads')}",
        "preset": prov.get("preset"), "dataset": prov.get("dataset"), "data": data,
        "budget per run": f"{prov.get('epochs')} epochs" + (f" x at most {steps} steps" if steps else ""),
        "variants": ", ".join(prov.get("variants", [])), "seeds": ", ".join(map(str, prov.get("seeds", []))),
        "translator": "not used" if not translator else
                      f"{translator['preset']} CycleGAN, {translator['steps']} steps, {translator['seconds']:.0f} s",
        "versions": f"djanet {prov.get('djanet')}, torch {prov.get('torch')}, python {prov.get('python')}",
    }
    return pd.DataFrame({"value": rows}).rename_axis("provenance")


def source_note(prov: dict, frame: pd.DataFrame, where: str, full: bool) -> str:
    """Which numbers the page shows: the full study found in `where` (full), or a small stand-in's."""
    runs = f"{len(frame)} runs ({frame['variant'].nunique()} variants x {frame['seed'].nunique()} seeds)"
    made = f"the `{prov.get('preset')}` preset on {prov.get('dataset')}"
    if full:
        return (f"These are the numbers of the study in `{where}`: {runs} with {made}, made by "
                f"`{prov['command']}`. This notebook renders them and trains nothing; the study's provenance "
                "(`provenance.json`) records how they were made.")
    return (f"**These are not the full study's numbers.** `{where}` holds no study on {prov.get('dataset')}, "
            "so this notebook ran a small "
            f"one itself: {runs}, about {frame['steps'].mean():.0f} training steps each, with {made}. "
            "`make study` runs the whole grid (six variants x five seeds) and writes it where the book "
            "renders it from.")


def gap_findings(frame: pd.DataFrame, summary: pd.DataFrame, baseline: str = "agw", model: str = "djanet",
                 without: str = "djanet-nochannel") -> list[str]:
    """What a study says about the modality gap of `model` and `baseline`, in sentences computed from its
    rows (`frame`, one per run) and `summary`: retrieval across modalities, how much of the matching
    survives the change of modality, the variant `without` channel augmentations, and the paired
    differences that exclude zero. Variants missing from the study are left out."""
    cols = [c for c in ("R1", "mAP", "cross_share", "r1_within", "r1_cross", "modality_acc", "fit_all")
            if c in frame]
    stats = frame.groupby("variant")[cols].agg(["mean", "std"])
    labels = frame.groupby("variant")["label"].first()

    def ms(variant: str, col: str, digits: int = 2) -> str:
        mean, std = stats.loc[variant, (col, "mean")], stats.loc[variant, (col, "std")]
        return f"{mean:.{digits}f}" + ("" if np.isnan(std) else f" ± {std:.{digits}f}")

    if not {baseline, model} <= set(stats.index):
        return []
    b, m = labels[baseline], labels[model]
    seeds = int(frame[frame["variant"] == model]["seed"].nunique())
    out = [f"On the test protocol, {b} reaches a rank-1 of {ms(baseline, 'R1', 1)}% and {m} "
           f"{ms(model, 'R1', 1)}% (mean ± standard deviation over {seeds} seeds). Against every visible image "
           f"of the test identities, infrared→visible rank-1 (`r1_cross`) is {ms(baseline, 'r1_cross')} and "
           f"{ms(model, 'r1_cross')}; visible→visible across cameras (`r1_within`) {ms(baseline, 'r1_within')} "
           f"and {ms(model, 'r1_within')}."]
    share = stats.loc[model, ("cross_share", "mean")]
    acc = stats.loc[model, ("modality_acc", "mean")]
    out.append(f"`cross_share` is {ms(baseline, 'cross_share')} for {b} and {ms(model, 'cross_share')} for {m}: "
               f"of what {m}'s features match above chance within the visible modality, about {share:.0%} "
               f"survives into infrared. A linear classifier "
               + ("still tells the two modalities apart" if acc > 0.75 else "tells the two modalities apart only in part")
               + f" (`modality_acc` {ms(baseline, 'modality_acc')} and {ms(model, 'modality_acc')}; one half is chance).")
    if without in stats.index and "fit_all" in cols:
        fit, fit_without = stats.loc[model, ("fit_all", "mean")], stats.loc[without, ("fit_all", "mean")]
        share_without = stats.loc[without, ("cross_share", "mean")]
        out.append(f"Without the channel augmentations ({labels[without]}), the classifier names "
                   f"{ms(without, 'fit_all', 0)}% of the training images (with them: {ms(model, 'fit_all', 0)}%) "
                   f"and `cross_share` is {ms(without, 'cross_share')} (with them: {ms(model, 'cross_share')})"
                   + (": fitting the training identities better did not carry more of the matching into infrared."
                      if fit_without > fit and share_without < share else "."))
    out += conclusions(summary[summary["variant"].isin([baseline, model])], metrics=("R1", "mAP"), baseline=baseline)
    clear = summary[(summary["metric"] == "R1") & (summary["paired_n"] > 1) & summary["excludes_zero"].astype(bool)]
    out.append(f"Beyond the spread between seeds, rank-1 differs from {b}'s for: " + "; ".join(
        f"{r['label']} ({_fmt(r['diff'], 'R1', '+')} [{_fmt(r['diff_low'], 'R1')}, {_fmt(r['diff_high'], 'R1')}])"
        for _, r in clear.iterrows()) + "." if len(clear) else
        f"No variant's rank-1 differs from {b}'s beyond the spread between seeds.")
    return out
