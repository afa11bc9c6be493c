"""The scan's precisions, the fused kernel's call and the block's initialisation, on the CPU.

The PyTorch scans compute in float32 at least and hand back the input's precision. The fused
branch must pass mamba_ssm's CUDA kernel its arguments in the precisions mamba_ssm's own block
uses; here a stand-in with the kernel's signature (a plain loop) takes the kernel's place, and a
tensor that reports itself as CUDA takes the branch, so the call is checked without a GPU.
The expected values come from `_plain_scan`, a loop written here that shares nothing with
`djanet.mamba`.
"""
from __future__ import annotations

import math
import types
import warnings

import pytest
import torch
import torch.nn.functional as F

import djanet.mamba as mamba_module
from djanet.mamba import Mamba, auto_backend, selective_scan, selective_scan_chunked, selective_scan_ref


def _plain_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """y[b, d, t] of the selective scan, one step at a time, in the inputs' own dtype."""
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    b, d, length = u.shape
    state = torch.zeros(b, d, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(length):
        state = torch.exp(delta[:, :, t, None] * A) * state \
            + delta[:, :, t, None] * u[:, :, t, None] * B[:, None, :, t]
        ys.append((state * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + D[None, :, None] * u
    if z is not None:
        y = y * z * torch.sigmoid(z)
    return y


def _inputs(seed=0, b=2, d=3, n=4, length=6):
    g = torch.Generator().manual_seed(seed)
    return dict(u=torch.randn(b, d, length, generator=g), delta=torch.randn(b, d, length, generator=g),
                A=-torch.rand(d, n, generator=g) - 0.5, B=torch.randn(b, n, length, generator=g),
                C=torch.randn(b, n, length, generator=g), D=torch.randn(d, generator=g),
                z=torch.randn(b, d, length, generator=g), delta_bias=0.1 * torch.randn(d, generator=g))


def _cast(inputs, dtype):
    return {k: v.to(dtype) for k, v in inputs.items()}


@pytest.mark.parametrize("backend", ["ref", "adjoint", "recurrent", "chunked"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_half_precision_inputs_are_scanned_in_float32_and_returned_in_their_precision(backend, with_bias):
    low = _cast(_inputs(), torch.bfloat16)
    if not with_bias:
        low["delta_bias"] = None
    out = selective_scan(**low, delta_softplus=True, backend=backend, chunk=4)
    assert out.dtype == torch.bfloat16
    wide = {k: (v.float() if v is not None else None) for k, v in low.items()}
    expected = _plain_scan(**wide, delta_softplus=True).to(torch.bfloat16)
    assert torch.equal(out, expected)


def test_a_half_precision_gate_is_applied_in_float32():
    x = _inputs(seed=1)
    z = x["z"].to(torch.bfloat16)
    out = selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], z=z, delta_softplus=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _plain_scan(**{**x, "delta_bias": None, "z": z.float()}, delta_softplus=True),
                               rtol=1e-5, atol=1e-6)
    wrong = _plain_scan(**{**x, "delta_bias": None, "z": None}, delta_softplus=True) * F.silu(z).float()
    assert not torch.allclose(out, wrong, rtol=1e-5, atol=1e-6)   # SiLU in bfloat16 is not what is asked


@pytest.mark.parametrize("backend", ["ref", "adjoint", "recurrent", "chunked"])
def test_the_scan_runs_in_the_inputs_precision_whatever_the_parameters(backend):
    """float32 u and delta with float64 A, B, C, D and delta bias: float32 throughout, exactly as
    if the parameters had been cast first."""
    x = _inputs(seed=6)
    mixed = {k: (v if k in ("u", "delta", "z") else v.double()) for k, v in x.items()}
    out = selective_scan(**mixed, delta_softplus=True, backend=backend, chunk=4)
    assert out.dtype == torch.float32
    assert torch.equal(out, selective_scan(**x, delta_softplus=True, backend=backend, chunk=4))


def test_float64_stays_float64():
    x = _cast(_inputs(seed=2), torch.float64)
    out = selective_scan(**x, delta_softplus=True, backend="ref")
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _plain_scan(**x, delta_softplus=True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["ref", "adjoint", "chunked"])
def test_the_scan_ignores_an_enclosing_autocast(backend):
    x = _inputs(seed=3, length=8)
    plain = selective_scan(**x, delta_softplus=True, backend=backend, chunk=8)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = selective_scan(**x, delta_softplus=True, backend=backend, chunk=8)
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)


class _ReportsCuda(torch.Tensor):
    """A CPU tensor that says it is on CUDA: enough to take the fused branch."""

    @property
    def is_cuda(self):
        return True


def _stand_in_kernel(calls):
    """mamba_ssm's selective_scan_fn signature; records what it was given, returns in u's dtype."""
    def kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        calls.append({name: (t.dtype, t.is_contiguous()) for name, t in
                      dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias).items()
                      if t is not None} | {"delta_softplus": delta_softplus})
        wide = [t.double() if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)]
        return _plain_scan(*wide, delta_softplus=delta_softplus).to(u.dtype)
    return kernel


@pytest.mark.parametrize("dtype, low", [(torch.bfloat16, torch.bfloat16), (torch.float16, torch.float16),
                                        (torch.float32, torch.float32), (torch.float64, torch.float32)])
