"""The smooth deviation kernel: one squared-exponential covariance for three users.

The synthetic generator draws each sample's smooth departure from it, the Wiener filter's signal
prior adds it (``metrics.baselines``), and training's signal jitter draws from it
(``train.tensors``). NumPy only, float64.
"""

from __future__ import annotations

import numpy as np


def smooth_kernel(length: int, length_scale: float) -> np.ndarray:
    """(L, L) squared-exponential kernel exp(−(i − j)² / 2ℓ²), ℓ in grid samples."""
    offsets = np.arange(length)[:, None] - np.arange(length)[None, :]
    return np.exp(-0.5 * (offsets / float(length_scale)) ** 2)


def smooth_factor(length: int, length_scale: float, variance: float = 1.0, rank_tolerance: float = 0.0) -> np.ndarray:
    """(L, r) F with F Fᵀ = variance · kernel, so F @ z ~ N(0, variance · kernel) for z ~ N(0, I).

    From the kernel's eigendecomposition (its small eigenvalues clipped at 0: a smooth kernel is
    numerically singular, so a Cholesky factor would not exist). ``rank_tolerance`` > 0 keeps only
    the directions whose eigenvalue exceeds that fraction of the largest (r < L: the Wiener filter's
    scoring, ``metrics.baselines``); 0 keeps all L columns.
    """
    values, vectors = np.linalg.eigh(variance * smooth_kernel(length, length_scale))
    if rank_tolerance > 0:
        keep = values > rank_tolerance * values[-1]
        return vectors[:, keep] * np.sqrt(values[keep])
    return vectors * np.sqrt(np.clip(values, 0.0, None))
