"""The configuration a checkpoint carries, and what a test may change in it.

Every checkpoint stores the resolved config it was trained with, so testing needs no preset:
the model is rebuilt from the checkpoint, and only the options that choose *what to test*
(dataset, search mode, RegDB trial, data root, gallery trials, device, workers) are applied on
top.  An option that would change the model (architecture, stems, align module, image size...)
and disagrees with the checkpoint is refused with both values named, instead of failing deep
inside the network with a shape error.
"""
from __future__ import annotations

import os

from .checkpoint import load_checkpoint
from .config import TrainConfig, from_dict, override

# The fields that decide the network a checkpoint's weights belong to.
MODEL_FIELDS = ("arch", "width", "stems", "align", "align_residual", "non_local", "align_dim", "attn_heads",
                "d_state", "d_conv", "expand")

# Config keys a test may set: they choose the test data and where it runs, never the model.
TEST_CHOICES = ("data.dataset", "data.data_root", "data.translated_root", "data.trial", "data.mode",
                "data.workers", "data.cache_dir", "eval_trials", "device", "threads", "quiet")


def saved_config(checkpoint: str | os.PathLike) -> TrainConfig:
    """The resolved config a checkpoint was trained with."""
    return from_dict(load_checkpoint(checkpoint)["config"])


def model_differences(saved: TrainConfig, other: TrainConfig, other_name: str = "requested") -> list[str]:
    """One line per model-defining field (and the image size) on which `other` differs from `saved`."""
    diffs = [f"model.{k}: checkpoint {getattr(saved.model, k)!r} vs {other_name} {getattr(other.model, k)!r}"
             for k in MODEL_FIELDS if getattr(saved.model, k) != getattr(other.model, k)]
    if tuple(saved.data.img_size) != tuple(other.data.img_size):
        diffs.append(f"data.img_size: checkpoint {tuple(saved.data.img_size)} vs {other_name} "
                     f"{tuple(other.data.img_size)}")
    return diffs


def check_same_model(saved: TrainConfig, other: TrainConfig, checkpoint: str | os.PathLike,
                     other_name: str = "requested") -> None:
    """Raise ValueError naming every model option on which `other` disagrees with the checkpoint."""
    diffs = model_differences(saved, other, other_name)
    if diffs:
        raise ValueError(f"checkpoint {checkpoint} holds a different model than {other_name}: "
                         + "; ".join(diffs) + ". A test builds the model from the checkpoint's own "
                         "configuration: drop the disagreeing option(s) or use a matching checkpoint")


def config_for_test(saved: TrainConfig, **choices) -> TrainConfig:
    """`saved` with the test choices applied (keys from TEST_CHOICES, dotted).

    Giving a data root without a translated root tests on that root (a translated copy the
    checkpoint was trained on is not silently read instead).  Changing the dataset of a
    checkpoint trained on a real dataset needs the new dataset's root.
    """
    unknown = sorted(set(choices) - set(TEST_CHOICES))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} would change the trained model or its training, not the "
                         f"test; a test may set only {', '.join(TEST_CHOICES)}")
    changes = dict(choices)
    if changes.get("data.data_root") is not None and "data.translated_root" not in changes:
        changes["data.translated_root"] = None
    dataset = changes.get("data.dataset", saved.data.dataset)
    if dataset != saved.data.dataset and "data.data_root" not in changes and (
            saved.data.data_root or saved.data.translated_root):
        raise ValueError(f"the checkpoint was trained on {saved.data.dataset} at "
                         f"{saved.data.translated_root or saved.data.data_root}; to test it on {dataset} give "
                         f"that dataset's folder (--data-root)")
    if dataset != saved.data.dataset:
        changes.setdefault("data.translated_root", None)
    return override(saved, **changes)
