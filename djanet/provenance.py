"""Where a set of numbers came from: command, source commit, date, machine, preset and versions.

Results that travel without their runs (the ablation study's CSV files, rendered by the book)
carry this record, so a reader can tell what produced them and redo it.
"""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from . import __version__
from .config import TrainConfig, to_dict
from .runtime import resolve_device


def source_commit() -> dict[str, Any]:
    """The git commit of the djanet source tree, and whether its code differs from it (None: no git)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                                  "--", "djanet"], capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(changed.strip())}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def now() -> str:
    """The local date and time, ISO 8601 to the second, with the UTC offset."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def provenance(cfg: TrainConfig, command: str | None = None, **extra: Any) -> dict[str, Any]:
    """Where and how a study's numbers were made: command, commit, date, machine, preset, versions."""
    import torch

    device = resolve_device(cfg.device)
    git = source_commit()
    return {
        "command": command or "djanet.study.run_study (called from Python)",
        "commit": git["commit"], "code_changed_since_commit": git["dirty"],
        "date": now(), "machine": {"hostname": platform.node(), "cpu": _cpu_name(), "cores": os.cpu_count(),
                                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "preset": cfg.preset, "dataset": cfg.data.dataset, "data_root": cfg.data.data_root,
        "synthetic_seed": cfg.data.synthetic_seed if cfg.data.data_root is None else None,
        "epochs": cfg.optim.epochs, "max_steps_per_epoch": cfg.max_steps_per_epoch, "eval_trials": cfg.eval_trials,
        "device": str(device), "threads": cfg.threads, "djanet": __version__, "torch": torch.__version__,
        "python": platform.python_version(), **extra, "config": to_dict(cfg),
    }
