"""Does the network learn? Baselines, AGW and DJANet side by side on one test set, over seeds.

    python benchmarks/bench_learning.py [--dataset sysu] [--preset cpu-demo] [--seeds 0 1 2]
                                        [--data-seed 0] [--direction t2v] [--models agw djanet]
                                        [--out runs/bench-learning]

One run prints, on the same test protocol (SYSU-MM01: all-search, infrared -> visible, `bn`
features, mean over the gallery trials of each run):

* random features (chance, as the protocol measures it) and raw grey pixels (no learning);
* the untrained network (random weights, one per training seed);
* AGW and DJANet trained at the preset's budget, one run per training seed (train-or-load, so an
  interrupted benchmark resumes), the model chosen on validation identities;

with mean ± std over the training seeds, the ratios to grey pixels, the training ID accuracy of
the last epoch (on the augmented views training sees) and the fit of that epoch's model on the
training images themselves (eval mode, no augmentation; visible, infrared and all), the seconds of
training, and the modality-gap numbers of the test features
(`djanet.gap`): `cross_share` (infrared->visible rank-1 / visible->visible rank-1 across cameras,
each above its chance level), `pos_ratio`, the modality classifier's accuracy and the centroid
ratio, and `pool_spread` (`djanet.gap.feature_spread` of the pooled features: near 0 when the
triplet has collapsed them).  On RegDB also `R1 no twin`: rank-1 with each query's simultaneous
twin (same person, same image number, the same pose) and the frames next to it in the walk out of
the gallery (`djanet.protocols.rank1_without_twins`), so matching a silhouette alone cannot score.
`--direction` tests another of the dataset's directions (RegDB: t2v) with the same trained runs.
`--data-seed` draws another synthetic dataset, so a recipe can be checked away from the default
test set; `--set KEY=VALUE` overrides the preset (a screen of one change).
"""
from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from djanet import train as engine
from djanet.config import get_config, override
from djanet.data import prepare_data, read_test
from djanet.data.readers import DIRECTIONS
from djanet.data.synthetic import grey_pixel_features
from djanet.evaluate import evaluate_split_features, split_baselines, split_features
from djanet.gap import feature_spread, split_gap
from djanet.model import DJANet
from djanet.protocols import rank1_without_twins
from djanet.runtime import load_model, resolve_device, set_threads
from djanet.study import VARIANTS as STUDY_VARIANTS, training_numbers

METRICS = ("r1", "mAP", "mINP")
GAP = ("cross_share", "pos_ratio", "modality_acc", "centroid_ratio")
# The fit of the last epoch on the training images themselves (eval mode, no augmentation), in %.
FIT = {"fit_visible": "fit vis (%)", "fit_infrared": "fit IR (%)", "fit_all": "fit all (%)"}
VARIANTS = {name: dict(STUDY_VARIANTS[name].switches) for name in ("agw", "djanet")}   # as the ablation study


def row(model_name: str, seed, result, extra: dict | None = None) -> dict:
    r = {"model": model_name, "seed": seed}
    r.update({k: 100 * result.mean[k] for k in METRICS})
    r.update(extra or {})
    return r


def network_rows(name: str, cfg, split, direction: str, seeds, device) -> list[dict]:
    """Train-or-load one run per seed (None: untrained weights), evaluate, measure the gap."""
    rows = []
    for seed in seeds:
        scfg = override(cfg, seed=seed, run_name=f"{engine.run_name(cfg)}-seed{seed}")
        if name == "untrained":
            torch.manual_seed(seed)
            model = DJANet.from_config(cfg.model, num_classes=10, img_size=cfg.data.img_size).to(device)
            extra: dict = {}
        else:
            t0 = time.perf_counter()
            run = engine.fit_or_load(scfg)
            model, _ = load_model(run.best, device=str(device))
            extra = {**training_numbers(run.history), **engine.training_fit(run.checkpoint, device=str(device)),
                     "wall_s": time.perf_counter() - t0}
        feats = split_features(model.eval(), split, scfg, device)
        res = evaluate_split_features(model, split, scfg, device, trials=cfg.eval_trials, features=feats)["bn"]
        extra.update(split_gap(feats, split))
        extra.update(twin_free(split, feats))
        extra["pool_spread"] = feature_spread(np.vstack([feats["query_pool"], feats["gallery_pool"]]))
        rows.append(row(name, seed, res, extra))
        print(f"  {name:9s} seed {seed}: R1 {rows[-1]['r1']:5.1f}  mAP {rows[-1]['mAP']:5.1f}  "
              f"share {extra['cross_share']:.2f}" + (f"  train acc {extra['train_acc']:.1f}%, fit "
                                                      f"{extra['fit_all']:.1f}%" if "train_acc" in extra else ""),
              flush=True)
    return rows


