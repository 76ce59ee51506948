"""Dip (absorption-line) metrics: minima found on the reference, compared window by window.

Detection uses the same rule as the training loss (``spectra_cv.objective.dips``), here on the
unsmoothed reference (the LOO mean is already quiet) with a prominence threshold:
  * a centre is strictly below its ``core`` left neighbours and not above its ``core`` right
    neighbours, lies in the ROI, and its ±half window lies on the grid;
  * prominence is measured inside the window (scipy ``find_peaks`` on −x with ``wlen``);
  * centres with prominence ≥ ``min_prominence`` are kept, most prominent first, ≤ ``max_dips``.
Baseline: a least-squares polynomial (order ``baseline_order``) through the window points *outside*
the core, |λ − λc| > core half-width, so the dip itself never shapes its baseline (the original
fitted it through a ±2 nm window inside a 5–10 nm guard, i.e. through the dip). The prediction
gets its own baseline, fitted the same way. Depth = max(baseline − x, 0); area = trapz(depth);
centroid = depth-weighted mean λ (the window centre when the depth is all zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spectra_cv.data.contract import ROI_NM


@dataclass(frozen=True, kw_only=True)
class DipMetricConfig:
    """Settings of the dip metrics (defaults sized for the 0.5 nm grid and 2–3 nm wide lines)."""

    roi: tuple[float, float] = ROI_NM
    """Dip centres must lie in [roi[0], roi[1]] nm."""
    half_width_nm: float = 6.0
    """Half-width of the window around each centre (area, depth and centroid are taken over it)."""
    core_half_nm: float = 2.5
    """Half-width of the dip core, excluded from the baseline fit; must be < half_width_nm."""
    min_prominence: float = 0.002
    """Minimum prominence (reflectance) of a reference minimum, as the original's find_peaks."""
    max_dips: int = 6
    """Most prominent dips kept per spectrum."""
    baseline_order: int = 1
    """Order of the polynomial baseline through the guard points (0: flat, 1: linear, 2: quadratic)."""
    min_target_area: float = 1e-12
    """A dip whose reference area is below this is skipped (the relative area error is undefined)."""

    def __post_init__(self) -> None:
        if not 0 < self.core_half_nm < self.half_width_nm:
            raise ValueError("dip metrics need 0 < core_half_nm < half_width_nm (the baseline lies between)")
        if self.max_dips < 1 or self.baseline_order < 0 or self.min_prominence < 0:
            raise ValueError("dip metrics need max_dips ≥ 1, baseline_order ≥ 0 and min_prominence ≥ 0")


@dataclass(frozen=True)
class _Geometry:
    step: float
    half: int
    core: int
    offsets: np.ndarray  # (W,)
    allowed: np.ndarray  # (L,) bool
    projection: np.ndarray  # (W, W): baseline = seg @ projection.T


def _geometry(wavelength: np.ndarray, cfg: DipMetricConfig) -> _Geometry:
    lam = np.asarray(wavelength, dtype=np.float64)
    steps = np.diff(lam)
    step = float(steps[0])
    if not np.allclose(steps, step, rtol=1e-4, atol=0.0):
        raise ValueError("dip metrics need a uniform wavelength grid")
    half = round(cfg.half_width_nm / step)
    core = max(1, round(cfg.core_half_nm / step))
    offsets = np.arange(-half, half + 1)
    guard = np.abs(offsets) > core
    if guard.sum() < 2 * (cfg.baseline_order + 1):
        raise ValueError("dip window too narrow for its core and baseline order; widen half_width_nm")
    positions = np.arange(lam.size)
    allowed = (lam >= cfg.roi[0]) & (lam <= cfg.roi[1]) & (positions >= half) & (positions < lam.size - half)
    vander = np.vander(offsets / half, cfg.baseline_order + 1, increasing=True)  # (W, p+1)
    fit = np.linalg.pinv(vander[guard])  # (p+1, n_guard)
    projection = np.zeros((offsets.size, offsets.size))
    projection[:, guard] = vander @ fit
    return _Geometry(step, half, core, offsets, allowed, projection)


