"""The segmented and chunked selective scans against the step-by-step recurrence, and the Mamba block."""
from __future__ import annotations

import pytest
import torch

from djanet import mamba
from djanet.mamba import (Mamba, selective_scan, selective_scan_adjoint, selective_scan_chunked,
                          selective_scan_recurrent, selective_scan_ref)


def _inputs(dtype, b=2, d=6, l=37, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(u=r(b, d, l), delta=r(b, d, l), A=-torch.rand(d, n, generator=g, dtype=dtype) * 20,
                B=r(b, n, l), C=r(b, n, l), D=r(d), z=r(b, d, l), delta_bias=r(d))


@pytest.mark.parametrize("chunk", [1, 4, 8, 16, 64])
def test_chunked_matches_reference_float64(chunk):
    x = _inputs(torch.float64)
    ref = selective_scan_ref(**x, delta_softplus=True)
    out = selective_scan_chunked(**x, delta_softplus=True, chunk=chunk)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("segment", [1, 5, 32, 64])
def test_recurrent_segments_match_reference_float64(segment):
    x = _inputs(torch.float64)
    ref = selective_scan_ref(**x, delta_softplus=True)
    out = selective_scan_recurrent(**x, delta_softplus=True, segment=segment)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scan", [lambda **x: selective_scan_chunked(**x, chunk=8),
                                  lambda **x: selective_scan_recurrent(**x, segment=8)],
                         ids=["chunked", "recurrent"])
def test_checkpointed_scans_match_reference_float32_and_gradients(scan):
    x = _inputs(torch.float32)
    leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    ref = selective_scan_ref(**leaves, delta_softplus=True)
    grads_ref = torch.autograd.grad(ref.square().sum(), list(leaves.values()))
    out = scan(**leaves, delta_softplus=True)
    grads = torch.autograd.grad(out.square().sum(), list(leaves.values()))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for g, gr in zip(grads, grads_ref):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, gr, rtol=1e-3, atol=1e-3)


