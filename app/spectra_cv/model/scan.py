"""Fast selective scan in pure PyTorch with a hand-written backward (CPU and CUDA).

Same signature and semantics as ``scan_ref.selective_scan_ref`` (and mamba_ssm's
``selective_scan_fn`` for real ``A`` and variable ``B``/``C``). The core recurrence runs in a
``torch.autograd.Function``:

    x_t = exp(dt_t * A) * x_{t-1} + dt_t * u_t * B_t        state x: (Bt, N, Dm) per step
    y_t = sum_n C_t[n] * x_t[n]

The state lives as (L, Bt, N, Dm) with Dm contiguous. Time is walked in blocks of ``block_len``
steps: for each block ``exp(dt*A)`` and ``dt*u*B`` are formed with batched ops into preallocated
buffers, then one in-place ``addcmul`` per step advances the state, and ``y`` comes from one
``bmm`` per block. The forward saves only the state entering each block; the backward walks the
blocks in reverse, recomputes each block's states from its saved start, runs the adjoint

    g_x_t = C_t * g_y_t + exp(dt_{t+1} * A) * g_x_{t+1}

and turns it into gradients of u, dt, A, B, C with batched ops. No log-space cumsum is used, so
large ``dt * |A|`` cannot overflow. ``delta_bias``/softplus, ``D`` and ``z`` are cheap
(Bt, Dm, L) elementwise ops left to autograd around the core.

On the CPU the same core runs as one fused, compiled kernel when it can be built
(``scan_cpu``: states in registers, ~7× the eager core at B=32 on 2 cores); the eager core is the fallback,
and the one on CUDA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from spectra_cv.errors import ConfigError
from spectra_cv.model import scan_cpu
from spectra_cv.model.scan_ref import check_scan_inputs, compute_dtype

BLOCK_BYTES_CPU = 4 << 20
"""Target size of one (block_len, Bt, N, Dm) work buffer on CPU (a block stays in L2/L3 cache;
fwd+bwd times were flat within noise for 2-8 MiB at B=8 and B=32 on 2 cores, slower below)."""

BLOCK_BYTES_CUDA = 64 << 20
"""Target size of one work buffer on CUDA (larger blocks: fewer, bigger batched kernels)."""


def default_block_len(bt: int, n: int, dm: int, itemsize: int, device: torch.device, length: int = 0) -> int:
    """Steps per block: one (block_len, Bt, N, Dm) buffer about the target size; on CUDA at least
    ⌈√length⌉ steps. The forward keeps one state per block for the backward, so blocks that shrink
    with the batch make those saved states grow as Bt² (at Bt = 600 nearly every state was kept and
    the recipe ran out of an H200); ≥ √L steps keep them ≤ √L states per sequence. Not on the CPU:
    blocks beyond the cache there cost 2-3× in speed (B=32, d_inner 256: 1.7 s vs 5.7 s fwd+bwd)
    and CPU batches stay small."""
    target = BLOCK_BYTES_CUDA if device.type == "cuda" else BLOCK_BYTES_CPU
    by_bytes = max(1, target // max(1, bt * n * dm * itemsize))
    if device.type == "cuda" and length > 0:
        return max(by_bytes, math.isqrt(length - 1) + 1)
    return by_bytes


class _Workspace:
    """Preallocated per-call buffers and their per-step views.

    dA: (lb, Bt, N, Dm), exp(dt_t A) for the block; xs: (lb + 1, Bt, N, Dm) with xs[0] the
    state entering the block and xs[t + 1] the state after step t. Backward only:
    gx (adjoint g_x_t) and tmp, both (lb, Bt, N, Dm).
    """

    def __init__(self, lb: int, bt: int, n: int, dm: int, like: torch.Tensor, backward: bool):
        shape = (lb, bt, n, dm)
        self.dA = like.new_empty(shape)
        self.xs = like.new_empty((lb + 1, bt, n, dm))
        self.dA_v = self.dA.unbind(0)
        self.xs_v = self.xs.unbind(0)
        if backward:
            self.gx = like.new_empty(shape)
            self.gx_v = self.gx.unbind(0)
            self.tmp = like.new_empty(shape)


def _block_states(ws: _Workspace, dt: torch.Tensor, dtu: torch.Tensor, AT: torch.Tensor,
                  Bm: torch.Tensor, m: int) -> None:
    """Fill ws.dA[:m] and walk the states ws.xs[1:m+1] on from ws.xs[0].

    dt, dtu: (m, Bt, Dm); AT: (N, Dm); Bm: (m, Bt, N).
    """
    dA = ws.dA[:m]
    torch.mul(dt.unsqueeze(2), AT, out=dA)  # (m, Bt, N, Dm)
    dA.exp_()
    torch.mul(dtu.unsqueeze(2), Bm.unsqueeze(3), out=ws.xs[1:m + 1])  # dt u B: (m, Bt, N, Dm)
    dA_v, xs_v = ws.dA_v, ws.xs_v
    for t in range(m):
        xs_v[t + 1].addcmul_(dA_v[t], xs_v[t])


def _scan_forward(u: torch.Tensor, dt: torch.Tensor, AT: torch.Tensor, Bm: torch.Tensor,
                  Cm: torch.Tensor, lb: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Core forward. u, dt: (L, Bt, Dm); AT: (N, Dm); Bm, Cm: (L, Bt, N).

    Returns y: (L, Bt, Dm) and starts: (n_blocks, Bt, N, Dm), the state entering each block.
    """
    length, bt, dm = u.shape
    n = AT.shape[0]
    n_blocks = math.ceil(length / lb)
    ws = _Workspace(lb, bt, n, dm, u, backward=False)
    ws.xs[0].zero_()
    starts = u.new_empty((n_blocks, bt, n, dm))
    y = u.new_empty((length, bt, dm))
    dtu = dt * u  # (L, Bt, Dm)
    for k in range(n_blocks):
        s = k * lb
        e = min(s + lb, length)
        m = e - s
        starts[k].copy_(ws.xs[0])
        _block_states(ws, dt[s:e], dtu[s:e], AT, Bm[s:e], m)
        torch.bmm(Cm[s:e].reshape(m * bt, 1, n), ws.xs[1:m + 1].view(m * bt, n, dm),
                  out=y[s:e].view(m * bt, 1, dm))
        ws.xs[0].copy_(ws.xs[m])
    return y, starts


