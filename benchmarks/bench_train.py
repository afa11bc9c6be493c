"""Training throughput of a preset: AGW vs DJANet, the data loader vs the model, threads.

    python benchmarks/bench_train.py [--preset cpu-demo] [--steps 6] [--device auto] [--threads]
    python benchmarks/bench_train.py --preset gpu-demo --workers 0 4 8 16 --cache both   # loader vs model

Both models and the loader are measured in this one run, side by side, so the
ratios are comparable.  Images/second counts all four views (4 x P x K images per
step).  The loader is measured on its own, as training builds it (the preset's
`data.workers` processes, the memory-mapped cache when `data.use_cache`, pinned memory
on CUDA), iterating batches without the model: after its first batch (printed apart:
every epoch pays it, the workers start anew) and the batches its workers had ready by
then, its steady rate.  That rate is compared with the DJANet training step's
(optimiser and AMP included): the loader keeps up when it delivers images at least as
fast as the model consumes them, and otherwise starves it.  `--workers` and `--cache`
sweep the loader's settings side by side.

`--threads` also times the DJANet step with one torch thread and with torch's default (one per
core), each on an idle machine and beside a busy neighbour (a second process multiplying
matrices on one thread), side by side, and "auto" (djanet.threads.ThreadTuner choosing between
them from measured step times, probes included): the reason the small presets set `threads="auto"`.

`--optimizer` times Adam's update alone on the DJANet parameters (random gradients): torch's
per-parameter loop, `foreach` and `fused` side by side; `make_optimizer` uses the fused one.

`--breakdown` splits a training step, per model, into data (augmenting and collating the batch in
this process, as `data.workers=0` does), forward (model and losses), backward and optimizer, for
the eager step and for each treatment (channels_last; bfloat16 autocast where the CPU has
bfloat16 instructions; torch.compile; for DJANet the chunked scan, and the reference scan: the
plain autograd recurrence that the adjoint scan `auto` runs on a CPU replaced), side by side in
this one run, taking turns step by step.  It counts the step's FLOPs (torch's FlopCounterMode:
convolutions, matrix products and attention, what dominates; element-wise work is not counted)
and times a large float32 matrix product on the same threads, and prints achieved FLOP/s against
that peak.

`--parts` times the training step (model, losses, optimizer; one fixed batch) of AGW and of each
part of DJANet's feature level added in turn (the ablation study's variants: modality-specific
stems, the joint align module, the complementary loss), the variants taking turns step by step so
that a change in the machine's speed reaches all of them alike: what each part costs.

`--book DIR` (with `--breakdown` and `--parts`) writes the tables the book's CPU recipe appendix
shows: `machine.csv` (the CPU, its matrix-product peak, the FLOPs of a step), `step.csv` (the
breakdown, with each step's time at that peak: the floor no treatment can pass) and `parts.csv`.

`--overlap` times steps fed by the training loader itself, augmenting in this process
(`workers=0`) or in one worker process that prepares the next batch while the model computes,
each with one and two torch threads, side by side: whether overlapping the data with the step
pays on this machine's cores.
"""
from __future__ import annotations

import argparse
import ast
import json
import multiprocessing as mp
import os
import platform
import time
from functools import partial

import pandas as pd
import torch

from djanet import train as engine
from djanet.checkpoint import atomic_write_text
from djanet.config import agw_baseline, get_config, override
from djanet.data import (FourViewDataset, IdentitySampler, batch_size, cached_arrays, make_train_loader,
                         prepare_data, read_train)
from djanet.losses import DJANetLoss
from djanet.mamba import set_scan_backend
from djanet.model import DJANet
from djanet.runtime import resolve_device, set_threads
from djanet.study import VARIANTS
from djanet.threads import ThreadTuner, timed_step

TORCH_DEFAULT_THREADS = torch.get_num_threads()   # read before any preset changes it


