"""Data benchmark: synthetic generation time/size per layout, and training-set memory in RAM vs memmap.

    python benchmarks/bench_data.py                 # default sizes, all three layouts
    python benchmarks/bench_data.py --sysu-scale    # also SYSU-MM01 at its real size (491 ids)

Memory is the peak of Python-tracked allocations (tracemalloc; numpy reports its buffers to it)
and the growth of the process's resident memory, private (RssAnon) and file-backed (RssFile)
while the SYSU training set is loaded the paper's way (one in-RAM uint8 array per modality) and
while it is read through the memory-mapped cache (every image touched once, as an epoch would).
Pages of a memmap live in the OS page cache, shared between DataLoader workers and evictable.
"""
from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from djanet.data.cache import build_cache, load_cache, read_arrays
from djanet.data.readers import read_train
from djanet.data.synthetic import DEFAULT_IDS, LAYOUTS, REAL_IDS, generate

SYSU_SCALE_PER_CAM = 18   # ~22k visible + ~11.5k infrared training images, like SYSU-MM01


def folder_stats(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.suffix in (".jpg", ".bmp") for p in files), sum(p.stat().st_size for p in files)


def bench_generate(layout, out, ids, per_cam, size):
    t0 = time.perf_counter()
    root = generate(layout, out, ids=ids, size=size, per_cam=per_cam)
    dt = time.perf_counter() - t0
    n, nbytes = folder_stats(root)
    print(f"{layout:6s} ids={ids:5d} images={n:6d} size={nbytes / 2**20:8.1f} MiB "
          f"time={dt:7.1f} s ({1e3 * dt / n:.2f} ms/image)", flush=True)
    return root


def peak_bytes(fn) -> tuple[float, object]:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, out


def rss_mib() -> dict[str, float]:
    """Resident memory split into private (RssAnon) and file-backed (RssFile) pages, in MiB.

    A memory map's pages count as file-backed: shared by every DataLoader worker that maps the
    same cache and evictable by the OS, unlike a private in-RAM copy per process.
    """
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    return out


def measured(fn):
    """(peak traced bytes, RSS growth in MiB by kind, result) of running fn."""
    gc.collect()
    before = rss_mib()
    peak, out = peak_bytes(fn)
    after = rss_mib()
    return peak, {k: after[k] - before[k] for k in after}, out


def bench_memory(root: Path, img_size, cache_dir: Path) -> None:
    split, _ = read_train("sysu", root)
    n = len(split.visible) + len(split.infrared)
    t0 = time.perf_counter()
    folder = build_cache(split, img_size, cache_dir)
    t_build = time.perf_counter() - t0

    def via_memmap():
        arrays = load_cache(folder)
        for name in ("visible", "infrared"):
            for i in range(len(arrays[name])):
                np.array(arrays[name][i])          # copy one image out, as a loader does
        return arrays                              # keep the mapping alive while RSS is read

    def in_ram():
        return [read_arrays(split.visible, img_size), read_arrays(split.infrared, img_size)]

    t0 = time.perf_counter()
    mm, mm_rss, mapped = measured(via_memmap)
    del mapped
    t_mm = time.perf_counter() - t0
    t0 = time.perf_counter()
    ram, ram_rss, arrays = measured(in_ram)
    t_ram = time.perf_counter() - t0
    size = sum(a.nbytes for a in arrays)
    del arrays
    h, w = img_size
    print(f"\nSYSU training set: {len(split.visible)} visible + {len(split.infrared)} infrared "
          f"images at {h}x{w} ({size / 2**20:.1f} MiB of pixels)")
    print(f"  {'loading':28s} {'peak traced':>13s} {'+RSS private':>14s} {'+RSS file':>11s} {'time':>8s}")
    for name, peak, rss, t in (("in-RAM arrays (paper)", ram, ram_rss, t_ram),
                               ("memmap cache, one pass", mm, mm_rss, t_mm)):
        print(f"  {name:28s} {peak / 2**20:9.1f} MiB {rss.get('RssAnon', float('nan')):10.1f} MiB "
              f"{rss.get('RssFile', float('nan')):7.1f} MiB {t:7.1f}s")
    print(f"  (cache built once in {t_build:.1f} s; private memory is per process, each DataLoader "
          "worker holding in-RAM arrays pays it again, file-backed pages are shared)")
    print(f"  at 384x192 the in-RAM arrays would take {n * 384 * 192 * 3 / 2**30:.2f} GiB")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sysu-scale", action="store_true", help="also generate SYSU-MM01 at real size")
    p.add_argument("--size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"),
                   help="generated image size")
    p.add_argument("--img-size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"),
                   help="training size of the cached / in-RAM arrays")
    p.add_argument("--out", default=None, help="folder to generate into (default: a temp folder)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=a.out) as tmp:
        tmp = Path(tmp)
        print(f"generation at {a.size[0]}x{a.size[1]}:")
        roots = {lay: bench_generate(lay, tmp / lay, DEFAULT_IDS[lay], None, tuple(a.size))
                 for lay in LAYOUTS}
        if a.sysu_scale:
            roots["sysu"] = bench_generate("sysu", tmp / "sysu-real", REAL_IDS["sysu"],
                                           SYSU_SCALE_PER_CAM, tuple(a.size))
        bench_memory(roots["sysu"], tuple(a.img_size), tmp / "cache")


if __name__ == "__main__":
    main()
