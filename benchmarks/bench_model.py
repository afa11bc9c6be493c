"""Forward+backward time of DJANet vs the AGW baseline, per treatment, and the selective-scan implementations.

    python benchmarks/bench_model.py                    # paper input: resnet50, 384x192
    python benchmarks/bench_model.py --small            # resnet18 at 128x64 (a laptop-CPU size)
    python benchmarks/bench_model.py --batch 32 --amp   # a GPU-sized step, mixed precision
    python benchmarks/bench_model.py --batch 32 --amp --treatments eager channels_last bf16 compile
    python benchmarks/bench_model.py --tiny --treatments eager bf16 --no-scan   # a seconds-long CPU smoke run

All models are timed side by side in one run on the same device; the ratio is DJANet / AGW
(target <= 1.3). Under the `eager` treatment DJANet is timed once per scan backend that can run
there (`auto` on the CPU, the adjoint scan, plus `ref` and `chunked` to show what that choice
saves; on CUDA `fused` when mamba_ssm is importable, `ref`, `adjoint` and `recurrent`;
`--scan-backends` narrows this). Every other treatment gives AGW and DJANet (scan `auto`) the same change:

* `channels_last`: weights and inputs in NHWC memory order (what cuDNN's fast convs prefer);
* `bf16`: autocast to bfloat16 instead of float16 (or float32 without --amp);
* `compile-align`: torch.compile of DJANet's align module (AGW has none: it runs as in eager);
* `compile`: torch.compile of the whole model;
* `reduce-overhead`: the whole model compiled with mode="reduce-overhead" (CUDA graphs);
* `cuda-graph`: the eager forward and backward captured once with torch.cuda.make_graphed_callables.

Treatments combine with '+', e.g. `channels_last+bf16+compile`. One that cannot run here (CUDA
graphs on a CPU, a compile of the pure-PyTorch scan's long loop) is skipped with the reason
printed, as is one that fails. The first call's time is printed apart (it holds the compile).
FLOPs per image are counted with torch.utils.flop_counter (forward; matmuls, convolutions and
attention, so the selective scan's own arithmetic is not included). `--json` writes every number.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace

import torch

from djanet import mamba
from djanet.config import LossConfig
from djanet.losses import DJANetLoss

SIZES = {  # arch, (H, W), align_dim, attn_heads, d_state
    "paper": ("resnet50", (384, 192), 256, 32, 64),
    "small": ("resnet18", (128, 64), 64, 8, 16),
    "tiny": ("resnet18", (64, 32), 32, 4, 8),
}
MODELS = {"AGW": dict(stems=False, align=False), "DJANet": {}}
COMPILE_MAX_POSITIONS = 64   # above this a compile would unroll the pure-PyTorch scan's per-step loop


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


def model_backends(device: torch.device) -> list[str]:
    if device.type == "cpu":
        return ["auto", "ref", "chunked"]
    # the chunked scan is left out here: 160x AGW at b=32 on an H200 (see the scan-alone table)
    return (["fused"] if mamba.has_fused_kernel() else []) + ["ref", "adjoint", "recurrent"]


@dataclass(frozen=True)
class Treatment:
    """What is done to both models before timing (see the module docstring)."""
    channels_last: bool = False
    bf16: bool = False
    compile: str | None = None          # None | "align" | "model"
    compile_mode: str | None = None     # None (torch's default) | "reduce-overhead"
    cuda_graph: bool = False


TREATMENT_PARTS = {
    "eager": {}, "channels_last": {"channels_last": True}, "bf16": {"bf16": True},
    "compile-align": {"compile": "align"}, "compile": {"compile": "model"},
    "reduce-overhead": {"compile": "model", "compile_mode": "reduce-overhead"},
    "cuda-graph": {"cuda_graph": True},
}


def parse_treatment(name: str) -> Treatment:
    """'channels_last+bf16+compile' -> Treatment; unknown parts raise, naming the valid ones."""
    t = Treatment()
    for part in name.split("+"):
        if part not in TREATMENT_PARTS:
            raise ValueError(f"unknown treatment {part!r} in {name!r}; valid: {', '.join(TREATMENT_PARTS)}")
        t = replace(t, **TREATMENT_PARTS[part])
    if t.cuda_graph and t.compile:
        raise ValueError(f"{name!r}: cuda-graph captures the eager model; use reduce-overhead for a compiled one")
    return t


def unsupported(t: Treatment, device: torch.device, positions: int, fused_scan: bool) -> str | None:
    """Why a treatment cannot run here, or None when it can."""
    if (t.cuda_graph or t.compile_mode == "reduce-overhead") and device.type != "cuda":
        return "CUDA graphs need CUDA"
    if t.compile and not fused_scan and positions > COMPILE_MAX_POSITIONS:
        return (f"torch.compile would unroll the pure-PyTorch scan over {positions} positions "
                "(minutes of compiling); install mamba_ssm for the fused kernel")
    return None


class _Outputs(torch.nn.Module):
    """The model with a tuple of tensors out, as make_graphed_callables needs."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *views):
        out = self.model(*views)
        return out["pool"], out["logits"], out["feat_map"]