def time_loader(split, cfg, batches: int, cache=None) -> tuple[float, float]:
    """(seconds to the first batch, steady seconds per batch) of the training loader of `cfg`.

    The first `workers` batches are produced in parallel during the start, so the steady rate is
    timed after them, over `batches` more (fewer when the epoch is shorter).
    """
    pin = torch.cuda.is_available() and resolve_device(cfg.device).type == "cuda"
    loader = make_train_loader(split, cfg.data, seed=0, cache=cache, pin_memory=pin)
    ready = max(1, cfg.data.workers)
    if len(loader) < ready + 1:
        raise ValueError(f"an epoch of {len(loader)} batches is too short to time {cfg.data.workers} "
                         "workers; use fewer workers or a larger training split")
    batches = min(batches, len(loader) - ready)
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t0
    for _ in range(ready - 1):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    steady = (time.perf_counter() - t0) / batches
    del it
    return first, steady


def loader_vs_model(split, cfg, model_s: float, images_per_step: int, workers: list[int],
                    caches: list[bool], batches: int) -> list[dict]:
    """One row per loader setting: its rate against the model's, and whether it keeps up."""
    rows = []
    for use_cache in caches:
        arrays = cached_arrays(split, cfg.data.img_size, cfg.data.cache_dir) if use_cache else None
        for w in workers:
            lcfg = override(cfg, **{"data.workers": w, "data.use_cache": use_cache})
            first, steady = time_loader(split, lcfg, batches, arrays)
            ratio = model_s / steady          # loader images/s over model images/s
            rows.append({"workers": w, "cache": use_cache, "first_batch_s": first, "s_per_batch": steady,
                         "images_per_s": images_per_step / steady, "loader_over_model": ratio,
                         "verdict": "loader keeps up" if ratio >= 1 else "loader starves the model"})
    return rows


def _training_parts(split, cfg, device):
    """(model, optimizer, loss) as training builds them, from seed 0."""
    engine.seed_everything(0)
    model = DJANet.from_config(cfg.model, split.num_classes, cfg.data.img_size).to(device).train()
    return model, engine.make_optimizer(model, cfg.optim), DJANetLoss(cfg.loss)


def time_steps(split, cfg, batch, steps: int, device, tuner: ThreadTuner | None = None) -> float:
    """Seconds per training step after one warm-up step; with a `tuner`, it picks the threads."""
    model, opt, loss_fn = _training_parts(split, cfg, device)
    scaler = torch.amp.GradScaler("cuda") if (cfg.optim.amp and device.type == "cuda") else None
    engine.train_step(model, loss_fn, batch, opt, scaler, device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        with timed_step(tuner):
            engine.train_step(model, loss_fn, batch, opt, scaler, device)
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


def time_optimizers(cfg, num_classes: int, device, steps: int) -> None:
    """Seconds per Adam update of the DJANet parameters: loop vs foreach vs fused, side by side."""
    model = DJANet.from_config(cfg.model, num_classes, cfg.data.img_size).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    rows = []
    for name, kw in (("loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        opt = torch.optim.Adam(model.param_groups(cfg.optim.lr, cfg.optim.head_lr), lr=cfg.optim.lr,
                               weight_decay=cfg.optim.weight_decay, **kw)
        for _ in range(3):
            opt.step()
        t = time.perf_counter()
        for _ in range(steps):
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rows.append((name, (time.perf_counter() - t) / steps))
    print(f"\nAdam update of {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M DJANet parameters:")
    for name, sec in rows:
        print(f"{name:10s}{1000 * sec:9.1f} ms{sec / rows[0][1]:8.2f}x of the loop")


def matmul_peak(n: int = 2048, repeats: int = 5, dtype=torch.float32) -> float:
    """FLOP/s of an n x n matrix product on torch's current threads (the best of `repeats`):
    what this machine's cores reach on the kind of arithmetic a training step is made of."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """Whether the CPU has bfloat16 arithmetic instructions (AVX-512 BF16 or AMX); without them
    bfloat16 is emulated and slower than float32."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (or the platform's processor string)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


TREATMENTS = {   # name -> (channels_last, autocast dtype, compile, scan backend)
    "eager": (False, None, False, None),
    "channels_last": (True, None, False, None),
    "bf16 autocast": (False, torch.bfloat16, False, None),
    "compile": (False, None, True, None),
    "chunked scan": (False, None, False, "chunked"),
    "reference scan": (False, None, False, "ref"),
}


def step_runner(split, cfg, pairs, device, treatment: str = "eager"):
    """(one, facts): `one()` runs a training step under `treatment` (a key of TREATMENTS) and
    returns the seconds of its phases (data, forward, backward, optimizer); `facts` holds the
    warm-up's seconds (one step, two for torch.compile, which compiles in the first) and the
    step's FLOPs (counted in one more step)."""
    from torch.utils.flop_counter import FlopCounterMode

    channels_last, dtype, compiled, backend = TREATMENTS[treatment]
    ds = FourViewDataset(split, cfg.data.img_size)
    model, opt, loss_fn = _training_parts(split, cfg, device)
    if backend is not None:
        set_scan_backend(model, backend)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)          # in place: the optimizer keeps its parameters
    forward = torch.compile(model) if compiled else model
    epoch = cfg.loss.triplet_warmup          # past the warm-up: every loss term is on

    def one(count_flops: bool = False):
        t0 = time.perf_counter()
        v1, v2, i1, i2, lv, li = torch.utils.data.default_collate([ds[p] for p in pairs])
        views = [v.to(device, memory_format=fmt) for v in (v1, v2, i1, i2)]
        labels = torch.cat([lv, lv, li, li]).to(device)
        t1 = time.perf_counter()
        counter = FlopCounterMode(display=False) if count_flops else None
        if counter is not None:
            counter.__enter__()
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = forward(*views)
        out = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in out.items()}
        total = loss_fn(out, labels, epoch)["total"]
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        total.backward()
        t3 = time.perf_counter()
        if counter is not None:
            counter.__exit__(None, None, None)
        opt.step()
        t4 = time.perf_counter()
        return (t1 - t0, t2 - t1, t3 - t2, t4 - t3), (counter.get_total_flops() if counter else None)

    warm = time.perf_counter()
    for _ in range(2 if compiled else 1):
        one()
    warm = time.perf_counter() - warm
    _, flops = one(count_flops=not compiled)
    return (lambda: one()[0]), {"treatment": treatment, "flops": flops, "warmup_s": warm}


