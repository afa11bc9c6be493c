"""Datasets, loader and the memory-mapped array cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from djanet.config import get_config
from djanet.data import cache as C
from djanet.data.dataset import FourViewDataset, ImageDataset, make_train_loader
from djanet.data.readers import read_test, read_train


def test_four_views(sysu_root):
    split, _ = read_train("sysu", sysu_root)
    ds = FourViewDataset(split, (32, 16))
    vi = 0
    ii = int(np.flatnonzero(split.infrared.labels == split.visible.labels[0])[0])
    out = ds[(vi, ii)]
    assert len(out) == 6 and all(t.shape == (3, 32, 16) for t in out[:4])
    assert out[4] == out[5] == int(split.visible.labels[0])
    assert len(ds) == max(len(split.visible), len(split.infrared))


def test_image_dataset(sysu_root):
    s = read_test("sysu", sysu_root)
    img, i = ImageDataset(s.query, (32, 16))[3]
    assert i == 3 and img.shape == (3, 32, 16) and img.dtype == torch.float32


def test_train_loader(regdb_root):
    cfg = get_config("tiny").data                  # P=4 identities x K=2, 64x32
    split, _ = read_train("regdb", regdb_root)
    loader = make_train_loader(split, cfg, seed=0, epoch=0)
    vis1, vis2, ir1, ir2, lv, li = next(iter(loader))
    assert vis1.shape == ir2.shape == (8, 3, 64, 32)
    assert torch.equal(lv, li) and len(set(lv.tolist())) == 4
    assert len(loader) == 2                         # 12 images / 8 per batch -> 2 batches


def test_cache_roundtrip(tmp_path, sysu_root):
    split, _ = read_train("sysu", sysu_root)
    folder = C.build_cache(split, (32, 16), tmp_path)
    arrays = C.load_cache(folder)
    assert isinstance(arrays["visible"], np.memmap) and not arrays["visible"].flags.writeable
    assert arrays["visible"].shape == (len(split.visible), 32, 16, 3)
    assert np.array_equal(arrays["infrared"], C.read_arrays(split.infrared, (32, 16)))
    stamp = (folder / "visible.npy").stat().st_mtime_ns
    assert C.build_cache(split, (32, 16), tmp_path) == folder                  # built once
    assert (folder / "visible.npy").stat().st_mtime_ns == stamp
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]          # no temp folders
    assert C.build_cache(split, (16, 8), tmp_path) != folder                   # keyed by size
    ds = FourViewDataset(split, (32, 16), cache=arrays)
    assert ds[(0, 0)][0].shape == (3, 32, 16)
    other, _ = read_train("sysu", sysu_root, holdout=True)
    with pytest.raises(ValueError, match="rebuild it"):
        FourViewDataset(other, (32, 16), cache=arrays)


def test_cache_unfinished(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="not a finished image cache"):
        C.load_cache(tmp_path / "half")
