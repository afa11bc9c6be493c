"""Selective state-space block (Mamba, S6) in plain PyTorch.

The parameters have `mamba_ssm`'s default names and shapes (``in_proj``, ``conv1d``, ``x_proj``,
``dt_proj``, ``A_log``, ``D``, ``out_proj``), so a state dict moves between the two. The scan

    h_t = exp(delta_t * A) h_{t-1} + delta_t B_t u_t,      y_t = C_t . h_t + D u_t

is computed chunk by chunk (`selective_scan_chunked`): inside a chunk of T steps every state is a
weighted sum of the chunk's inputs with weights exp(S_t - S_s), where S is the cumulative log-decay
(a cumulative sum of delta*A <= 0), and the state is carried from one chunk to the next. That is a
Python loop over L/T chunks, not over the L steps. `selective_scan_ref` is the step-by-step
recurrence the tests compare against. On CUDA, when `mamba_ssm` is importable, `selective_scan`
calls its fused kernel instead; the two agree numerically (a test compares them when CUDA and
mamba_ssm are present and is skipped otherwise).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

try:  # the fused CUDA kernel of the official code, used only when present
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _fused_scan
except Exception:  # ImportError, or a build without its CUDA extension
    _fused_scan = None

DEFAULT_CHUNK = 8  # steps per chunk; memory of a chunk grows as T^2, see selective_scan_chunked


def has_fused_kernel() -> bool:
    """True when mamba_ssm's CUDA selective-scan kernel could be imported."""
    return _fused_scan is not None