def make_step(model, views, labels, loss_fn, t: Treatment, amp: bool, device: torch.device,
              compile_backend: str = "inductor"):
    """One forward+backward of `model` under treatment `t`, as a callable."""
    dtype = torch.bfloat16 if (t.bf16 or device.type == "cpu") else torch.float16
    autocast = dict(device_type=device.type, dtype=dtype, enabled=amp or t.bf16,
                    cache_enabled=not t.cuda_graph)   # graph capture needs autocast's cache off
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    forward = model
    if t.compile == "align" and model.align is not None:
        model.align = torch.compile(model.align, backend=compile_backend, mode=t.compile_mode)
    elif t.compile == "model":
        forward = torch.compile(model, backend=compile_backend, mode=t.compile_mode)
    elif t.cuda_graph:
        with torch.autocast(**autocast):
            graphed = torch.cuda.make_graphed_callables(_Outputs(model), tuple(views))

        def forward(*v):
            pool, logits, feat_map = graphed(*v)
            return {"pool": pool, "logits": logits, "feat_map": feat_map}

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(**autocast):
            out = forward(*views)
        out = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
               for k, v in out.items()}
        loss_fn(out, labels)["total"].backward()
    return step


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
    layout = sum(t for name, t in times if "nchwToNhwc" in name or "nhwcToNchw" in name)
    print(f"{device.type} time of the step: {total / 1e3:.1f} ms, of which selective-scan kernels "
          f"{scan / 1e3:.1f} ms ({100 * scan / max(total, 1e-9):.0f}%), layout conversions "
          f"(nchwToNhwc/nhwcToNchw) {layout / 1e3:.1f} ms")


def _model(name, size, device):
    from djanet.model import DJANet
    arch, img, dim, heads, ds = size
    torch.manual_seed(0)
    return DJANet(100, arch=arch, img_size=img, align_dim=dim, attn_heads=heads, d_state=ds,
                  **MODELS[name]).to(device).train()


def flops_per_image(size, device) -> dict[str, float]:
    """Forward FLOPs per image of each model (one image per view; the scan's own arithmetic not counted)."""
    from torch.utils.flop_counter import FlopCounterMode
    out = {}
    for name in MODELS:
        model = _model(name, size, device)
        views = [torch.randn(1, 3, *size[1], device=device) for _ in range(4)]
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*views)
        out[name] = counter.get_total_flops() / 4
        del model
    return out


