"""The Mamba (S6) mixer, parameterised exactly like ``mamba_ssm.modules.mamba_simple.Mamba`` (v1).

Parameter names, shapes and initialisation follow mamba_ssm so that a ``state_dict`` moves
between this module and a model built on ``mamba_ssm.Mamba`` in both directions. For
``d_model`` D, ``expand`` e, ``d_state`` N, ``d_conv`` K, ``d_inner`` E = e·D and
``dt_rank`` R = ceil(D / 16):

    in_proj.weight   (2E, D)          no bias
    conv1d.weight    (E, 1, K)        depthwise, causal (left padding K−1, trimmed to L)
    conv1d.bias      (E,)
    x_proj.weight    (R + 2N, E)      no bias
    dt_proj.weight   (E, R)           uniform ±R^-0.5·dt_scale
    dt_proj.bias     (E,)             softplus⁻¹ of dt ~ log-uniform [dt_min, dt_max], ≥ floor
    A_log            (E, N)           log(1..N) per row (S4D-real); A = −exp(A_log)
    D                (E,)             ones
    out_proj.weight  (D, E)           no bias

Only the selective scan differs by device: see ``backends.selective_scan``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from spectra_cv.errors import ConfigError
from spectra_cv.model import backends
from spectra_cv.model.backends import check_backend_name


def _fp32_or_wider(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or unchanged when it is float64 (mamba_ssm keeps A, D, dt bias in fp32)."""
    return t if t.dtype == torch.float64 else t.float()


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise convolution as k shifted multiply-adds (what ``conv1d(...)[..., :L]`` computes).

    x: (B, E, L); weight: (E, 1, k); bias: (E,) | None → (B, E, L). PyTorch's CPU backward of a
    depthwise Conv1d is pathologically slow (tens of seconds at B=64, E=64, L=601); this form
    costs k elementwise ops each way and keeps ``conv1d.weight``/``conv1d.bias`` as mamba_ssm names them.
    """
    k = weight.shape[-1]
    length = x.shape[-1]
    xp = F.pad(x, (k - 1, 0))  # (B, E, L + k − 1)
    w = weight[:, 0, :].to(x.dtype)  # (E, k)
    out = xp[..., k - 1 : k - 1 + length] * w[:, k - 1, None]
    for j in range(k - 1):
        out = out + xp[..., j : j + length] * w[:, j, None]
    if bias is not None:
        out = out + bias.to(x.dtype)[:, None]
    return out


class Mamba(nn.Module):
    """Selective state-space mixer: (B, L, d_model) → (B, L, d_model), causal along L.

    ``backend`` picks the scan implementation ("auto", "cuda", "torch", "ref"); it is not part
    of the state dict, so a checkpoint loads whichever backend runs it.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if min(d_model, d_state, d_conv, expand) < 1:
            raise ConfigError(
                f"Mamba mixer sizes must be >= 1; got d_model={d_model}, d_state={d_state}, "
                f"d_conv={d_conv}, expand={expand}"
            )
        if not 0 < dt_min <= dt_max:
            raise ConfigError(f"Mamba mixer needs 0 < dt_min <= dt_max; got {dt_min}, {dt_max}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = check_backend_name(backend)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
            padding=d_conv - 1, bias=conv_bias,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1)
        )  # (E, N), kept in fp32
        self.D = nn.Parameter(torch.ones(self.d_inner))  # (E,)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self._init_dt(dt_min, dt_max, dt_scale, dt_init_floor)
        # Markers read by the optimiser's parameter grouping (same attributes as mamba_ssm).
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]
        self.scan = backends.selective_scan
        """The scan entry point (``exclude_scan_from_compile`` swaps in its compiler-disabled form)."""

    def exclude_scan_from_compile(self) -> None:
        """Keep the scan eager when this mixer runs inside ``torch.compile``d code."""
        self.scan = backends.eager_selective_scan()

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, dt_scale: float, floor: float) -> None:
        """mamba_ssm's dt init: softplus(dt_proj.bias) lies in [dt_min, dt_max] at start."""
        std = self.dt_rank**-0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_lo, log_hi = math.log(dt_min), math.log(dt_max)
        dt = torch.exp(torch.rand(self.d_inner) * (log_hi - log_lo) + log_lo).clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, "
            f"d_conv={self.d_conv}, dt_rank={self.dt_rank}, backend={self.backend!r}"
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (B, L, d_model) → (B, L, d_model)."""
        if hidden.dim() != 3 or hidden.shape[-1] != self.d_model:
            raise ConfigError(
                f"Mamba mixer expects (batch, L, d_model={self.d_model}); got {tuple(hidden.shape)}"
            )
        batch, length, _ = hidden.shape
        # One matmul gives (B, 2E, L) with L contiguous, the layout the scans want.
        xz = self.in_proj.weight @ hidden.reshape(batch * length, -1).t()  # (2E, B·L)
        xz = xz.view(-1, batch, length).transpose(0, 1)  # (B, 2E, L)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(xz.dtype)[:, None]
        x, z = xz.chunk(2, dim=1)  # (B, E, L) each
        x = F.silu(causal_depthwise_conv(x, self.conv1d.weight, self.conv1d.bias))  # (B, E, L)

        x_dbl = self.x_proj(x.transpose(1, 2).reshape(batch * length, -1))  # (B·L, R + 2N)
        dt, b_in, c_in = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (self.dt_proj.weight @ dt.t()).view(-1, batch, length).transpose(0, 1)  # (B, E, L)
        b_in = b_in.view(batch, length, -1).transpose(1, 2).contiguous()  # (B, N, L)
        c_in = c_in.view(batch, length, -1).transpose(1, 2).contiguous()  # (B, N, L)
        A = -torch.exp(_fp32_or_wider(self.A_log))  # (E, N)
        y = self.scan(
            x, dt, A, b_in, c_in, _fp32_or_wider(self.D), z=z,
            delta_bias=_fp32_or_wider(self.dt_proj.bias), delta_softplus=True,
            backend=self.backend,
        )  # (B, E, L)
        return self.out_proj(y.transpose(1, 2))  # (B, L, d_model)