def _scan_backward(g_y: torch.Tensor, u: torch.Tensor, dt: torch.Tensor, AT: torch.Tensor,
                   Bm: torch.Tensor, Cm: torch.Tensor, starts: torch.Tensor, lb: int,
                   needs: tuple[bool, ...]) -> tuple[torch.Tensor | None, ...]:
    """Core backward: gradients of (u, dt, AT, Bm, Cm) given g_y: (L, Bt, Dm).

    ``needs`` flags which of the five gradients to return (others come back as None).
    """
    length, bt, dm = u.shape
    n = AT.shape[0]
    n_blocks = starts.shape[0]
    need_u, need_dt, need_A, need_B, need_C = needs
    ws = _Workspace(lb, bt, n, dm, u, backward=True)
    dtu = dt * u  # (L, Bt, Dm)
    g_u = torch.empty_like(u) if need_u else None
    g_dt = torch.empty_like(dt) if need_dt else None
    g_AT = torch.zeros_like(AT) if need_A else None
    g_B = torch.empty_like(Bm) if need_B else None
    g_C = torch.empty_like(Cm) if need_C else None
    carry = u.new_zeros((bt, n, dm))  # exp(dt_e A) * g_x_e for the step after the block
    S = u.new_empty((lb, bt, dm))
    gx_v, dA_v = ws.gx_v, ws.dA_v
    for k in range(n_blocks - 1, -1, -1):
        s = k * lb
        e = min(s + lb, length)
        m = e - s
        ws.xs[0].copy_(starts[k])
        _block_states(ws, dt[s:e], dtu[s:e], AT, Bm[s:e], m)
        gyb = g_y[s:e]  # (m, Bt, Dm)
        xs = ws.xs[1:m + 1]  # (m, Bt, N, Dm): x_t
        if g_C is not None:  # need_C
            torch.bmm(xs.view(m * bt, n, dm), gyb.reshape(m * bt, dm, 1),
                      out=g_C[s:e].view(m * bt, n, 1))
        if not (need_u or need_dt or need_A or need_B):
            continue
        gx = ws.gx[:m]
        torch.mul(Cm[s:e].unsqueeze(3), gyb.unsqueeze(2), out=gx)  # C_t g_y_t: (m, Bt, N, Dm)
        gx_v[m - 1].add_(carry)
        for t in range(m - 2, -1, -1):
            gx_v[t].addcmul_(dA_v[t + 1], gx_v[t + 1])
        torch.mul(dA_v[0], gx_v[0], out=carry)
        gx2 = gx.view(m * bt, n, dm)
        if g_B is not None:  # need_B
            torch.bmm(gx2, dtu[s:e].reshape(m * bt, dm, 1), out=g_B[s:e].view(m * bt, n, 1))
        if need_u or need_dt:
            Sb = S[:m]
            torch.bmm(Bm[s:e].reshape(m * bt, 1, n), gx2, out=Sb.view(m * bt, 1, dm))
            if g_u is not None:  # need_u
                torch.mul(Sb, dt[s:e], out=g_u[s:e])
            if g_dt is not None:  # need_dt
                torch.mul(Sb, u[s:e], out=g_dt[s:e])
        if need_dt or need_A:
            P = ws.tmp[:m]  # g_x_t * dA_t * x_{t-1}: (m, Bt, N, Dm)
            torch.mul(gx, ws.dA[:m], out=P)
            P.mul_(ws.xs[:m])
            if g_dt is not None:  # need_dt
                torch.mul(P, AT, out=gx)  # gx is spent: reuse it
                g_dt[s:e].add_(gx.sum(2))
            if g_AT is not None:  # need_A
                P.mul_(dt[s:e].unsqueeze(2))
                g_AT.add_(P.sum((0, 1)))
    return g_u, g_dt, g_AT, g_B, g_C


