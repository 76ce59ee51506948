"""Classical denoising baselines of the cross-validation table, each fitted on a fold's train split.

Each ``fit_*`` takes the TRAIN split's noisy spectra, their references (LOO means) and the group of
each spectrum (``treatment/sample/angle``). Its parameter is chosen on *held-out samples of the
train split*: three inner folds, each holding out one sample of every treatment (both angles, all
replicates), the others fitting; the parameter with the best mean per-spectrum PSNR over the
held-out spectra wins, and the baseline is refitted on the whole train split with it. (Choosing on
the training fit itself favours too little regularisation: it always prefers ridge's smallest α and
PCA's largest rank.) Filters that learn nothing from data (Savitzky–Golay, Gaussian) score the
same either way, since every train spectrum is held out exactly once. Nothing about a test split
enters any choice.

Implementations: Savitzky–Golay is ``scipy.signal.savgol_filter(mode="interp")`` and Gaussian
smoothing ``scipy.ndimage.gaussian_filter1d(mode="mirror", truncate=4)``, each applied as its (L, L)
matrix to all spectra at once (``banded_times``: only the band it reaches). PCA, ridge and the Wiener
filter are written with NumPy/SciPy linear algebra because their grids are scored from one
decomposition per inner fold (eigenvectors of X'X, a Cholesky factor) with a cheap update per grid
point, which scikit-learn's estimators (one fit per grid point) do not do; ``tests/test_baselines.py``
holds them equal to ``sklearn.decomposition.PCA`` projection,
``sklearn.linear_model.Ridge`` with ``alpha = α·N`` (N training spectra: α is per spectrum, so one
grid serves any split size) and ``sklearn.covariance.ledoit_wolf``, and the Wiener filter to its
definition and, on Gaussian data of known covariance, to the optimal linear map.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, cast

import numpy as np
import scipy.linalg
import scipy.ndimage

from spectra_cv.data.smooth import smooth_factor, smooth_kernel
from spectra_cv.errors import DataContractError
from spectra_cv.log import get_logger
from spectra_cv.metrics.spectral import psnr, psnr_from_mse

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
WIENER_LAMBDAS = tuple(float(v) for v in np.logspace(-7, -1, 13))
"""λ of the Wiener filter's smooth signal term (reflectance², two points a decade)."""
WIENER_LENGTH_SCALES = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
"""ℓ of its squared-exponential kernel, in grid samples."""
WIENER_LIMITS = {"lambda": (1e-12, 1.0), "length_scale": (1.0, 1e6)}
"""How far the Wiener grid may grow past an end its choice sits on (ℓ also stops at the spectrum length)."""
INNER_FOLDS = 3
"""Inner folds of the train split: sample i (sorted) of each treatment is held out in fold i mod 3."""


def selection_rule() -> dict[str, Any]:
    """Everything that decides which parameters the fits choose besides the data: the grids, how far
    they may grow, the inner folds. A record of chosen parameters holds only while this is unchanged."""
    return {"savgol": [list(SAVGOL_WINDOWS), list(SAVGOL_ORDERS)], "gaussian": list(GAUSSIAN_SIGMAS),
            "pca": list(PCA_RANKS), "ridge": [list(RIDGE_ALPHAS), list(RIDGE_LIMITS)],
            "wiener": [list(WIENER_LAMBDAS), list(WIENER_LENGTH_SCALES),
                       {k: list(v) for k, v in WIENER_LIMITS.items()}],
            "smooth_rank_tolerance": SMOOTH_RANK_TOLERANCE, "inner_folds": INNER_FOLDS,
            "score": "mean held-out per-spectrum PSNR"}


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


