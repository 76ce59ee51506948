"""Per-spectrum metrics against a reference, leave-one-out means and dataset aggregation.

Pure NumPy in float64. Per spectrum (rows of (N, L) arrays): PSNR with data range 1,
SAM in degrees, RMSE and ROI PSNR; the dataset adds the PSNR of the pooled MSE (which, unlike
the original's batch PSNR, does not depend on how spectra are batched). Per wavelength (columns):
the RMSE over the spectra, where along the grid a denoiser errs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from spectra_cv.data.contract import ROI_NM
from spectra_cv.errors import DataContractError
from spectra_cv.metrics.dips import DipMetricConfig, DipReference, dip_metrics

# The dip metrics' default settings: one frozen instance, the default of every scoring call.
DEFAULT_DIP_CONFIG = DipMetricConfig()

MSE_FLOOR = 1e-12
"""PSNR uses max(MSE, this): identical spectra give 120 dB, not infinity."""
SAM_EPS = 1e-12


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    p = p[None] if p.ndim == 1 else p
    r = r[None] if r.ndim == 1 else r
    if p.shape != r.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and ref {r.shape} must both be (N, L)")
    return p, r


def psnr_from_mse(mse: np.ndarray | float, data_range: float = 1.0) -> np.ndarray:
    """−10·log10(max(mse, 1e-12) / data_range²), elementwise."""
    return 10.0 * np.log10(data_range**2 / np.maximum(mse, MSE_FLOOR))


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """PSNR (dB) per spectrum: pred, ref (N, L) → (N,)."""
    p, r = _pair(pred, ref)
    return psnr_from_mse(np.mean((p - r) ** 2, axis=1), data_range)


def rmse(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Root-mean-square error per spectrum: (N, L) → (N,)."""
    p, r = _pair(pred, ref)
    return np.sqrt(np.mean((p - r) ** 2, axis=1))


