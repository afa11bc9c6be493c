"""The training engine: `fit(cfg)` trains, `fit_or_load(cfg)` trains only when needed.

One loop for every setting (a CI smoke run on the `tiny` preset, a laptop
`cpu-demo` run, a 150-epoch `paper` run on GPUs with torchrun):

* four-view batches from the identity sampler (P identities x K pairs);
* SGD with a 10x learning rate on BNNeck+classifier, warm-up then step decay;
* AMP + GradScaler on CUDA, plain fp32 on CPU;
* a checkpoint every epoch, written atomically, that resumes bit-exactly on CPU;
* model selection on held-out *training* identities, never on the test set unless
  asked (`select_on="test"`, labelled as peeking everywhere it is reported);
* a NaN/inf loss stops the run naming the step and the loss term; Ctrl-C saves a
  resumable checkpoint first.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from . import distributed as dist_utils
from . import runs
from .checkpoint import (atomic_torch_save, atomic_write_text, check_compatible, load_checkpoint,
                         rng_state, set_rng_state)
from .config import OptimConfig, TrainConfig, override, to_dict
from .console import progress, shown
from .data import (EvalSplit, IdentitySampler, TrainSplit, batch_size, data_identity, four_view_loader,
                   prepare_data, read_train)
from .evaluate import evaluate, evaluate_split_features, extract_features, fit_accuracy  # noqa: F401
from .losses import DJANetLoss
from .model import STEMS, DJANet
from .protocols import ProtocolResult, combine
from .runtime import load_model, resolve_device, set_threads  # noqa: F401  (load_model: kept importable here)
from .threads import timed_step, tuner_for


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or inf; the last good checkpoint is kept."""


@dataclass
class Run:
    """What `fit_or_load` hands back: where the run lives and what it learnt."""
    cfg: TrainConfig
    run_dir: Path
    checkpoint: Path          # last.pt: the final epoch
    best: Path                # best.pt: the epoch chosen on the selection split
    history: pd.DataFrame


def run_name(cfg: TrainConfig) -> str:
    if cfg.run_name:
        return cfg.run_name
    variant = "djanet" if (cfg.model.stems and cfg.model.align) else (
        "agw" if not (cfg.model.stems or cfg.model.align) else
        f"stems{int(cfg.model.stems)}-align{int(cfg.model.align)}")
    if not cfg.loss.complementary and variant == "djanet":
        variant += "-nocomp"
    name = f"{cfg.data.dataset}-{cfg.preset}-{variant}"
    if cfg.data.dataset == "regdb":
        name += f"-trial{cfg.data.trial}"
    if cfg.data.translated_root:
        name += "-translated"
    return name


def run_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.out_dir).expanduser() / run_name(cfg)


def lr_factor(epoch: float, optim: OptimConfig) -> float:
    """The learning rate over the base rate at `epoch` (cosine: fractional, steps done / steps per epoch).

    Both schedules warm up linearly from 0.1x over `warmup_epochs`. Then "step" (the paper, per
    epoch) multiplies by gamma at each milestone; "cosine" (per step) falls along half a cosine
    from 1 to `final_lr` at the end of the last epoch, so no stretch of training runs at a rate
    too high to settle or too low to move.
    """
    if epoch < optim.warmup_epochs:
        return 0.1 + 0.9 * epoch / optim.warmup_epochs
    if optim.schedule == "cosine":
        t = min(1.0, (epoch - optim.warmup_epochs) / max(optim.epochs - optim.warmup_epochs, 1e-9))
        return optim.final_lr + (1 - optim.final_lr) * 0.5 * (1 + math.cos(math.pi * t))
    return optim.gamma ** sum(epoch >= m for m in optim.milestones)


def _steps_per_epoch(sampler: IdentitySampler, cfg: TrainConfig) -> int:
    """Optimisation steps in one epoch: the sampler's batches, capped by `max_steps_per_epoch`."""
    steps = len(sampler) // batch_size(cfg.data)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch is not None else steps


def make_optimizer(model: DJANet, optim: OptimConfig) -> torch.optim.Optimizer:
    groups = model.param_groups(optim.lr, optim.head_lr)
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum,
                               weight_decay=optim.weight_decay, nesterov=True)
    # One fused kernel over all parameters instead of a Python loop: several times faster per update
    # of the cpu-demo DJANet on a 2-core CPU (`benchmarks/bench_train.py --optimizer` measures it).
    fused = all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.Adam(groups, lr=optim.lr, weight_decay=optim.weight_decay, fused=fused)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _loader(split: TrainSplit, cfg: TrainConfig, pairs: list[tuple[int, int]]) -> DataLoader:
    return four_view_loader(split, cfg.data, pairs, _cache_for(split, cfg),
                            pin_memory=torch.cuda.is_available())


