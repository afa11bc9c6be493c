"""Every GPU measurement of the project in one call, within a time budget (`make gpu-check`).

    python benchmarks/gpu_check.py [--out DIR] [--work DIR] [--budget 480] [--dry-run]

A lent GPU gives 15 minutes in all, start included, so this runs in about 8. Each step is a
process of its own with its own timeout (cut to what is left of `--budget`), so a hang costs
that step, not the session; steps run cheapest and surest first:

1. tests:   tests/test_cuda.py and tests/test_mamba.py;
2. model:   bench_model at 384x192, 128 images, AMP: FLOPs per image, then AGW and DJANet under
            eager and channels_last (both profiled), bf16, channels_last+bf16 and cuda-graph;
3. loader:  bench_train on the gpu-demo preset: the loader (0/4/8/16 workers, memmap cache or
            image files) against the DJANet training step, with the verdict keeps up / starves;
4. demo:    bench_learning on gpu-demo, one epoch of each model and the test evaluation: the
            seconds a training step takes inside the book's loop (data, AMP, optimiser);
5. compile: bench_model under compile-align, compile, reduce-overhead, channels_last+bf16+compile.

Results go to `--out` (default: $OUT when set, else runs/gpu-check): one log per step, the
benchmarks' JSON/CSV, `summary.json` (each step's status, seconds and timeout) and `summary.md`
(the numbers for the book, with the card's name). Large files (synthetic data, array cache,
checkpoints) go to `--work`. Without CUDA it says so and exits with status 2, running nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PY = sys.executable
MODEL_ARGS = ["--batch", "32", "--amp", "--repeats", "5", "--no-scan", "--scan-backends", "auto", "adjoint"]
EAGER_TREATMENTS = ["eager", "channels_last", "bf16", "channels_last+bf16", "cuda-graph"]
COMPILE_TREATMENTS = ["compile-align", "compile", "reduce-overhead", "channels_last+bf16+compile"]


def plan(out: Path, work: Path) -> list[tuple[str, list[str], int]]:
    """(name, command, timeout in seconds) of each step, in order."""
    return [
        ("tests", [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py",
                   "tests/test_mamba.py"], 100),
        ("model", [PY, str(BENCH / "bench_model.py"), *MODEL_ARGS, "--profile", "eager", "channels_last", "--treatments",
                   *EAGER_TREATMENTS, "--json", str(out / "model.json")], 70),
        ("loader", [PY, str(BENCH / "bench_train.py"), "--preset", "gpu-demo", "--steps", "5",
                    "--workers", "0", "4", "8", "16", "--cache", "both", "--loader-batches", "24",
                    "--set", f"data.cache_dir={work / 'cache'}", "--json", str(out / "loader.json")], 90),
        ("demo", [PY, str(BENCH / "bench_learning.py"), "--preset", "gpu-demo", "--seeds", "0",
                  "--epochs", "1", "--device", "cuda", "--out", str(work)], 100),
        ("compile", [PY, str(BENCH / "bench_model.py"), *MODEL_ARGS, "--no-flops", "--treatments",
                     *COMPILE_TREATMENTS, "--json", str(out / "model_compile.json")], 120),
    ]


def run_step(name: str, cmd: list[str], timeout: float, out: Path) -> dict:
    """Run one step into out/<name>.log; on timeout its whole process group is ended."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc, timed_out = proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, timed_out = proc.wait(), True
            log.write(f"\n[gpu-check] {name}: stopped after its timeout of {timeout:.0f} s\n")
    return {"rc": rc, "timed_out": timed_out, "seconds": round(time.perf_counter() - t0, 1),
            "timeout": round(timeout)}