def test_the_fused_kernel_gets_mamba_ssms_precisions(monkeypatch, dtype, low):
    calls = []
    monkeypatch.setattr(mamba_module, "_fused_scan", _stand_in_kernel(calls))
    x = _inputs(seed=4)
    args = {k: v.to(dtype) for k, v in x.items()}
    args["B"] = args["B"].transpose(1, 2).contiguous().transpose(1, 2)    # not contiguous: must be made so
    args = {k: v.as_subclass(_ReportsCuda) for k, v in args.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # e.g. autocast switched on for CUDA where there is none
        out = selective_scan(**args, delta_softplus=True, backend="auto")
    assert len(calls) == 1
    got = calls[0]
    assert got["delta_softplus"] is True
    for name in ("u", "delta", "B", "C", "z"):
        assert got[name] == (low, True), name
    for name in ("A", "D", "delta_bias"):
        assert got[name] == (torch.float32, True), name
    assert out.dtype == dtype
    rounded = {k: v.to(low).to(torch.float64) for k, v in x.items()}
    for k in ("A", "D", "delta_bias"):
        rounded[k] = x[k].to(dtype).float().double()
    expected = _plain_scan(**rounded, delta_softplus=True).to(low).to(dtype)
    assert torch.equal(out.as_subclass(torch.Tensor), expected)


def test_the_fused_kernel_gets_every_argument_in_its_place(monkeypatch):
    calls = []
    monkeypatch.setattr(mamba_module, "_fused_scan", _stand_in_kernel(calls))
    x = {k: v.double().as_subclass(_ReportsCuda) for k, v in _inputs(seed=5).items()}
    without_gate = selective_scan(**{**x, "z": None}, backend="fused")      # no softplus, no gate
    assert "z" not in calls[0] and calls[0]["delta_softplus"] is False
    plain = {k: v.as_subclass(torch.Tensor).float().double() for k, v in x.items()}
    torch.testing.assert_close(without_gate.as_subclass(torch.Tensor),
                               _plain_scan(**{**plain, "z": None}).float().double(), rtol=1e-6, atol=1e-6)


def test_fused_is_refused_without_the_kernel_even_on_cuda(monkeypatch):
    monkeypatch.setattr(mamba_module, "_fused_scan", None)
    x = {k: v.as_subclass(_ReportsCuda) for k, v in _inputs().items()}
    with pytest.raises(RuntimeError, match="^backend='fused' needs mamba_ssm installed and CUDA tensors$"):
        selective_scan(**x, backend="fused")


def test_auto_picks_the_kernel_on_cuda_only_when_it_is_there(monkeypatch):
    on_cuda = types.SimpleNamespace(is_cuda=True, numel=lambda: 8, element_size=lambda: 4)
    monkeypatch.setattr(mamba_module, "_fused_scan", _stand_in_kernel([]))
    assert auto_backend(on_cuda, 16) == "fused"
    monkeypatch.setattr(mamba_module, "_fused_scan", None)
    assert auto_backend(on_cuda, 16) == "ref"


def test_the_block_defaults_are_mamba_ssms():
    torch.manual_seed(0)
    block = Mamba(33)                                  # dt_rank 'auto' = ceil(33 / 16) = 3
    assert (block.d_state, block.d_conv, block.expand, block.d_inner, block.dt_rank) == (16, 4, 2, 66, 3)
    assert block.in_proj.weight.shape == (132, 33) and block.in_proj.bias is None
    assert block.conv1d.weight.shape == (66, 1, 4) and block.conv1d.bias.shape == (66,)
    assert block.x_proj.weight.shape == (3 + 32, 66) and block.x_proj.bias is None
    assert block.dt_proj.weight.shape == (66, 3) and block.dt_proj.bias.shape == (66,)
    assert block.out_proj.weight.shape == (33, 66) and block.out_proj.bias is None
    assert block.A_log.dtype == torch.float32
    assert torch.equal(block.A_log, torch.log(torch.arange(1.0, 17.0)).repeat(66, 1))


def test_dt_projection_starts_uniform_within_one_over_root_rank():
    torch.manual_seed(0)
    w = Mamba(64, dt_rank=4).dt_proj.weight.detach()      # 128 x 4 draws from U(-1/2, 1/2)
    assert w.abs().max() <= 0.5
    assert w.min() < -0.45 and w.max() > 0.45 and abs(float(w.mean())) < 0.05


def test_initial_step_sizes_span_dt_min_to_dt_max_log_uniformly():
    torch.manual_seed(0)
    dt = F.softplus(Mamba(64, dt_rank=4).dt_proj.bias.detach().double())   # 128 draws
    assert dt.min() >= 0.001 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    logs = torch.log10(dt)                         # uniform on [-3, -1]: mean -2, sd 2 / sqrt(12)
    assert abs(float(logs.mean()) + 2) < 0.15 and abs(float(logs.std()) - 2 / math.sqrt(12)) < 0.1
    assert float(logs.min()) < -2.8 and float(logs.max()) > -1.2


def test_the_chunked_scan_makes_its_mask_on_the_inputs_device():
    """On the meta device (shapes without data) a temporary made on the CPU would be refused."""
    x = {k: v.to("meta") for k, v in _inputs().items()}
    out = selective_scan_chunked(**x, delta_softplus=True, chunk=4)
    assert out.device.type == "meta" and out.shape == (2, 3, 6)
