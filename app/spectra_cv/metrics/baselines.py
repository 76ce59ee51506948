"""Classical denoising baselines (SPEC §4), NumPy only (no scipy).

Each ``fit_*`` takes the TRAIN split's noisy spectra and their references (LOO means), tries
its parameter grid, keeps the parameter with the best mean per-spectrum PSNR *on train*, and
returns a ``FittedBaseline`` whose ``apply(noisy)`` is then used on val/test. Nothing about a
test split enters the choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectra_cv.metrics.spectral import psnr

SAVGOL_WINDOWS = (5, 7, 9, 11, 15, 21, 31, 41, 51, 61, 81, 101)
SAVGOL_ORDERS = (2, 3, 4)
GAUSSIAN_SIGMAS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
"""σ in grid samples (×0.5 nm on the standard grid)."""
PCA_RANKS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-4, 4, 17))


@dataclass(frozen=True)
class FittedBaseline:
    """A baseline with its chosen parameters. ``apply``: noisy (N, L) → denoised (N, L) float64."""

    name: str
    params: dict[str, Any]
    train_scores: dict[str, float] = field(repr=False)
    """Mean train PSNR of every grid point (label → dB), for the record."""
    transform: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def apply(self, noisy: np.ndarray) -> np.ndarray:
        """Denoise noisy (N, L) → (N, L) float64."""
        return self.transform(_as2d(noisy))


def _as2d(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected spectra of shape (N, L), got {arr.shape}")
    return arr


def score(pred: np.ndarray, ref: np.ndarray) -> float:
    """Selection score: mean per-spectrum PSNR (dB) of pred against ref."""
    return float(np.mean(psnr(pred, ref)))


def _choose(name: str, grid: dict[str, tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]],
            noisy: np.ndarray, ref: np.ndarray) -> FittedBaseline:
    scores = {label: score(fn(noisy), ref) for label, (_, fn) in grid.items()}
    best = max(scores, key=scores.__getitem__)
    params, fn = grid[best]
    return FittedBaseline(name, params, scores, fn)


def _correlate(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Valid-mode correlation of rows of x (N, M) with taps (W,) → (N, M − W + 1); a loop over taps."""
    out_len = x.shape[1] - taps.size + 1
    out = np.zeros((x.shape[0], out_len))
    for j, tap in enumerate(taps):
        out += tap * x[:, j : j + out_len]
    return out


def savgol_projection(window: int, polyorder: int) -> np.ndarray:
    """(W, W) least-squares projection onto polynomials of degree ≤ polyorder over a window.

    Row k is the filter that gives the fitted value at window position k; the centre row is the
    classic Savitzky–Golay smoothing kernel.
    """
    if window % 2 == 0 or window < 3 or not 0 <= polyorder < window:
        raise ValueError(f"Savitzky–Golay needs an odd window ≥ 3 and polyorder < window (got {window}, {polyorder})")
    half = window // 2
    vander = np.vander(np.arange(-half, half + 1) / half, polyorder + 1, increasing=True)
    return vander @ np.linalg.pinv(vander)