def _cache_for(split: TrainSplit, cfg: TrainConfig):
    if not cfg.data.use_cache:
        return None
    from .data import cached_arrays
    return cached_arrays(split, cfg.data.img_size, cfg.data.cache_dir)


def _epoch_pairs(sampler: IdentitySampler, epoch: int, cfg: TrainConfig) -> list[tuple[int, int]]:
    sampler.set_epoch(epoch)
    pairs = list(sampler)
    if cfg.max_steps_per_epoch is not None:
        pairs = pairs[: cfg.max_steps_per_epoch * batch_size(cfg.data)]
    return pairs


def train_step(model: torch.nn.Module, loss_fn: DJANetLoss, batch: tuple, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None, device: torch.device, epoch: int | None = None
               ) -> dict[str, float]:
    """One optimisation step on a four-view batch; returns the named losses and the ID accuracy,
    of the whole batch (`acc`) and of each view (`acc_visible`, `acc_visible_aug`, ...)."""
    v1, v2, i1, i2, lv, li = (t.to(device, non_blocking=True) for t in batch)
    labels = torch.cat([lv, lv, li, li])
    amp = scaler is not None
    with torch.autocast(device_type=device.type, enabled=amp):
        out = model(v1, v2, i1, i2)
    # Losses in fp32: the triplet distances and the entropy weights are precision-sensitive.
    out = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in out.items()}
    losses = loss_fn(out, labels, epoch)
    bad = [k for k, v in losses.items() if not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteLossError(", ".join(f"{k}={losses[k].item()}" for k in bad))
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        losses["total"].backward()
        optimizer.step()
    stats = {f"loss_{k}": v.item() for k, v in losses.items()}
    named = (out["logits"].argmax(1) == labels).float()
    stats["acc"] = named.mean().item()
    # per view, named after the stem it trains: which augmentation the classifier finds hardest
    # (the four views are equal blocks of the batch; one transfer for all four)
    stats.update(zip((f"acc_{stem}" for stem in STEMS), named.view(len(STEMS), -1).mean(1).tolist()))
    return stats


def _selection_prefix(cfg: TrainConfig) -> str:
    """History columns say which split chose the model: `val_*`, or `test_peek_*` when peeking."""
    return "val" if cfg.select_on == "val" else "test_peek"


def _validate(model: DJANet, split, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    results = evaluate_split_features(model, split, cfg, device, trials=1)
    bn, p = results["bn"].mean, _selection_prefix(cfg)
    return {f"{p}_r1": bn["r1"], f"{p}_mAP": bn["mAP"], f"{p}_mINP": bn["mINP"]}


def check_same_data(saved: str | None, root: str | os.PathLike, path) -> None:
    """A finished or half-done run of other data is never continued or reused as if it were this one.

    `saved`: the data identity the run's checkpoint recorded (None: one from before runs recorded it).
    """
    if saved is not None and saved != data_identity(root):
        raise runs.RunExistsError(
            f"{shown(path)} was trained on data {saved!r}, but this run reads {data_identity(root)!r} "
            f"({shown(root)}): the synthetic generator or data_root changed since. Train into another "
            "run folder (run_name / out_dir), or start this one over (overwrite / --overwrite)")


def _checkpoint(model, optimizer, scheduler, scaler, cfg, num_classes, epoch, step, history, best,
                data: str) -> dict:
    inner = model.module if hasattr(model, "module") else model
    return {
        "model": inner.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
        "epoch": epoch, "step": step, "rng": rng_state(), "config": to_dict(cfg),
        "num_classes": num_classes, "history": history, "best": best, "data": data,
    }


def training_split(cfg: TrainConfig, root: str | os.PathLike) -> tuple[TrainSplit, EvalSplit | None]:
    """The identities `fit` trains on, and the ones it holds out for validation (None when
    selecting on the test set), read from the prepared dataset at `root`."""
    return read_train(cfg.data.dataset, root, trial=cfg.data.trial, holdout=cfg.select_on == "val",
                      val_fraction=cfg.data.val_fraction, seed=cfg.seed, max_ids=cfg.data.train_ids)


def training_fit(checkpoint: str | os.PathLike, device: str = "auto") -> dict[str, float]:
    """`evaluate.fit_accuracy` of a saved model on the training images of its own run, in percent:
    ``fit_visible``, ``fit_infrared`` and ``fit_all`` (every image counted once)."""
    model, cfg = load_model(checkpoint, device=device)
    split, _ = training_split(cfg, prepare_data(cfg))
    shares = fit_accuracy(model, split, cfg.data.img_size, next(model.parameters()).device)
    return {f"fit_{name}": 100 * share for name, share in shares.items()}


def fit(cfg: TrainConfig, resume: str | os.PathLike | None = None, overwrite: bool = False) -> pd.DataFrame:
    """Train `cfg` from scratch, or continue from `resume`; returns the per-epoch history.

    A run folder that already holds checkpoints is never trained over silently: without
    `resume` it raises `runs.RunExistsError`, unless `overwrite=True` deletes them first
    (`fit_or_load` and the `train` command continue a run instead; see djanet.runs).

    Writes `config.json`, `history.csv`/`history.json`, TensorBoard scalars and
    `checkpoints/last.pt` (every epoch) and `checkpoints/best.pt` under `run_dir(cfg)`.
    """
    world = dist_utils.setup()
    device = resolve_device(cfg.device) if not world.distributed else world.device
    set_threads(cfg.threads)
    out = run_dir(cfg)
    ckpt_dir = out / "checkpoints"
    if resume is None and not overwrite and runs.has_checkpoints(out):
        raise runs.RunExistsError(f"run folder {out} already holds checkpoints; pass resume=PATH to continue "
                                  "(or use fit_or_load), overwrite=True to start over, or another run_name")
    if world.is_main:
        if overwrite and resume is None:
            runs.clear_run(out)
        runs.clear_stale_temporaries(out)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=2))

    root = prepare_data(cfg)
    data = data_identity(root)          # recorded in every checkpoint, checked on resume
    split, val_split = training_split(cfg, root)
    if cfg.select_on == "test":
        from .data import read_test
        val_split = read_test(cfg.data.dataset, root, mode=cfg.data.mode, trial=cfg.data.trial)
    seed_everything(cfg.seed)
    model = DJANet.from_config(cfg.model, split.num_classes, cfg.data.img_size).to(device)
    loss_fn = DJANetLoss(cfg.loss)
    optimizer = make_optimizer(model, cfg.optim)
    sampler = IdentitySampler(split.visible.labels, split.infrared.labels, cfg.data.ids_per_batch,
                              cfg.data.num_pos, seed=cfg.seed, num_replicas=world.size, rank=world.rank)
    # "step" advances the scheduler once an epoch (its counter is the epoch), "cosine" once a step.
    per_step = cfg.optim.schedule == "cosine"
    steps = _steps_per_epoch(sampler, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i / steps if per_step else i, cfg.optim))
    scaler = torch.amp.GradScaler("cuda") if (cfg.optim.amp and device.type == "cuda") else None

    start_epoch, start_step, history, best = 0, 0, [], {"epoch": None, "r1": -1.0}
    resume_rng = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        check_compatible(ckpt, to_dict(cfg), split.num_classes, resume)
        check_same_data(ckpt.get("data"), root, resume)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_step = ckpt["epoch"], ckpt["step"]
        history, best = list(ckpt["history"]), dict(ckpt["best"])
        resume_rng = ckpt["rng"] if start_step else None
        if world.is_main:
            print(f"resuming {shown(resume)} at epoch {start_epoch + 1}, step {start_step}")
    train_model = world.wrap(model)

    writer = _tensorboard(cfg, out) if world.is_main else None
    selection = "val" if cfg.select_on == "val" else "test (peeking: selected on the test set)"
    if world.is_main:
        print(f"run folder: {shown(out)}  (checkpoints in checkpoints/; model selection on {selection})")

    # threads="auto" on CPU: the thread count is chosen from the measured step times (djanet.threads)
    tuner = tuner_for(cfg.threads, device)
    epoch, step, last_rng = start_epoch, start_step, rng_state()
    try:
        for epoch in range(start_epoch, cfg.optim.epochs):
            if step == 0:
                # Every epoch starts from an RNG state fixed by (seed, epoch): resume is exact.
                seed_everything(cfg.seed * 100_003 + epoch * 1_009 + world.rank)
            pairs = _epoch_pairs(sampler, epoch, cfg)
            loader = _loader(split, cfg, pairs[step * batch_size(cfg.data):])
            train_model.train()
            sums: dict[str, float] = {}
            n = 0
            t0 = time.perf_counter()
            batches = iter(loader)
            if resume_rng is not None:  # mid-epoch resume: the RNG as it was after the last finished step
                set_rng_state(resume_rng)
                resume_rng = None
            last_rng = rng_state()
            lr_used = optimizer.param_groups[0]["lr"]
            bar = progress(batches, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", total=len(loader), unit="steps",
                           disable=cfg.quiet or not world.is_main)
            for batch_data in bar:
                lr_used = optimizer.param_groups[0]["lr"]
                try:
                    with timed_step(tuner):
                        stats = train_step(train_model, loss_fn, batch_data, optimizer, scaler, device, epoch)
                except NonFiniteLossError as exc:
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {exc}; the run stopped and "
                        f"the last good checkpoint is {ckpt_dir / 'last.pt'}") from None
                if per_step:
                    scheduler.step()
                step += 1
                n += 1
                last_rng = rng_state()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(loss=f"{stats['loss_total']:.3f}", acc=f"{stats['acc']:.2f}")
            if not per_step:
                scheduler.step()
            row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr_used,
                                   "steps": n, "time_s": time.perf_counter() - t0,
                                   "threads": torch.get_num_threads()}
            row.update({k: v / max(n, 1) for k, v in sums.items()})
            row.update(world.average({k: row[k] for k in sums}))
            last_epoch = epoch + 1 == cfg.optim.epochs
            if val_split is not None and (last_epoch or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)):
                if world.is_main:
                    row.update(_validate(model, val_split, cfg, device))
            step = 0
            history.append(row)
            if world.is_main:
                score = row.get(f"{_selection_prefix(cfg)}_r1")
                improved = score is not None and score > best["r1"]
                if improved:
                    best = {"epoch": epoch + 1, "r1": score,
                            "selected_on": "val" if cfg.select_on == "val" else "test (peeking)"}
                ckpt = _checkpoint(model, optimizer, scheduler, scaler, cfg, split.num_classes,
                                   epoch + 1, 0, history, best, data)
                # best.pt first: a kill between the two writes leaves last.pt one epoch behind (both are
                # complete checkpoints; a re-run continues from the furthest), never best.pt behind the
                # best epoch that last.pt records.
                if improved or (val_split is None and last_epoch):
                    atomic_torch_save(ckpt, ckpt_dir / "best.pt")
                atomic_torch_save(ckpt, ckpt_dir / "last.pt")
                runs.write_history(out, history, writer)
            world.barrier()
    except KeyboardInterrupt:
        if world.is_main:
            path = ckpt_dir / "interrupted.pt"
            state = _checkpoint(model, optimizer, scheduler, scaler, cfg, split.num_classes,
                                epoch, step, history, best, data)
            state["rng"] = last_rng
            atomic_torch_save(state, path)
            print(f"\ninterrupted at epoch {epoch + 1}, step {step}; resume with --resume {path}")
        raise
    finally:
        if writer is not None:
            writer.close()
        world.cleanup()
    return pd.DataFrame(history)