def rmse_per_wavelength(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Root-mean-square error at each grid point, over the spectra: (N, L) → (L,)."""
    p, r = _pair(pred, ref)
    return np.sqrt(np.mean((p - r) ** 2, axis=0))


def sam_deg(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Spectral angle in degrees per spectrum: arccos(⟨p, r⟩ / max(‖p‖‖r‖, 1e-12)), (N, L) → (N,).

    (The original added 1e-12 to the denominator, which reads 5e-5° for identical spectra.)
    """
    p, r = _pair(pred, ref)
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(r, axis=1)
    cos = np.sum(p * r, axis=1) / np.maximum(norms, SAM_EPS)  # a zero spectrum gives 90°
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def roi_mask(wavelength: np.ndarray, roi: tuple[float, float] = ROI_NM) -> np.ndarray:
    """(L,) bool: roi[0] ≤ λ ≤ roi[1]; an ROI with no grid point is an error."""
    lam = np.asarray(wavelength, dtype=np.float64)
    mask = (lam >= roi[0]) & (lam <= roi[1])
    if not mask.any():
        raise ValueError(f"ROI {roi} nm holds no point of the grid {lam[0]:.1f}–{lam[-1]:.1f} nm")
    return mask


def roi_psnr(pred: np.ndarray, ref: np.ndarray, wavelength: np.ndarray,
             roi: tuple[float, float] = ROI_NM) -> np.ndarray:
    """PSNR per spectrum over the ROI points only: (N, L) → (N,)."""
    p, r = _pair(pred, ref)
    mask = roi_mask(wavelength, roi)
    return psnr(p[:, mask], r[:, mask])


def loo_means(spectra: np.ndarray, group_ids: Sequence | np.ndarray) -> np.ndarray:
    """Leave-one-out mean of each spectrum's group: (sum of group − self) / (n − 1).

    spectra: (N, L); group_ids: (N,) any hashable labels. Returns float64 (N, L). A group with
    fewer than two members has no LOO mean: that is a DataContractError naming the groups.
    """
    x = np.asarray(spectra, dtype=np.float64)
    ids = np.asarray(group_ids)
    if x.ndim != 2 or ids.shape != (x.shape[0],):
        raise ValueError(f"spectra {x.shape} must be (N, L) with group_ids of shape (N,), got {ids.shape}")
    labels, inverse = np.unique(ids, return_inverse=True)
    counts = np.bincount(inverse, minlength=labels.size)
    if np.any(counts < 2):
        lonely = ", ".join(map(str, labels[counts < 2][:10]))
        raise DataContractError(
            f"group(s) with a single spectrum have no leave-one-out mean: {lonely}; "
            "every (treatment, sample, angle) group needs ≥ 2 replicates — drop or complete those groups"
        )
    sums = np.zeros((labels.size, x.shape[1]))
    np.add.at(sums, inverse, x)
    return (sums[inverse] - x) / (counts[inverse] - 1)[:, None]


REFERENCE_FLOOR_SPLITS = 16
"""Random half-splits of each group averaged by ``reference_floor``."""


def reference_floor(spectra: np.ndarray, group_ids: Sequence | np.ndarray, splits: int = REFERENCE_FLOOR_SPLITS,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """What a perfect denoiser would score against the leave-one-out references, per spectrum (N,).

    A reference is the mean of the other n − 1 replicates of a group, so it carries their noise,
    variance σ²/(n − 1) per point, and even the true spectrum is that far from it. The noise is
    measured, not modelled: split the group at random into two halves of h spectra; their means
    differ by noise of variance 2σ²/h, so the squared error between them times h / (2(n − 1)) is
    the reference's, and their spectral angle (proportional to the noise's size at these small
    angles) times the square root of that factor (an odd group leaves one spectrum out of each
    split). Averaged over ``splits`` random splits. Keys ``psnr`` (dB, from that MSE) and
    ``sam_deg``; NaN for a group of one spectrum (which has no reference).
    No library estimates this (it is specific to leave-one-out references), hence written here.
    """
    x = np.asarray(spectra, dtype=np.float64)
    labels, inverse = np.unique(np.asarray(group_ids), return_inverse=True)
    rng = np.random.default_rng(seed)
    mse, sam = np.full(labels.size, np.nan), np.full(labels.size, np.nan)
    for g in range(labels.size):
        members = np.flatnonzero(inverse == g)
        n, h = members.size, members.size // 2
        if n < 2:
            continue
        halves = [rng.permutation(members) for _ in range(splits)]
        a = np.stack([x[m[:h]].mean(axis=0) for m in halves])  # (splits, L)
        b = np.stack([x[m[h:2 * h]].mean(axis=0) for m in halves])
        factor = h / (2.0 * (n - 1))
        mse[g] = float(np.mean((a - b) ** 2)) * factor
        sam[g] = float(np.mean(sam_deg(a, b))) * np.sqrt(factor)
    return {"psnr": psnr_from_mse(mse[inverse]), "sam_deg": sam[inverse]}


def per_spectrum_metrics(pred: np.ndarray, ref: np.ndarray, wavelength: np.ndarray,
                         roi: tuple[float, float] = ROI_NM,
                         dip_config: DipMetricConfig | None = DEFAULT_DIP_CONFIG,
                         dips_of_ref: DipReference | None = None) -> dict[str, np.ndarray]:
    """All per-spectrum metrics as (N,) arrays; dip entries are NaN where a spectrum has no dip.

    Keys: psnr, sam_deg, rmse, roi_psnr and, unless ``dip_config`` is None, n_dips,
    dip_centroid_error_nm, dip_area_error_pct, dip_depth_mae. ``dips_of_ref``: the dips of ``ref``
    found before (``metrics.dips.dip_reference``), when several predictions are scored against it.
    """
    p, r = _pair(pred, ref)
    out = {"psnr": psnr(p, r), "sam_deg": sam_deg(p, r), "rmse": rmse(p, r),
           "roi_psnr": roi_psnr(p, r, wavelength, roi)}
    if dip_config is not None:
        out.update(dip_metrics(p, r, wavelength, dip_config, dips_of_ref))
    return out


def aggregate(per_spectrum: Mapping[str, np.ndarray]) -> dict[str, float | None]:
    """``<name>_mean`` and ``<name>_std`` (population std, NaN entries ignored) of each metric.

    ``n_dips`` is summed instead (``n_dips_total``) with ``n_spectra_with_dips``; a metric that
    is NaN for every spectrum aggregates to None (JSON null) rather than NaN.
    """
    out: dict[str, float | None] = {}
    for name, values in per_spectrum.items():
        v = np.asarray(values, dtype=np.float64)
        if name == "n_dips":
            out["n_dips_total"] = float(v.sum())
            out["n_spectra_with_dips"] = float(np.count_nonzero(v))
            continue
        finite = v[np.isfinite(v)]
        out[f"{name}_mean"] = float(finite.mean()) if finite.size else None
        out[f"{name}_std"] = float(finite.std()) if finite.size else None
    return out


def score(pred: np.ndarray, ref: np.ndarray, wavelength: np.ndarray,
          roi: tuple[float, float] = ROI_NM,
          dip_config: DipMetricConfig | None = DEFAULT_DIP_CONFIG,
          dips_of_ref: DipReference | None = None) -> dict[str, float | None]:
    """Dataset summary: mean ± std of every per-spectrum metric, ``psnr_dataset`` (PSNR of the
    pooled MSE) and ``n_spectra``. pred, ref: (N, L); wavelength: (L,); ``dips_of_ref`` as in
    ``per_spectrum_metrics``."""
    p, r = _pair(pred, ref)
    out: dict[str, float | None] = {"n_spectra": float(p.shape[0])}
    out.update(aggregate(per_spectrum_metrics(p, r, wavelength, roi, dip_config, dips_of_ref)))
    out["psnr_dataset"] = float(psnr_from_mse(np.mean((p - r) ** 2)))
    return out
