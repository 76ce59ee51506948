"""The cross-validation report's plots: each a pure function from arrays to PNG bytes.

The report (``spectra_cv.runs.report``) reads the files and hands these functions plain arrays;
nothing here reads or writes a file. matplotlib is imported only inside ``_figure`` (a Figure on
its own Agg canvas: no pyplot, no global backend switch), so this module imports without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
import pandas as pd

from spectra_cv.errors import ConfigError
from spectra_cv.metrics import find_minima, psnr
from spectra_cv.paths import fold_tag

MODEL = "model"
BOX_PERCENTILES = (5, 25, 50, 75, 95)
"""Whisker, box and median percentiles of the PSNR box plots (min and max are drawn as dots)."""


@dataclass(frozen=True, kw_only=True)
class Examples:
    """A few test spectra of one fold, each (K, L) in the same row order."""

    fold: int
    wavelength: np.ndarray  # (L,)
    labels: list[str]
    noisy: np.ndarray  # (K, L)
    denoised: np.ndarray  # (K, L)
    reference: np.ndarray  # (K, L) leave-one-out means of each spectrum's group

    def dip_wavelengths(self) -> np.ndarray:
        """(D,) wavelengths of the dips found on the references, sorted, repeats kept."""
        centres, found, _ = find_minima(self.reference, self.wavelength)  # (K, max_dips)
        return np.sort(self.wavelength[centres[found]])


@dataclass(frozen=True, kw_only=True)
class ErrorCurves:
    """Per-wavelength test RMSE against the LOO means, fold by fold, of a few methods."""

    wavelength: np.ndarray  # (L,)
    folds: tuple[int, ...]
    rmse: dict[str, np.ndarray]
    """method → (F, L), rows in ``folds`` order."""

    def mean(self, method: str) -> np.ndarray:
        """(L,) mean over the folds (each fold weighs the same, as the across-fold PSNR)."""
        return self.rmse[method].mean(axis=0)


def _figure(nrows: int, ncols: int, width: float, height: float, **subplots: Any) -> tuple[Any, np.ndarray]:
    """A matplotlib Figure on its own Agg canvas and its (nrows, ncols) axes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError("the report's plots need matplotlib: pip install 'spectra-cv[report]' "
                          "(or pass --no-plots)") from exc
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplots)


FORMATS = ("png", "svg")
"""Every plot is written in each: PNG (150 dpi) for the report's links, SVG for print."""


def _png(fig: Any) -> dict[str, bytes]:
    """The figure rendered in every format of ``FORMATS`` (format → bytes)."""
    out = {}
    for fmt in FORMATS:
        buffer = BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150)
        out[fmt] = buffer.getvalue()
    return out


def plot_fold_metrics(folds: tuple[int, ...], figures: dict[str, dict[str, list[float]]],
                      names: dict[str, str]) -> dict[str, bytes]:
    """PNG: per-fold test PSNR and SAM (± std over spectra) of every method.

    figures[method][key]: one value per fold for psnr_mean, psnr_std, sam_deg_mean, sam_deg_std.
    """
    fig, axes = _figure(1, 2, 11, 4)
    x = np.arange(len(folds), dtype=float)
    panels = (("psnr_mean", "psnr_std", "test PSNR dB (higher is better)"),
              ("sam_deg_mean", "sam_deg_std", "test SAM ° (lower is better)"))
    for ax, (metric, spread, label) in zip(axes[0], panels, strict=True):
        for i, (method, values) in enumerate(figures.items()):
            offset = (i - (len(figures) - 1) / 2) * 0.8 / max(len(figures), 1)
            ax.errorbar(x + offset, values[metric], yerr=np.nan_to_num(values[spread]),
                        fmt="o" if method == MODEL else ".", markersize=8 if method == MODEL else 6, capsize=2,
                        label=names.get(method, method))
        ax.set_xticks(x, [f"fold {f}" for f in folds])
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return _png(fig)