def _tensorboard(cfg: TrainConfig, out: Path):
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: logs still go to CSV/JSON
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def is_complete(cfg: TrainConfig) -> bool:
    """True when the run's last checkpoint has reached the configured number of epochs."""
    path = run_dir(cfg) / "checkpoints" / "last.pt"
    return path.is_file() and runs.is_finished(load_checkpoint(path), cfg.optim.epochs)


def fit_or_load(cfg: TrainConfig) -> Run:
    """Train only when the run's final checkpoint is missing (continuing a partial run).

    A run folder whose checkpoints come from another configuration (a preset that changed since,
    say) raises `runs.RunExistsError` naming the differences: it is neither loaded as if it were
    this configuration's run nor continued.
    """
    out = run_dir(cfg)
    last, best = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    plan = runs.plan_run(cfg, out)      # whichever of last.pt / interrupted.pt / best.pt got furthest
    if plan.action == "finished":
        check_same_data(plan.data, prepare_data(cfg), plan.resume)
        history = plan.history
        if plan.resume != last:         # killed between the final best.pt and last.pt
            runs.complete_finished(out, plan)
    else:
        history = fit(cfg, resume=plan.resume)
    return Run(cfg=cfg, run_dir=out, checkpoint=last, best=best if best.is_file() else last,
               history=pd.DataFrame(history))


def regdb_all_trials(cfg: TrainConfig, trials=range(1, 11)) -> dict[str, ProtocolResult]:
    """RegDB's protocol: one model per trial (train split t, test split t), then mean and std."""
    per_key: dict[str, list[ProtocolResult]] = {}
    for t in trials:
        tcfg = override(cfg, **{"data.trial": t})
        run = fit_or_load(tcfg)
        for key, res in evaluate(tcfg, run.best).items():
            per_key.setdefault(key, []).append(res)
    return {key: combine(results) for key, results in per_key.items()}