def test_adjoint_scan_matches_reference_and_finite_differences():
    """The hand-written backward pass: every input's gradient equals autograd through the reference
    (float64), and the scan alone passes gradcheck (finite differences, no reference involved)."""
    x = {k: v.requires_grad_(True) for k, v in _inputs(torch.float64, l=9).items()}
    weight = torch.randn(2, 6, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ref = selective_scan_ref(**x, delta_softplus=True)
    out = selective_scan_adjoint(**x, delta_softplus=True)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad((out * weight).sum(), list(x.values()))
    grads_ref = torch.autograd.grad((ref * weight).sum(), list(x.values()))
    for name, g, gr in zip(x, grads, grads_ref):
        assert g.abs().max() > 0, name
        torch.testing.assert_close(g, gr, rtol=1e-10, atol=1e-10, msg=lambda s: f"{name}: {s}")
    small = _inputs(torch.float64, b=2, d=3, l=4, n=2, seed=1)
    args = [small[k].requires_grad_(True) for k in ("u", "delta", "A", "B", "C")]
    assert torch.autograd.gradcheck(lambda *a: selective_scan_adjoint(*a, delta_softplus=True), args)


def _saved_bytes(fn, x) -> int:
    """Bytes autograd keeps for the backward pass of fn(**x)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(**x, delta_softplus=True)
    return total


def test_segments_bound_the_memory_kept_for_backward():
    """The plain recurrence keeps O(L) states of (b, d, n); the segmented scans keep O(L / segment)."""
    x = {k: v.requires_grad_(True) for k, v in _inputs(torch.float32, b=2, d=8, l=128, n=16).items()}
    ref = _saved_bytes(selective_scan_ref, x)
    state = 2 * 8 * 16 * 4                                         # one (b, d, n) float32 state
    assert ref > 128 * 2 * state                                   # at least two states per step
    for fn in (lambda **k: selective_scan_recurrent(**k, segment=32),
               lambda **k: selective_scan_chunked(**k, chunk=8)):
        kept = _saved_bytes(fn, x)
        assert kept < ref / 4, (kept, ref)
    # the adjoint scan keeps one state per step (and its inputs), not the reference's several
    assert 128 * state <= _saved_bytes(selective_scan_adjoint, x) < ref / 2


def test_chunked_is_stable_with_strong_decay():
    """Large delta*|A| (cumulative log-decay ~ -1e4) must not overflow: no inf, no nan."""
    x = _inputs(torch.float32)
    x["delta"] = x["delta"].abs() * 50
    out = selective_scan_chunked(**x, chunk=16)
    ref = selective_scan_ref(**{k: v.double() for k, v in x.items()})
    assert torch.isfinite(out).all()
    err = (out.double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-3             # float32 rounding of inputs ~1e3 in size


def test_scan_recurrence_by_hand():
    """One channel, one state: h1 = b1 u1 d1, h2 = exp(d2 a) h1 + d2 b2 u2, y = c h."""
    u = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 0.25]]], dtype=torch.float64)
    A = torch.tensor([[-2.0]], dtype=torch.float64)
    B = torch.tensor([[[3.0, 4.0]]], dtype=torch.float64)
    C = torch.tensor([[[1.0, 0.5]]], dtype=torch.float64)
    h1 = 0.5 * 3.0 * 1.0
    h2 = torch.exp(torch.tensor(0.25 * -2.0)).item() * h1 + 0.25 * 4.0 * 2.0
    expect = torch.tensor([[[h1 * 1.0, h2 * 0.5]]], dtype=torch.float64)
    for fn in (selective_scan_ref, selective_scan_adjoint, selective_scan_chunked, selective_scan_recurrent):
        torch.testing.assert_close(fn(u, delta, A, B, C), expect)


def test_backend_errors():
    x = _inputs(torch.float32)
    with pytest.raises(ValueError, match="backend='nope'"):
        selective_scan(**x, backend="nope")
    if not (torch.cuda.is_available() and mamba.has_fused_kernel()):
        with pytest.raises(RuntimeError, match="mamba_ssm"):
            selective_scan(**x, backend="fused")


def test_mamba_parameters_match_mamba_ssm_defaults():
    torch.manual_seed(0)
    m = Mamba(32, d_state=8, d_conv=4, expand=2)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {"in_proj.weight": (128, 32), "conv1d.weight": (64, 1, 4), "conv1d.bias": (64,),
                      "x_proj.weight": (2 + 16, 64), "dt_proj.weight": (64, 2), "dt_proj.bias": (64,),
                      "A_log": (64, 8), "D": (64,), "out_proj.weight": (32, 64)}
    torch.testing.assert_close(m.A_log.exp()[0], torch.arange(1.0, 9.0))
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert 1e-3 * 0.99 <= dt.min() and dt.max() <= 0.1 * 1.01


def test_mamba_block_is_causal_and_backends_agree():
    torch.manual_seed(0)
    m = Mamba(16, d_state=4).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    y = m(x)
    x2 = x.clone()
    x2[:, 7:] += 1.0                       # changing the future leaves the past unchanged
    torch.testing.assert_close(m(x2)[:, :7], y[:, :7])
    for backend in ("ref", "adjoint", "chunked", "recurrent"):
        m.backend = backend
        torch.testing.assert_close(m(x), y)


@pytest.mark.skipif(not (torch.cuda.is_available() and mamba.has_fused_kernel()),
                    reason="needs CUDA and mamba_ssm")
def test_fused_kernel_matches_chunked():  # pragma: no cover - GPU only
    x = {k: v.cuda() for k, v in _inputs(torch.float32).items()}
    fused = selective_scan(**x, delta_softplus=True, backend="fused")
    chunked = selective_scan(**x, delta_softplus=True, backend="chunked")
    torch.testing.assert_close(fused, chunked, rtol=1e-3, atol=1e-3)


def test_auto_backend_on_the_cpu_checkpoints_only_long_histories():
    small = torch.empty(64, 128, 8)                                     # cpu-demo: ~12 MiB of states
    large = torch.empty(8, 512, 288, device="meta")                     # paper, 8 images: ~900 MiB
    assert mamba.auto_backend(small, 16) == "adjoint"
    assert mamba.auto_backend(large, 64) == "recurrent"


def test_the_fused_kernel_is_reported_only_when_mamba_ssm_gave_it(monkeypatch):
    monkeypatch.setattr(mamba, "_fused_scan", None)
    assert mamba.has_fused_kernel() is False
    monkeypatch.setattr(mamba, "_fused_scan", lambda *args, **kwargs: None)
    assert mamba.has_fused_kernel() is True


def _scan_inputs(b=2, d=3, n=4, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, delta = torch.randn(b, d, length, generator=g), torch.rand(b, d, length, generator=g)
    A, B, C = -torch.rand(d, n, generator=g), torch.randn(b, n, length, generator=g), torch.randn(b, n, length, generator=g)
    return u, delta, A, B, C


def test_selective_scan_defaults_are_auto_without_softplus(monkeypatch):
    u, delta, A, B, C = _scan_inputs()
    seen = []

    def spy(u_, d_state):
        seen.append(d_state)
        return "ref"

    monkeypatch.setattr(mamba, "auto_backend", spy)
    out = mamba.selective_scan(u, delta, A, B, C)
    assert seen == [A.shape[-1]]                                    # d_state, not d
    torch.testing.assert_close(out, mamba.selective_scan_ref(u, delta, A, B, C), rtol=0, atol=0)
    with_softplus = mamba.selective_scan(u, delta, A, B, C, delta_softplus=True)
    assert not torch.allclose(out, with_softplus)


def test_selective_scan_refuses_unknown_and_unavailable_backends(monkeypatch):
    u, delta, A, B, C = _scan_inputs()
    with pytest.raises(ValueError, match=r"^backend='nope'; expected one of 'auto', 'fused', 'adjoint', 'chunked', "
                                         r"'recurrent', 'ref'$"):
        mamba.selective_scan(u, delta, A, B, C, backend="nope")
    for fused in (None, lambda *args, **kwargs: u):                 # absent, or present but CPU tensors
        monkeypatch.setattr(mamba, "_fused_scan", fused)
        with pytest.raises(RuntimeError, match=r"^backend='fused' needs mamba_ssm installed and CUDA tensors$"):
            mamba.selective_scan(u, delta, A, B, C, backend="fused")


def test_auto_backend_on_the_cpu_checkpoints_above_the_history_limit(monkeypatch):
    monkeypatch.setattr(mamba, "_fused_scan", lambda *args, **kwargs: None)   # present, but not for CPU tensors
    # float32, one state: 3 * numel * 1 * 4 bytes of history against the limit
    most = mamba.HISTORY_LIMIT // 12
    assert mamba.auto_backend(torch.zeros(1).expand(most), 1) == "adjoint"
    assert mamba.auto_backend(torch.zeros(1).expand(most + 1), 1) == "recurrent"
    assert mamba.auto_backend(torch.zeros(1, dtype=torch.float16).expand(most), 1) == "adjoint"   # counted as 4 bytes
    assert mamba.auto_backend(torch.zeros(1, dtype=torch.float64).expand(most), 1) == "recurrent"


def test_set_scan_backend_reaches_every_block_inside_a_module():
    from djanet.mamba import set_scan_backend

    net = torch.nn.Sequential(Mamba(4, d_state=2), torch.nn.Linear(4, 4), torch.nn.Sequential(Mamba(4, d_state=2)))
    set_scan_backend(net, "chunked")
    assert [m.backend for m in net.modules() if isinstance(m, Mamba)] == ["chunked", "chunked"]
