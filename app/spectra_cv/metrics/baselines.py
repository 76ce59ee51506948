"""Classical denoising baselines (SPEC §4), NumPy only; parity with SciPy / scikit-learn is tested.

Each ``fit_*`` takes the TRAIN split's noisy spectra, their references (LOO means) and the group of
each spectrum (``treatment/sample/angle``). Its parameter is chosen on *held-out samples of the
train split*: three inner folds, each holding out one sample of every treatment (both angles, all
replicates), the others fitting; the parameter with the best mean per-spectrum PSNR over the
held-out spectra wins, and the baseline is refitted on the whole train split with it. (Choosing on
the training fit itself favours too little regularisation: it always prefers ridge's smallest α and
PCA's largest rank.) Filters that learn nothing from data (Savitzky–Golay, Gaussian) score the
same either way, since every train spectrum is held out exactly once. Nothing about a test split
enters any choice.

Implementations and their references (``tests/test_baselines.py`` checks parity):
Savitzky–Golay = ``scipy.signal.savgol_filter(mode="interp")``; Gaussian =
``scipy.ndimage.gaussian_filter1d(mode="mirror", truncate=4)``; PCA = ``sklearn.decomposition.PCA``
projection (``inverse_transform(transform(x))``); ridge = ``sklearn.linear_model.Ridge`` with
``alpha = α·N`` (N training spectra; α is per spectrum, so one grid serves any split size).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from spectra_cv.errors import DataContractError
from spectra_cv.log import get_logger
from spectra_cv.metrics.spectral import psnr

log = get_logger("baselines")

SAVGOL_WINDOWS = (5, 7, 9, 11, 15, 21, 31, 41, 51, 61, 81, 101, 151)
SAVGOL_ORDERS = (2, 3, 4)
GAUSSIAN_SIGMAS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0)
"""σ in grid samples (×0.5 nm on the standard grid)."""
PCA_RANKS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-9, -1, 33))
"""α per training spectrum (the penalty is α·N·I), four points a decade. When the best α lies at
an end of the grid, the grid is extended a decade at a time (down to 1e-14, up to 1e2), so the
choice is never at its edge unless that limit is reached (logged)."""
RIDGE_LIMITS = (1e-14, 1e2)
INNER_FOLDS = 3
"""Inner folds of the train split: sample i (sorted) of each treatment is held out in fold i mod 3."""


@dataclass(frozen=True)
class FittedBaseline:
    """A baseline with its chosen parameters. ``apply``: noisy (N, L) → denoised (N, L) float64."""

    name: str
    params: dict[str, Any]
    train_scores: dict[str, float] = field(repr=False)
    """Mean held-out PSNR of every grid point (label → dB), for the record."""
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


def inner_folds(groups: Sequence[str], k: int = INNER_FOLDS) -> list[np.ndarray]:
    """Held-out masks (N,) of the inner folds: sample i (sorted) of every treatment goes to fold i mod k.

    ``groups`` are ``treatment/sample/angle`` ids. Folds with nothing held out are dropped; at least
    two must remain, each leaving something to fit on, or ``DataContractError`` says why.
    """
    parts = [PurePosixPath(str(g)).parts for g in groups]
    if any(len(p) < 2 for p in parts):
        bad = next(str(g) for g, p in zip(groups, parts) if len(p) < 2)
        raise DataContractError(f"group {bad!r} is not treatment/sample/angle: baseline parameters are chosen on "
                                "held-out samples, which needs each spectrum's treatment and sample")
    samples: dict[str, set[str]] = {}
    for p in parts:
        samples.setdefault(p[0], set()).add(p[1])
    fold_of = {(t, s): i % k for t, names in samples.items() for i, s in enumerate(sorted(names))}
    index = np.array([fold_of[(p[0], p[1])] for p in parts])
    masks = [index == j for j in range(k) if (index == j).any() and (index != j).any()]
    if len(masks) < 2:
        raise DataContractError(
            "choosing baseline parameters on held-out samples needs ≥ 2 samples in some treatment of the train "
            f"split (found {', '.join(f'{t}: {len(n)}' for t, n in sorted(samples.items()))}); add samples")
    return masks


Family = Callable[[np.ndarray, np.ndarray], dict[str, tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]]]
"""Fit on (noisy, ref) → every candidate of a baseline: label → (params, transform)."""


def _held_out_scores(family: Family, x: np.ndarray, y: np.ndarray, groups: Sequence[str] | None,
                     learns: bool) -> dict[str, float]:
    """Mean held-out PSNR per candidate, pooled over the inner folds (each spectrum held out once)."""
    if not learns:  # nothing is fitted: every spectrum scored once is the same pooled score
        return {label: score(fn(x), y) for label, (_, fn) in family(x, y).items()}
    if groups is None:
        raise ValueError("choosing a fitted baseline's parameter needs the group (treatment/sample/angle) of "
                         "each train spectrum")
    totals: dict[str, float] = {}
    scored = 0
    for held in inner_folds(groups):
        fit = ~held
        scored += int(held.sum())
        for label, (_, fn) in family(x[fit], y[fit]).items():
            totals[label] = totals.get(label, 0.0) + float(np.sum(psnr(fn(x[held]), y[held])))
    return {label: total / scored for label, total in totals.items()}


def _choose(name: str, family: Family, noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None,
            learns: bool) -> FittedBaseline:
    x, y = _as2d(noisy), _as2d(ref)
    candidates = family(x, y)
    scores = ({next(iter(candidates)): float("nan")} if len(candidates) == 1
              else _held_out_scores(family, x, y, groups, learns))
    best = max(scores, key=lambda k: -math.inf if math.isnan(scores[k]) else scores[k])
    params, fn = candidates[best]
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


def _radius(sigma: float) -> int:
    """Kernel half-width: 4σ rounded as SciPy rounds it (``int(4σ + 0.5)``), at least 1."""
    return max(1, int(4.0 * sigma + 0.5))


def gaussian_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of rows of x (N, L), σ in samples, kernel truncated at 4σ, mirror padding
    (``d c b | a b c d``: SciPy's ``mode="mirror"``, NumPy's ``pad(mode="reflect")``)."""
    x = _as2d(x)
    radius = _radius(sigma)
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