def bench_treatment(t_name, size, batch, device, repeats, amp, backends, profile=False,
                    compile_backend="inductor") -> dict[str, dict]:
    """{model label: {ms, peak_mib, first_s} or {skipped: reason}} for one treatment."""
    t = parse_treatment(t_name)
    positions = (-(-size[1][0] // 16)) * (-(-size[1][1] // 16))
    loss_fn = DJANetLoss(LossConfig())
    views = [torch.randn(batch, 3, *size[1], device=device) for _ in range(4)]
    labels = torch.arange(batch, device=device).repeat(4) % max(2, batch // 2)
    results = {}
    for name in MODELS:
        for backend in (backends if name == "DJANet" else ["-"]):
            label = name if backend == "-" else f"{name} ({backend} scan)"
            fused = name == "AGW" or backend == "fused" or (
                backend == "auto" and device.type == "cuda" and mamba.has_fused_kernel())
            reason = unsupported(t, device, positions, fused)
            if reason:
                results[label] = {"skipped": reason}
                continue
            if t.compile:
                torch._dynamo.reset()
            try:
                model = _model(name, size, device)
                mamba.set_scan_backend(model, "auto" if backend == "-" else backend)
                step = make_step(model, views, labels, loss_fn, t, amp, device, compile_backend)
                _sync(device)
                t0 = time.perf_counter()
                step()
                _sync(device)
                first = time.perf_counter() - t0
                sec, peak = timeit(step, device, repeats, warmup=2)
                results[label] = {"ms": 1e3 * sec, "peak_mib": peak, "first_s": first,
                                  "params": model.parameter_counts()}
                if profile and backend in ("-", backends[0]):
                    print(f"profile of one {label} step ({t_name}):")
                    profile_step(step, device)
            except torch.OutOfMemoryError:
                results[label] = {"skipped": "out of memory"}
            except Exception as exc:   # a treatment that fails is reported, the others still run
                msg = str(exc).strip().splitlines()
                results[label] = {"skipped": f"failed: {type(exc).__name__}: {msg[0] if msg else ''}"[:300]}
            finally:
                model = step = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return results


def print_treatment(t_name: str, res: dict[str, dict], eager: dict[str, dict] | None) -> None:
    print(f"[{t_name}]")
    for label, r in res.items():
        if "skipped" in r:
            print(f"  {label:26s} skipped: {r['skipped']}")
            continue
        vs = ""
        if eager and "ms" in eager.get(label, {}) and t_name != "eager":
            vs = f"  speed-up over eager {eager[label]['ms'] / r['ms']:.2f}x"
        elif t_name == "eager":
            vs = (f"  params held {r['params']['held'] / 1e6:6.2f}M used (no classifier) "
                  f"{r['params']['used'] / 1e6:6.2f}M")
        print(f"  {label:26s} fwd+bwd {r['ms']:9.1f} ms{_peak(r['peak_mib'])}  first call "
              f"{r['first_s']:6.1f} s{vs}")
    agw = res.get("AGW", {}).get("ms")
    for label, r in res.items():
        if label != "AGW" and "ms" in r and agw:
            print(f"  ratio {label} / AGW: {r['ms'] / agw:.2f}x (target <= 1.3x)")


def bench_scan(b, d, l, n, device, repeats):
    """Scan fwd+bwd alone for every backend that runs here; chunked at T = 4, 8, 16."""
    g = torch.Generator().manual_seed(0)

    def r(*s):
        return torch.randn(*s, generator=g).to(device).requires_grad_(True)
    u, delta, B, C = r(b, d, l), r(b, d, l), r(b, n, l), r(b, n, l)
    A = -torch.arange(1, n + 1.0, device=device).repeat(d, 1)
    runs = [("ref", "ref", {}), ("adjoint", "adjoint", {}), ("recurrent", "recurrent", {})]
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


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size_arg = p.add_mutually_exclusive_group()
    size_arg.add_argument("--small", action="store_true", help="resnet18 at 128x64 (a laptop-CPU size)")
    size_arg.add_argument("--tiny", action="store_true", help="resnet18 at 64x32 (a seconds-long smoke run)")
    p.add_argument("--batch", type=int, default=None, help="images per view (default 2 / 8 small)")
    p.add_argument("--scan-batch", type=int, nargs="*", default=None,
                   help="batch sizes of the scan-alone comparison (default: the model's 4 x batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA), as training does")
    p.add_argument("--treatments", nargs="+", default=["eager"], metavar="T",
                   help=f"what to time, each for both models; parts {', '.join(TREATMENT_PARTS)}, "
                        "joined with '+'")
    p.add_argument("--scan-backends", nargs="+", default=None, choices=mamba.BACKENDS,
                   help="DJANet's scans under the eager treatment (default: those that run here)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: trace only)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument("--no-scan", action="store_true", help="skip the scan-alone comparison")
    p.add_argument("--profile", nargs="*", default=None, metavar="T",
                   help="print where one step's time goes, for each model, under these treatments "
                        "(none named: the first)")
    p.add_argument("--json", default=None, help="write every number to this file")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    treatments = list(dict.fromkeys(args.treatments))
    for name in treatments:
        parse_treatment(name)                      # a typo fails before anything is timed
    profiled = [] if args.profile is None else (args.profile or treatments[:1])
    device = torch.device(args.device)
    size = SIZES["small" if args.small else "tiny" if args.tiny else "paper"]
    arch, img, dim, heads, ds = size
    batch = args.batch or (2 if size == SIZES["paper"] else 8)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"device": name, "torch": torch.__version__, "fused_scan": mamba.has_fused_kernel(),
              "arch": arch, "img_size": list(img), "images_per_step": 4 * batch, "amp": args.amp,
              "treatments": {}}
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"mamba_ssm fused kernel: {mamba.has_fused_kernel()}; {arch} {img[0]}x{img[1]}, "
          f"{batch} images per view ({4 * batch} per step), amp {args.amp}", flush=True)

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)

    if not args.no_flops:
        flops = flops_per_image(size, device)
        report["gflops_per_image"] = {k: v / 1e9 for k, v in flops.items()}
        print(f"forward GFLOPs per image (scan arithmetic not counted): AGW {flops['AGW'] / 1e9:.2f}, "
              f"DJANet {flops['DJANet'] / 1e9:.2f}, ratio {flops['DJANet'] / flops['AGW']:.2f}x", flush=True)
        save()
    for t_name in treatments:
        backends = (args.scan_backends or model_backends(device)) if t_name == "eager" else ["auto"]
        res = bench_treatment(t_name, size, batch, device, args.repeats, args.amp, backends,
                              t_name in profiled, args.compile_backend)
        report["treatments"][t_name] = res
        print_treatment(t_name, res, report["treatments"].get("eager"))
        save()
    positions = (-(-img[0] // 16)) * (-(-img[1] // 16))
    for b in [] if args.no_scan else (args.scan_batch or [4 * batch]):
        scan = bench_scan(b, 2 * dim, positions, ds, device, args.repeats)
        print(f"selective scan fwd+bwd (b={b}, d_inner={2 * dim}, L={positions}, n={ds}):")
        for label, (sec, peak) in scan.items():
            print(f"  {label:13s} {sec * 1000:9.1f} ms{_peak(peak)}")
        report.setdefault("scan_ms", {})[str(b)] = {k: 1e3 * v[0] for k, v in scan.items()}
        save()
    return report


if __name__ == "__main__":
    main()
