"""Training throughput on the cpu-demo preset: AGW vs DJANet, and data loading vs compute.

    python benchmarks/bench_train.py [--preset cpu-demo] [--steps 6] [--device auto]

Both models and the loader are measured in this one run, side by side, so the
ratios are comparable.  Images/second counts all four views (4 x P x K images per
step).  The loader is measured on its own (iterating batches without the model)
and compared with the compute time per step: the loader must not be the bottleneck
(with `data.workers` processes it runs in parallel with the step).
"""
from __future__ import annotations

import argparse
import time

import torch

from djanet import train as engine
from djanet.config import get_config, override
from djanet.data import FourViewDataset, IdentitySampler, batch_size, make_train_loader, prepare_data, read_train
from djanet.losses import DJANetLoss
from djanet.model import DJANet
from djanet.runtime import resolve_device


def time_loader(split, cfg, steps: int) -> float:
    it = iter(make_train_loader(split, cfg.data, seed=0))
    next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return (time.perf_counter() - t0) / steps


def time_steps(split, cfg, batch, steps: int, device) -> float:
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
        engine.train_step(model, loss_fn, batch, opt, scaler, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    cfg = get_config(args.preset, device=args.device)
    device = resolve_device(cfg.device)
    split, _ = read_train(cfg.data.dataset, prepare_data(cfg))
    images_per_step = 4 * batch_size(cfg.data)

    load_s = time_loader(split, cfg, args.steps)
    sampler = IdentitySampler(split.visible.labels, split.infrared.labels, cfg.data.ids_per_batch,
                              cfg.data.num_pos, seed=0)
    pairs = list(sampler)[: batch_size(cfg.data)]
    ds = FourViewDataset(split, cfg.data.img_size)
    batch = torch.utils.data.default_collate([ds[p] for p in pairs])

    agw = override(cfg, **{"model.stems": False, "model.align": False, "loss.complementary": False})
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


if __name__ == "__main__":
    main()
