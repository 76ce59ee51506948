"""Evaluation metrics (per spectrum, against the LOO mean) and classical baselines; NumPy only."""

from __future__ import annotations

from spectra_cv.metrics.baselines import FittedBaseline, fit_baselines, refit_baselines
from spectra_cv.metrics.dips import DipMetricConfig, dip_metrics, find_minima
from spectra_cv.metrics.spectral import (
    aggregate,
    loo_means,
    per_spectrum_metrics,
    psnr,
    rmse,
    rmse_per_wavelength,
    roi_psnr,
    sam_deg,
    score,
)

__all__ = [
    "DipMetricConfig",
    "FittedBaseline",
    "aggregate",
    "dip_metrics",
    "find_minima",
    "fit_baselines",
    "refit_baselines",
    "loo_means",
    "per_spectrum_metrics",
    "psnr",
    "rmse",
    "rmse_per_wavelength",
    "roi_psnr",
    "score",
    "sam_deg",
]