def fit_identity(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None) -> FittedBaseline:
    """Output = input (the bar every denoiser must clear first)."""
    return _choose("identity", lambda x, y: {"identity": ({}, lambda z: z.copy())}, noisy, ref, groups, False)


def fit_savgol(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None,
               windows: Sequence[int] = SAVGOL_WINDOWS, orders: Sequence[int] = SAVGOL_ORDERS) -> FittedBaseline:
    """Savitzky–Golay over the grid windows × polyorders (pairs with polyorder < window ≤ L)."""
    length = _as2d(noisy).shape[1]
    grid = {}
    for w in windows:
        for p in orders:
            if p < w <= length:
                op = linear_operator(lambda z, w=w, p=p: savgol_filter(z, w, p), length)
                grid[f"w{w}_p{p}"] = ({"window": w, "polyorder": p}, lambda z, op=op: z @ op)
    return _choose("savgol", lambda x, y: grid, noisy, ref, groups, False)


def fit_gaussian(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None,
                 sigmas: Sequence[float] = GAUSSIAN_SIGMAS) -> FittedBaseline:
    """Gaussian smoothing over the grid of σ (samples; those whose kernel fits the spectra)."""
    length = _as2d(noisy).shape[1]
    grid = {}
    for s in sigmas:
        if _radius(s) < length:
            op = linear_operator(lambda z, s=s: gaussian_filter(z, s), length)
            grid[f"s{s:g}"] = ({"sigma_samples": s}, lambda z, op=op: z @ op)
    return _choose("gaussian", lambda x, y: grid, noisy, ref, groups, False)


def _pca_family(ranks: Sequence[int]) -> Family:
    def family(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]]:
        del y  # PCA learns from the noisy spectra alone
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)  # vt: (min(N, L), L)

        def project(r: int) -> Callable[[np.ndarray], np.ndarray]:
            basis = vt[:r]  # (r, L)
            return lambda z: mean + ((z - mean) @ basis.T) @ basis

        usable = sorted({min(r, vt.shape[0]) for r in ranks})
        return {f"r{r}": ({"rank": r}, project(r)) for r in usable}
    return family


def fit_pca(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None,
            ranks: Sequence[int] = PCA_RANKS) -> FittedBaseline:
    """Projection onto the top-r principal components of the train noisy spectra (mean added back)."""
    return _choose("pca", _pca_family(ranks), noisy, ref, groups, True)


def _ridge_family(alphas: Sequence[float]) -> Family:
    def family(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]]:
        x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
        u, s, vt = np.linalg.svd(x - x_mean, full_matrices=False)
        uty = u.T @ (y - y_mean)  # (k, L)
        n = x.shape[0]

        def solve(alpha: float) -> Callable[[np.ndarray], np.ndarray]:
            weights = vt.T @ ((s / (s**2 + alpha * n))[:, None] * uty)  # (L, L)
            return lambda z: (z - x_mean) @ weights + y_mean

        return {f"a{a:.3g}": ({"alpha": float(a)}, solve(a)) for a in alphas}
    return family


def fit_ridge(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None,
              alphas: Sequence[float] = RIDGE_ALPHAS) -> FittedBaseline:
    """Linear map noisy → reference with intercept: W = (X'X + α·N·I)⁻¹X'Y on centred data (via SVD).

    The grid is extended a decade at a time while the best α sits at one of its ends (within
    ``RIDGE_LIMITS``), so a too-narrow grid never decides the choice.
    """
    grid = sorted(float(a) for a in alphas)
    while True:
        fitted = _choose("ridge", _ridge_family(grid), noisy, ref, groups, True)
        if len(grid) < 2:
            return fitted
        alpha = fitted.params["alpha"]
        if alpha == grid[0] and grid[0] / 10 >= RIDGE_LIMITS[0]:
            grid = [grid[0] * 10 ** (-q / 4) for q in range(4, 0, -1)] + grid
        elif alpha == grid[-1] and grid[-1] * 10 <= RIDGE_LIMITS[1]:
            grid = grid + [grid[-1] * 10 ** (q / 4) for q in range(1, 5)]
        else:
            if alpha in (grid[0], grid[-1]):
                log.warning("ridge: the best α %.3g is at the limit of the searched range %.0e…%.0e", alpha,
                            *RIDGE_LIMITS)
            return FittedBaseline("ridge", {**fitted.params, "alpha_grid": [grid[0], grid[-1]]},
                                  fitted.train_scores, fitted.transform)


def fit_baselines(train_noisy: np.ndarray, train_ref: np.ndarray,
                  groups: Sequence[str] | None = None) -> dict[str, FittedBaseline]:
    """All five baselines fitted on the train split (parameters on its held-out samples):
    identity, savgol, gaussian, pca, ridge."""
    fitters = (fit_identity, fit_savgol, fit_gaussian, fit_pca, fit_ridge)
    return {baseline.name: baseline for baseline in (fit(train_noisy, train_ref, groups) for fit in fitters)}
