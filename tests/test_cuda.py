"""The CUDA paths: scans on the GPU, the model against the CPU, AMP training, NCCL DDP.

Skipped where there is no CUDA (CI has none); on a GPU machine: `pytest tests/test_cuda.py`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from djanet import mamba
from djanet import train as engine
from djanet.cli import main as cli_main
from djanet.config import get_config
from djanet.losses import DJANetLoss
from djanet.model import DJANet
from djanet.runtime import load_model
from test_mamba import _inputs
from test_train import fixed_batch, torchrun_probe

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

ROOT = Path(__file__).resolve().parents[1]
CUDA_BACKENDS = ["ref", "adjoint", "recurrent", "chunked"] + (["fused"] if mamba.has_fused_kernel() else [])


@pytest.fixture(autouse=True)
def _no_tf32():
    """Compare in true float32: TF32 matmuls/convs would differ from the CPU by ~1e-3 relative."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("djanet-cache"))


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_scan_on_cuda_matches_the_float64_cpu_recurrence(backend):
    """Outputs and all eight gradients of each CUDA scan against the definition in float64."""
    x = _inputs(torch.float32, b=2, d=16, l=70, n=8)
    ref_in = {k: v.double().requires_grad_(True) for k, v in x.items()}
    ref = mamba.selective_scan_ref(**ref_in, delta_softplus=True)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(ref_in.values()))
    gpu_in = {k: v.cuda().requires_grad_(True) for k, v in x.items()}
    out = mamba.selective_scan(**gpu_in, delta_softplus=True, backend=backend)
    grads = torch.autograd.grad(out.square().sum(), list(gpu_in.values()))
    torch.testing.assert_close(out.double().cpu(), ref.detach(), rtol=1e-3, atol=1e-3)
    for name, g, gr in zip(gpu_in, grads, ref_grads):
        scale = gr.abs().max().item()
        err = (g.double().cpu() - gr).abs().max().item()
        assert err <= 1e-3 * max(1.0, scale), (name, err, scale)


def test_auto_picks_the_fused_kernel_when_installed_else_the_recurrence():
    u = torch.zeros(1, 4, 8, device="cuda")
    assert mamba.auto_backend(u, 16) == ("fused" if mamba.has_fused_kernel() else "ref")


@pytest.mark.skipif(not mamba.has_fused_kernel(), reason="needs mamba_ssm")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_kernel_takes_half_precision_inputs_as_autocast_gives_them(dtype):
    x = {k: v.cuda() for k, v in _inputs(torch.float32, b=2, d=16, l=70, n=8).items()}
    ref = mamba.selective_scan(**x, delta_softplus=True, backend="ref")
    half = {k: (v.to(dtype) if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}
    out = mamba.selective_scan(**half, delta_softplus=True, backend="fused")
    assert out.dtype == dtype
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < (2e-2 if dtype == torch.bfloat16 else 5e-3), err.item()


def test_model_on_cuda_gives_the_cpu_features():
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = DJANet.from_config(cfg.model, 10, cfg.data.img_size).eval()
    images = torch.randn(6, 3, *cfg.data.img_size, generator=torch.Generator().manual_seed(1))
    cpu = model.extract(images, "infrared")
    model.cuda()
    gpu = model.extract(images.cuda(), "infrared")
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4)
    with torch.autocast("cuda"):                      # half precision: same directions, roughly
        half = model.extract(images.cuda(), "infrared")
    for a, b in zip(cpu, half):
        assert torch.nn.functional.cosine_similarity(b.float().cpu(), a).min() > 0.99


def test_amp_training_step_learns_a_fixed_batch(cache_dir, tmp_path):
    cfg = get_config("tiny", cache_dir=cache_dir, out_dir=str(tmp_path), device="cuda",
                     lr=0.001, head_lr=0.01)
    split, batch = fixed_batch(cfg)
    engine.seed_everything(0)
    model = DJANet.from_config(cfg.model, split.num_classes, cfg.data.img_size).cuda().train()
    opt = engine.make_optimizer(model, cfg.optim)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = DJANetLoss(cfg.loss)
    # GradScaler starts at 2^16 and skips the first steps whose fp16 gradients overflow while it
    # halves the scale (6 on an H200); the CPU test's 12 steps are 12 updates, so give 30 here.
    totals = [engine.train_step(model, loss_fn, batch, opt, scaler, torch.device("cuda"))["loss_total"]
              for _ in range(30)]
    assert totals[-1] < 0.2 * totals[0], totals
    assert scaler.get_scale() > 0
    used = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert used and all(torch.isfinite(p.grad).all() for p in used)


def test_fit_with_amp_on_cuda_and_reload_the_checkpoint_on_the_cpu(cache_dir, tmp_path):
    cfg = get_config("tiny", cache_dir=cache_dir, out_dir=str(tmp_path), device="cuda", epochs=2,
                     run_name="gpu")
    history = engine.fit(cfg)
    assert len(history) == 2 and history["loss_total"].notna().all()
    last = tmp_path / "gpu" / "checkpoints" / "last.pt"
    assert torch.load(last, map_location="cpu", weights_only=False)["scaler"] is not None
    model_gpu, _ = load_model(last, device="cuda")
    model_cpu, _ = load_model(last, device="cpu")
    images = torch.randn(4, 3, *cfg.data.img_size, generator=torch.Generator().manual_seed(2))
    for a, b in zip(model_cpu.extract(images, "visible"), model_gpu.extract(images.cuda(), "visible")):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_torchrun_on_one_gpu_runs_nccl_ddp_like_a_single_process(cache_dir, tmp_path):
    common = ["--preset", "tiny", "--cache-dir", cache_dir, "--gpu", "0", "--out-dir", str(tmp_path),
              "--epochs", "3", "--max-steps", "3", "--no-eval", "--seed", "1", "--batch-size", "8"]
    assert "backend nccl cuda:0 1" in (printed := torchrun_probe(tmp_path, 29544)), printed
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29544"]
    subprocess.run([*run, "-m", "djanet", "train", *common, "--run-name", "ddp"], check=True,
                   timeout=600, env=os.environ)
    assert cli_main(["train", *common, "--run-name", "single"]) == 0
    ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    single = json.loads((tmp_path / "single" / "history.json").read_text())
    assert len(ddp) == len(single) == 3
    for a, b in zip(ddp, single):   # same data and seed; only GPU non-determinism differs
        assert a["loss_total"] == pytest.approx(b["loss_total"], rel=0.05)


def test_bench_model_treatments_run_on_cuda_at_tiny_size(tmp_path):
    """The treatments gpu-check times, at 64x32: each runs or names why it did not."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_model_cuda", ROOT / "benchmarks" / "bench_model.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    report = bench.main(["--tiny", "--batch", "2", "--repeats", "1", "--amp", "--no-scan", "--device", "cuda",
                         "--treatments", "eager", "channels_last+bf16", "cuda-graph",
                         "--json", str(tmp_path / "model.json")])
    for t in ("eager", "channels_last+bf16"):
        assert all("ms" in r for r in report["treatments"][t].values()), report["treatments"][t]
    for label, r in report["treatments"]["cuda-graph"].items():   # capture may fail; then it says how
        assert "ms" in r or r["skipped"].startswith("failed:"), (label, r)
    assert json.loads((tmp_path / "model.json").read_text())["device"] == torch.cuda.get_device_name(0)
