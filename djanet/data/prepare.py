"""Which dataset folder a run reads: a translated copy, the user's data_root, or synthetic data."""
from __future__ import annotations

import os
from pathlib import Path
from ..config import TrainConfig


def _existing(option: str, folder: str, expected: str) -> Path:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{option}={root} does not exist{expected}")
    return root


def data_identity(root: str | os.PathLike) -> str:
    """What a run, a translator or a translated copy was made from, as they record it: the data
    folder's name (for synthetic data it names the layout, size, seed and generator version, so a
    changed generator shows)."""
    return Path(root).name


def prepare_data(cfg: TrainConfig) -> Path:
    """The dataset root to read: the translated copy, the user's data_root, or synthetic data."""
    if cfg.data.translated_root:
        return _existing("data.translated_root", cfg.data.translated_root,
                         "; create it with `python -m djanet translate` or point it at a translated copy")
    if cfg.data.data_root:
        return _existing("data.data_root", cfg.data.data_root,
                         f" (expected the {cfg.data.dataset} dataset folder; leave data_root unset to use "
                         "synthetic data)")
    # Imported here: `python -m djanet.data.synthetic` must not find the module already loaded.
    from .synthetic import ensure_synthetic
    return Path(ensure_synthetic(cfg.data.dataset, Path(cfg.data.cache_dir).expanduser(),
                                 ids=cfg.data.synthetic_ids, seed=cfg.data.synthetic_seed,
                                 size=cfg.data.synthetic_size))
