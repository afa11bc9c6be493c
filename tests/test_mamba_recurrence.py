"""The Mamba block against an independent, plain recurrence of the whole block (Gu & Dao 2023).

tests/test_mamba.py compares the scan implementations with each other; they share `_prepare` and
`_finish` (delta bias, softplus, D skip, z gate), so a bug there is invisible to it. Here the
reference below uses only the module's parameters and plain torch ops in Python loops; nothing
from djanet.mamba but the `Mamba` class is used.
"""
from __future__ import annotations

import math

import pytest
import torch

from djanet.mamba import Mamba

BACKENDS_CPU = ("auto", "ref", "adjoint", "recurrent", "chunked")   # 'fused' needs CUDA and mamba_ssm


def reference(m: Mamba, x: torch.Tensor) -> torch.Tensor:
    """mamba_ssm's simple block, step by step. x: (batch, length, d_model) -> same shape.

    As mamba_ssm's block does, A, D and the dt bias enter the scan in float32
    (`-torch.exp(self.A_log.float())`, `self.D.float()`, `self.dt_proj.bias.float()`); the same
    rounding is applied here, so a float64 module can agree to 1e-10.
    """
    assert m.in_proj.bias is None and m.x_proj.bias is None and m.out_proj.bias is None
    b, length, _ = x.shape
    di, n, r, k = m.d_inner, m.d_state, m.dt_rank, m.d_conv
    xz = x @ m.in_proj.weight.T                                    # 1. (b, l, 2*d_inner)
    u, z = xz[..., :di], xz[..., di:]
    w = m.conv1d.weight[:, 0, :]                                   # 2. depthwise taps (di, k)
    cols = []
    for t in range(length):
        acc = m.conv1d.bias.expand(b, di)
        for j in range(k):                                         # tap j reads step t-(k-1)+j
            s = t - (k - 1) + j
            if s >= 0:                                             # left zero padding only
                acc = acc + w[:, j] * u[:, s]
        cols.append(acc)
    c = torch.stack(cols, dim=1)
    xc = c / (1 + torch.exp(-c))                                   # SiLU by hand
    x_dbl = xc @ m.x_proj.weight.T                                 # 3.
    dt_low, Bm, Cm = x_dbl[..., :r], x_dbl[..., r:r + n], x_dbl[..., r + n:]
    dt_bias = m.dt_proj.bias.float().to(x.dtype)
    delta = torch.log(1 + torch.exp(dt_low @ m.dt_proj.weight.T + dt_bias))   # 4. softplus
    A = -torch.exp(m.A_log.float()).to(x.dtype)                    # 5. (d_inner, d_state)
    D = m.D.float().to(x.dtype)
    h = x.new_zeros(b, di, n)
    ys = []
    for t in range(length):                                        # 6.
        d_t = delta[:, t, :, None]                                 # (b, di, 1)
        h = torch.exp(d_t * A) * h + d_t * Bm[:, t, None, :] * xc[:, t, :, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + D * xc[:, t])
    y = torch.stack(ys, dim=1)
    y = y * (z / (1 + torch.exp(-z)))                              # 7. gate y * SiLU(z)
    return y @ m.out_proj.weight.T                                 # 8.


def _block(seed=0, d_model=4, d_state=3, d_conv=3, dt_rank=2, chunk=3, backend="ref") -> Mamba:
    """A float64 block whose A_log, D, dt bias and conv bias are randomised so every term matters
    (at init D = 1 and the dt bias is tiny: a sign flip of D or a dropped bias could hide)."""
    torch.manual_seed(seed)
    m = Mamba(d_model, d_state=d_state, d_conv=d_conv, dt_rank=dt_rank, chunk=chunk,
              backend=backend).double()
    with torch.no_grad():
        m.A_log.add_(0.3 * torch.randn_like(m.A_log))
        m.D.copy_(1.0 + 0.5 * torch.randn_like(m.D))
        m.dt_proj.bias.copy_(-2.0 + 0.5 * torch.randn_like(m.dt_proj.bias))
        m.conv1d.bias.copy_(0.5 * torch.randn_like(m.conv1d.bias))
    return m


