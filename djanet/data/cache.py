"""Memory-mapped array cache of the training images, resized once to the network's input size.

The paper's code preprocesses SYSU-MM01 into `train_rgb_resized_img.npy` & co and loads them
whole into RAM (about 7.5 GB at 384x192).  We write the same arrays with
`np.lib.format.open_memmap` and read them back memory-mapped, so DataLoader workers share the
page cache instead of each holding a copy.  The cache folder is keyed by a hash of the image
list and size and is built under a temporary name, then renamed: an interrupted build leaves
nothing that looks finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .readers import ImageList, TrainSplit, load_image

MODALITIES = ("visible", "infrared")


def resize(img: np.ndarray, img_size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> img_size (H, W) uint8, Lanczos as the paper's preprocessing."""
    h, w = img_size
    if img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.LANCZOS))


def read_arrays(images: ImageList, img_size: tuple[int, int]) -> np.ndarray:
    """All images of a list as one in-RAM (N, H, W, 3) uint8 array (the paper's way)."""
    out = np.empty((len(images), *img_size, 3), np.uint8)
    for i, p in enumerate(images.paths):
        out[i] = resize(load_image(p), img_size)
    return out


def cache_key(split: TrainSplit, img_size: tuple[int, int]) -> str:
    h = hashlib.sha1(repr(tuple(img_size)).encode())
    for images in (split.visible, split.infrared):
        for p, lab in zip(images.paths, images.labels.tolist()):
            h.update(f"{p}\t{lab}\t{os.path.getsize(p)}\n".encode())
    return h.hexdigest()[:16]


def build_cache(split: TrainSplit, img_size: tuple[int, int], cache_dir: str | os.PathLike) -> Path:
    """Write (once) cache_dir/arrays/<key>/{visible,infrared}.npy and return the folder."""
    img_size = tuple(int(s) for s in img_size)
    folder = Path(cache_dir).expanduser() / "arrays" / cache_key(split, img_size)
    if (folder / "meta.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for name in MODALITIES:
            images: ImageList = getattr(split, name)
            arr = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.uint8,
                                            shape=(len(images), *img_size, 3))
            for i, p in enumerate(images.paths):
                arr[i] = resize(load_image(p), img_size)
            arr.flush()
            del arr
            np.save(tmp / f"{name}_labels.npy", images.labels)
        meta = {"img_size": list(img_size), "counts": [len(split.visible), len(split.infrared)]}
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.replace(tmp, folder)
        except OSError:              # another process built it first
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_cache(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """{'visible': memmap (N, H, W, 3) uint8, 'infrared': ...} read-only, not copied into RAM."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise FileNotFoundError(f"{folder} is not a finished image cache (no meta.json); "
                                "build it with build_cache(split, img_size, cache_dir)")
    return {m: np.load(folder / f"{m}.npy", mmap_mode="r") for m in MODALITIES}


def cached_arrays(split: TrainSplit, img_size, cache_dir) -> dict[str, np.ndarray]:
    """build_cache + load_cache."""
    return load_cache(build_cache(split, img_size, cache_dir))
