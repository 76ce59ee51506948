"""Sequential reference selective scan (slow; for tests and benchmarks only).

Same signature and semantics as mamba_ssm's ``selective_scan_ref`` for real ``A`` and
input-dependent ("variable") ``B``/``C``. Per (batch b, channel d) the state ``x: (N,)`` follows

    x_t = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, x_t> + D * u_t
    out_t = y_t * silu(z_t)            (when z is given)

with ``delta = softplus(delta + delta_bias)`` when ``delta_softplus`` (else ``delta + delta_bias``).
Gradients come from autograd through a plain Python loop over L.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spectra_cv.errors import ConfigError


def check_scan_inputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> None:
    """Raise ``ConfigError`` unless the inputs have the shapes the scans support.

    u, delta: (Bt, Dm, L); A: (Dm, N) real; B, C: (Bt, N, L); D, delta_bias: (Dm,); z: (Bt, Dm, L).
    """
    if u.dim() != 3 or delta.shape != u.shape:
        raise ConfigError(
            f"selective scan: u and delta must both be (batch, d_inner, L); got u {tuple(u.shape)}, "
            f"delta {tuple(delta.shape)}"
        )
    bt, dm, length = u.shape
    if A.is_complex() or A.dim() != 2 or A.shape[0] != dm:
        raise ConfigError(
            f"selective scan: A must be a real (d_inner={dm}, d_state) tensor; got "
            f"{tuple(A.shape)} {A.dtype}. Complex A is not supported by the PyTorch scans."
        )
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.is_complex() or t.dim() != 3 or tuple(t.shape) != (bt, n, length):
            raise ConfigError(
                f"selective scan: {name} must be real and input-dependent with shape "
                f"(batch={bt}, d_state={n}, L={length}); got {tuple(t.shape)} {t.dtype}. "
                "Fixed (2-D) or grouped (4-D) B/C are not supported by the PyTorch scans."
            )
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None and tuple(vec.shape) != (dm,):
            raise ConfigError(
                f"selective scan: {name} must have shape (d_inner={dm},); got {tuple(t.shape)}"
            )
    if z is not None and z.shape != u.shape:
        raise ConfigError(
            f"selective scan: z must match u {tuple(u.shape)}; got {tuple(z.shape)}"
        )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the state is kept in: float64 stays float64, anything narrower runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan by a sequential loop over time (autograd backward).

    u, delta: (Bt, Dm, L); A: (Dm, N); B, C: (Bt, N, L); D: (Dm,) | None;
    z: (Bt, Dm, L) | None; delta_bias: (Dm,) | None. Returns out: (Bt, Dm, L) in u's dtype.
    The state is kept in float32 (float64 when u is float64).
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    ct = compute_dtype(dtype_in)
    u_c = u.to(ct)
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    A_c, B_c, C_c = A.to(ct), B.to(ct), C.to(ct)
    bt, dm, length = u.shape
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", dt, A_c))  # (Bt, Dm, L, N)
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", dt, B_c, u_c)  # (Bt, Dm, L, N)
    x = u_c.new_zeros((bt, dm, A.shape[1]))  # (Bt, Dm, N)
    ys = []
    for i in range(length):
        x = delta_a[:, :, i] * x + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C_c[:, :, i]))  # (Bt, Dm)
    y = torch.stack(ys, dim=2)  # (Bt, Dm, L)
    out = y if D is None else y + u_c * D.to(ct)[:, None]
    if z is not None:
        out = out * F.silu(z.to(ct))
    return out.to(dtype_in)