def plot_spectra_examples(examples: list[Examples]) -> dict[str, bytes]:
    """PNG: one row per fold, one panel per example: noisy, denoised and reference vs wavelength,
    the reference's dips marked."""
    ncols = max(len(e.labels) for e in examples)
    fig, axes = _figure(len(examples), ncols, 4.6 * ncols, 3.3 * len(examples))
    for row, ex in zip(axes, examples, strict=True):
        centres, found, _ = find_minima(ex.reference, ex.wavelength)  # (K, max_dips)
        scores = psnr(ex.noisy, ex.reference), psnr(ex.denoised, ex.reference)
        lam = ex.wavelength
        for k, ax in enumerate(row):
            if k >= len(ex.labels):
                ax.set_axis_off()
                continue
            ax.plot(lam, ex.noisy[k], color="0.6", lw=0.7, label="noisy")
            ax.plot(lam, ex.reference[k], color="k", lw=1.0, label="reference (LOO mean)")
            ax.plot(lam, ex.denoised[k], color="C1", lw=1.0, label="denoised")
            dips = centres[k][found[k]]
            ax.plot(lam[dips], ex.reference[k][dips], "v", color="C3", label="reference dips")
            ax.set_title(f"{fold_tag(ex.fold)}: {ex.labels[k]}\nPSNR noisy {scores[0][k]:.1f} → denoised "
                         f"{scores[1][k]:.1f} dB", fontsize=7)
            ax.set_xlabel("wavelength nm", fontsize=8)
            if k == 0:
                ax.set_ylabel("reflectance", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Test spectra of every fold (rows), one per treatment first")
    return _png(fig)


def plot_error_curves(curves: ErrorCurves, names: dict[str, str], roi_nm: tuple[float, float],
                      dips_nm: np.ndarray, baseline: str = "ridge") -> dict[str, bytes]:
    """PNG: mean over folds of the per-wavelength test RMSE of each method (top) and the model's
    RMSE over ``baseline``'s (bottom); the dip ROI shaded, dip wavelengths ticked along the bottom."""
    fig, axes = _figure(2, 1, 11, 6.5, sharex=True, height_ratios=(2, 1))
    top, ratio = axes[:, 0]
    lam = curves.wavelength
    others = iter(("C0", "C2", "C4", "C5", "C6"))  # C1 is the model's, C3 the dips'
    for method in curves.rmse:
        top.plot(lam, curves.mean(method), lw=1.6 if method == MODEL else 1.0, label=names.get(method, method),
                 color="C1" if method == MODEL else next(others), zorder=3 if method == MODEL else 2)
    top.set_yscale("log")
    top.set_ylabel("test RMSE (reflectance)")
    top.set_title(f"Per-wavelength test RMSE against the LOO means, mean over folds "
                  f"{', '.join(map(str, curves.folds))}", fontsize=10)
    if MODEL in curves.rmse and baseline in curves.rmse:
        ratio.plot(lam, curves.mean(MODEL) / np.maximum(curves.mean(baseline), 1e-12), color="C1", lw=1.0)
        ratio.axhline(1.0, color="k", lw=0.8, ls="--")
        ratio.set_ylabel(f"model ÷ {names.get(baseline, baseline)}", fontsize=9)
    ratio.set_xlabel("wavelength nm")
    for ax in (top, ratio):
        ax.axvspan(*roi_nm, color="C0", alpha=0.08, lw=0,
                   label=f"dip ROI {roi_nm[0]:g}–{roi_nm[1]:g} nm (dip metrics, ROI PSNR, objective default)")
        if len(dips_nm):
            ax.plot(dips_nm, np.zeros_like(dips_nm), "|", color="C3", markersize=10, alpha=0.6,
                    transform=ax.get_xaxis_transform(), clip_on=False,
                    label="dips of the example references" if ax is top else None)
        ax.grid(alpha=0.3)
    top.legend(fontsize=8)
    return _png(fig)


def _box(percentiles: np.ndarray, label: str) -> dict[str, Any]:
    """matplotlib ``bxp`` stats from percentiles 0, 1, …, 100: box 25–75, whiskers 5–95, min/max dots."""
    p = np.asarray(percentiles, dtype=np.float64)  # (101,)
    low, q1, med, q3, high = (float(np.interp(q, np.arange(p.size) * 100 / (p.size - 1), p))
                              for q in BOX_PERCENTILES)
    return {"label": label, "med": med, "q1": q1, "q3": q3, "whislo": low, "whishi": high,
            "fliers": [float(p[0]), float(p[-1])]}


def plot_psnr_distributions(percentiles: dict[str, dict[int, np.ndarray]], names: dict[str, str]) -> dict[str, bytes]:
    """PNG: per fold, a box plot of the per-spectrum test PSNR of each method, side by side.

    percentiles[method][fold]: (101,) percentiles 0–100 of the fold's per-spectrum test PSNR.
    """
    folds = sorted({f for by_fold in percentiles.values() for f in by_fold})
    fig, axes = _figure(1, 1, max(6.0, 1.6 * len(folds) + 2), 4.2)
    ax = axes[0, 0]
    width = 0.8 / max(len(percentiles), 1)
    for i, (method, by_fold) in enumerate(percentiles.items()):
        offset = (i - (len(percentiles) - 1) / 2) * width
        shown = [f for f in folds if f in by_fold]
        ax.bxp([_box(by_fold[f], str(f)) for f in shown], positions=[folds.index(f) + offset for f in shown],
               widths=width * 0.85, patch_artist=True, manage_ticks=False,
               boxprops={"facecolor": "C1" if method == MODEL else f"C{i + 2}", "alpha": 0.6},
               medianprops={"color": "k"}, flierprops={"marker": ".", "markersize": 4})
        ax.plot([], [], "s", color="C1" if method == MODEL else f"C{i + 2}", alpha=0.6,
                label=names.get(method, method))
    ax.set_xticks(range(len(folds)), [f"fold {f}" for f in folds])
    ax.set_ylabel("per-spectrum test PSNR dB (vs LOO means)")
    ax.set_title("Box 25–75 %, median, whiskers 5–95 %, dots min and max", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_learning_curves(curves: dict[int, pd.DataFrame]) -> dict[str, bytes]:
    """PNG: train loss (log scale when positive) and validation PSNR vs epoch, one line per fold."""
    fig, axes = _figure(1, 2, 11, 4)
    loss_ax, psnr_ax = axes[0]
    for fold, curve in sorted(curves.items()):
        loss_ax.plot(curve["epoch"], curve["train_loss"], lw=1, label=f"fold {fold}")
        val = curve.dropna(subset=["val_psnr"])
        psnr_ax.plot(val["epoch"], val["val_psnr"], marker=".", lw=1, label=f"fold {fold}")
    if curves and all((c["train_loss"].dropna() > 0).all() for c in curves.values()):
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="train loss")
    psnr_ax.set(xlabel="epoch", ylabel="val PSNR dB (vs LOO means)")
    for ax in (loss_ax, psnr_ax):
        if curves:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no learning curve found", ha="center", va="center", transform=ax.transAxes)
    return _png(fig)
