"""What training does with a run folder it finds: start, continue, stop, or refuse.

A run folder is the user's work, so re-running the same command never destroys it:

* no checkpoints: train from scratch;
* checkpoints of the same configuration: continue from the furthest one (`last.pt`;
  `interrupted.pt` after Ctrl-C; `best.pt`, written just before `last.pt`, when a kill fell
  between the two), or do nothing when the run is finished;
* checkpoints of another configuration: refuse, naming the folder, the differences and the
  flags that decide (`--resume PATH` continues anyway, `--overwrite` starts over).

Checkpoints are written atomically (djanet.checkpoint), so a killed run leaves at worst a
stale temporary file, which `clear_stale_temporaries` removes.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .checkpoint import atomic_write_text, load_checkpoint
from .config import TrainConfig, from_dict, to_dict

CHECKPOINTS = ("last.pt", "interrupted.pt", "best.pt")
# Options a continuation may change: where and how it runs, how long, what the final test uses.
FREE_TO_CHANGE = ("device", "threads", "quiet", "tensorboard", "out_dir", "run_name", "optim.epochs", "eval_trials",
                  "data.workers", "data.cache_dir", "data.use_cache")
# What a run folder holds besides its checkpoints, all derived from them (removed by --overwrite).
RUN_OUTPUTS = ("config.json", "history.csv", "history.json", "metrics.json", "results_table.csv",
               "per_camera.csv")


class RunExistsError(FileExistsError):
    """The run folder holds checkpoints and the caller said neither continue nor start over."""


@dataclass(frozen=True)
class RunPlan:
    """What `plan_run` decided for a run folder."""
    action: str                 # "fresh" | "continue" | "finished"
    resume: Path | None         # the checkpoint to continue from ("continue")
    message: str                # one line for the user
    history: list | None = None  # the per-epoch history of the checkpoint found
    data: str | None = None      # the data identity that checkpoint recorded (None: none recorded)


def has_checkpoints(folder: str | os.PathLike) -> bool:
    ckpt_dir = Path(folder) / "checkpoints"
    return any((ckpt_dir / name).is_file() for name in CHECKPOINTS)


def furthest_checkpoint(folder: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """(path, checkpoint) of whichever checkpoint got furthest (epoch, step); last.pt on ties.

    Each of last.pt, interrupted.pt and best.pt holds the full training state of its moment.
    """
    ckpt_dir = Path(folder) / "checkpoints"
    saved = {ckpt_dir / name: load_checkpoint(ckpt_dir / name) for name in CHECKPOINTS
             if (ckpt_dir / name).is_file()}
    if not saved:
        return None
    path = max(saved, key=lambda p: (saved[p]["epoch"], saved[p]["step"]))   # first maximum: last.pt
    return path, saved[path]


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """'key: run X vs now Y' for each option (outside FREE_TO_CHANGE) that differs."""
    before, now = _flat(to_dict(from_dict(saved))), _flat(to_dict(cfg))
    return [f"{k}: run {before[k]!r} vs now {now[k]!r}" for k in sorted(now)
            if k not in FREE_TO_CHANGE and before.get(k) != now[k]]


def is_finished(ckpt: dict[str, Any], epochs: int) -> bool:
    """A checkpoint at the end of an epoch at or past `epochs`: nothing is left to train."""
    return ckpt["epoch"] >= epochs and ckpt["step"] == 0


def plan_run(cfg: TrainConfig, folder: str | os.PathLike) -> RunPlan:
    """Decide what training `cfg` into `folder` should do, without touching anything.

    Raises RunExistsError when the folder's checkpoints come from another configuration,
    naming the folder, the differences and the flags that decide.
    """
    folder = Path(folder)
    found = furthest_checkpoint(folder)
    if found is None:
        return RunPlan("fresh", None, f"new run in {folder}")
    decide = ("pass --resume PATH to continue it anyway, --overwrite to delete its checkpoints and start "
              "over, or --run-name NAME to train a new run next to it")
    path, ckpt = found
    changes = config_changes(ckpt["config"], cfg)
    if changes:
        raise RunExistsError(f"run folder {folder} holds a run of another configuration ({'; '.join(changes)}); "
                             + decide)
    epochs = cfg.optim.epochs
    if is_finished(ckpt, epochs):
        return RunPlan("finished", path, f"run {folder} is finished ({path.name}: epoch {ckpt['epoch']} of "
                                         f"{epochs}); not retraining (--overwrite starts over)",
                       list(ckpt["history"]), ckpt.get("data"))
    where = f"epoch {ckpt['epoch']} of {epochs}" + (f", step {ckpt['step']}" if ckpt["step"] else "")
    return RunPlan("continue", path, f"run folder {folder} already holds {path.name} ({where}); continuing "
                                     "from it (--overwrite starts over)")


def complete_finished(folder: str | os.PathLike, plan: RunPlan) -> None:
    """Make a finished run's last.pt and history whole again after a kill at its very end.

    The kill may fall between best.pt and last.pt of the final epoch, or before the history
    files were written; both are rebuilt from the furthest checkpoint (atomically).
    """
    from .checkpoint import atomic_torch_save
    folder = Path(folder)
    clear_stale_temporaries(folder)
    if plan.resume is not None and plan.resume.name != "last.pt":
        atomic_torch_save(load_checkpoint(plan.resume), folder / "checkpoints" / "last.pt")
    if plan.history:
        write_history(folder, plan.history, None)


def clear_run(folder: str | os.PathLike) -> None:
    """Delete a run's checkpoints and the outputs derived from them (for --overwrite).

    Only the names djanet writes are removed, never the folder itself or other files in it.
    """
    folder = Path(folder)
    for name in CHECKPOINTS:
        (folder / "checkpoints" / name).unlink(missing_ok=True)
    clear_stale_temporaries(folder)
    for name in RUN_OUTPUTS:
        (folder / name).unlink(missing_ok=True)
    for path in folder.glob("features_*.npz"):
        path.unlink()
    if (folder / "tensorboard").is_dir():
        shutil.rmtree(folder / "tensorboard")


def clear_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files a killed checkpoint write left (`.last.pt.<random>.tmp`)."""
    stale = [p for name in CHECKPOINTS for p in (Path(folder) / "checkpoints").glob(f".{name}.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_history(out: Path, history: list[dict], writer) -> None:
    """history.csv and history.json (atomically), and the last row to TensorBoard when a writer is given."""
    frame = pd.DataFrame(history)
    atomic_write_text(out / "history.csv", frame.to_csv(index=False))
    atomic_write_text(out / "history.json", json.dumps(history, indent=1))
    if writer is not None:
        row = history[-1]
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
                writer.add_scalar(k.replace("loss_", "loss/").replace("val_", "val/"), v, row["epoch"])
        writer.flush()
