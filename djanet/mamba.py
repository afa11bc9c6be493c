"""Selective state-space block (Mamba, S6) in plain PyTorch.

The parameters have `mamba_ssm`'s default names and shapes (``in_proj``, ``conv1d``, ``x_proj``,
``dt_proj``, ``A_log``, ``D``, ``out_proj``), so a state dict moves between the two. The scan

    h_t = exp(delta_t * A) h_{t-1} + delta_t B_t u_t,      y_t = C_t . h_t + D u_t

has five implementations that agree numerically (tests compare them):

* `selective_scan_ref`: the step-by-step recurrence under plain autograd, written as the
  definition;
* `selective_scan_adjoint`: the same recurrence with its backward pass written out (the adjoint
  recurrence, run from the last step to the first), so autograd records one node instead of a
  dozen per step; what 'auto' runs on a CPU;
* `selective_scan_recurrent`: the same recurrence, run in segments of steps;
* `selective_scan_chunked`: inside a chunk of T steps every state is a weighted sum of the chunk's
  inputs with weights exp(S_t - S_s), S the cumulative log-decay; L/T steps instead of L;
* mamba_ssm's fused CUDA kernel, when it is importable and the tensors are on CUDA.

The two segmented forms keep training memory bounded: a plain autograd recurrence saves a
(batch, d_inner, d_state) state for every step (measured on an H200: 10 GB for one align level's
scan with 128 images; the paper's batch is 384). Each segment is recomputed in the backward pass
(activation checkpointing), so only the state at each segment boundary is kept (2 GB there), as
the fused kernel does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

try:  # the fused CUDA kernel of the official code, used only when present
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _fused_scan
except Exception:  # ImportError, or a build without its CUDA extension
    _fused_scan = None

DEFAULT_CHUNK = 8      # steps per chunk of the chunked scan; its temporaries grow as T^2
DEFAULT_SEGMENT = 32   # steps per checkpointed segment of the recurrent scan
BACKENDS = ("auto", "fused", "adjoint", "chunked", "recurrent", "ref")
HISTORY_LIMIT = 256 * 2**20  # bytes of per-step states above which 'auto' checkpoints the recurrence


def has_fused_kernel() -> bool:
    """True when mamba_ssm's CUDA selective-scan kernel could be imported."""
    return _fused_scan is not None


def _prepare(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, delta_bias: Tensor | None,
             delta_softplus: bool):
    """Scan in float32 at least (float64 stays float64): log-decays must not be half precision."""
    dtype = torch.promote_types(u.dtype, torch.float32)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return u.to(dtype), delta, A.to(dtype), B.to(dtype), C.to(dtype)


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None, out_dtype) -> Tensor:
    if D is not None:
        y = y + D.to(y.dtype)[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def _steps(state: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor):
    """The recurrence over a run of steps from `state`; returns (y (b, d, t), last state)."""
    ys = []
    for t in range(u.shape[-1]):
        a_bar = torch.exp(delta[:, :, t, None] * A)                        # (b, d, n)
        state = a_bar * state + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((state * C[:, None, :, t]).sum(-1))                      # (b, d)
    return torch.stack(ys, dim=2), state


def _chunk(state: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor):
    """One chunk of T steps at once; returns (y (b, d, T), last state).

    With S_t = sum_{i<=t} delta_i A (<= 0, non-increasing) and H the carried-in state,

        h_t = exp(S_t) H + sum_{s<=t} exp(S_t - S_s) delta_s B_s u_s.

    Only entries with s <= t are used, and for those S_t - S_s <= 0, so the others are masked to
    -inf *before* the exp: no exp of a large positive number, no inf*0.
    """
    T = u.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool, device=u.device).tril()      # [t, s]: s <= t
    S = (delta[:, :, None, :] * A[None, :, :, None]).cumsum(-1)           # (b, d, n, T)
    bx = (delta * u)[:, :, None, :] * B[:, None, :, :]                      # B_bar u, (b, d, n, T)
    seg = (S[..., :, None] - S[..., None, :]).masked_fill(~mask, float("-inf"))
    h = (seg.exp() @ bx[..., None]).squeeze(-1) + S.exp() * state[..., None]
    return (h * C[:, None, :, :]).sum(2), h[..., -1]


