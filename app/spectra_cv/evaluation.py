"""Score denoised spectra on a manifest beside the classical baselines, against LOO means.

The reference of each spectrum is the leave-one-out mean of its (treatment, sample, angle) group
on the evaluated manifest. Baselines are fitted on a train manifest only (noisy → train LOO means)
and applied to the evaluated spectra, so every row of the table is computed the same way. With
synthetic data, ``clean`` adds a second reference: the noise-free truth of each group.

Beside the summary metrics each method's row keeps two small profiles per reference, so a report
can draw them without refitting a baseline: ``rmse_per_wavelength`` (the RMSE over the spectra at
each grid point, (L,)) and ``psnr_percentiles`` (percentiles 0, 1, …, 100 of the per-spectrum PSNR).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spectra_cv.data import loaders
from spectra_cv.data.splits import Split
from spectra_cv.errors import DataContractError
from spectra_cv.log import get_logger
from spectra_cv.metrics import (
    FittedBaseline,
    fit_baselines,
    loo_means,
    psnr,
    rmse_per_wavelength,
    sam_deg,
    score,
)
from spectra_cv.metrics.dips import dip_reference
from spectra_cv.metrics.spectral import DEFAULT_DIP_CONFIG
from spectra_cv.paths import denoised_output as output_path

log = get_logger("evaluation")

MODEL_ROW = "model"
PROFILE_DIGITS = 4
"""Significant digits of each ``rmse_per_wavelength`` entry (errors of ~1e-3 keep 1e-7)."""
PSNR_PERCENTILES = tuple(range(101))
"""The percentiles of the per-spectrum PSNR kept as ``psnr_percentiles`` (rounded to 0.001 dB)."""
HEADLINE = ("psnr_mean", "psnr_std", "sam_deg_mean", "rmse_mean", "roi_psnr_mean", "psnr_dataset",
            "dip_centroid_error_nm_mean", "dip_area_error_pct_mean", "dip_depth_mae_mean")


DENOISED_RANGE = (-1.0, 2.0)
"""Bounds no denoised reflectance spectrum comes near: a value beyond them is damage, not denoising."""


def read_denoised(denoised_root: Path, relative_paths: Sequence[str], length: int | None = None) -> np.ndarray:
    """The ``_denoised.npy`` of every row, (N, L); a missing, mis-shaped, non-finite or absurd file (values
    beyond ``DENOISED_RANGE``: bytes changed inside it) is an error naming it."""
    out = []
    lo, hi = DENOISED_RANGE
    for rel in relative_paths:
        path = output_path(denoised_root, rel)
        if not path.is_file():
            raise DataContractError(f"{path}: missing denoised output for {rel}; rerun `spectra-cv denoise`")
        values = loaders.read_npy_vector(path, length).astype(np.float32)
        if not np.isfinite(values).all():
            raise DataContractError(
                f"{path}: denoised output for {rel} holds NaN/inf values; rerun `spectra-cv denoise`")
        if values.min() < lo or values.max() > hi:
            raise DataContractError(
                f"{path}: denoised output for {rel} spans {values.min():.3g}…{values.max():.3g}, which no denoised "
                "reflectance does (the file is damaged, or not a denoised spectrum); rerun `spectra-cv denoise`")
        out.append(values)
    return np.stack(out)


def read_clean(clean_manifest: Path, groups: Sequence[str]) -> np.ndarray:
    """Noise-free truth per row from a synthetic ``clean_manifest.csv`` (group_id → clean_path)."""
    table = pd.read_csv(clean_manifest, dtype=str)
    lookup = dict(zip(table["group_id"], table["clean_path"], strict=True))
    missing = sorted(set(groups) - set(lookup))
    if missing:
        raise DataContractError(f"{clean_manifest}: no clean spectrum for group {missing[0]}")
    cache = {g: np.load(clean_manifest.parent / lookup[g]).astype(np.float32) for g in set(groups)}
    return np.stack([cache[g] for g in groups])


def train_baselines(train: Split) -> dict[str, FittedBaseline]:
    """The baselines fitted on a train split, parameters chosen on its held-out samples."""
    return fit_baselines(train.noisy, loo_means(train.noisy, train.groups), train.groups)


def score_table(
    pred: np.ndarray | None,
    split: Split,
    train: Split,
    wavelength: np.ndarray,
    clean: np.ndarray | None = None,
    baselines: dict[str, FittedBaseline] | None = None,
) -> dict[str, dict]:
    """``{method: {"params": …, "loo": metrics, "clean": metrics | absent, "rmse_per_wavelength":
    {reference: (L,) list}, "psnr_percentiles": {reference: (101,) list}, "per_group": {"psnr": {group:
    mean}, "sam_deg": {group: mean}}}}`` for the model and baselines (per group: against the LOO means).

    ``baselines`` already fitted on ``train`` (``train_baselines``) are reused; otherwise they are fitted here.
    """
    ref = loo_means(split.noisy, split.groups)
    if baselines is None:
        baselines = train_baselines(train)
    outputs: dict[str, tuple[np.ndarray, dict]] = {}
    if pred is not None:
        outputs[MODEL_ROW] = (pred, {})
    for name, fitted in baselines.items():
        outputs[name] = (fitted.apply(split.noisy), dict(fitted.params))
    references = {"loo": ref} if clean is None else {"loo": ref, "clean": clean}
    dips = {label: dip_reference(target, wavelength, DEFAULT_DIP_CONFIG)
            for label, target in references.items()}  # each reference's dips found once, for every method
    table: dict[str, dict] = {}
    for name, (out, params) in outputs.items():
        row: dict = {"params": params}
        row.update({label: score(out, target, wavelength, dips_of_ref=dips[label])
                    for label, target in references.items()})
        profiles = {label: profiles_of(out, target) for label, target in references.items()}
        for key in ("rmse_per_wavelength", "psnr_percentiles"):
            row[key] = {label: profile[key] for label, profile in profiles.items()}
        row["per_group"] = {"psnr": group_means(psnr(out, ref), split.groups),
                            "sam_deg": group_means(sam_deg(out, ref), split.groups)}
        table[name] = row
    return table


def group_means(values: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """The mean of per-spectrum ``values`` in each group (group id → mean, 6 decimals): what the report's
    paired comparison over groups reads."""
    means = pd.Series(np.asarray(values, dtype=np.float64)).groupby(np.asarray(groups, dtype=str)).mean()
    return {str(group): round(float(value), 6) for group, value in means.items()}


def profiles_of(pred: np.ndarray, ref: np.ndarray) -> dict[str, list[float]]:
    """``rmse_per_wavelength`` ((L,), ``PROFILE_DIGITS`` significant digits) and ``psnr_percentiles``
    ((101,), np.percentile's linear rule, 0.001 dB) of pred against ref, both (N, L)."""
    curve = rmse_per_wavelength(pred, ref)  # (L,)
    quantiles = np.percentile(psnr(pred, ref), PSNR_PERCENTILES)  # (101,)
    return {"rmse_per_wavelength": [float(f"{v:.{PROFILE_DIGITS}g}") for v in curve],
            "psnr_percentiles": [round(float(v), 3) for v in quantiles]}


def format_metric(value: object, spec: str = ".2f", missing: str = "-") -> str:
    """A metric as text; ``missing`` when it is absent or not finite."""
    if isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value):
        return format(value, spec)
    return missing


def format_table(table: dict[str, dict], reference: str = "loo") -> str:
    """A fixed-width text table of the headline metrics."""
    lines = [f"{'method':<16}{'PSNR dB':>16}{'SAM °':>9}{'RMSE':>10}{'ROI PSNR':>10}{'dip c nm':>10}{'dip A %':>9}"]
    for name, row in table.items():
        m = row.get(reference)
        if m is None:
            continue

        def f(key: str, fmt: str, m: dict = m) -> str:  # m bound now, not looked up when called
            return format_metric(m.get(key), fmt)

        psnr = f"{f('psnr_mean', '.2f')} ± {f('psnr_std', '.2f')}"
        lines.append(f"{name:<16}{psnr:>16}{f('sam_deg_mean', '.3f'):>9}{f('rmse_mean', '.5f'):>10}"
                     f"{f('roi_psnr_mean', '.2f'):>10}{f('dip_centroid_error_nm_mean', '.2f'):>10}"
                     f"{f('dip_area_error_pct_mean', '.1f'):>9}")
    return "\n".join(lines)
