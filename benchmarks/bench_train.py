"""Training throughput on the cpu-demo preset: AGW vs DJANet, data loading vs compute, threads.

    python benchmarks/bench_train.py [--preset cpu-demo] [--steps 6] [--device auto] [--threads]

Both models and the loader are measured in this one run, side by side, so the
ratios are comparable.  Images/second counts all four views (4 x P x K images per
step).  The loader is measured on its own (iterating batches without the model)
and compared with the compute time per step: the loader must not be the bottleneck
(with `data.workers` processes it runs in parallel with the step).

`--threads` also times the DJANet step with one torch thread and with torch's default (one per
core), each on an idle machine and beside a busy neighbour (a second process multiplying
matrices on one thread), side by side, and "auto" (djanet.threads.ThreadTuner choosing between
them from measured step times, probes included): the reason the small presets set `threads="auto"`.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from djanet import train as engine
from djanet.config import agw_baseline, get_config
from djanet.data import FourViewDataset, IdentitySampler, batch_size, make_train_loader, prepare_data, read_train
from djanet.losses import DJANetLoss
from djanet.model import DJANet
from djanet.runtime import resolve_device, set_threads
from djanet.threads import ThreadTuner

TORCH_DEFAULT_THREADS = torch.get_num_threads()   # read before any preset changes it


def time_loader(split, cfg, steps: int) -> float:
    it = iter(make_train_loader(split, cfg.data, seed=0))
    next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return (time.perf_counter() - t0) / steps


def time_steps(split, cfg, batch, steps: int, device, tuner: ThreadTuner | None = None) -> float:
    """Seconds per training step after one warm-up step; with a `tuner`, it picks the threads."""
    engine.seed_everything(0)
    model = DJANet.from_config(cfg.model, split.num_classes, cfg.data.img_size).to(device).train()
    opt = engine.make_optimizer(model, cfg.optim)
    loss_fn = DJANetLoss(cfg.loss)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    engine.train_step(model, loss_fn, batch, opt, scaler, device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        if tuner is not None:
            tuner.before_step()
        t_step = time.perf_counter()
        engine.train_step(model, loss_fn, batch, opt, scaler, device)
        if tuner is not None:
            tuner.after_step(time.perf_counter() - t_step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def _busy(stop) -> None:
    """A CPU-bound neighbour: one thread of matrix products until told to stop."""
    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def time_threads(split, cfg, batch, steps: int, device) -> None:
    """DJANet step time for 1 thread, torch's default and "auto" (a ThreadTuner, probing included,
    over 4x the steps), idle and beside a busy process."""
    default = TORCH_DEFAULT_THREADS
    rows = []
    for busy in (False, True):
        stop, proc = mp.Event(), None
        if busy:
            proc = mp.get_context("spawn").Process(target=_busy, args=(stop,), daemon=True)
            proc.start()
            time.sleep(1.0)
        for threads in (1, default):
            torch.set_num_threads(threads)
            rows.append((busy, str(threads), time_steps(split, cfg, batch, steps, device)))
        tuner = ThreadTuner()
        sec = time_steps(split, cfg, batch, 4 * steps, device, tuner)
        rows.append((busy, f"auto {tuner.summary()}", sec))
        if proc is not None:
            stop.set()
            proc.join()
    set_threads(cfg.threads)
    print(f"\n{'neighbour':12s}{'threads':>22s}{'s/step':>10s}{'vs 1 thread idle':>18s}")
    base = rows[0][2]
    for busy, threads, sec in rows:
        print(f"{'busy' if busy else 'idle':12s}{threads:>22s}{sec:10.3f}{sec / base:17.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", action="store_true", help="also compare thread counts, idle and busy")
    args = parser.parse_args()
    cfg = get_config(args.preset, device=args.device)
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    split, _ = read_train(cfg.data.dataset, prepare_data(cfg))
    images_per_step = 4 * batch_size(cfg.data)

    load_s = time_loader(split, cfg, args.steps)
    sampler = IdentitySampler(split.visible.labels, split.infrared.labels, cfg.data.ids_per_batch,
                              cfg.data.num_pos, seed=0)
    pairs = list(sampler)[: batch_size(cfg.data)]
    ds = FourViewDataset(split, cfg.data.img_size)
    batch = torch.utils.data.default_collate([ds[p] for p in pairs])

    agw = agw_baseline(cfg)
    agw_s = time_steps(split, agw, batch, args.steps, device)
    dja_s = time_steps(split, cfg, batch, args.steps, device)
    print(f"preset={args.preset} device={device} threads={torch.get_num_threads()} "
          f"batch={images_per_step} images ({cfg.data.img_size[0]}x{cfg.data.img_size[1]})")
    print(f"{'':24s}{'s/step':>10s}{'images/s':>12s}")
    print(f"{'data loading (1 proc)':24s}{load_s:10.3f}{images_per_step / load_s:12.1f}")
    print(f"{'AGW train step':24s}{agw_s:10.3f}{images_per_step / agw_s:12.1f}")
    print(f"{'DJANet train step':24s}{dja_s:10.3f}{images_per_step / dja_s:12.1f}")
    print(f"DJANet / AGW step time: {dja_s / agw_s:.2f}x")
    print(f"loading / DJANet compute: {load_s / dja_s:.2f}x per process "
          f"(with {cfg.data.workers} workers: {load_s / max(cfg.data.workers, 1) / dja_s:.2f}x)")
    if args.threads:
        time_threads(split, cfg, batch, args.steps, device)


if __name__ == "__main__":
    main()
