"""Forward+backward time of DJANet vs the AGW baseline, and the chunked scan vs the recurrence.

    python benchmarks/bench_model.py            # paper input: resnet50, 384x192
    python benchmarks/bench_model.py --small    # resnet18 at 128x64 (a laptop-CPU size), seconds

Both models are timed side by side in one run on the same device; the ratio is DJANet / AGW
(target <= 1.3). Parameter counts (held / used at inference without the classifier) are printed.
"""
from __future__ import annotations

import argparse
import time

import torch

from djanet.losses import DJANetLoss
from djanet.config import LossConfig
from djanet.mamba import selective_scan, selective_scan_ref


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def bench_models(arch, img_size, batch, device, repeats, align_dim, attn_heads, d_state):
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
            loss_fn(model(*views), labels)["total"].backward()
        results[name] = (timeit(step, device, repeats), model.parameter_counts())
        if name == "DJANet" and device.type == "cpu":
            # 'auto' runs the step-by-step scan on CPU (its small (b, d, n) state stays in cache);
            # the same model with the chunked scan shows what that choice saves here
            for m in model.modules():
                if hasattr(m, "backend"):
                    m.backend = "chunked"
            results["DJANet (chunked scan)"] = (timeit(step, device, repeats), model.parameter_counts())
    return results


def bench_scan(b, d, l, n, device, repeats):
    g = torch.Generator().manual_seed(0)
    def r(*s):
        return torch.randn(*s, generator=g).to(device).requires_grad_(True)
    u, delta, B, C = r(b, d, l), r(b, d, l), r(b, n, l), r(b, n, l)
    A = -torch.arange(1, n + 1.0, device=device).repeat(d, 1)
    out = {}
    for name, fn in [("chunked", lambda: selective_scan(u, delta, A, B, C, delta_softplus=True,
                                                        backend="chunked")),
                     ("naive", lambda: selective_scan_ref(u, delta, A, B, C, delta_softplus=True))]:
        out[name] = timeit(lambda: fn().square().sum().backward(), device, repeats)
    if device.type == "cuda":
        try:
            out["fused"] = timeit(lambda: selective_scan(u, delta, A, B, C, delta_softplus=True,
                                                         backend="fused").square().sum().backward(),
                                  device, repeats)
        except RuntimeError:
            pass
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="resnet18 at 128x64 (a laptop-CPU size)")
    p.add_argument("--batch", type=int, default=None, help="images per view (default 2 / 8 small)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.small:
        arch, img, dim, heads, ds = "resnet18", (128, 64), 64, 8, 16
    else:
        arch, img, dim, heads, ds = "resnet50", (384, 192), 256, 32, 64
    batch = args.batch or (8 if args.small else 2)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {arch} {img[0]}x{img[1]}, "
          f"{batch} images per view ({4 * batch} per step)")
    res = bench_models(arch, img, batch, device, args.repeats, dim, heads, ds)
    for name, (sec, counts) in res.items():
        print(f"{name:18s} fwd+bwd {sec * 1000:9.1f} ms   params held {counts['held'] / 1e6:6.2f}M "
              f"used (no classifier) {counts['used'] / 1e6:6.2f}M")
    for name in [k for k in res if k != "AGW"]:
        print(f"ratio {name} / AGW: {res[name][0] / res['AGW'][0]:.2f}x (target <= 1.3x)")
    positions = (-(-img[0] // 16)) * (-(-img[1] // 16))
    scan = bench_scan(4 * batch, 2 * dim, positions, ds, device, args.repeats)
    line = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in scan.items())
    print(f"selective scan fwd+bwd (b={4 * batch}, d_inner={2 * dim}, L={positions}, n={ds}): "
          f"{line}; naive / chunked = {scan['naive'] / scan['chunked']:.2f}x")


if __name__ == "__main__":
    main()