def twin_free(split, feats: dict) -> dict:
    """RegDB only: rank-1 (%) with each query's simultaneous twin and its neighbouring frames out of the gallery."""
    if split.dataset != "regdb":
        return {}
    return {"r1_no_twin": 100 * rank1_without_twins(split, feats["query_bn"], feats["gallery_bn"])}


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std (ddof=1) over seeds per model; ratios of the means to grey pixels."""
    cols = [c for c in (*METRICS, "r1_no_twin", "train_acc", *FIT, *GAP, "r1_within", "r1_cross", "pool_spread", "train_s")
            if c in frame]
    order = list(dict.fromkeys(frame["model"]))
    mean = frame.groupby("model", sort=False)[cols].mean().loc[order]
    std = frame.groupby("model", sort=False)[cols].std(ddof=1).loc[order]     # as the study's
    n = frame.groupby("model", sort=False)["seed"].count().loc[order]
    out = pd.DataFrame(index=order)
    out["runs"] = n
    for c in cols:
        digits = 3 if c == "pool_spread" else 2 if c in GAP or c in ("r1_within", "r1_cross") else 1
        out[c] = [f"{m:.{digits}f}" if k == 1 or np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"
                  for m, s, k in zip(mean[c], std[c], n)]
    pixels = mean.loc["grey pixels"]
    out["R1 / pixels"] = [f"{v:.2f}x" for v in mean["r1"] / pixels["r1"]]
    out["mAP / pixels"] = [f"{v:.2f}x" for v in mean["mAP"] / pixels["mAP"]]
    if "r1_no_twin" in mean:
        out["R1 no twin / pixels"] = [f"{v:.2f}x" for v in mean["r1_no_twin"] / pixels["r1_no_twin"]]
    return out.rename(columns={"r1": "R1 (%)", "r1_no_twin": "R1 no twin (%)", "mAP": "mAP (%)", "mINP": "mINP (%)",
                               "train_acc": "train ID acc (%)", "train_s": "train s", **FIT})


# The columns the book shows (book/results/regdb): the protocol's numbers, the learning checks and
# the ratios to grey pixels.
BOOK_COLUMNS = ("runs", "R1 (%)", "mAP (%)", "R1 no twin (%)", "train ID acc (%)", "cross_share",
                "R1 / pixels", "mAP / pixels", "R1 no twin / pixels")


def book_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's rows with the columns the book shows (those this run has); blank where a row
    has no such number (no training accuracy for grey pixels)."""
    table = summary[[c for c in BOOK_COLUMNS if c in summary]].rename_axis("features")
    return table.replace("nan", "")


def parse_sets(items: list[str]) -> dict:
    """["data.grey_remap_p=0.5", ...] -> {"data.grey_remap_p": 0.5, ...} (values as Python literals)."""
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. data.grey_remap_p=0.5")
        try:
            changes[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            changes[key] = value
    return changes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="sysu", choices=("sysu", "regdb", "llcm"))
    p.add_argument("--preset", default="cpu-demo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--data-seed", type=int, default=0, help="draw of the synthetic dataset")
    p.add_argument("--data-root", default=None, help="a real dataset instead of synthetic data")
    p.add_argument("--direction", default=None,
                   help="test direction (default: the dataset's first, e.g. v2t on RegDB; t2v, v2i, ...)")
    p.add_argument("--models", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                   help="networks to train (none: only chance, grey pixels and the untrained network)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides on top of the preset, e.g. data.grey_remap_p=0.5")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/bench-learning", help="runs and results go here")
    a = p.parse_args()

    draw = Path(a.out) / f"{a.dataset}-{a.preset}-data{a.data_seed}"
    out = draw.with_name(f"{draw.name}-{a.direction}") if a.direction else draw   # runs shared by directions
    changes = {"data.dataset": a.dataset, "data.synthetic_seed": a.data_seed, "data.data_root": a.data_root,
               "data.cache_dir": str(Path(a.out) / "cache"), "out_dir": str(draw / "runs"),
               "device": a.device, "quiet": True, "tensorboard": False}
    if a.epochs is not None:
        changes["optim.epochs"] = a.epochs
    changes.update(parse_sets(a.set))
    cfg = get_config(a.preset, **changes)
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    direction = a.direction or DIRECTIONS[a.dataset][0]
    if direction not in DIRECTIONS[a.dataset]:
        raise SystemExit(f"--direction {direction!r}: {a.dataset} is tested in {DIRECTIONS[a.dataset]}")
    split = read_test(a.dataset, prepare_data(cfg), mode=cfg.data.mode, trial=cfg.data.trial,
                      direction=direction)
    print(f"{a.dataset} (data seed {a.data_seed}), {direction}, {len(set(split.query.pids))} test ids, "
          f"{len(split.query)} queries, {len(split.gallery)} gallery candidates; preset {a.preset}, "
          f"{cfg.optim.epochs} epochs; threads {torch.get_num_threads()}"
          + "".join(f"; {s}" for s in a.set), flush=True)

    floor = split_baselines(split, cfg.data.img_size, cfg.eval_trials)
    pixels = {f"{side}_bn": grey_pixel_features(getattr(split, side).paths, cfg.data.img_size)
              for side in ("query", "gallery")}
    noise = np.random.default_rng(0)
    random_feats = {f"{side}_bn": noise.standard_normal((len(getattr(split, side)), 64))
                    for side in ("query", "gallery")} if split.dataset == "regdb" else {}
    rows = [row("random features", "-", floor["random"], twin_free(split, random_feats)),
            row("grey pixels", "-", floor["pixels"], {**split_gap(pixels, split), **twin_free(split, pixels)})]
    rows += network_rows("untrained", cfg, split, direction, a.seeds, device)
    for name in a.models:
        rows += network_rows(name, override(cfg, **VARIANTS[name]), split, direction, a.seeds, device)
    frame = pd.DataFrame(rows)
    summary = summarise(frame)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv")
    book_table(summary).to_csv(out / "book.csv")
    (out / "command.json").write_text(json.dumps(vars(a), indent=1))
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summary.to_string())
    print(f"written: {out / 'runs.csv'}, {out / 'summary.csv'}, {out / 'book.csv'}")


if __name__ == "__main__":
    main()
