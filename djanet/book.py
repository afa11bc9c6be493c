"""The notebooks' shared first step: their parameters become a config and an output folder.

Each notebook of the book starts with ``cfg, out = book.setup(...)`` on its parameters cell, so
the notebooks agree on where the data, the runs and the tables go, and their first cells read as prose.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from .config import TrainConfig, get_config
from .console import shown
from .runtime import resolve_device, set_threads

__all__ = ["glue", "setup", "shown"]


def setup(dataset: str = "sysu", preset: str = "auto", data_root: str | os.PathLike | None = None,
          device: str = "auto", seed: int = 0, out_dir: str | os.PathLike = "runs/book",
          epochs: int | None = None, translated_root: str | os.PathLike | None = None
          ) -> tuple[TrainConfig, Path]:
    """The config the notebook's parameters describe, and the output folder the notebooks share.

    `preset` "auto" is gpu-demo where `device` runs on CUDA and cpu-demo elsewhere (the config's
    `preset` says which). `out_dir` (relative to the folder the notebook runs in) is created; it
    holds the synthetic data and array caches (``cache/``) and the training runs (``runs/``).
    `epochs` None keeps the preset's; `translated_root` reads a translated copy of the dataset
    instead (notebook 2 makes one).
    Also readies the kernel for the book: inline figures, tables to three decimals, and no
    warning about tqdm's widget fallback. Prints one line saying what runs where.
    """
    out = Path(out_dir).expanduser().resolve()
    overrides = {"data.dataset": dataset, "data.data_root": data_root, "data.cache_dir": str(out / "cache"),
                 "seed": seed, "device": device, "out_dir": str(out / "runs")}
    if epochs is not None:
        overrides["optim.epochs"] = int(epochs)
    if translated_root is not None:
        overrides["data.translated_root"] = str(Path(translated_root).expanduser().resolve())
    cfg = get_config(preset, **overrides)  # raises on an unknown preset, dataset or value
    out.mkdir(parents=True, exist_ok=True)
    _ready_notebook()
    # the preset's thread policy for everything the notebook runs outside training ("auto": the
    # cores free now; feature extraction on two threads beside a busy process crawls)
    set_threads(cfg.threads)
    print(f"dataset {dataset}, preset {cfg.preset}, {cfg.optim.epochs} training epochs on "
          f"{resolve_device(device)}, files under {shown(out)}")
    return cfg, out


def _ready_notebook() -> None:
    import pandas as pd
    from tqdm import TqdmExperimentalWarning, TqdmWarning

    warnings.filterwarnings("ignore", category=TqdmWarning)
    warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
    pd.set_option("display.precision", 3)
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        shell.run_line_magic("matplotlib", "inline")


def glue(name: str, value, display: bool = False):
    """Record `value` under `name` for the book's prose (myst-nb's glue roles); returns `value`.

    The book's pages state a measured number only through a key glued by the run that measured it,
    so a page run on another dataset or preset never shows another run's figures. Where myst-nb is
    not installed (a notebook opened on Colab), nothing is recorded and the value is only returned.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:  # the notebooks' extras leave myst-nb out
        return value
    item = getattr(value, "item", None)  # numpy and torch scalars: glue:text formats plain numbers only
    _glue(name, item() if callable(item) and getattr(value, "ndim", 1) == 0 else value, display=display)
    return value