def _prepare(u: Tensor, delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool):
    """Scan in float32 at least (float64 stays float64): log-decays must not be half precision."""
    dtype = torch.promote_types(u.dtype, torch.float32)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return u.to(dtype), delta, dtype


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None, out_dtype) -> Tensor:
    if D is not None:
        y = y + D.to(y.dtype)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Tensor | None = None, z: Tensor | None = None,
                       delta_bias: Tensor | None = None, delta_softplus: bool = False) -> Tensor:
    """Naive step-by-step recurrence (the definition; slow, for tests and the benchmark).

    Shapes as in mamba_ssm: u, delta, z (b, d, l); A (d, n); B, C (b, n, l); D, delta_bias (d,).
    """
    out_dtype = u.dtype
    u, delta, dtype = _prepare(u, delta, delta_bias, delta_softplus)
    A, B, C = A.to(dtype), B.to(dtype), C.to(dtype)
    b, d, l = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        a_bar = torch.exp(delta[:, :, t, None] * A)                       # (b, d, n)
        h = a_bar * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))                          # (b, d)
    return _finish(torch.stack(ys, dim=2), u, D, z, out_dtype)


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Tensor | None = None, z: Tensor | None = None,
                           delta_bias: Tensor | None = None, delta_softplus: bool = False,
                           chunk: int = DEFAULT_CHUNK) -> Tensor:
    """The same scan, chunk by chunk, in plain PyTorch.

    Inside a chunk with cumulative log-decay S_t = sum_{i<=t} delta_i A (<= 0, non-increasing):

        h_t = exp(S_t) H + sum_{s<=t} exp(S_t - S_s) delta_s B_s u_s

    where H is the state carried in from the previous chunk. Only entries with s <= t are used,
    and for those S_t - S_s <= 0, so the other entries are masked to -inf *before* the exp: no
    exp of a large positive number, no inf*0. Work and memory per chunk grow as T^2 * n.
    """
    out_dtype = u.dtype
    u, delta, dtype = _prepare(u, delta, delta_bias, delta_softplus)
    A, B, C = A.to(dtype), B.to(dtype), C.to(dtype)
    b, d, l = u.shape
    n = A.shape[1]
    # Layout (b, d, n, l) so each chunk is a batch of small T x T matrix products.
    dA = delta[:, :, None, :] * A[None, :, :, None]                        # log A_bar, <= 0
    bx = (delta * u)[:, :, None, :] * B[:, None, :, :]                      # B_bar u
    T = max(1, min(chunk, l))
    full_mask = torch.ones(T, T, dtype=torch.bool, device=u.device).tril()  # [t, s]: s <= t
    state = u.new_zeros(b, d, n)
    ys = []
    for start in range(0, l, T):
        stop = min(start + T, l)
        mask = full_mask[: stop - start, : stop - start]
        S = dA[..., start:stop].cumsum(-1)                                  # (b, d, n, t)
        seg = (S[..., :, None] - S[..., None, :]).masked_fill(~mask, float("-inf"))
        h = (seg.exp() @ bx[..., start:stop, None]).squeeze(-1)             # inputs of this chunk
        h = h + S.exp() * state[..., None]                                  # carried-in state
        state = h[..., -1]
        ys.append((h * C[:, None, :, start:stop]).sum(2))                   # (b, d, t)
    return _finish(torch.cat(ys, dim=2), u, D, z, out_dtype)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor | None = None, z: Tensor | None = None,
                   delta_bias: Tensor | None = None, delta_softplus: bool = False,
                   chunk: int = DEFAULT_CHUNK, backend: str = "auto") -> Tensor:
    """Dispatch the scan. backend: 'auto' | 'fused' | 'chunked' | 'ref'.

    'auto' picks, by device, what is fastest there:

    * CUDA with mamba_ssm installed: its fused kernel;
    * CUDA without it: the chunked scan (L/T kernel launches instead of L);
    * CPU: the step-by-step recurrence. Measured on the 2-core CPU (benchmarks/bench_model.py),
      the chunked form is 5-10x *slower* there: its (T x T x n) temporaries cost more memory
      traffic than the loop's per-step overhead, and CPU ops have no launch latency to amortise.
    """
    if backend not in ("auto", "fused", "chunked", "ref"):
        raise ValueError(f"backend={backend!r}; expected 'auto', 'fused', 'chunked' or 'ref'")
    use_fused = backend == "fused" or (backend == "auto" and u.is_cuda and _fused_scan is not None)
    if use_fused:
        if _fused_scan is None or not u.is_cuda:
            raise RuntimeError("backend='fused' needs mamba_ssm installed and CUDA tensors")
        dt = torch.float32
        args = [t.to(dt).contiguous() if t is not None else None
                for t in (u, delta, A, B, C, D, z, delta_bias)]
        with torch.autocast(device_type="cuda", enabled=False):
            return _fused_scan(*args[:5], D=args[5], z=args[6], delta_bias=args[7],
                               delta_softplus=delta_softplus).to(u.dtype)
    if backend == "auto":
        backend = "chunked" if u.is_cuda else "ref"
    fn = selective_scan_ref if backend == "ref" else selective_scan_chunked
    kwargs = {} if backend == "ref" else {"chunk": chunk}
    with torch.autocast(device_type=u.device.type, enabled=False):
        return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                  delta_softplus=delta_softplus, **kwargs)


class Mamba(nn.Module):
    """Mamba block with mamba_ssm's default parameters and initialisation (bias=False, conv_bias=True).

    Input and output (batch, length, d_model). `backend` chooses the scan (see `selective_scan`).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, chunk: int = DEFAULT_CHUNK, backend: str = "auto"):
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.chunk, self.backend = chunk, backend
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # dt init as in mamba_ssm: weights U(-r^-1/2, r^-1/2); bias = softplus^-1 of a dt drawn
        # log-uniformly in [dt_min, dt_max], so the initial step sizes span two decades.
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1, 2, ..., n) for every channel, stored as its log.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        xz = self.in_proj(x).transpose(1, 2)                                 # (b, 2*d_inner, l)
        xs, z = xz.chunk(2, dim=1)
        xs = F.silu(self.conv1d(xs)[..., :length])                           # causal: drop the tail
        dt, B, C = self.x_proj(xs.transpose(1, 2)).split(
            [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)               # bias added in the scan
        A = -torch.exp(self.A_log.float())
        y = selective_scan(xs, dt, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z=z,
                           delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
                           chunk=self.chunk, backend=self.backend)
        return self.out_proj(y.transpose(1, 2).to(x.dtype))
