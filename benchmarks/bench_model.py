"""Forward+backward time of DJANet vs the AGW baseline, and the selective-scan implementations.

    python benchmarks/bench_model.py                    # paper input: resnet50, 384x192
    python benchmarks/bench_model.py --small            # resnet18 at 128x64 (a laptop-CPU size)
    python benchmarks/bench_model.py --batch 32 --amp   # a GPU-sized step, mixed precision

All models are timed side by side in one run on the same device; the ratio is DJANet / AGW
(target <= 1.3). DJANet is timed once per scan backend that can run there (`auto` on the CPU,
plus `chunked` to show what that choice saves; on CUDA `fused` when mamba_ssm is importable,
`ref` and `recurrent`). Parameter counts (held / used at inference without the classifier)
and, on CUDA, peak memory are printed.
"""
from __future__ import annotations

import argparse
import time

import torch

from djanet import mamba
from djanet.config import LossConfig
from djanet.losses import DJANetLoss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, device: torch.device, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(median seconds of `fn()` over `repeats` runs after `warmup` runs, peak MiB on CUDA)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return sorted(times)[len(times) // 2], peak


def _set_backend(model: torch.nn.Module, backend: str) -> None:
    for m in model.modules():
        if isinstance(m, mamba.Mamba):
            m.backend = backend


def model_backends(device: torch.device) -> list[str]:
    if device.type == "cpu":
        return ["auto", "chunked"]
    # the chunked scan is left out here: 160x AGW at b=32 on an H200 (see the scan-alone table)
    return (["fused"] if mamba.has_fused_kernel() else []) + ["ref", "recurrent"]


def profile_step(step, device: torch.device, rows: int = 12) -> None:
    """Where one step's device time goes: the top kernels, and the selective scan's share."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    step()
    with profile(activities=acts) as prof:
        step()
        _sync(device)
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=key, row_limit=rows, max_name_column_width=70))
    if device.type == "cuda":   # kernels only: an op's self device time repeats its kernels'
        from torch.autograd import DeviceType
        times = [(e.name, e.device_time_total) for e in prof.events() if e.device_type == DeviceType.CUDA]
    else:
        times = [(e.key, e.self_cpu_time_total) for e in events]
    total = sum(t for _, t in times)
    scan = sum(t for name, t in times if "selective_scan" in name)
    print(f"{device.type} time of the step: {total / 1e3:.1f} ms, of which selective-scan kernels "
          f"{scan / 1e3:.1f} ms ({100 * scan / max(total, 1e-9):.0f}%)")


def bench_models(arch, img_size, batch, device, repeats, align_dim, attn_heads, d_state, amp,
                 profile=False):
    from djanet.model import DJANet
    loss_fn = DJANetLoss(LossConfig())
    views = [torch.randn(batch, 3, *img_size, device=device) for _ in range(4)]
    labels = torch.arange(batch, device=device).repeat(4) % max(2, batch // 2)
    results = {}
    for name, kw in [("AGW", dict(stems=False, align=False)), ("DJANet", {})]:
        torch.manual_seed(0)
        model = DJANet(100, arch=arch, img_size=img_size, align_dim=align_dim,
                       attn_heads=attn_heads, d_state=d_state, **kw).to(device).train()

        def step(model=model):
            model.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, enabled=amp):
                out = model(*views)
            out = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                   for k, v in out.items()}
            loss_fn(out, labels)["total"].backward()
        for backend in (model_backends(device) if name == "DJANet" else ["-"]):
            label = name if backend == "-" else f"{name} ({backend} scan)"
            _set_backend(model, backend)
            try:
                results[label] = (*timeit(step, device, repeats), model.parameter_counts())
                if profile and backend == model_backends(device)[0]:
                    print(f"profile of one {label} step:")
                    profile_step(step, device)
            except torch.OutOfMemoryError:
                print(f"{label}: out of memory")
            torch.cuda.empty_cache() if device.type == "cuda" else None
        del model
    return results


def bench_scan(b, d, l, n, device, repeats):
    """Scan fwd+bwd alone for every backend that runs here; chunked at T = 4, 8, 16."""
    g = torch.Generator().manual_seed(0)

    def r(*s):
        return torch.randn(*s, generator=g).to(device).requires_grad_(True)
    u, delta, B, C = r(b, d, l), r(b, d, l), r(b, n, l), r(b, n, l)
    A = -torch.arange(1, n + 1.0, device=device).repeat(d, 1)
    runs = [("ref", "ref", {}), ("recurrent", "recurrent", {})]
    runs += [(f"chunked T={t}", "chunked", {"chunk": t}) for t in (4, 8, 16)]
    if device.type == "cuda" and mamba.has_fused_kernel():
        runs.append(("fused", "fused", {}))
    out = {}
    for label, backend, kw in runs:
        def step(backend=backend, kw=kw):
            y = mamba.selective_scan(u, delta, A, B, C, delta_softplus=True, backend=backend, **kw)
            y.square().sum().backward()
        try:
            out[label] = timeit(step, device, repeats)
        except torch.OutOfMemoryError:
            out[label] = (float("nan"), float("nan"))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def _peak(mib: float) -> str:
    return "" if mib != mib else f"  peak {mib:8.0f} MiB"   # NaN on the CPU: not measured


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="resnet18 at 128x64 (a laptop-CPU size)")
    p.add_argument("--batch", type=int, default=None, help="images per view (default 2 / 8 small)")
    p.add_argument("--scan-batch", type=int, nargs="*", default=None,
                   help="batch sizes of the scan-alone comparison (default: the model's 4 x batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA), as training does")
    p.add_argument("--no-scan", action="store_true", help="skip the scan-alone comparison")
    p.add_argument("--profile", action="store_true", help="print where one DJANet step's time goes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.small:
        arch, img, dim, heads, ds = "resnet18", (128, 64), 64, 8, 16
    else:
        arch, img, dim, heads, ds = "resnet50", (384, 192), 256, 32, 64
    batch = args.batch or (8 if args.small else 2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"mamba_ssm fused kernel: {mamba.has_fused_kernel()}; {arch} {img[0]}x{img[1]}, "
          f"{batch} images per view ({4 * batch} per step), amp {args.amp}")
    res = bench_models(arch, img, batch, device, args.repeats, dim, heads, ds, args.amp, args.profile)
    for label, (sec, peak, counts) in res.items():
        print(f"{label:26s} fwd+bwd {sec * 1000:9.1f} ms{_peak(peak)}  params held "
              f"{counts['held'] / 1e6:6.2f}M used (no classifier) {counts['used'] / 1e6:6.2f}M")
    for label in [k for k in res if k != "AGW"]:
        print(f"ratio {label} / AGW: {res[label][0] / res['AGW'][0]:.2f}x (target <= 1.3x)")
    positions = (-(-img[0] // 16)) * (-(-img[1] // 16))
    for b in [] if args.no_scan else (args.scan_batch or [4 * batch]):
        scan = bench_scan(b, 2 * dim, positions, ds, device, args.repeats)
        print(f"selective scan fwd+bwd (b={b}, d_inner={2 * dim}, L={positions}, n={ds}):")
        for label, (sec, peak) in scan.items():
            print(f"  {label:13s} {sec * 1000:9.1f} ms{_peak(peak)}")


if __name__ == "__main__":
    main()
