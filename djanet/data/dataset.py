"""Torch datasets: four training views per (visible, infrared) pair, and test images.

`FourViewDataset` is indexed by the (vis_index, ir_index) pairs that `IdentitySampler` yields,
so the loader's batch is P identities x K pairs, each giving VIS-1, VIS-2, IR-1, IR-2.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .readers import ImageList, TrainSplit, load_image
from .sampler import IdentitySampler
from .transforms import test_transform, train_views


class FourViewDataset(Dataset):
    """(vis1, vis2, ir1, ir2, label_vis, label_ir) for a pair of indices.

    `cache`: the dict of `cache.load_cache` (memory-mapped uint8 arrays) to read instead of files.
    """

    def __init__(self, split: TrainSplit, img_size: tuple[int, int], cache=None,
                 pad_fraction: float = 0.05, erasing_p: float = 0.5, channel_aug: bool = True,
                 grey_remap_p: float = 0.0):
        self.split, self.cache = split, cache
        self.vis1, self.vis2, self.ir1, self.ir2 = train_views(img_size, pad_fraction, erasing_p,
                                                               channel_aug, grey_remap_p)
        if cache is not None:
            for m in ("visible", "infrared"):
                if len(cache[m]) != len(getattr(split, m)):
                    raise ValueError(f"cache has {len(cache[m])} {m} images but the split has "
                                     f"{len(getattr(split, m))}; rebuild it for this split")

    def __len__(self) -> int:
        return max(len(self.split.visible), len(self.split.infrared))

    def _image(self, modality: str, i: int) -> np.ndarray:
        if self.cache is not None:
            return np.array(self.cache[modality][i])    # copy one image out of the memmap
        return load_image(getattr(self.split, modality).paths[i])

    def __getitem__(self, pair):
        vi, ii = (int(k) for k in pair)
        v, r = self._image("visible", vi), self._image("infrared", ii)
        return (self.vis1(v), self.vis2(v), self.ir1(r), self.ir2(r),
                int(self.split.visible.labels[vi]), int(self.split.infrared.labels[ii]))


class ImageDataset(Dataset):
    """(test-transformed image, index) for feature extraction."""

    def __init__(self, images: ImageList, img_size: tuple[int, int]):
        self.images, self.transform = images, test_transform(img_size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(load_image(self.images.paths[i])), i


def batch_size(cfg_data) -> int:
    """Pairs per batch: P identities x K pairs (cfg_data: a DataConfig)."""
    return cfg_data.ids_per_batch * cfg_data.num_pos


def four_view_loader(split: TrainSplit, cfg_data, pairs, cache=None, pin_memory: bool = False,
                     generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader of P x K four-view batches over `pairs` (a sampler or a list of index pairs)."""
    dataset = FourViewDataset(split, cfg_data.img_size, cache, cfg_data.pad_fraction, cfg_data.erasing_p,
                              cfg_data.channel_aug, cfg_data.grey_remap_p)
    return DataLoader(dataset, sampler=pairs,
                      batch_size=batch_size(cfg_data), drop_last=True, num_workers=cfg_data.workers,
                      generator=generator, pin_memory=pin_memory, persistent_workers=False)


def make_train_loader(split: TrainSplit, cfg_data, seed: int = 0, epoch: int = 0,
                      num_replicas: int = 1, rank: int = 0, cache=None,
                      pin_memory: bool = False) -> DataLoader:
    """A DataLoader of P x K four-view batches for `epoch` (cfg_data: a DataConfig)."""
    sampler = IdentitySampler(split.visible.labels, split.infrared.labels, cfg_data.ids_per_batch,
                              cfg_data.num_pos, seed=seed, num_replicas=num_replicas, rank=rank)
    sampler.set_epoch(epoch)
    g = torch.Generator().manual_seed(int(seed) * 100003 + int(epoch) * 101 + int(rank))
    return four_view_loader(split, cfg_data, sampler, cache, pin_memory, g)
