"""Pure, vectorised loss terms on (B, L) spectra (float32, any device).

Every function takes tensors only and returns a 0-d tensor; nothing synchronises with the host.
Derivatives are divided differences on the wavelength grid (so a 0.5 nm grid scales the first
derivative by 2, as in the original); grids need not be uniform here.
"""

from __future__ import annotations

import torch

CHARBONNIER_EPS = 1e-3


def charbonnier(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, eps: float = CHARBONNIER_EPS
) -> torch.Tensor:
    """λ-weighted Charbonnier: mean over B·L of ``sqrt((P − T)² + ε²) · w``.

    pred, target: (B, L); weights: (L,). Returns a 0-d tensor.
    """
    diff = pred - target  # (B, L)
    return (torch.sqrt(diff * diff + eps * eps) * weights).mean()


def spectral_angle(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean spectral angle in radians, as sin θ = |p̂ − (p̂·t̂) t̂| (exact enough below a degree, and
    free of the cancellation of arccos near 1). pred, target: (B, L). Returns a 0-d tensor.

    The metric SAM counts every spectrum alike whatever its brightness; the fidelity terms weigh
    dark spectra less, so this term is what lets training follow the validation SAM.
    """
    p = pred / pred.norm(dim=1, keepdim=True).clamp_min(1e-12)
    t = target / target.norm(dim=1, keepdim=True).clamp_min(1e-12)
    across = p - (p * t).sum(dim=1, keepdim=True) * t  # (B, L): p̂'s part orthogonal to t̂
    return torch.sqrt((across * across).sum(dim=1) + 1e-14).mean()


def difference_spacings(grid: torch.Tensor, order: int) -> list[torch.Tensor]:
    """Spacings of each divided-difference level: level k has ``(λ[i+k] − λ[i]) / k`` (L−k,).

    Dividing the k-th difference of the (k−1)-th derivative by these gives the k-th derivative
    (Newton divided differences × k!); on a uniform grid every spacing equals Δλ.
    """
    if order < 1:
        raise ValueError(f"derivative order must be ≥ 1, got {order}")
    return [(grid[k:] - grid[:-k]) / k for k in range(1, order + 1)]


def derivative(x: torch.Tensor, spacings: list[torch.Tensor]) -> torch.Tensor:
    """Order-n forward derivative along the last axis: x (B, L) → (B, L − n), n = len(spacings)."""
    for spacing in spacings:
        x = (x[..., 1:] - x[..., :-1]) / spacing  # (B, L − k)
    return x


def support_weights(weights: torch.Tensor, order: int) -> torch.Tensor:
    """Weights of order-n differences: the mean of w over each difference's n+1 points (L − n,).

    For order 1 this is the midpoint weight 0.5·(w[i] + w[i+1]) (the original's ``w_mid``); it
    also fixes the original's crash for order ≥ 2 with λ-weights (length mismatch).
    """
    return weights.unfold(0, order + 1, 1).mean(dim=-1)


def derivative_l1(
    pred: torch.Tensor, target: torch.Tensor, spacings: list[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """Weighted derivative L1: mean over B·(L−n) of ``|D(P) − D(T)| · w``.

    pred, target: (B, L); weights: (L − n,) from ``support_weights``.
    """
    return ((derivative(pred, spacings) - derivative(target, spacings)).abs() * weights).mean()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, M) over the positions where ``mask`` (M,) is 1, across the batch.

    The denominator counts ROI elements only (B · Σmask), fixing the original's average over all
    positions; an empty mask gives 0 rather than NaN.
    """
    count = mask.sum() * values.shape[0]
    return (values * mask).sum() / count.clamp_min(1.0)


def roi_derivative_l1(
    pred: torch.Tensor, target: torch.Tensor, spacings: list[torch.Tensor], mask: torch.Tensor
) -> torch.Tensor:
    """ROI derivative L1: mean of ``|D(P) − D(T)|`` over the differences inside the ROI.

    pred, target: (B, L); mask: (L − n,) float, 1 where every point of the difference is inside.
    """
    return masked_mean((derivative(pred, spacings) - derivative(target, spacings)).abs(), mask)


def roi_curvature(
    pred: torch.Tensor,
    target: torch.Tensor,
    spacings: list[torch.Tensor],
    mask: torch.Tensor,
    mode: str = "symmetric",
) -> torch.Tensor:
    """ROI curvature term on second derivatives, averaged over ROI elements only.

    ``symmetric`` (default): ``|D²P − D²T|``. Its minimiser over noisy Noise2Noise targets is the
    median of D²T, i.e. the clean curvature when the noise is symmetric.
    ``underfill`` (the original): ``max(|D²T| − |D²P|, 0)``. It only punishes a prediction smoother
    than the target and never a rougher one, so on a noisy target it is minimised by copying (or
    exceeding) the noise curvature — it rewards noise.

    pred, target: (B, L); spacings: two levels from ``difference_spacings(grid, 2)``; mask: (L − 2,).
    """
    d2p = derivative(pred, spacings)  # (B, L − 2)
    d2t = derivative(target, spacings)
    if mode == "symmetric":
        values = (d2p - d2t).abs()
    elif mode == "underfill":
        values = torch.relu(d2t.abs() - d2p.abs())
    else:
        raise ValueError(f"curvature mode must be 'symmetric' or 'underfill', got {mode!r}")
    return masked_mean(values, mask)


def roi_difference_mask(grid: torch.Tensor, lo: float, hi: float, order: int) -> torch.Tensor:
    """(L − n,) float mask: 1 where all n+1 points of an order-n difference lie in [lo, hi] nm."""
    inside = ((grid >= lo) & (grid <= hi)).to(grid.dtype)  # (L,)
    return inside.unfold(0, order + 1, 1).prod(dim=-1)
