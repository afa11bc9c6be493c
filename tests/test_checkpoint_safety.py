"""Opening a checkpoint never runs code from it, and djanet's own checkpoints still open."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from djanet.checkpoint import atomic_torch_save, load_checkpoint, rng_state, safe_load, set_rng_state


class _RunsCode:
    """A pickle payload: unpickling it would call os.mkdir on the path it carries."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "config": {}, "payload": _RunsCode(marker)}, bad)
    with pytest.raises(ValueError, match="cannot read checkpoint .*bad.pt: it holds objects other than") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)
    assert not marker.exists(), "loading the checkpoint ran the code it carried"


def test_djanet_checkpoints_with_rng_states_round_trip(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    state = {"model": {"w": torch.arange(3.0)}, "config": {"model": {"arch": "resnet18"}, "img": (64, 32)},
             "rng": rng_state(), "history": [{"epoch": 1, "loss": 2.5}]}
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    path = tmp_path / "last.pt"
    atomic_torch_save(state, path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert loaded["history"] == [{"epoch": 1, "loss": 2.5}]
    set_rng_state(loaded["rng"])   # the states come back usable: the same draws as after saving
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    assert isinstance(safe_load(path)["rng"]["numpy"][1], np.ndarray)