def _windows(x: np.ndarray, centres: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """x (N, L), centres (N, K) → (N, K, W), indices clamped to the grid."""
    index = np.clip(centres[..., None] + offsets, 0, x.shape[1] - 1)
    return np.take_along_axis(x, index.reshape(x.shape[0], -1), axis=1).reshape(index.shape)


def window_prominence(seg: np.ndarray) -> np.ndarray:
    """Prominence of the centre minimum of windows seg (..., 2h+1), measured inside the window."""
    half = (seg.shape[-1] - 1) // 2
    centre = seg[..., half : half + 1]

    def side_reference(side: np.ndarray) -> np.ndarray:  # ordered outwards from the centre
        blocked = np.maximum.accumulate(side < centre, axis=-1)
        return np.where(blocked, centre, side).max(axis=-1)

    return np.minimum(side_reference(seg[..., :half][..., ::-1]), side_reference(seg[..., half + 1 :])) - centre[..., 0]


def _run_min(padded: np.ndarray, start: int, width: int, length: int) -> np.ndarray:
    """(N, length) minimum of ``padded[:, j + start : j + start + width]`` for every j < length: ``width``
    shifted slices (a reduction over a strided window view is several times slower for short windows)."""
    out = padded[:, start : start + length].copy()
    for k in range(1, width):
        np.minimum(out, padded[:, start + k : start + k + length], out=out)
    return out


def find_minima(ref: np.ndarray, wavelength: np.ndarray,
                config: DipMetricConfig = DipMetricConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dip centres of ref (N, L): centres (N, K) int, valid (N, K) bool, prominence (N, K).

    K = max_dips; entries are sorted by prominence, valid ones first.
    """
    x = np.asarray(ref, dtype=np.float64)
    geo = _geometry(wavelength, config)
    r = geo.core
    padded = np.pad(x, ((0, 0), (r, r)), constant_values=np.inf)
    length = x.shape[1]
    is_min = (x < _run_min(padded, 0, r, length)) & (x <= _run_min(padded, r + 1, r, length)) & geo.allowed
    cap = max(config.max_dips, math.ceil(int(geo.allowed.sum()) / (r + 1)))  # minima are > r apart
    cand = np.argsort(~is_min, axis=1, kind="stable")[:, :cap]  # (N, cap): minima first
    flag = np.take_along_axis(is_min, cand, axis=1)
    prom = window_prominence(_windows(x, cand, geo.offsets))
    score = np.where(flag & (prom >= config.min_prominence), prom, -np.inf)
    pick = np.argsort(-score, axis=1, kind="stable")[:, : config.max_dips]
    top = np.take_along_axis(score, pick, axis=1)
    return np.take_along_axis(cand, pick, axis=1), np.isfinite(top), np.where(np.isfinite(top), top, np.nan)


def _features(seg: np.ndarray, lam: np.ndarray, geo: _Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    depth = np.maximum(seg @ geo.projection.T - seg, 0.0)  # (..., W)
    area = geo.step * (depth.sum(axis=-1) - 0.5 * (depth[..., 0] + depth[..., -1]))
    total = depth.sum(axis=-1)
    centre = lam[..., geo.half]
    centroid = np.where(total > 0, (depth * lam).sum(axis=-1) / np.where(total > 0, total, 1.0), centre)
    return depth, area, centroid


@dataclass(frozen=True)
class DipReference:
    """The dips of a reference (N, L), found and measured once: every prediction scored against the
    same reference (each method of a scoring table) reuses them."""

    reference: np.ndarray
    """(N, L) float64: the reference they were found on."""
    wavelength: np.ndarray
    config: DipMetricConfig
    centres: np.ndarray
    found: np.ndarray
    lam: np.ndarray
    depth: np.ndarray
    area: np.ndarray
    centroid: np.ndarray

    def matches(self, ref: np.ndarray, wavelength: np.ndarray, config: DipMetricConfig) -> bool:
        """Whether these are the dips of ``ref`` on ``wavelength`` under ``config``."""
        return (self.config == config and np.shape(ref) == self.reference.shape
                and np.array_equal(self.reference, ref) and np.array_equal(self.wavelength, wavelength))


def dip_reference(ref: np.ndarray, wavelength: np.ndarray,
                  config: DipMetricConfig = DipMetricConfig()) -> DipReference:
    """Find and measure the dips of ``ref`` (N, L) for ``dip_metrics``."""
    r = np.asarray(ref, dtype=np.float64)
    lam_grid = np.asarray(wavelength, dtype=np.float64)
    geo = _geometry(lam_grid, config)
    centres, found, _ = find_minima(r, lam_grid, config)
    lam = lam_grid[np.clip(centres[..., None] + geo.offsets, 0, lam_grid.size - 1)]  # (N, K, W)
    depth, area, centroid = _features(_windows(r, centres, geo.offsets), lam, geo)
    return DipReference(r, lam_grid, config, centres, found, lam, depth, area, centroid)


def dip_metrics(pred: np.ndarray, ref: np.ndarray, wavelength: np.ndarray,
                config: DipMetricConfig = DipMetricConfig(), reference: DipReference | None = None
                ) -> dict[str, np.ndarray]:
    """Per-spectrum dip metrics, each (N,), averaged over that spectrum's dips (NaN if none).

    Keys: n_dips, dip_centroid_error_nm (|c_p − c_r|), dip_area_error_pct
    (100·|A_p − A_r| / A_r), dip_depth_mae (mean |depth_p − depth_r| over the window).
    ``reference``: the dips of ``ref`` found before (``dip_reference``), else found here.
    """
    p = np.asarray(pred, dtype=np.float64)
    if reference is None or not reference.matches(ref, wavelength, config):
        reference = dip_reference(ref, wavelength, config)
    geo = _geometry(np.asarray(wavelength, dtype=np.float64), config)
    centres, found, lam = reference.centres, reference.found, reference.lam
    depth_r, area_r, cent_r = reference.depth, reference.area, reference.centroid
    depth_p, area_p, cent_p = _features(_windows(p, centres, geo.offsets), lam, geo)
    valid = found & (area_r >= config.min_target_area)
    count = valid.sum(axis=1)

    def per_spectrum(values: np.ndarray) -> np.ndarray:
        total = np.where(valid, values, 0.0).sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    safe_area = np.where(valid, area_r, 1.0)
    return {
        "n_dips": count.astype(np.float64),
        "dip_centroid_error_nm": per_spectrum(np.abs(cent_p - cent_r)),
        "dip_area_error_pct": per_spectrum(100.0 * np.abs(area_p - area_r) / safe_area),
        "dip_depth_mae": per_spectrum(np.abs(depth_p - depth_r).mean(axis=-1)),
    }