def savgol_filter(x: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky–Golay smoothing of rows of x (N, L); edges use the polynomial fitted to the first
    and last windows (scipy's mode='interp'), so polynomials of degree ≤ polyorder pass exactly."""
    x = _as2d(x)
    if x.shape[1] < window:
        raise ValueError(f"Savitzky–Golay window {window} is longer than the spectra ({x.shape[1]})")
    half = window // 2
    proj = savgol_projection(window, polyorder)
    out = np.empty_like(x)
    out[:, half : x.shape[1] - half] = _correlate(x, proj[half])
    out[:, :half] = x[:, :window] @ proj[:half].T
    out[:, x.shape[1] - half :] = x[:, -window:] @ proj[window - half :].T
    return out


def gaussian_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of rows of x (N, L), σ in samples, kernel truncated at 4σ, reflect padding."""
    x = _as2d(x)
    radius = max(1, math.ceil(4.0 * sigma))
    if radius >= x.shape[1]:
        raise ValueError(f"Gaussian σ={sigma} samples is too wide for spectra of length {x.shape[1]}")
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return _correlate(np.pad(x, ((0, 0), (radius, radius)), mode="reflect"), taps / taps.sum())


def linear_operator(filter_rows: Callable[[np.ndarray], np.ndarray], length: int) -> np.ndarray:
    """(L, L) matrix M of a linear row filter, so that filter_rows(x) == x @ M for x (N, L).

    Built by filtering the identity (row i of M is the response to a unit impulse at i); applying
    it is then one matrix product however wide the filter.
    """
    return filter_rows(np.eye(length))


def fit_identity(noisy: np.ndarray, ref: np.ndarray) -> FittedBaseline:
    """Output = input (the bar every denoiser must clear first)."""
    return _choose("identity", {"identity": ({}, lambda x: x.copy())}, _as2d(noisy), _as2d(ref))


def fit_savgol(noisy: np.ndarray, ref: np.ndarray, windows: Sequence[int] = SAVGOL_WINDOWS,
               orders: Sequence[int] = SAVGOL_ORDERS) -> FittedBaseline:
    """Savitzky–Golay over the grid windows × polyorders (pairs with polyorder < window)."""
    x = _as2d(noisy)
    grid = {}
    for w in windows:
        for p in orders:
            if p < w <= x.shape[1]:
                op = linear_operator(lambda z, w=w, p=p: savgol_filter(z, w, p), x.shape[1])
                grid[f"w{w}_p{p}"] = ({"window": w, "polyorder": p}, lambda z, op=op: z @ op)
    return _choose("savgol", grid, x, _as2d(ref))


def fit_gaussian(noisy: np.ndarray, ref: np.ndarray, sigmas: Sequence[float] = GAUSSIAN_SIGMAS) -> FittedBaseline:
    """Gaussian smoothing over the grid of σ (samples)."""
    x = _as2d(noisy)
    grid = {}
    for s in sigmas:
        op = linear_operator(lambda z, s=s: gaussian_filter(z, s), x.shape[1])
        grid[f"s{s:g}"] = ({"sigma_samples": s}, lambda z, op=op: z @ op)
    return _choose("gaussian", grid, x, _as2d(ref))


def fit_pca(noisy: np.ndarray, ref: np.ndarray, ranks: Sequence[int] = PCA_RANKS) -> FittedBaseline:
    """Projection onto the top-r principal components of the train noisy spectra (mean added back)."""
    x = _as2d(noisy)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)  # vt: (min(N, L), L)
    usable = sorted({min(r, vt.shape[0]) for r in ranks})

    def project(r: int) -> Callable[[np.ndarray], np.ndarray]:
        basis = vt[:r]  # (r, L)
        return lambda z: mean + ((z - mean) @ basis.T) @ basis

    grid = {f"r{r}": ({"rank": r}, project(r)) for r in usable}
    return _choose("pca", grid, x, _as2d(ref))


def fit_ridge(noisy: np.ndarray, ref: np.ndarray, alphas: Sequence[float] = RIDGE_ALPHAS) -> FittedBaseline:
    """Linear map noisy → reference with intercept, W = (X'X + αI)⁻¹X'Y on centred data (via SVD)."""
    x, y = _as2d(noisy), _as2d(ref)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)  # (k, L)

    def solve(alpha: float) -> Callable[[np.ndarray], np.ndarray]:
        weights = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)  # (L, L)
        return lambda z: (z - x_mean) @ weights + y_mean

    grid = {f"a{a:.3g}": ({"alpha": float(a)}, solve(a)) for a in alphas}
    return _choose("ridge", grid, x, y)


def fit_baselines(train_noisy: np.ndarray, train_ref: np.ndarray) -> dict[str, FittedBaseline]:
    """All five baselines fitted on the train split: identity, savgol, gaussian, pca, ridge."""
    fitters = (fit_identity, fit_savgol, fit_gaussian, fit_pca, fit_ridge)
    return {baseline.name: baseline for baseline in (fit(train_noisy, train_ref) for fit in fitters)}