class _AdjointScan(torch.autograd.Function):
    """h_t = a_t * h_{t-1} + x_t with a_t = exp(delta_t A), x_t = delta_t u_t B_t; y_t = C_t . h_t.

    Every tensor is kept step-first, (l, b, ...), so one step's (b, d, n) slice is contiguous and
    stays in cache while the few operations of that step run on it (whole-sequence (l, b, d, n)
    operations were measured slower: they stream through memory). The backward pass runs the
    adjoint recurrence backwards in time, g_t = dy_t C_t + a_{t+1} * g_{t+1} (g_t: the gradient
    reaching h_t), and forms the parameter gradients from g and the saved states:

        dL/dx_t = g_t,   dL/d(delta_t A) = g_t * a_t * h_{t-1}   (h_{-1} = 0).
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        us, ds, Bs, Cs = (_step_first(t) for t in (u, delta, B, C))         # (l, b, d) and (l, b, n)
        steps, b, d = us.shape
        n = A.shape[1]
        h = us.new_empty(steps, b, d, n)                                      # every state, kept
        a = us.new_empty(b, d, n)
        du = us * ds
        for t in range(steps):
            torch.mul(du[t, :, :, None], Bs[t, :, None, :], out=h[t])         # x_t
            if t:
                torch.mul(ds[t, :, :, None], A, out=a).exp_()                 # a_t
                h[t].addcmul_(a, h[t - 1])
        y = torch.bmm(h.view(steps * b, d, n), Cs.view(steps * b, n, 1))
        ctx.save_for_backward(us, ds, A, Bs, Cs, h)
        return y.view(steps, b, d).permute(1, 2, 0)

    @staticmethod
    def backward(ctx, gy: Tensor):
        us, ds, A, Bs, Cs, h = ctx.saved_tensors
        steps, b, d = us.shape
        n = A.shape[1]
        gys = _step_first(gy)
        g = torch.empty_like(h)
        g_delta, gA = torch.zeros_like(ds), torch.zeros_like(A)
        a, p = torch.empty_like(h[0]), torch.empty_like(h[0])
        for t in range(steps - 1, -1, -1):
            torch.mul(gys[t, :, :, None], Cs[t, :, None, :], out=g[t])
            if t + 1 < steps:
                g[t].addcmul_(a, g[t + 1])                                    # a holds a_{t+1}
            if t:
                torch.mul(ds[t, :, :, None], A, out=a).exp_()                 # a_t
                torch.mul(g[t], a, out=p).mul_(h[t - 1])                      # dL/d(delta_t A)
                torch.sum(p * A, -1, out=g_delta[t])
                gA += (p * ds[t, :, :, None]).sum(0)
        flat = g.view(steps * b, d, n)
        g_du = torch.bmm(flat, Bs.view(steps * b, n, 1)).view(steps, b, d)  # dL/d(delta_t u_t)
        gB = torch.bmm((us * ds).view(steps * b, 1, d), flat).view(steps, b, n)
        gC = torch.bmm(gys.view(steps * b, 1, d), h.view(steps * b, d, n)).view(steps, b, n)
        g_delta += g_du * us
        back = lambda t: t.permute(1, 2, 0)                                   # (l, b, .) -> (b, ., l)
        return back(g_du * ds), back(g_delta), gA, back(gB), back(gC)


def _step_first(t: Tensor) -> Tensor:
    """(b, c, l) -> contiguous (l, b, c)."""
    return t.permute(2, 0, 1).contiguous()


def _segmented(piece, length: int, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """Run `piece` over consecutive segments of `length` steps, carrying the state.

    When gradients are needed each segment is checkpointed: its internals are recomputed in the
    backward pass, so memory holds one state per segment instead of one per step.
    """
    b, d, l = u.shape
    state = u.new_zeros(b, d, A.shape[1])
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    ys = []
    for start in range(0, l, max(1, length)):
        sl = slice(start, min(start + max(1, length), l))
        args = (state, u[..., sl], delta[..., sl], A, B[..., sl], C[..., sl])
        y, state = checkpoint(piece, *args, use_reentrant=False) if grad else piece(*args)
        ys.append(y)
    return torch.cat(ys, dim=2)


def _scan(run, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
          z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """Shared frame of the PyTorch scans: float32 inputs, y = run(u, delta, A, B, C), D and gate."""
    out_dtype = u.dtype
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    return _finish(run(u, delta, A, B, C), u, D, z, out_dtype)


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Tensor | None = None, z: Tensor | None = None,
                       delta_bias: Tensor | None = None, delta_softplus: bool = False) -> Tensor:
    """Naive step-by-step recurrence under plain autograd (the definition; keeps every state).

    Shapes as in mamba_ssm: u, delta, z (b, d, l); A (d, n); B, C (b, n, l); D, delta_bias (d,).
    """
    def run(u, delta, A, B, C):
        return _steps(u.new_zeros(u.shape[0], u.shape[1], A.shape[1]), u, delta, A, B, C)[0]
    return _scan(run, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_adjoint(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Tensor | None = None, z: Tensor | None = None,
                           delta_bias: Tensor | None = None, delta_softplus: bool = False) -> Tensor:
    """The recurrence with a hand-written backward pass (`_AdjointScan`): the reference's numbers
    with a handful of operations per step instead of the dozen autograd nodes the reference records;
    every state is kept, as in the reference."""
    return _scan(_AdjointScan.apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_recurrent(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                             D: Tensor | None = None, z: Tensor | None = None,
                             delta_bias: Tensor | None = None, delta_softplus: bool = False,
                             segment: int = DEFAULT_SEGMENT) -> Tensor:
    """The recurrence in checkpointed segments: the reference's numbers, bounded memory."""
    return _scan(lambda *x: _segmented(_steps, segment, *x), u, delta, A, B, C, D, z, delta_bias,
                 delta_softplus)


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Tensor | None = None, z: Tensor | None = None,
                           delta_bias: Tensor | None = None, delta_softplus: bool = False,
                           chunk: int = DEFAULT_CHUNK) -> Tensor:
    """The scan chunk by chunk (see `_chunk`); work and memory per chunk grow as T^2 * n."""
    return _scan(lambda *x: _segmented(_chunk, chunk, *x), u, delta, A, B, C, D, z, delta_bias,
                 delta_softplus)