def environment() -> dict:
    sys.path.insert(0, str(ROOT))   # djanet from this checkout when it is not installed
    import torch
    from djanet import mamba
    info = {"torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0), "fused_scan": mamba.has_fused_kernel()}
    try:
        from importlib.metadata import version
        info["mamba_ssm"] = version("mamba_ssm")
    except Exception:
        info["mamba_ssm"] = None
    return info


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary_markdown(env: dict, steps: dict, out: Path) -> str:
    """The measured numbers as tables (only what the steps wrote; nothing estimated here)."""
    lines = [f"# gpu-check on {env['device']}", "",
             f"torch {env['torch']}, CUDA {env['cuda']}, mamba_ssm {env['mamba_ssm']} "
             f"(fused scan used: {env['fused_scan']})", "",
             "| step | status | seconds | timeout |", "|---|---|---|---|"]
    for name, s in steps.items():
        status = s.get("skipped") or ("timed out" if s["timed_out"] else ("ok" if s["rc"] == 0 else f"exit {s['rc']}"))
        lines.append(f"| {name} | {status} | {s['seconds']} | {s['timeout']} |")
    model = _load(out / "model.json") or {}
    compiled = _load(out / "model_compile.json") or {}
    if model.get("gflops_per_image"):
        g = model["gflops_per_image"]
        lines += ["", f"Forward GFLOPs per image at {model['img_size'][0]}x{model['img_size'][1]} "
                      f"(scan arithmetic not counted): AGW {g['AGW']:.2f}, DJANet {g['DJANet']:.2f}, "
                      f"ratio {g['DJANet'] / g['AGW']:.2f}x"]
    treatments = {**model.get("treatments", {}), **compiled.get("treatments", {})}
    if treatments:
        lines += ["", f"Forward+backward, {model.get('images_per_step', 128)} images, AMP (ms, median):", "",
                  "| treatment | AGW | DJANet | DJANet / AGW | DJANet peak MiB | first call s |",
                  "|---|---|---|---|---|---|"]
        for t, res in treatments.items():
            agw = res.get("AGW", {})
            # one row per DJANet scan timed under the treatment ("DJANet (adjoint scan)" -> "eager, adjoint scan")
            scans = [(k, v) for k, v in res.items() if k.startswith("DJANet")] or [("DJANet", {})]
            for i, (key, dja) in enumerate(scans):
                label = t if i == 0 else f"{t}, {key.partition('(')[2].rstrip(')')}"
                if "ms" in agw and "ms" in dja:
                    lines.append(f"| {label} | {agw['ms']:.1f} | {dja['ms']:.1f} | {dja['ms'] / agw['ms']:.2f}x "
                                 f"| {dja['peak_mib']:.0f} | {dja['first_s']:.1f} |")
                else:
                    why = dja.get("skipped") or agw.get("skipped") or "not measured"
                    lines.append(f"| {label} | {agw.get('ms', '-')} | {dja.get('ms', '-')} | - | - | {why} |")
    loader = _load(out / "loader.json")
    if loader:
        lines += ["", f"Loader vs model, gpu-demo ({loader['images_per_step']} images a step at "
                      f"{loader['img_size'][0]}x{loader['img_size'][1]}): AGW step {loader['agw_s_per_step']:.3f} s, "
                      f"DJANet step {loader['djanet_s_per_step']:.3f} s "
                      f"({loader['images_per_step'] / loader['djanet_s_per_step']:.0f} images/s)", "",
                  "| workers | cache | first batch s | images/s | loader / model | verdict |",
                  "|---|---|---|---|---|---|"]
        for r in loader["loader"]:
            lines.append(f"| {r['workers']} | {'yes' if r['cache'] else 'no'} | {r['first_batch_s']:.2f} | "
                         f"{r['images_per_s']:.0f} | {r['loader_over_model']:.2f}x | {r['verdict']} |")
    demo = sorted(out.glob("demo_runs.csv"))
    if demo:
        lines += ["", "gpu-demo, one epoch per model (bench_learning; train s excludes evaluation):", "",
                  "```", demo[0].read_text().strip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu-check", help="results folder")
    p.add_argument("--work", default="/tmp/djanet-gpu-check", help="large files: data, caches, checkpoints")
    p.add_argument("--budget", type=float, default=480, help="seconds for all steps together")
    p.add_argument("--only", nargs="+", default=None, help="run only these steps")
    p.add_argument("--dry-run", action="store_true", help="print the steps and their timeouts; run nothing")
    a = p.parse_args(argv)
    out, work = Path(a.out).resolve(), Path(a.work).resolve()
    steps = [s for s in plan(out, work) if a.only is None or s[0] in a.only]
    if a.dry_run:
        for name, cmd, timeout in steps:
            print(f"{name:8s} {timeout:4d} s  {' '.join(cmd)}")
        print(f"total of the timeouts {sum(s[2] for s in steps)} s; budget {a.budget:.0f} s")
        return 0
    import torch
    if not torch.cuda.is_available():
        print(f"gpu-check needs CUDA, and torch {torch.__version__} sees no GPU here "
              f"(built with CUDA {torch.version.cuda}); nothing was run or measured.", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"gpu-check on {env['device']} (torch {env['torch']}, fused scan {env['fused_scan']}); "
          f"results in {out}", flush=True)
    start, results = time.perf_counter(), {}
    for name, cmd, timeout in steps:
        left = a.budget - (time.perf_counter() - start)
        if left < 10:
            results[name] = {"rc": None, "timed_out": False, "seconds": 0, "timeout": 0, "skipped": "no budget left"}
            continue
        print(f"== {name} (timeout {min(timeout, left):.0f} s)", flush=True)
        results[name] = run_step(name, cmd, min(timeout, left), out)
        print(f"   {results[name]}", flush=True)
        if name == "demo":   # keep the small tables, leave the checkpoints in --work
            for f in work.glob("*-gpu-demo-data0/*.csv"):
                shutil.copy(f, out / f"demo_{f.name}")
        (out / "summary.json").write_text(json.dumps({"environment": env, "steps": results}, indent=1))
    (out / "summary.md").write_text(summary_markdown(env, results, out))
    print((out / "summary.md").read_text())
    return 0 if all(r.get("rc") == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
