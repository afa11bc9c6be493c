"""Data: synthetic datasets in the real layouts, readers, array cache, sampler, augmentations."""
from __future__ import annotations

from .cache import build_cache, cached_arrays, load_cache, read_arrays
from .dataset import FourViewDataset, ImageDataset, batch_size, four_view_loader, make_train_loader
from .prepare import data_identity, prepare_data
from .readers import (DATASETS, EvalSplit, ImageList, TrainSplit, list_infrared_images,
                      load_image, read_rand_perm, read_test, read_train)
from .sampler import IdentitySampler
from .transforms import (AdaptiveGray, ChannelExchange, ChannelRandomErasing, RandomChannelScale,
                         denormalise, test_transform, train_views)

__all__ = [
    "DATASETS", "EvalSplit", "ImageList", "TrainSplit", "read_train", "read_test", "prepare_data", "data_identity",
    "list_infrared_images", "read_rand_perm", "load_image",
    "generate", "ensure_synthetic", "pixel_matching_rank1",
    "build_cache", "load_cache", "cached_arrays", "read_arrays",
    "IdentitySampler", "FourViewDataset", "ImageDataset", "make_train_loader", "four_view_loader",
    "batch_size",
    "train_views", "test_transform", "denormalise",
    "ChannelExchange", "AdaptiveGray", "ChannelRandomErasing", "RandomChannelScale",
]


def __getattr__(name: str):
    """Synthetic-data functions load on first use, so `python -m djanet.data.synthetic` runs cleanly."""
    if name in ("generate", "ensure_synthetic", "pixel_matching_rank1"):
        from . import synthetic
        return getattr(synthetic, name)
    raise AttributeError(f"module 'djanet.data' has no attribute {name!r}")