def inner_folds(groups: Sequence[str], k: int = INNER_FOLDS) -> list[np.ndarray]:
    """Held-out masks (N,) of the inner folds: sample i (sorted) of every treatment goes to fold i mod k.

    ``groups`` are ``treatment/sample/angle`` ids. Folds with nothing held out are dropped; at least
    two must remain, each leaving something to fit on, or ``DataContractError`` says why.
    """
    parts = [PurePosixPath(str(g)).parts for g in groups]
    if any(len(p) < 2 for p in parts):
        bad = next(str(g) for g, p in zip(groups, parts, strict=True) if len(p) < 2)
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


Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Candidates:
    """Every grid point of a baseline fitted on one set of spectra.

    ``params``: label → parameters, in grid order. ``transform(label)``: that point's map, built on
    demand (a fitted baseline needs only its chosen one). ``held_out(z, y)``: label → per-spectrum
    PSNR of every point on held-out spectra; a family whose grid points share their heavy algebra
    (one decomposition per fit, a cheap update per point) gives its own, otherwise each map is applied.
    """

    params: dict[str, dict[str, Any]]
    transform: Callable[[str], Transform]
    held_out: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]] | None = None

    def held_out_psnr(self, z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """label → per-spectrum PSNR (N,) of every grid point on noisy ``z`` against ``y``."""
        if self.held_out is not None:
            return self.held_out(z, y)
        return {label: psnr(self.transform(label)(z), y) for label in self.params}


def _fixed(grid: dict[str, tuple[dict[str, Any], Transform]]) -> Candidates:
    """Candidates of maps already built (filters that learn nothing)."""
    return Candidates({label: params for label, (params, _) in grid.items()}, lambda label: grid[label][1])


def _psnr_of_error(error: np.ndarray) -> np.ndarray:
    """Per-spectrum PSNR (N,) of a prediction whose error against its reference is ``error`` (N, L)."""
    return psnr_from_mse(np.mean(error**2, axis=1))


Family = Callable[[np.ndarray, np.ndarray, Sequence[str] | None], Candidates]
"""Fit on (noisy, ref, groups) → every candidate of a baseline."""


def _held_out_scores(family: Family, x: np.ndarray, y: np.ndarray, groups: Sequence[str] | None,
                     learns: bool) -> dict[str, float]:
    """Mean held-out PSNR per candidate, pooled over the inner folds (each spectrum held out once)."""
    if not learns:  # nothing is fitted: every spectrum scored once is the same pooled score
        return {label: float(np.mean(v)) for label, v in family(x, y, groups).held_out_psnr(x, y).items()}
    if groups is None:
        raise ValueError("choosing a fitted baseline's parameter needs the group (treatment/sample/angle) of "
                         "each train spectrum")
    totals: dict[str, float] = {}
    scored = 0
    for held in inner_folds(groups):
        fit = ~held
        scored += int(held.sum())
        inner = [g for g, keep in zip(groups, fit, strict=True) if keep]
        for label, values in family(x[fit], y[fit], inner).held_out_psnr(x[held], y[held]).items():
            totals[label] = totals.get(label, 0.0) + float(np.sum(values))
    return {label: total / scored for label, total in totals.items()}


def _choose(name: str, family: Family, noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None,
            learns: bool) -> FittedBaseline:
    x, y = _as2d(noisy), _as2d(ref)
    candidates = family(x, y, groups)
    scores = ({next(iter(candidates.params)): float("nan")} if len(candidates.params) == 1
              else _held_out_scores(family, x, y, groups, learns))
    best = max(scores, key=lambda k: -math.inf if math.isnan(scores[k]) else scores[k])
    return FittedBaseline(name, candidates.params[best], scores, candidates.transform(best))


def savgol_filter(x: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky–Golay smoothing of rows of x (N, L): ``scipy.signal.savgol_filter(mode="interp")``, whose
    edges use the polynomial fitted to the first and last windows, so polynomials of degree ≤ polyorder
    pass exactly. A window that is even, < 3, ≤ polyorder or longer than the spectra is a ValueError."""
    x = _as2d(x)
    if window % 2 == 0 or window < 3 or not 0 <= polyorder < window:
        raise ValueError(f"Savitzky–Golay needs an odd window ≥ 3 and polyorder < window (got {window}, {polyorder})")
    if x.shape[1] < window:
        raise ValueError(f"Savitzky–Golay window {window} is longer than the spectra ({x.shape[1]})")
    import scipy.signal  # here, not at the top: it imports scipy.stats (~1 s), which only this filter needs

    return np.asarray(scipy.signal.savgol_filter(x, window, polyorder, mode="interp", axis=-1))


def _radius(sigma: float) -> int:
    """Kernel half-width: 4σ rounded as SciPy rounds it (``int(4σ + 0.5)``), at least 1."""
    return max(1, int(4.0 * sigma + 0.5))


def gaussian_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of rows of x (N, L), σ in samples, kernel truncated at 4σ, mirror padding
    (``d c b | a b c d``): ``scipy.ndimage.gaussian_filter1d(mode="mirror", truncate=4)``."""
    x = _as2d(x)
    if _radius(sigma) >= x.shape[1]:
        raise ValueError(f"Gaussian σ={sigma} samples is too wide for spectra of length {x.shape[1]}")
    return np.asarray(scipy.ndimage.gaussian_filter1d(x, sigma, axis=-1, mode="mirror", truncate=4.0))


def linear_operator(filter_rows: Callable[[np.ndarray], np.ndarray], length: int) -> np.ndarray:
    """(L, L) matrix M of a linear row filter, so that filter_rows(x) == x @ M for x (N, L).

    Built by filtering the identity (row i of M is the response to a unit impulse at i); applying
    it is then one matrix product however wide the filter.
    """
    return filter_rows(np.eye(length))


BAND_BLOCK = 64
"""Output columns per block of ``banded_times``."""


def banded_times(op: np.ndarray, block: int = BAND_BLOCK) -> Callable[[np.ndarray], np.ndarray]:
    """The map z ↦ z @ op for a filter's (L, L) matrix ``op``, computed one block of output columns
    at a time from the input columns that block's non-zero entries reach.

    A smoothing filter's matrix is banded (Savitzky–Golay: its window, edges included; Gaussian: 4σ),
    so each block is a product of (n, block + width) by (block + width, block) instead of the whole
    (n, L) by (L, L): the same non-zero terms summed (equal to z @ op to rounding), at a cost that
    grows with the filter's width instead of L. Which inputs each output uses is read off ``op``'s
    zeros, so nothing about the filter is assumed. (BLAS has banded matrix-vector products only.)
    """
    length = op.shape[1]
    nonzero = op != 0
    used = nonzero.any(axis=0)
    first = np.where(used, nonzero.argmax(axis=0), length)  # first input row each output column uses
    last = np.where(used, length - 1 - nonzero[::-1].argmax(axis=0), -1)  # and the last
    spans = []
    for start in range(0, length, block):
        stop = min(start + block, length)
        lo, hi = int(first[start:stop].min()), int(last[start:stop].max()) + 1
        spans.append((start, stop, lo, max(lo, hi)))

    def apply(z: np.ndarray) -> np.ndarray:
        out = np.zeros((z.shape[0], length), dtype=np.result_type(z, op))
        for start, stop, lo, hi in spans:
            if hi > lo:
                out[:, start:stop] = z[:, lo:hi] @ op[lo:hi, start:stop]
        return out

    return apply


def _affine_about(centre: np.ndarray, weights: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The map z ↦ centre + (z − centre) @ weights."""
    return lambda z: centre + (z - centre) @ weights


def fit_identity(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None) -> FittedBaseline:
    """Output = input (the bar every denoiser must clear first)."""
    candidates = _fixed({"identity": ({}, lambda z: z.copy())})
    return _choose("identity", lambda x, y, g: candidates, noisy, ref, groups, False)


def fit_savgol(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None,
               windows: Sequence[int] = SAVGOL_WINDOWS, orders: Sequence[int] = SAVGOL_ORDERS) -> FittedBaseline:
    """Savitzky–Golay over the grid windows × polyorders (pairs with polyorder < window ≤ L)."""
    length = _as2d(noisy).shape[1]
    grid: dict[str, tuple[dict[str, Any], Transform]] = {}
    for w in windows:
        for p in orders:
            if p < w <= length:
                op = linear_operator(functools.partial(savgol_filter, window=w, polyorder=p), length)
                grid[f"w{w}_p{p}"] = ({"window": w, "polyorder": p}, banded_times(op))
    candidates = _fixed(grid)
    return _choose("savgol", lambda x, y, g: candidates, noisy, ref, groups, False)


def fit_gaussian(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None,
                 sigmas: Sequence[float] = GAUSSIAN_SIGMAS) -> FittedBaseline:
    """Gaussian smoothing over the grid of σ (samples; those whose kernel fits the spectra)."""
    length = _as2d(noisy).shape[1]
    grid: dict[str, tuple[dict[str, Any], Transform]] = {}
    for s in sigmas:
        if _radius(s) < length:
            op = linear_operator(functools.partial(gaussian_filter, sigma=s), length)
            grid[f"s{s:g}"] = ({"sigma_samples": s}, banded_times(op))
    candidates = _fixed(grid)
    return _choose("gaussian", lambda x, y, g: candidates, noisy, ref, groups, False)


NULL_SPACE_TOLERANCE = 1e-12
"""Eigenvalues of X'X below this fraction of the largest are its null space (``principal_axes``)."""


def principal_axes(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (k,) and eigenvectors (L, k) of ``centred``ᵀ``centred``, largest first, its null
    space left out (at most min(N, L) kept: those above ``NULL_SPACE_TOLERANCE`` of the largest).

    The right singular vectors of ``centred`` and their squared singular values, from the (L, L)
    Gram matrix: one product and a symmetric eigensolver instead of an SVD of the (N, L) matrix, five
    times faster for thousands of spectra. Squaring costs accuracy only in directions weaker than
    ~1e-8 of the strongest, which the baselines' regularisation (ridge's α, PCA's rank) never keeps.
    """
    values, vectors = np.linalg.eigh(centred.T @ centred)
    values, vectors = values[::-1], vectors[:, ::-1]
    kept = min(centred.shape) if values[0] <= 0 else int(np.sum(values > NULL_SPACE_TOLERANCE * values[0]))
    kept = min(kept, *centred.shape)
    return np.clip(values[:kept], 0.0, None), np.ascontiguousarray(vectors[:, :kept])


def _pca_family(ranks: Sequence[int]) -> Family:
    def family(x: np.ndarray, y: np.ndarray, groups: Sequence[str] | None) -> Candidates:
        del y, groups  # PCA learns from the noisy spectra alone
        mean = x.mean(axis=0)
        vt = principal_axes(x - mean)[1].T  # (k, L), largest variance first; k ≤ min(N − 1, L)
        wanted = sorted(set(ranks))

        def used(rank: int) -> int:  # an inner fold may have fewer directions than the whole split
            return min(rank, vt.shape[0])

        def project(label: str) -> Transform:
            basis = vt[: used(int(label[1:]))]  # (r, L)
            return lambda z: mean + ((z - mean) @ basis.T) @ basis

        def held_out(z: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
            # the projection onto the first r components grows a block of components at a time:
            # error_r = (mean − ref) + Σ_{j<r} c_j v_j with c = (z − mean) vtᵀ, one product for all ranks
            coef = (z - mean) @ vt[: used(wanted[-1])].T  # (n, r_max)
            error = mean - ref
            out, done = {}, 0
            for r in wanted:
                error = error + coef[:, done:used(r)] @ vt[done:used(r)]
                done = used(r)
                out[f"r{r}"] = _psnr_of_error(error)
            return out

        return Candidates({f"r{r}": {"rank": r} for r in wanted}, project, held_out)
    return family


def fit_pca(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None,
            ranks: Sequence[int] = PCA_RANKS) -> FittedBaseline:
    """Projection onto the top-r principal components of the train noisy spectra (mean added back).

    Ranks beyond what the split can have (N − 1 directions once centred, or L) are capped first, so
    the inner folds and the final fit score the same labels."""
    n, length = _as2d(noisy).shape
    capped = tuple(sorted({min(int(r), max(1, n - 1), length) for r in ranks}))
    return _choose("pca", _pca_family(capped), noisy, ref, groups, True)


def _ridge_family(alphas: Sequence[float]) -> Family:
    def family(x: np.ndarray, y: np.ndarray, groups: Sequence[str] | None) -> Candidates:
        del groups
        x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
        centred = x - x_mean
        values, axes = principal_axes(centred)  # X'X = V diag(values) V' (its null space left out)
        vty = axes.T @ (centred.T @ (y - y_mean))  # (k, L): V'X'(Y − ȳ)
        n = x.shape[0]
        labels = {f"a{a:.3g}": float(a) for a in alphas}

        def shrink(alpha: float) -> np.ndarray:
            return 1.0 / (values + alpha * n)  # (k,): W = V diag(shrink) V'X'(Y − ȳ)

        def solve(label: str) -> Transform:
            weights = axes @ (shrink(labels[label])[:, None] * vty)  # (L, L)
            return lambda z: (z - x_mean) @ weights + y_mean

        def held_out(z: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
            # in the eigenbasis each α only rescales the coefficients: no (L, L) map per α
            coef = (z - x_mean) @ axes  # (n, k)
            offset = y_mean - ref
            return {label: _psnr_of_error((coef * shrink(a)) @ vty + offset)
                    for label, a in labels.items()}

        return Candidates({label: {"alpha": a} for label, a in labels.items()}, solve, held_out)
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
        wider = _widen(grid, alpha, RIDGE_LIMITS, 10 ** 0.25)
        if wider is not None:
            grid = wider
        else:
            if alpha in (grid[0], grid[-1]):
                log.warning("ridge: the best α %.3g is at the limit of the searched range %.0e…%.0e", alpha,
                            *RIDGE_LIMITS)
            return FittedBaseline("ridge", {**fitted.params, "alpha_grid": [grid[0], grid[-1]]},
                                  fitted.train_scores, fitted.transform)


def group_means(x: np.ndarray, groups: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean spectrum of every group (G, L), groups in sorted order, and each row's group index (N,)."""
    names, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    onehot = np.zeros((len(names), x.shape[0]))
    onehot[inverse, np.arange(x.shape[0])] = 1.0
    return (onehot @ x) / onehot.sum(axis=1, keepdims=True), inverse


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf shrunk covariance of centred rows x (N, L) and its shrinkage δ:
    (1 − δ)·XᵀX/N + δ·(tr/L)·I, δ from the data (``sklearn.covariance.ledoit_wolf(assume_centered=True)``).

    Keeps the Wiener filter's noise covariance well conditioned when a split has fewer spectra than
    wavelengths (the demo's 20 replicates); with the real data's ~4,500 it shrinks by < 1 %.
    """
    n, p = x.shape
    emp = x.T @ x / n
    mu = float(np.trace(emp)) / p
    x2 = x**2
    beta_sum = float(np.sum(x2.T @ x2))
    delta_sum = float(np.sum(emp**2))  # = Σ (XᵀX)² / n²
    beta = (beta_sum / n - delta_sum) / (p * n)
    delta = (delta_sum - 2.0 * mu * float(np.trace(emp)) + p * mu**2) / p
    shrinkage = 0.0 if delta == 0 else min(beta, delta) / delta
    return (1.0 - shrinkage) * emp + shrinkage * mu * np.eye(p), shrinkage


SMOOTH_RANK_TOLERANCE = 1e-14
"""Eigenvalues of the smooth kernel below this fraction of its largest are dropped when the Wiener
grid is scored (they are round-off: a squared-exponential kernel of ℓ = 20 samples on 601 points has
~80 above it); the fitted filter itself uses the whole kernel."""


@functools.lru_cache(maxsize=32)
def smooth_factor_truncated(length: int, length_scale: float) -> np.ndarray:
    """(L, r) F with F Fᵀ = the smooth kernel less its eigenvalues below ``SMOOTH_RANK_TOLERANCE``·max
    (the kernel depends on L and ℓ alone, so a process computes it once per ℓ)."""
    factor = smooth_factor(length, length_scale, rank_tolerance=SMOOTH_RANK_TOLERANCE)
    factor.flags.writeable = False
    return factor


@dataclass(frozen=True)
class _WienerFit:
    """What the Wiener filter learns from one set of spectra: centre μ, Σs (group means, the noise
    they carry removed) and the shrunk noise covariance Σn."""

    centre: np.ndarray
    signal: np.ndarray
    noise: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, groups: Sequence[str] | None) -> _WienerFit:
        if groups is None:
            raise ValueError("the Wiener filter needs the group (treatment/sample/angle) of each train spectrum")
        means, inverse = group_means(x, groups)
        if means.shape[0] < 2 or x.shape[0] <= means.shape[0]:
            raise DataContractError(f"the Wiener filter needs ≥ 2 groups with ≥ 2 spectra each (got {x.shape[0]} "
                                    f"spectra in {means.shape[0]} groups)")
        centre = means.mean(axis=0)
        spread = means - centre
        noise, _ = ledoit_wolf(x - means[inverse])  # within-group covariance, shrunk
        sizes = np.bincount(inverse)
        # the covariance of the group means, less the noise the means still carry (Σn / n per group)
        signal = spread.T @ spread / (means.shape[0] - 1) - noise * float(np.mean(1.0 / sizes))
        values, vectors = np.linalg.eigh(signal)
        signal = (vectors * np.clip(values, 0.0, None)) @ vectors.T  # a covariance: no negative directions
        return cls(centre, signal, noise)

    def weights(self, lam: float, ell: float) -> np.ndarray:
        """(Σs + λK + Σn)⁻¹(Σs + λK), K the smooth kernel of length scale ℓ (one solve)."""
        prior = self.signal + lam * smooth_kernel(self.centre.size, ell)
        return np.linalg.solve(prior + self.noise, prior)

    def held_out(self, z: np.ndarray, ref: np.ndarray, lambdas: Sequence[float],
                 length_scales: Sequence[float]) -> dict[tuple[float, float], np.ndarray]:
        """Per-spectrum PSNR of the filter at every (λ, ℓ) on held-out ``z`` against ``ref``.

        The filter is z − c·(A + λK)⁻¹Σn with c = z − μ and A = Σs + Σn. With K = F Fᵀ (its
        numerically non-zero directions, ``smooth_factor_truncated``), FᵀA⁻¹F = P diag(m) Pᵀ and
        G = A⁻¹F P, Woodbury's identity gives (A + λK)⁻¹ = A⁻¹ − G diag(λ/(1 + λm)) Gᵀ: one
        Cholesky factor of A for the whole grid, an r × r eigenproblem per ℓ (r: the kernel's rank),
        and per λ the error e₀ + (c G D)(GᵀΣn) with D = diag(λ/(1 + λm)) added to the error e₀ of the
        filter without the kernel. Only each spectrum's squared error is needed, so it is expanded:
        |e₀|² + 2·(cGD)·(e₀ΣnG) + (cGD)(GᵀΣnΣnG)(cGD)ᵀ row by row, an (n, r) × (r, r) product per λ
        instead of (n, r) × (r, L). (scipy and scikit-learn have no Wiener filter of this form; the
        algebra is written here.)
        """
        try:
            factor = scipy.linalg.cho_factor(self.signal + self.noise)
        except np.linalg.LinAlgError:  # Σs + Σn singular (replicates without noise): each point solved alone
            return self._held_out_direct(z, ref, lambdas, length_scales)
        centred = z - self.centre
        at_zero = (z - ref) - centred @ scipy.linalg.cho_solve(factor, self.noise)  # the error at λ = 0
        squared_at_zero = np.sum(at_zero**2, axis=1)
        out: dict[tuple[float, float], np.ndarray] = {}
        for ell in length_scales:
            smooth = smooth_factor_truncated(self.centre.size, float(ell))
            solved = scipy.linalg.cho_solve(factor, smooth)  # A⁻¹F, (L, r)
            m, p = np.linalg.eigh(smooth.T @ solved)
            g = solved @ p  # (L, r)
            back = g.T @ self.noise  # (r, L)
            coef, cross, gram = centred @ g, at_zero @ back.T, back @ back.T  # (n, r), (n, r), (r, r)
            for lam in lambdas:
                step = coef * (lam / (1.0 + lam * m))  # (n, r): the error is at_zero + step @ back
                squared = squared_at_zero + np.sum(step * (2.0 * cross + step @ gram), axis=1)
                out[(lam, ell)] = psnr_from_mse(np.clip(squared, 0.0, None) / z.shape[1])
        return out


    def _held_out_direct(self, z: np.ndarray, ref: np.ndarray, lambdas: Sequence[float],
                         length_scales: Sequence[float]) -> dict[tuple[float, float], np.ndarray]:
        """``held_out`` by one solve per grid point: when Σs + Σn has no Cholesky factor (no noise to
        estimate), A + λK may still be invertible through the smooth term."""
        return {(lam, ell): psnr(self.centre + (z - self.centre) @ self.weights(lam, ell), ref)
                for ell in length_scales for lam in lambdas}


def _wiener_family(lambdas: Sequence[float], length_scales: Sequence[float]) -> Family:
    def family(x: np.ndarray, y: np.ndarray, groups: Sequence[str] | None) -> Candidates:
        del y  # the filter is built from the noisy spectra and their groups
        fit = _WienerFit.of(x, groups)
        grid = {f"l{lam:.3g}_e{ell:g}": (float(lam), float(ell)) for ell in length_scales for lam in lambdas}

        def transform(label: str) -> Transform:
            return _affine_about(fit.centre, fit.weights(*grid[label]))

        def held_out(z: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
            scores = fit.held_out(z, ref, [float(v) for v in lambdas], [float(v) for v in length_scales])
            return {label: scores[point] for label, point in grid.items()}

        params = {label: {"lambda": lam, "length_scale": ell} for label, (lam, ell) in grid.items()}
        return Candidates(params, transform, held_out)
    return family


def _widen(grid: list[float], best: float, limits: tuple[float, float], step: float) -> list[float] | None:
    """``grid`` (ascending, geometric) with ``step``-factor points added past the end ``best`` sits on,
    up to a factor 10 at a time within ``limits``; None when ``best`` is interior or the limit is reached."""
    if best == grid[0] and grid[0] / step >= limits[0] * (1 - 1e-9):
        lower = [grid[0] / step**k for k in range(1, 1 + max(1, round(math.log(10) / math.log(step))))]
        return sorted(v for v in lower if v >= limits[0] * (1 - 1e-9)) + grid
    if best == grid[-1] and grid[-1] * step <= limits[1] * (1 + 1e-9):
        upper = [grid[-1] * step**k for k in range(1, 1 + max(1, round(math.log(10) / math.log(step))))]
        return grid + [v for v in upper if v <= limits[1] * (1 + 1e-9)]
    return None


def fit_wiener(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None,
               lambdas: Sequence[float] = WIENER_LAMBDAS,
               length_scales: Sequence[float] = WIENER_LENGTH_SCALES) -> FittedBaseline:
    """Wiener filter x̂ = μ + (x − μ)(Σs + Σn)⁻¹Σs with a smooth signal prior.

    μ: mean of the train groups' means; Σs: covariance of those means + λ·exp(−(i − j)²/2ℓ²) (the
    30 groups of a fold span only 29 directions; the smooth term lets the filter pass signals it has
    not seen); Σn: covariance of (spectrum − its group mean), pooled over the groups and shrunk
    (Ledoit–Wolf, ``ledoit_wolf``) so that it stays invertible with few spectra. λ and ℓ (grid
    samples) are chosen on held-out samples; the grid grows past an end the choice sits on (within
    ``WIENER_LIMITS``), so it is never decided by the grid's edge.
    """
    lams = sorted(float(v) for v in lambdas)
    ells = sorted(float(v) for v in length_scales)
    length = _as2d(noisy).shape[1]
    while True:
        fitted = _choose("wiener", _wiener_family(lams, ells), noisy, ref, groups, True)
        wider_l = _widen(lams, fitted.params["lambda"], WIENER_LIMITS["lambda"], 10 ** 0.5) if len(lams) > 1 else None
        ell_limits = (WIENER_LIMITS["length_scale"][0], min(WIENER_LIMITS["length_scale"][1], float(length)))
        wider_e = _widen(ells, fitted.params["length_scale"], ell_limits, 2.0) if len(ells) > 1 else None
        if wider_l is None and wider_e is None:
            edges = [k for k, grid in (("lambda", lams), ("length_scale", ells))
                     if len(grid) > 1 and fitted.params[k] in (grid[0], grid[-1])]
            if edges:
                log.warning("wiener: the best %s sits at the limit of the searched range", " and ".join(edges))
            return fitted
        lams, ells = wider_l or lams, wider_e or ells


def fit_mean(name: str, members: Sequence[FittedBaseline]) -> FittedBaseline:
    """The average of already fitted baselines' outputs (no parameter of its own)."""
    parts = tuple(members)

    def apply(z: np.ndarray) -> np.ndarray:
        # sum() starts from the int 0, so mypy types the total ndarray | int; the members give arrays
        return cast(np.ndarray, sum(m.apply(z) for m in parts) / len(parts))

    return FittedBaseline(name, {m.name: dict(m.params) for m in parts}, {}, apply)


def fit_ridge_wiener(noisy: np.ndarray, ref: np.ndarray, groups: Sequence[str] | None = None) -> FittedBaseline:
    """Mean of the ridge and Wiener maps, each with its own parameters chosen on held-out samples."""
    return fit_mean("ridge_wiener", (fit_ridge(noisy, ref, groups), fit_wiener(noisy, ref, groups)))


BASELINE_NAMES = ("identity", "savgol", "gaussian", "pca", "ridge", "wiener", "ridge_wiener")
"""Every baseline a fold is scored beside, in table order."""


def refit_baselines(train_noisy: np.ndarray, train_ref: np.ndarray, groups: Sequence[str] | None,
                    chosen: Mapping[str, Mapping[str, Any]]) -> dict[str, FittedBaseline]:
    """The baselines of ``fit_baselines`` rebuilt on the same train split with parameters already
    chosen (``chosen``: name → params, as a ``FittedBaseline`` records them): each fits its one grid
    point and searches nothing, so the maps equal the searched fit's. Held-out scores are not kept."""
    missing = [name for name in BASELINE_NAMES if name not in chosen]
    if missing:
        raise KeyError(f"no chosen parameters for {', '.join(missing)}")
    x, y = train_noisy, train_ref
    p = {name: dict(chosen[name]) for name in BASELINE_NAMES}
    fitted = {
        "identity": fit_identity(x, y, groups),
        "savgol": fit_savgol(x, y, groups, windows=(int(p["savgol"]["window"]),),
                             orders=(int(p["savgol"]["polyorder"]),)),
        "gaussian": fit_gaussian(x, y, groups, sigmas=(float(p["gaussian"]["sigma_samples"]),)),
        "pca": fit_pca(x, y, groups, ranks=(int(p["pca"]["rank"]),)),
        "ridge": fit_ridge(x, y, groups, alphas=(float(p["ridge"]["alpha"]),)),
        "wiener": fit_wiener(x, y, groups, lambdas=(float(p["wiener"]["lambda"]),),
                             length_scales=(float(p["wiener"]["length_scale"]),)),
    }
    fitted = {name: FittedBaseline(name, p[name], {}, b.transform) for name, b in fitted.items()}
    fitted["ridge_wiener"] = fit_mean("ridge_wiener", (fitted["ridge"], fitted["wiener"]))
    return fitted


def fit_baselines(train_noisy: np.ndarray, train_ref: np.ndarray,
                  groups: Sequence[str] | None = None) -> dict[str, FittedBaseline]:
    """Every baseline of ``BASELINE_NAMES`` fitted on the train split (parameters on its held-out
    samples); ``ridge_wiener`` averages the two maps fitted here."""
    fitters = (fit_identity, fit_savgol, fit_gaussian, fit_pca, fit_ridge, fit_wiener)
    fitted = {}
    for fit in fitters:
        started = time.perf_counter()
        baseline = fit(train_noisy, train_ref, groups)
        fitted[baseline.name] = baseline
        log.info("baseline %s fitted on %d train spectra in %.1f s: %s", baseline.name, len(train_noisy),
                 time.perf_counter() - started, baseline.params)
    fitted["ridge_wiener"] = fit_mean("ridge_wiener", (fitted["ridge"], fitted["wiener"]))
    assert tuple(fitted) == BASELINE_NAMES
    return fitted