@pytest.mark.parametrize("backend", BACKENDS_CPU)
@pytest.mark.parametrize("length,chunk", [(1, 3), (7, 3), (37, 3), (37, 8)])
def test_block_matches_plain_recurrence_float64(backend, length, chunk):
    """Every CPU backend, lengths that are no multiple of the chunk (3, 8) or of the recurrent
    scan's 32-step segment, with parameters requiring grad (the checkpointed path)."""
    m = _block(chunk=chunk, backend=backend)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, length, m.d_model, dtype=torch.float64, generator=g)
    out = m(x)
    with torch.no_grad():
        ref = reference(m, x)
    assert out.shape == ref.shape == x.shape
    assert ref.abs().max() > 1e-2                                  # not a trivially small output
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_hand_computed_block():
    """d_model = d_inner = d_state = dt_rank = 1, d_conv = 2, x = (1, -1, 2); numbers in comments.

    in_proj rows (1, 2): u = x, z = 2x.  conv taps (0.5 on x_{t-1}, 1 on x_t), bias 0:
    c = (1, -0.5, 1.5), xc = silu(c) = (0.7310586, -0.1887703, 1.2263617).
    x_proj rows (1, 1, 2): dt_low = xc, B = xc, C = 2 xc.
    dt_proj w = 1, b = -1: delta = log(1 + exp(xc - 1)) = (0.5676905, 0.2658931, 0.8127194).
    A_log = 0: A = -1.  D = 2.  out_proj w = 1.
    h_t = exp(-delta_t) h_{t-1} + delta_t xc_t^2 = (0.3034003, 0.2420376, 1.3296799)
    y_t = 2 xc_t h_t + 2 xc_t = (1.9057239, -0.4689197, 5.7140604)
    out_t = y_t * silu(z_t) = y_t * (1.7615942, -0.2384058, 3.9280552)
          = (3.3571122, 0.1117932, 22.4451445)
    (With -D it would be (-1.794, -0.068, 3.176); with a sigmoid gate (1.679, -0.056, 5.611).)
    """
    expect = [3.3571121686688423, 0.11179320042159781, 22.44514454672184]
    for backend in BACKENDS_CPU:
        m = Mamba(1, d_state=1, d_conv=2, expand=1, dt_rank=1, chunk=2, backend=backend).double()
        with torch.no_grad():
            m.in_proj.weight.copy_(torch.tensor([[1.0], [2.0]]))
            m.conv1d.weight.copy_(torch.tensor([[[0.5, 1.0]]]))
            m.conv1d.bias.zero_()
            m.x_proj.weight.copy_(torch.tensor([[1.0], [1.0], [2.0]]))
            m.dt_proj.weight.fill_(1.0)
            m.dt_proj.bias.fill_(-1.0)
            m.A_log.zero_()
            m.D.fill_(2.0)
            m.out_proj.weight.fill_(1.0)
        x = torch.tensor([[[1.0], [-1.0], [2.0]]], dtype=torch.float64)
        out = m(x).flatten().tolist()
        assert out == pytest.approx(expect, rel=1e-12), backend
        assert reference(m, x).flatten().tolist() == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("backend", ("ref", "adjoint", "recurrent", "chunked"))
def test_gradients_match_plain_recurrence(backend):
    """Gradients of the input and of every parameter agree with autograd through the reference
    (37 steps: two recurrent segments and a partial chunk, so the checkpointed backward runs)."""
    m = _block(chunk=8, backend=backend)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 37, m.d_model, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(2, 37, m.d_model, dtype=torch.float64, generator=g)
    leaves = [x, *m.parameters()]
    grads = torch.autograd.grad((m(x) * weight).sum(), leaves)
    grads_ref = torch.autograd.grad((reference(m, x) * weight).sum(), leaves)
    names = ["x"] + [name for name, _ in m.named_parameters()]
    for name, gr, gref in zip(names, grads, grads_ref):
        # A_log, D and the dt bias pass through float32 (see `reference`), so their gradients do too
        tol = 1e-6 if name in ("A_log", "D", "dt_proj.bias") else 1e-9
        torch.testing.assert_close(gr, gref, rtol=tol, atol=tol, msg=lambda s: f"{name}: {s}")


@pytest.mark.parametrize("backend", ("ref", "adjoint", "recurrent", "chunked"))
def test_gradcheck_input(backend):
    """Finite differences against autograd for the input (float64 all the way on that path)."""
    m = _block(d_model=2, d_state=2, d_conv=2, dt_rank=1, chunk=2, backend=backend)
    x = torch.randn(1, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3),
                    requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-7, rtol=1e-6)
    assert math.isfinite(m(x).sum().item())