class _SelectiveScanCore(torch.autograd.Function):
    """y = scan(u, dt, A, B, C) on (L, Bt, ·) layouts; see the module docstring."""

    @staticmethod
    def forward(ctx, u, dt, AT, Bm, Cm, lb):
        with torch.autocast(device_type=u.device.type, enabled=False):
            y, starts = _scan_forward(u, dt, AT, Bm, Cm, lb)
        ctx.save_for_backward(u, dt, AT, Bm, Cm, starts)
        ctx.lb = lb
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g_y):
        u, dt, AT, Bm, Cm, starts = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:5])
        with torch.autocast(device_type=u.device.type, enabled=False):
            grads = _scan_backward(g_y.contiguous(), u, dt, AT, Bm, Cm, starts, ctx.lb, needs)
        return (*grads, None)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    *,
    block_len: int | None = None,
) -> torch.Tensor:
    """Fast selective scan (drop-in for mamba_ssm's ``selective_scan_fn``, real A, variable B/C).

    u, delta: (Bt, Dm, L); A: (Dm, N); B, C: (Bt, N, L); D: (Dm,) | None;
    z: (Bt, Dm, L) | None; delta_bias: (Dm,) | None. Returns out: (Bt, Dm, L) in u's dtype.
    The state is computed in float32 (float64 for float64 inputs), so bf16/fp16 are safe.
    ``block_len`` (steps per block) defaults to a cache-sized block; tests force small ones.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    bt, dm, length = u.shape
    if length < 1:
        raise ConfigError("selective scan: the sequence length L (u.shape[2]) must be >= 1")
    if block_len is not None and block_len < 1:
        raise ConfigError(f"selective scan: block_len must be >= 1, got {block_len}")
    dtype_in = u.dtype
    ct = compute_dtype(dtype_in)
    u_c = u.to(ct)
    n = A.shape[1]
    dt = delta.to(ct)  # (Bt, Dm, L), contiguous as given: the elementwise ops need no transposed copy
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    if u.device.type == "cpu" and scan_cpu.load() is not None:
        # the fused kernel reads the (Bt, Dm, L) layout itself
        lb = min(block_len or scan_cpu.block_len(length), length)
        y = scan_cpu.FusedCpuCore.apply(u_c.contiguous(), dt.contiguous(), A.to(ct).t().contiguous(),
                                        B.to(ct).contiguous(), C.to(ct).contiguous(), lb)  # (Bt, Dm, L)
    else:
        lb = block_len or default_block_len(bt, n, dm, torch.finfo(ct).bits // 8, u.device, length)
        lb = min(lb, length)
        y = _SelectiveScanCore.apply(
            u_c.permute(2, 0, 1).contiguous(),  # (L, Bt, Dm)
            dt.permute(2, 0, 1).contiguous(),  # (L, Bt, Dm)
            A.to(ct).t().contiguous(),  # (N, Dm)
            B.to(ct).permute(2, 0, 1).contiguous(),  # (L, Bt, N)
            C.to(ct).permute(2, 0, 1).contiguous(),  # (L, Bt, N)
            lb,
        ).permute(1, 2, 0).contiguous()  # (Bt, Dm, L)
    out = y if D is None else y + u_c * D.to(ct)[:, None]
    if z is not None:
        out = out * F.silu(z.to(ct))
    return out.to(dtype_in)
