"""The torch twins of the per-spectrum PSNR and SAM (``metrics.spectral``), for validation on the device.

Same formulas, the same floors and float64, so the trainer's validation figures are the report's
(a test holds them equal to the NumPy ones). Only training imports this module: ``metrics`` itself
stays NumPy-only.
"""

from __future__ import annotations

import torch

from spectra_cv.metrics.spectral import MSE_FLOOR, SAM_EPS


def psnr(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, data range 1) per spectrum in float64: (B, L) → (B,)."""
    mse = ((pred.double() - ref.double()) ** 2).mean(dim=1).clamp_min(MSE_FLOOR)
    return -10.0 * torch.log10(mse)


def sam_deg(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Spectral angle (degrees) per spectrum in float64: (B, L) → (B,)."""
    p, r = pred.double(), ref.double()
    cos = (p * r).sum(1) / (p.norm(dim=1) * r.norm(dim=1)).clamp_min(SAM_EPS)
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