def _median(values) -> float:
    """The middle value (the upper one of an even count): a measured time, never an average of two."""
    return sorted(values)[len(values) // 2]


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def take_turns(runs, steps: int) -> list[list]:
    """What each of `runs` (callables) returns, `steps` times each, the runs taking turns step by
    step, so that a change in the machine's speed during the measurement reaches all of them alike."""
    records = [[] for _ in runs]
    for _ in range(steps):
        for run, record in zip(runs, records):
            record.append(run())
    return records


def _phases(facts: dict, times: list) -> dict:
    med = [_median(col) for col in zip(*times)]
    return {**facts, "data_s": med[0], "forward_s": med[1], "backward_s": med[2], "optimizer_s": med[3],
            "step_s": sum(med)}


def step_phases(split, cfg, pairs, steps: int, device, treatment: str = "eager") -> dict:
    """Median seconds of each phase of a training step over `steps` steps under `treatment`,
    after its warm-up; also the step's FLOPs (see `step_runner`)."""
    one, facts = step_runner(split, cfg, pairs, device, treatment)
    return _phases(facts, [one() for _ in range(steps)])


def breakdown(split, cfg, pairs, steps: int, device) -> dict:
    """The phases of AGW's and DJANet's steps under every treatment that applies here, and the
    machine's float32 matrix-product peak on the same threads (CPU steps only: the phases are
    timed without waiting for a GPU). All the (model, treatment) steps are built and warmed up
    first, then take turns step by step, so a change in the machine's speed reaches all alike."""
    peak, bf16 = matmul_peak(), cpu_has_bf16()
    runners = []
    for label, mcfg in (("AGW", agw_baseline(cfg)), ("DJANet", cfg)):
        for treatment in TREATMENTS:
            if treatment == "bf16 autocast" and not bf16:
                continue
            if treatment.endswith(" scan") and not mcfg.model.align:
                continue
            runners.append((label, *step_runner(split, mcfg, pairs, device, treatment)))
    times = take_turns([one for _, one, _ in runners], steps)
    rows = [{"model": label, **_phases(facts, record)} for (label, _, facts), record in zip(runners, times)]
    flops = {r["model"]: r["flops"] for r in rows if r["treatment"] == "eager"}
    eager = {r["model"]: r["step_s"] for r in rows if r["treatment"] == "eager"}
    print(f"\nfloat32 matrix product (2048 x 2048) on {torch.get_num_threads()} threads: {peak / 1e9:.1f} GFLOP/s"
          + ("" if bf16 else "; no bfloat16 instructions on this CPU: bfloat16 autocast not timed"))
    print(f"{'model':8s}{'treatment':>15s}{'data':>8s}{'forward':>9s}{'backward':>10s}{'optim':>8s}{'step s':>9s}"
          f"{'vs eager':>10s}{'GFLOP/s':>9s}{'of peak':>9s}{'warm-up s':>11s}")
    for r in rows:
        achieved = flops[r["model"]] / r["step_s"]
        r.update(achieved_flops_per_s=achieved, of_peak=achieved / peak, speedup=eager[r["model"]] / r["step_s"])
        print(f"{r['model']:8s}{r['treatment']:>15s}{r['data_s']:8.3f}{r['forward_s']:9.3f}{r['backward_s']:10.3f}"
              f"{r['optimizer_s']:8.3f}{r['step_s']:9.3f}{r['speedup']:9.2f}x{achieved / 1e9:9.1f}"
              f"{100 * achieved / peak:8.1f}%{r['warmup_s']:11.1f}")
    for model, f in flops.items():
        print(f"{model}: {f / 1e9:.2f} GFLOP per step (forward, losses and backward)")
    return {"peak_flops_per_s": peak, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
            "cpu": cpu_model(), "bf16_instructions": bf16, "rows": rows}


def book_tables(report: dict) -> dict[str, pd.DataFrame]:
    """The three tables the book shows, as text, from a report with a breakdown and parts."""
    bd = report["breakdown"]
    peak, flops = bd["peak_flops_per_s"], {r["model"]: r["flops"] for r in bd["rows"] if r["treatment"] == "eager"}
    machine = pd.DataFrame([
        ("CPU", bd["cpu"]), ("cores", str(bd["cores"])), ("torch threads", str(bd["threads"])),
        ("float32 matrix product, GFLOP/s", f"{peak / 1e9:.0f}"),
        ("bfloat16 instructions", "yes" if bd["bf16_instructions"] else "no"),
        ("images per step", f"{report['images_per_step']} at {report['img_size'][0]}x{report['img_size'][1]}"),
        *((f"{model} GFLOP per step", f"{f / 1e9:.1f}") for model, f in flops.items())],
        columns=["quantity", "value"])
    step = pd.DataFrame([{
        "model": r["model"], "treatment": r["treatment"], "data s": f"{r['data_s']:.3f}",
        "forward s": f"{r['forward_s']:.3f}", "backward s": f"{r['backward_s']:.3f}",
        "optimizer s": f"{r['optimizer_s']:.3f}", "step s": f"{r['step_s']:.3f}",
        "vs eager": f"{r['speedup']:.2f}x", "GFLOP/s": f"{r['achieved_flops_per_s'] / 1e9:.0f}",
        "of peak": f"{100 * r['of_peak']:.0f}%", "step at peak s": f"{flops[r['model']] / peak:.3f}"}
        for r in bd["rows"]])
    parts = pd.DataFrame([{
        "variant": r["label"], "s/step": f"{r['s_per_step']:.3f}",
        "part adds s": "" if r["added_s"] is None else f"{r['added_s']:+.3f}",
        "vs AGW": f"{r['s_per_step'] / report['parts'][0]['s_per_step']:.2f}x"} for r in report["parts"]])
    return {"machine.csv": machine, "step.csv": step, "parts.csv": parts}


def write_book_tables(report: dict, folder: str) -> None:
    """`book_tables` into `folder`, each file written whole under a temporary name, then renamed."""
    tables = book_tables(report)
    for name, table in tables.items():
        atomic_write_text(os.path.join(folder, name), table.to_csv(index=False))
    print(f"written: {', '.join(os.path.join(folder, name) for name in tables)}")


def time_parts(split, cfg, batch, steps: int, device) -> list[dict]:
    """Median seconds per training step of the study's feature-level variants (AGW, + stems,
    + align, + complementary loss = DJANet), interleaved step by step after a warm-up step each."""
    names = ("agw", "stems", "stems-align", "djanet")
    timed_steps = []
    for name in names:
        model, opt, loss_fn = _training_parts(split, override(cfg, **dict(VARIANTS[name].switches)), device)
        step = partial(engine.train_step, model, loss_fn, batch, opt, None, device)
        step()                                                                          # warm-up
        timed_steps.append(partial(_seconds, step))
    times = dict(zip(names, take_turns(timed_steps, steps)))
    rows, previous = [], None
    print(f"\n{'variant':26s}{'s/step':>9s}{'part adds s':>13s}{'vs AGW':>9s}")
    for name in names:
        sec = _median(times[name])
        added = None if previous is None else sec - previous
        rows.append({"variant": name, "label": VARIANTS[name].label, "s_per_step": sec, "added_s": added})
        print(f"{VARIANTS[name].label:26s}{sec:9.3f}{'' if added is None else f'{added:+13.3f}':>13s}"
              f"{sec / rows[0]['s_per_step']:8.2f}x")
        previous = sec
    return rows


def fed_steps(split, cfg, workers: int, threads: int, steps: int, device) -> float:
    """Seconds per training step fed by `make_train_loader` with `workers` processes and `threads`
    torch threads, after three steps (the worker's start and the first batches)."""
    torch.set_num_threads(threads)
    cfg = override(cfg, **{"data.workers": workers})
    model, opt, loss_fn = _training_parts(split, cfg, device)
    batches = iter(make_train_loader(split, cfg.data, seed=0))
    if len(batches) < steps + 3:
        raise ValueError(f"an epoch of {len(batches)} batches is too short for {steps} + 3 steps")
    for _ in range(3):
        engine.train_step(model, loss_fn, next(batches), opt, None, device, epoch=cfg.loss.triplet_warmup)
    t = time.perf_counter()
    for _ in range(steps):
        engine.train_step(model, loss_fn, next(batches), opt, None, device, epoch=cfg.loss.triplet_warmup)
    return (time.perf_counter() - t) / steps


def overlap(split, cfg, steps: int, device) -> list[dict]:
    """fed_steps for AGW and DJANet, 0 or 1 loader worker, 1 or torch's default threads."""
    rows = []
    for label, mcfg in (("AGW", agw_baseline(cfg)), ("DJANet", cfg)):
        for workers in (0, 1):
            for threads in sorted({1, TORCH_DEFAULT_THREADS}, reverse=True):
                rows.append({"model": label, "workers": workers, "threads": threads,
                             "s_per_step": fed_steps(split, mcfg, workers, threads, steps, device)})
    set_threads(cfg.threads)
    print(f"\n{'model':8s}{'workers':>8s}{'threads':>8s}{'s/step':>9s}{'vs workers=0':>14s}")
    for r in rows:
        base = next(b["s_per_step"] for b in rows if b["model"] == r["model"] and b["workers"] == 0
                    and b["threads"] == r["threads"])
        print(f"{r['model']:8s}{r['workers']:8d}{r['threads']:8d}{r['s_per_step']:9.3f}{base / r['s_per_step']:13.2f}x")
    return rows


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", action="store_true", help="also compare thread counts, idle and busy")
    parser.add_argument("--optimizer", action="store_true", help="also time Adam: loop, foreach, fused")
    parser.add_argument("--overlap", action="store_true",
                        help="also time steps fed by the loader with 0 and 1 workers, 1 and default threads")
    parser.add_argument("--breakdown", action="store_true",
                        help="also split the step into data, forward, backward and optimizer, per treatment, "
                             "with its FLOPs against the machine's matrix-product peak")
    parser.add_argument("--parts", action="store_true",
                        help="also time the step of AGW and of each DJANet part added in turn (interleaved)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="loader worker counts to time (default: the preset's)")
    parser.add_argument("--cache", choices=("preset", "on", "off", "both"), default="preset",
                        help="time the loader reading the memory-mapped cache, the image files, or both")
    parser.add_argument("--loader-batches", type=int, default=24, help="batches of the steady loader rate")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set data.cache_dir=/tmp/c (repeatable)")
    parser.add_argument("--json", default=None, help="write every number to this file")
    parser.add_argument("--book", default=None, metavar="DIR",
                        help="write the book's tables (machine.csv, step.csv, parts.csv) to DIR; "
                             "needs --breakdown and --parts")
    args = parser.parse_args(argv)
    if args.book is not None and not (args.breakdown and args.parts):
        parser.error(f"--book {args.book}: the book's tables need --breakdown and --parts too")
    changes = dict(kv.split("=", 1) for kv in args.set)
    cfg = get_config(args.preset, device=args.device, **{k: _value(v) for k, v in changes.items()})
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if args.breakdown and device.type != "cpu":
        parser.error(f"--breakdown times CPU training steps; got device {device}: use --device cpu")
    # the split training reads (validation ids held out), so the array cache is the one it builds
    split, _ = read_train(cfg.data.dataset, prepare_data(cfg), trial=cfg.data.trial,
                          holdout=cfg.select_on == "val", val_fraction=cfg.data.val_fraction,
                          seed=cfg.seed, max_ids=cfg.data.train_ids)
    images_per_step = 4 * batch_size(cfg.data)

    sampler = IdentitySampler(split.visible.labels, split.infrared.labels, cfg.data.ids_per_batch,
                              cfg.data.num_pos, seed=0)
    pairs = list(sampler)[: batch_size(cfg.data)]
    ds = FourViewDataset(split, cfg.data.img_size)
    batch = torch.utils.data.default_collate([ds[p] for p in pairs])

    agw = agw_baseline(cfg)
    agw_s = time_steps(split, agw, batch, args.steps, device)
    dja_s = time_steps(split, cfg, batch, args.steps, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"preset={args.preset} device={device} ({name}) threads={torch.get_num_threads()} "
          f"batch={images_per_step} images ({cfg.data.img_size[0]}x{cfg.data.img_size[1]}), "
          f"amp {cfg.optim.amp and device.type == 'cuda'}")
    print(f"{'':24s}{'s/step':>10s}{'images/s':>12s}")
    print(f"{'AGW train step':24s}{agw_s:10.3f}{images_per_step / agw_s:12.1f}")
    print(f"{'DJANet train step':24s}{dja_s:10.3f}{images_per_step / dja_s:12.1f}")
    print(f"DJANet / AGW step time: {dja_s / agw_s:.2f}x")

    workers = args.workers or [cfg.data.workers]
    caches = {"preset": [cfg.data.use_cache], "on": [True], "off": [False], "both": [True, False]}[args.cache]
    rows = loader_vs_model(split, cfg, dja_s, images_per_step, workers, caches, args.loader_batches)
    print(f"\nloader against the DJANet step ({images_per_step / dja_s:.1f} images/s):")
    print(f"{'workers':>8s}{'cache':>7s}{'first batch s':>15s}{'s/batch':>9s}{'images/s':>10s}"
          f"{'loader/model':>14s}  verdict")
    for r in rows:
        print(f"{r['workers']:8d}{'yes' if r['cache'] else 'no':>7s}{r['first_batch_s']:15.2f}"
              f"{r['s_per_batch']:9.3f}{r['images_per_s']:10.1f}{r['loader_over_model']:13.2f}x  {r['verdict']}")
    report = {"preset": args.preset, "device": name, "images_per_step": images_per_step,
              "img_size": list(cfg.data.img_size), "agw_s_per_step": agw_s, "djanet_s_per_step": dja_s,
              "loader": rows}
    if args.threads:
        time_threads(split, cfg, batch, args.steps, device)
    if args.optimizer:
        time_optimizers(cfg, split.num_classes, device, 4 * args.steps)
    if args.breakdown:
        report["breakdown"] = breakdown(split, cfg, pairs, args.steps, device)
    if args.parts:
        report["parts"] = time_parts(split, cfg, batch, 2 * args.steps, device)
    if args.overlap:
        report["overlap"] = overlap(split, cfg, 4 * args.steps, device)
    if args.book is not None:
        write_book_tables(report, args.book)
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, args.json)
    return report


if __name__ == "__main__":
    main()
