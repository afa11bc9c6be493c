"""Where a model runs: the device a spec names, torch's CPU threads, a model rebuilt from its checkpoint.

Both the training engine and the evaluation import these, so they sit below both.
"""
from __future__ import annotations

import os

import torch

from .checkpoint import load_checkpoint
from .config import TrainConfig, from_dict
from .model import DJANet
from .threads import set_threads  # noqa: F401  (re-exported: callers import it from here)


def resolve_device(spec: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' on a machine without it is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={spec!r} but CUDA is not available here; use device='cpu' or 'auto'")
    return dev


def load_model(checkpoint: str | os.PathLike, device: str = "auto") -> tuple[DJANet, TrainConfig]:
    """Rebuild the model stored in a checkpoint, in eval mode, on `device`."""
    return model_from_checkpoint(load_checkpoint(checkpoint), device)


def model_from_checkpoint(ckpt: dict, device: str = "auto") -> tuple[DJANet, TrainConfig]:
    """The model of a checkpoint already loaded (`checkpoint.load_checkpoint`), in eval mode, on `device`."""
    cfg = from_dict(ckpt["config"])
    dev = resolve_device(device)
    model = DJANet.from_config(cfg.model, ckpt["num_classes"], cfg.data.img_size)
    model.load_state_dict(ckpt["model"])
    return model.to(dev).eval(), cfg
