"""The ablation study: which part of DJANet helps, measured over training seeds.

A grid of variants x seeds on one dataset and preset: the AGW baseline, then DJANet's parts added
one at a time (modality-specific stems, the joint align module, the complementary loss: DJANet's
feature level), DJANet trained and tested on the translated copy of the dataset (both alignment
levels), and DJANet without its channel-level augmentations.

Every (variant, seed) is one train-or-load run folder, ``cfg.out_dir/<variant>-seed<n>``, so an
interrupted study resumes where it stopped; the run's test numbers are kept next to it
(``study_row.json``) and measured again only when its checkpoints change.  `run_study` writes,
atomically, ``study.csv`` (one row per run), ``summary.csv`` (mean ± std per variant and the
paired difference to AGW with its 95% t interval, `djanet.stats`) and ``provenance.json``
(command, commit, date, machine, preset, versions); `load_study` reads them back for the book.
"""
from __future__ import annotations

import io
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from . import __version__, runs, stats
from .checkpoint import atomic_write_text
from .config import TrainConfig, override, to_dict
from .console import progress
from .data import prepare_data, read_test
from .data.readers import DIRECTIONS
from .evaluate import evaluate
from .gap import split_gap
from .provenance import now, provenance, source_commit
from .runtime import set_threads
from .threads import available_cores
from .train import fit_or_load, run_dir, training_fit

STUDY_CSV, SUMMARY_CSV, PROVENANCE_JSON, ROW_JSON = "study.csv", "summary.csv", "provenance.json", "study_row.json"
# Test numbers of the dataset's first protocol direction, `bn` features, in percent; then the gap.
RETRIEVAL = ("R1", "R10", "mAP", "mINP")
GAP = ("cross_share", "pos_ratio", "modality_acc")
METRICS = (*RETRIEVAL, *GAP, "train_s")
RANKED = (*RETRIEVAL, "cross_share")   # higher is better; the other numbers are only higher or lower
# Raised whenever a number of the row is defined anew or added (2: cross_share above chance; 3: the
# fit on clean training images), so that rows saved beside the runs are measured again from their
# checkpoints instead of mixing definitions.
MEASURES = 3
# The translator preset that goes with a training preset (as notebook 2 chooses it).
TRANSLATOR_PRESETS = {"tiny": "tiny", "cpu-demo": "cpu-demo"}


@dataclass(frozen=True)
class Variant:
    """One column of the ablation: a name for folders, a label for readers, the switches it sets."""
    name: str                              # folder-safe: its runs are <name>-seed<n>
    label: str                             # tables and plots
    switches: tuple[tuple[str, Any], ...]  # config overrides (dotted keys)
    translated: bool = False               # train and test on the study's translated copy


def _switches(stems: bool, align: bool, complementary: bool, channel_aug: bool = True) -> tuple:
    return (("model.stems", stems), ("model.align", align), ("model.non_local", True),
            ("loss.complementary", complementary), ("data.channel_aug", channel_aug))


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("agw", "AGW baseline", _switches(False, False, False)),
    Variant("stems", "AGW + stems", _switches(True, False, False)),
    Variant("stems-align", "AGW + stems + align", _switches(True, True, False)),
    Variant("djanet", "DJANet (feature level)", _switches(True, True, True)),
    Variant("djanet-translated", "DJANet + translated IR", _switches(True, True, True), translated=True),
    Variant("djanet-nochannel", "DJANet, no channel aug.", _switches(True, True, True, channel_aug=False)),
)}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise KeyError(f"unknown study variant {name!r}; valid variants: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def variant_config(cfg: TrainConfig, variant: str | Variant, seed: int,
                   translated_root: str | os.PathLike | None = None) -> TrainConfig:
    """`cfg` with the variant's switches, the seed and the run name `<variant>-seed<seed>`."""
    v = get_variant(variant) if isinstance(variant, str) else variant
    if v.translated and translated_root is None:
        raise ValueError(f"variant {v.name!r} trains on a translated copy; pass translated_root "
                         "(run_study makes one with `translated_copy`)")
    return override(cfg, **dict(v.switches), seed=int(seed), run_name=f"{v.name}-seed{int(seed)}",
                    **{"data.translated_root": str(translated_root) if v.translated else None})


