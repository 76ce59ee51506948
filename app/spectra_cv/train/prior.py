"""Fitting a model's linear prior on the train split (``ModelConfig.prior``).

The prior is one of the baselines (docs/baselines.md) — PCA projection, ridge regression onto the
leave-one-out means, the Wiener filter, or the mean of ridge and Wiener — fitted exactly as the
baseline is (same code, its parameter chosen on held-out samples of the train split), then handed
to the model as an affine map ``x @ M + c``. The Mamba network learns only what the linear prior
misses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spectra_cv.log import get_logger
from spectra_cv.metrics.baselines import (
    PCA_RANKS,
    RIDGE_ALPHAS,
    FittedBaseline,
    fit_mean,
    fit_pca,
    fit_ridge,
    fit_wiener,
)
from spectra_cv.model.mamba_uv import MambaUV

log = get_logger("prior")


@dataclass(frozen=True)
class FittedPrior:
    kind: str
    params: dict
    matrix: np.ndarray
    """(L, L): prior(x) = x @ matrix + offset."""
    offset: np.ndarray
    residual_scale: float
    """Standard deviation of x − prior(x) on train."""


def fit_prior(kind: str, noisy: np.ndarray, targets: np.ndarray, groups: Sequence[str] | None = None,
              rank: int = 0, alpha: float = 0.0, fitted: Mapping[str, FittedBaseline] | None = None) -> FittedPrior:
    """Fit the ``kind`` prior ('pca', 'ridge', 'wiener' or 'ridge_wiener') on train ``noisy`` (N, L)
    and its LOO-mean ``targets``.

    ``groups`` (``treatment/sample/angle`` per row) let the parameter be chosen on held-out samples;
    they are needed unless ``rank``/``alpha`` fixes it. ``fitted``: baselines already fitted on these
    spectra (a fold's, ``runs.fold_baselines``); the prior is then that baseline's map, not a new fit,
    unless the kind's own parameter is fixed (``rank`` for PCA, ``alpha`` for ridge and ridge+Wiener).
    """
    x = np.asarray(noisy, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if reuses_fitted(kind, fitted, rank, alpha):
        assert fitted is not None
        return _affine_prior(kind, fitted[kind], x)
    if kind == "pca":
        fitted_map = fit_pca(x, y, groups, ranks=(rank,) if rank else PCA_RANKS)
    elif kind == "ridge":
        fitted_map = fit_ridge(x, y, groups, alphas=(alpha,) if alpha else RIDGE_ALPHAS)
    elif kind == "wiener":
        fitted_map = fit_wiener(x, y, groups)
    elif kind == "ridge_wiener":
        fitted_map = fit_mean(kind, (fit_ridge(x, y, groups, alphas=(alpha,) if alpha else RIDGE_ALPHAS),
                                 fit_wiener(x, y, groups)))
    else:
        raise ValueError(f"unknown prior kind {kind!r}")
    return _affine_prior(kind, fitted_map, x)


def reuses_fitted(kind: str, fitted: Mapping[str, FittedBaseline] | None, rank: int, alpha: float) -> bool:
    """Whether the ``kind`` prior is taken from ``fitted`` as it is: present there, and its own
    parameter not fixed by the config (``rank`` for PCA, ``alpha`` for ridge and ridge+Wiener)."""
    fixed = {"pca": bool(rank), "ridge": bool(alpha), "ridge_wiener": bool(alpha)}.get(kind, False)
    return fitted is not None and kind in fitted and not fixed


def _affine_prior(kind: str, fitted: FittedBaseline, x: np.ndarray) -> FittedPrior:
    """The fitted baseline's affine map as a prior, with its residual scale on the train spectra ``x``."""
    length = x.shape[1]
    offset = fitted.apply(np.zeros((1, length)))[0]
    matrix = fitted.apply(np.eye(length)) - offset  # the map is affine: rows of I give M
    resid = x - (x @ matrix + offset)
    return FittedPrior(kind=kind, params=dict(fitted.params), matrix=matrix, offset=offset,
                       residual_scale=float(resid.std()))


def install_prior(model: MambaUV, noisy: torch.Tensor, targets: torch.Tensor, groups: Sequence[str] | None = None,
                  fitted: Mapping[str, FittedBaseline] | None = None) -> FittedPrior:
    """Fit ``model.config.prior`` on the train tensors (groups: each row's treatment/sample/angle)
    and install it in ``model``; ``fitted``: baselines already fitted on them (see ``fit_prior``)."""
    cfg = model.config
    started = time.perf_counter()
    prior = fit_prior(cfg.prior, noisy.detach().cpu().numpy(), targets.detach().cpu().numpy(), groups,
                      rank=cfg.prior_rank, alpha=cfg.prior_alpha, fitted=fitted)
    device = model.prior_matrix.device
    model.set_prior(torch.as_tensor(prior.matrix, dtype=torch.float32, device=device),
                    torch.as_tensor(prior.offset, dtype=torch.float32, device=device), prior.residual_scale)
    log.info("Prior: %s %s fitted on %d train spectra, parameter chosen on held-out samples (residual std %.2e; "
             "%s in %.1f s)", prior.kind, prior.params, noisy.shape[0], prior.residual_scale,
             "the fold's fitted baseline" if reuses_fitted(cfg.prior, fitted, cfg.prior_rank, cfg.prior_alpha)
             else "fitted",
             time.perf_counter() - started)
    return prior