def auto_backend(u: Tensor, d_state: int) -> str:
    """The backend 'auto' picks for input `u` (b, d, l): the fastest measured on that device.

    * CUDA with mamba_ssm installed: its fused kernel (on an H200, fwd+bwd at the paper's align
      size with b=128: 13 ms, against 208 ms for the plain recurrence);
    * otherwise, while the per-step states kept for the backward pass stay under HISTORY_LIMIT,
      the recurrence: on the CPU with its hand-written backward (`adjoint`: at cpu-demo's size,
      fewer operations and 0.29x the memory the reference saves), on CUDA as the reference;
    * above the limit, the recurrence in checkpointed segments (1.5x slower, memory bounded).

    The chunked scan is never picked: measured, it is slower than the recurrence on a 2-core CPU
    (5-20x) and on the H200 (up to 30x at b=128), because its (T x T x n) temporaries cost more
    memory traffic than the per-step launches they save (benchmarks/bench_model.py).
    """
    if u.is_cuda and _fused_scan is not None:
        return "fused"
    history = 3 * u.numel() * d_state * max(4, u.element_size())  # bytes: ~3 (b, d, n) per step
    if history > HISTORY_LIMIT:
        return "recurrent"
    return "ref" if u.is_cuda else "adjoint"


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor | None = None, z: Tensor | None = None,
                   delta_bias: Tensor | None = None, delta_softplus: bool = False,
                   chunk: int = DEFAULT_CHUNK, backend: str = "auto") -> Tensor:
    """Dispatch the scan. backend: one of BACKENDS; 'auto' asks `auto_backend`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; expected one of {', '.join(map(repr, BACKENDS))}")
    if backend == "auto":
        backend = auto_backend(u, A.shape[-1])
    if backend == "fused":
        if _fused_scan is None or not u.is_cuda:
            raise RuntimeError("backend='fused' needs mamba_ssm installed and CUDA tensors")
        # As mamba_ssm's own block calls it: u, delta, B, C, z in the input's precision (the kernel
        # accumulates in float32), A, D and the delta bias in float32.
        out_dtype = u.dtype
        low = u.dtype if u.dtype in (torch.float16, torch.bfloat16) else torch.float32
        u, delta, B, C = (t.to(low).contiguous() for t in (u, delta, B, C))
        z = z.to(low).contiguous() if z is not None else None
        A, D, delta_bias = (t.float().contiguous() if t is not None else None for t in (A, D, delta_bias))
        with torch.autocast(device_type="cuda", enabled=False):
            return _fused_scan(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                               delta_softplus=delta_softplus).to(out_dtype)
    kwargs = dict(D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    with torch.autocast(device_type=u.device.type, enabled=False):
        if backend == "ref":
            return selective_scan_ref(u, delta, A, B, C, **kwargs)
        if backend == "adjoint":
            return selective_scan_adjoint(u, delta, A, B, C, **kwargs)
        if backend == "recurrent":
            return selective_scan_recurrent(u, delta, A, B, C, **kwargs)
        return selective_scan_chunked(u, delta, A, B, C, chunk=chunk, **kwargs)


def set_scan_backend(module: nn.Module, backend: str) -> None:
    """Give every Mamba block inside `module` the scan `backend` (one of BACKENDS): how the
    benchmarks time one network under each scan."""
    for m in module.modules():
        if isinstance(m, Mamba):
            m.backend = backend


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
