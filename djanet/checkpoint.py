"""Checkpoints that survive interruption and say clearly when they do not fit.

A checkpoint holds everything needed to continue a run exactly: model, optimizer,
scheduler and AMP scaler states, the epoch and step reached, the RNG states and
the resolved config.  Files are written to a temporary name and renamed, so a
crash during a save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary name next to `path`; rename it onto `path` only if the block succeeds.

    A crash or an exception inside the block removes the temporary file and leaves whatever
    was at `path` before untouched.  `suffix` keeps writers that add an extension (np.savez) happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder, then rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` that never leaves a half-written file at `path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_globals() -> list:
    """What unpickling a NumPy array needs (the RNG state holds one), and nothing that runs code.

    Also NumPy scalars and float arrays, under NumPy 2's module names and NumPy 1's
    (``numpy.core``): the official DJANet checkpoints store their CMC and mAP that way.
    """
    multiarray = getattr(np, "_core", np.core).multiarray
    dtypes = [type(np.dtype(t)) for t in (np.uint32, np.float16, np.float32, np.float64, np.int32, np.int64)]
    numpy1 = [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
              (multiarray.scalar, "numpy.core.multiarray.scalar")]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes, *numpy1]


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """`torch.load` with `weights_only=True`: tensors, containers, numbers and NumPy arrays only.

    A checkpoint is a pickle, and a pickle from someone else can run any code when it is opened;
    the weights-only unpickler refuses every other object, so opening a file never runs its code.
    `mmap=True` maps the tensor data instead of reading it (zip-format files only).
    """
    with torch.serialization.safe_globals(_numpy_globals()):
        return torch.load(path, map_location=map_location, weights_only=True, **({"mmap": True} if mmap else {}))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `atomic_torch_save`, with a clear error when it is not one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (expected a .pt file written by djanet)")
    try:
        ckpt = safe_load(path, map_location=map_location)
    except pickle.UnpicklingError as exc:   # the weights-only unpickler met an object that is not data
        raise ValueError(f"cannot read checkpoint {path}: it holds objects other than tensors and plain data, "
                         "and opening it could run code; refused") from exc
    except Exception as exc:  # corrupted or foreign
        raise ValueError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    if isinstance(ckpt, dict) and "model" not in ckpt:
        from .official import is_official_checkpoint, to_djanet_checkpoint
        if is_official_checkpoint(ckpt):   # {'net', 'cmc', 'mAP', 'epoch'} of github.com/Hmn-92/DJANet
            return to_djanet_checkpoint(ckpt, path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a djanet checkpoint (expected a dict with 'model' and 'config')")
    return ckpt


def official_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """What an official DJANet checkpoint file recorded (djanet.official.recorded: source, epoch,
    Rank-1, mAP), or None for any other file. Memory-mapped (tensor data is not read): cheap."""
    from .official import is_official_checkpoint, recorded
    try:
        try:
            obj = safe_load(path, mmap=True)
        except RuntimeError:   # a file in the legacy (pre-zip) format cannot be memory-mapped
            obj = safe_load(path)
    except Exception:
        return None
    return recorded(obj, path) if is_official_checkpoint(obj) else None


def check_compatible(ckpt: dict[str, Any], cfg_dict: dict[str, Any], num_classes: int, path: Any = "") -> None:
    """Raise ValueError listing what differs between a checkpoint and the model we are building."""
    if ckpt.get("official"):
        raise ValueError(f"{path} is an official DJANet checkpoint: it holds weights only (no optimizer or "
                         "schedule), so it can be tested (python -m djanet test --resume FILE) but not resumed")
    saved = ckpt["config"]["model"]
    wanted = cfg_dict["model"]
    diffs = [f"model.{k}: checkpoint {saved.get(k)!r} vs requested {wanted[k]!r}"
             for k in ("arch", "stems", "align", "non_local", "align_dim", "d_state", "d_conv", "expand")
             if saved.get(k) != wanted[k]]
    if ckpt.get("num_classes") != num_classes:
        diffs.append(f"num_classes: checkpoint {ckpt.get('num_classes')} vs dataset {num_classes}")
    saved_size = tuple(ckpt["config"]["data"]["img_size"])
    if saved_size != tuple(cfg_dict["data"]["img_size"]):
        diffs.append(f"data.img_size: checkpoint {saved_size} vs requested {tuple(cfg_dict['data']['img_size'])}")
    if diffs:
        raise ValueError(f"checkpoint {path} does not match this run:\n  " + "\n  ".join(diffs))