# --------------------------------------------------------------------------- the translated copy
def translated_copy(cfg: TrainConfig, steps: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Train-or-load the study's translator and make its translated copy of the dataset, once.

    The translator preset follows the training preset (tiny, cpu-demo; paper-like otherwise),
    `steps` overrides its length.  Both live under ``cfg.out_dir`` (``translator/``,
    ``translated/``); the returned record (preset, steps, seconds) is kept beside the copy, with
    the seconds of the call that made it.
    """
    from .translate import get_translate_config, read_manifest, reusable_copy, train_translator, \
        write_translated_copy

    tpreset = TRANSLATOR_PRESETS.get(cfg.preset, "paper-like")
    tcfg = get_translate_config(tpreset, **({"steps": int(steps)} if steps is not None else {}))
    name = f"{cfg.data.dataset}-{tpreset}-{tcfg.steps}steps"
    base = Path(cfg.out_dir).expanduser()
    checkpoint, copy, record = base / "translator" / f"{name}.pt", base / "translated" / name, \
        base / "translated" / f"{name}.json"
    root = prepare_data(override(cfg, **{"data.translated_root": None}))
    if reusable_copy(copy, root) and record.is_file():
        return copy, json.loads(record.read_text())
    start = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        train_translator(cfg.data.dataset, root, checkpoint, cfg=tcfg, device=cfg.device, seed=0)
        if read_manifest(copy) is None:
            write_translated_copy(cfg.data.dataset, root, copy, checkpoint=checkpoint, device=cfg.device,
                                  overwrite=copy.exists(), quiet=True)
    info = {"preset": tpreset, "steps": tcfg.steps, "seconds": time.perf_counter() - start,
            "translated_root": str(copy), "checkpoint": str(checkpoint)}
    atomic_write_text(record, json.dumps(info, indent=1))
    return copy, info


# --------------------------------------------------------------------------- one run of the grid
def _stamp(folder: Path) -> dict[str, list[int]]:
    """Size and modification time of the checkpoints a row was measured from."""
    out = {}
    for name in ("last.pt", "best.pt"):
        path = folder / "checkpoints" / name
        if path.is_file():
            st = path.stat()
            out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _cached_row(cfg: TrainConfig, folder: Path) -> dict[str, Any] | None:
    """The row measured earlier, if its measures, the checkpoints and every option that shapes it agree."""
    path = folder / ROW_JSON
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    same = (saved.get("measures", 1) == MEASURES and saved.get("stamp") == _stamp(folder)
            and not runs.config_changes(saved["config"], cfg)
            and saved["config"]["optim"]["epochs"] == cfg.optim.epochs
            and saved["config"]["eval_trials"] == cfg.eval_trials)
    return saved["row"] if same else None


def _refuse_other_run(cfg: TrainConfig, folder: Path) -> None:
    """A run folder of this study must hold this configuration's run, never a longer or other one."""
    found = runs.furthest_checkpoint(folder)
    if found is None:
        return
    changes = runs.config_changes(found[1]["config"], cfg)
    if found[1]["epoch"] > cfg.optim.epochs:
        changes.append(f"optim.epochs: run reached {found[1]['epoch']} vs now {cfg.optim.epochs}")
    if changes:
        raise runs.RunExistsError(f"study run folder {folder} holds a run of another configuration "
                                  f"({'; '.join(changes)}); give this study another out_dir, or remove that folder")


def training_numbers(history: pd.DataFrame) -> dict[str, float]:
    """Last-epoch training ID accuracy (%), the epoch the model was chosen at, epochs, steps, seconds."""
    score = next((c for c in ("val_r1", "test_peek_r1") if c in history and history[c].notna().any()), None)
    best = history.loc[history[score].idxmax(), "epoch"] if score else history["epoch"].iloc[-1]
    return {"train_acc": 100 * float(history["acc"].iloc[-1]), "best_epoch": int(best),
            "epochs": int(history["epoch"].iloc[-1]), "steps": int(history["steps"].sum()),
            "train_s": float(history["time_s"].sum())}


def evaluate_run(cfg: TrainConfig, checkpoint: str | os.PathLike) -> dict[str, Any]:
    """R1/R10/mAP/mINP (%) of the dataset's first direction with `bn` features, and the gap numbers.

    Runs `djanet.evaluate.evaluate` (which writes ``metrics.json`` and the features into the run
    folder) and measures the gap (`djanet.gap.split_gap`) on the features it saved.
    """
    direction = DIRECTIONS[cfg.data.dataset][0]
    result = evaluate(cfg, checkpoint)[f"{direction}/bn"]
    split = read_test(cfg.data.dataset, prepare_data(cfg), mode=cfg.data.mode, trial=cfg.data.trial,
                      direction=direction)
    with np.load(Path(checkpoint).resolve().parent.parent / f"features_{direction}.npz") as feats:
        gap = split_gap(feats, split, seed=cfg.seed)
    row: dict[str, Any] = {"protocol": f"{direction}/bn"}
    row.update({name: 100 * result.mean[key] for name, key in zip(RETRIEVAL, ("r1", "r10", "mAP", "mINP"))})
    row.update({k: float(gap[k]) for k in (*GAP, "r1_within", "r1_cross", "centroid_ratio")})
    return row


def run_one(cfg: TrainConfig, variant: str) -> dict[str, Any]:
    """Train-or-load one (variant, seed) run and measure it: a row of study.csv.

    `cfg` is the run's own config (`variant_config`).  What training prints goes to the run
    folder's ``study.log`` instead of the screen, where the study shows one progress bar.
    """
    folder = run_dir(cfg)
    cached = _cached_row(cfg, folder)
    if cached is not None:
        return {**cached, "label": get_variant(variant).label}   # labels may be reworded; numbers stay
    _refuse_other_run(cfg, folder)
    log = io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(log):
        run = fit_or_load(cfg)
        row: dict[str, Any] = {"variant": variant, "label": get_variant(variant).label, "seed": cfg.seed}
        row.update(evaluate_run(cfg, run.best))
        row.update(training_fit(run.checkpoint, device=cfg.device))
    row.update(training_numbers(run.history))
    git = source_commit()
    row.update(measure_s=time.perf_counter() - start, run=folder.name, version=__version__,
               commit=git["commit"] and git["commit"] + ("-dirty" if git["dirty"] else ""))
    atomic_write_text(folder / "study.log", log.getvalue())
    atomic_write_text(folder / ROW_JSON, json.dumps({"row": row, "measures": MEASURES, "stamp": _stamp(folder),
                                                    "config": to_dict(cfg)},
                                                    indent=1))
    return row


def _grid(tasks: list[tuple[TrainConfig, str]], jobs: int) -> Iterator[dict[str, Any]]:
    """Rows of the tasks as they finish: in this process, or in `jobs` worker processes."""
    if jobs == 1:
        for cfg, variant in tasks:
            yield run_one(cfg, variant)
        return
    import multiprocessing

    # spawn: a fresh interpreter per worker (torch and forked threads do not mix); quiet bars; the
    # cores shared out, since workers that each take every core wait on each other.
    threads = max(1, available_cores() // jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(run_one, override(cfg, quiet=True, threads=threads), variant)
                   for cfg, variant in tasks]
        for future in as_completed(futures):
            yield future.result()
    finally:   # after an error or Ctrl-C, runs not yet started are dropped, not trained
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- the study
def run_study(cfg: TrainConfig, variants: Sequence[str] = tuple(VARIANTS), seeds: Sequence[int] = (0, 1, 2),
              out: str | os.PathLike | None = None, jobs: int = 1, translator_steps: int | None = None,
              baseline: str = "agw", command: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train-or-load and evaluate every (variant, seed); write study.csv, summary.csv, provenance.json.

    Runs go to ``cfg.out_dir/<variant>-seed<n>`` (plus ``translator/`` and ``translated/`` when a
    variant needs the translated copy); the three result files go to `out` (default:
    ``cfg.out_dir``).  `jobs` > 1 trains that many runs at once in worker processes, each with an
    equal share of the CPU cores as its torch threads (the thread count does not enter the run's
    identity: a run trained this way is found again by a study with `jobs=1`).  `command` is recorded
    in the provenance (the CLI passes its own).
    Returns (study frame, summary frame).
    """
    chosen = [get_variant(v) for v in variants]
    seeds = [int(s) for s in seeds]
    if not chosen or not seeds:
        raise ValueError(f"a study needs at least one variant and one seed (got variants={list(variants)}, "
                         f"seeds={seeds})")
    for what, items in (("variant", [v.name for v in chosen]), ("seed", seeds)):
        if len(set(items)) != len(items):
            raise ValueError(f"{what}s {items} repeat one; give each once")
    if jobs < 1:
        raise ValueError(f"jobs={jobs}; expected 1 (one run at a time) or more worker processes")
    out = Path(out if out is not None else cfg.out_dir).expanduser()
    start, started = time.perf_counter(), now()
    set_threads(cfg.threads)
    translated, translator = None, None
    if any(v.translated for v in chosen):
        translated, translator = translated_copy(cfg, translator_steps)
    tasks = [(variant_config(cfg, v, s, translated), v.name) for v in chosen for s in seeds]
    bar = progress(_grid(tasks, jobs), desc="study", total=len(tasks), unit="runs", disable=cfg.quiet)
    rows = []
    for row in bar:
        rows.append(row)
        bar.set_postfix(last=row["run"])
    order = {v.name: i for i, v in enumerate(chosen)}
    frame = pd.DataFrame(rows).sort_values(["variant", "seed"], key=lambda c: c.map(order) if c.name == "variant"
                                           else c).reset_index(drop=True)
    summary = summary_frame(frame, baseline)
    prov = provenance(cfg, command=command, variants=[v.name for v in chosen], seeds=seeds, jobs=jobs,
                      baseline=baseline, translator=translator, started=started,
                      wall_s=time.perf_counter() - start)
    atomic_write_text(out / STUDY_CSV, frame.to_csv(index=False))
    atomic_write_text(out / SUMMARY_CSV, summary.to_csv(index=False))
    atomic_write_text(out / PROVENANCE_JSON, json.dumps(prov, indent=1))
    return frame, summary


def summary_frame(frame: pd.DataFrame, baseline: str = "agw", level: float = 0.95) -> pd.DataFrame:
    """`djanet.stats.summarise` of the study's metrics, with each variant's label."""
    summary = stats.summarise(frame, [m for m in METRICS if m in frame], baseline=baseline, level=level)
    labels = dict(zip(frame["variant"], frame["label"]))
    summary.insert(1, "label", summary["variant"].map(labels))
    return summary


def has_study(folder: str | os.PathLike, dataset: str | None = None) -> bool:
    """True when `folder` holds the three files of a finished study (with `dataset`: one made on
    that dataset, so a page about RegDB never shows a SYSU-MM01 study as its own)."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in (STUDY_CSV, SUMMARY_CSV, PROVENANCE_JSON)):
        return False
    return dataset is None or json.loads((folder / PROVENANCE_JSON).read_text()).get("dataset") == dataset


def load_study(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(study frame, summary frame, provenance) of a study written by `run_study`."""
    folder = Path(folder)
    missing = [name for name in (STUDY_CSV, SUMMARY_CSV, PROVENANCE_JSON) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} holds no finished study: {', '.join(missing)} missing "
                                "(`make study` or `python -m djanet study --results DIR` writes them)")
    return (pd.read_csv(folder / STUDY_CSV), pd.read_csv(folder / SUMMARY_CSV),
            json.loads((folder / PROVENANCE_JSON).read_text()))


def budget(cfg: TrainConfig, steps: int | None) -> TrainConfig:
    """`cfg` cut to about `steps` training steps per run (fewer steps per epoch, same epochs and schedule).

    For a study that has to fit a small time budget (the book's own when no full study exists);
    a config already within `steps`, or `steps` None, is returned unchanged.
    """
    if steps is None:
        return cfg
    per_epoch = math.ceil(int(steps) / cfg.optim.epochs)
    if cfg.max_steps_per_epoch is not None and cfg.max_steps_per_epoch <= per_epoch:
        return cfg
    return override(cfg, max_steps_per_epoch=max(1, per_epoch))
