"""What the report's plots draw, read from a run root: nothing is refitted or written here.

* ``error_curves`` and ``psnr_percentiles``: the per-wavelength test RMSE and the per-spectrum test
  PSNR percentiles that each fold's scoring kept in its metrics JSON (``evaluation.profiles_of``),
  against the LOO means. A metrics JSON written before they were kept gives no curve, and a
  sentence saying so; one that holds them malformed is an error naming the file.
* ``example_spectra``: a few test spectra of a fold, read with only their groups (for the LOO means)
  and their denoised outputs.
* ``read_learning_curves``: each fold's ``metrics.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spectra_cv.data import loaders
from spectra_cv.data.splits import split_of
from spectra_cv.errors import DataContractError
from spectra_cv.evaluation import PSNR_PERCENTILES
from spectra_cv.metrics import loo_means
from spectra_cv.paths import RunPaths
from spectra_cv.paths import denoised_output as output_path
from spectra_cv.runs.report_plots import MODEL, ErrorCurves, Examples

CURVE_METHODS = (MODEL, "ridge", "gaussian")
"""Methods of the per-wavelength error curves."""
SPREAD_METHODS = (MODEL, "ridge_wiener")
"""Methods of the per-fold PSNR distributions (the model beside the best linear baseline)."""


def pick_examples(manifest: pd.DataFrame, groups: list[str], count: int) -> list[int]:
    """Row indices of ``count`` test spectra: the first row of each group, one treatment after another.

    Deterministic (manifest order), one spectrum per treatment before a second from any treatment.
    """
    firsts = manifest.reset_index(drop=True).assign(_group=groups).drop_duplicates("_group")
    rank = firsts.groupby("treatment", sort=False).cumcount()
    order = firsts.assign(_rank=rank).sort_values(["_rank", "treatment"], kind="stable")
    return order.index[:count].tolist()


def example_spectra(paths: RunPaths, fold: int, data_root: Path, count: int) -> Examples:
    """Noisy, denoised and LOO-reference spectra of ``count`` of ``fold``'s test rows.

    Only the examples' groups are read (a group's LOO means need nothing else), not the whole split.
    """
    manifest = paths.manifest(fold, "test")
    grid = loaders.read_grid(data_root, None)
    frame = loaders.read_manifest(manifest).reset_index(drop=True)
    groups = loaders.group_ids_of(frame, str(manifest))
    picks = pick_examples(frame, groups, count)
    wanted = {groups[i] for i in picks}
    members = [i for i, g in enumerate(groups) if g in wanted]
    split = split_of(data_root, frame.iloc[members], grid, f"{manifest} (the example groups)")
    reference = loo_means(split.noisy, split.groups)  # (M, L): the examples' groups only
    rows = [members.index(i) for i in picks]
    denoised = []
    for i in rows:
        path = output_path(paths.denoised(fold, "test"), split.relative_paths[i])
        if not path.is_file():
            raise DataContractError(f"{path}: missing denoised output of {split.relative_paths[i]}; "
                                    f"rerun fold {fold}")
        denoised.append(np.load(path).astype(np.float32))
    return Examples(fold=fold, wavelength=grid, labels=[split.relative_paths[i] for i in rows],
                    noisy=split.noisy[rows], denoised=np.stack(denoised), reference=reference[rows])


def _profile(paths: RunPaths, fold: int, record: dict, method: str, key: str, length: int | None) -> np.ndarray | None:
    """``splits.test.<method>.<key>.loo`` of a fold's metrics JSON as float64; None when the file
    predates it, an error naming the file when it is there but malformed."""
    values = (((record["splits"].get("test") or {}).get(method) or {}).get(key) or {}).get("loo")
    if values is None:
        return None
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.empty(0)
    if array.ndim != 1 or not array.size or (length is not None and array.size != length):
        expected = f"{length} numbers (its wavelength_nm)" if length is not None else "a list of numbers"
        raise DataContractError(f"{paths.metrics_json(fold)}: splits.test.{method}.{key}.loo is not {expected}; "
                                f"rerun fold {fold}")
    return array


def folds_text(folds: list[int]) -> str:
    """'fold 3' or 'folds 1, 2, 5'."""
    return f"fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}"


def error_curves(paths: RunPaths, records: dict[int, dict],
                 methods: tuple[str, ...] = CURVE_METHODS) -> tuple[ErrorCurves | None, str]:
    """The per-wavelength test RMSE (vs LOO means) of ``methods`` in every fold whose metrics JSON
    keeps it, and a sentence on the folds that do not (or why there is no curve at all)."""
    grid: np.ndarray | None = None
    rmse: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    used: list[int] = []
    lacking: list[int] = []
    for fold, record in sorted(records.items()):
        lam = record.get("wavelength_nm")
        curves = {m: _profile(paths, fold, record, m, "rmse_per_wavelength", len(lam) if lam else None)
                  for m in methods}
        if not lam or any(c is None for c in curves.values()):
            lacking.append(fold)
            continue
        lam = np.asarray(lam, dtype=np.float64)
        if grid is None:
            grid = lam
        elif lam.shape != grid.shape or not np.allclose(lam, grid):
            raise DataContractError(f"{paths.metrics_json(fold)}: its wavelength_nm differs from fold {used[0]}'s, "
                                    "so their error curves cannot be averaged; rerun the folds on one data root")
        used.append(fold)
        for m, curve in curves.items():
            if curve is not None:  # none is (checked above)
                rmse[m].append(curve)
    why = (f"the metrics JSON of {folds_text(lacking)} predates per-wavelength errors (wavelength_nm, "
           "rmse_per_wavelength); a fold evaluated by this version keeps them") if lacking else ""
    if grid is None:
        return None, why
    return ErrorCurves(wavelength=grid, folds=tuple(used), rmse={m: np.stack(v) for m, v in rmse.items()}), why


def psnr_percentiles(paths: RunPaths, records: dict[int, dict],
                     methods: tuple[str, ...] = SPREAD_METHODS) -> tuple[dict[str, dict[int, np.ndarray]], str]:
    """``psnr_percentiles`` of the test split (vs LOO means) of each method and fold that keeps them,
    and a sentence on the folds that do not."""
    found: dict[str, dict[int, np.ndarray]] = {m: {} for m in methods}
    lacking = []
    for fold, record in sorted(records.items()):
        for m in methods:
            values = _profile(paths, fold, record, m, "psnr_percentiles", len(PSNR_PERCENTILES))
            if values is not None:
                found[m][fold] = values
        if fold not in found[MODEL]:
            lacking.append(fold)
    why = (f"the metrics JSON of {folds_text(lacking)} predates per-spectrum PSNR percentiles "
           "(psnr_percentiles); a fold evaluated by this version keeps them") if lacking else ""
    return {m: v for m, v in found.items() if v}, why


def read_learning_curves(paths: RunPaths, folds: tuple[int, ...], notes: list[str]) -> dict[int, pd.DataFrame]:
    """Each fold's ``metrics.csv``; a missing or unreadable one is skipped and noted."""
    curves = {}
    for fold in folds:
        path = paths.learning_curve(fold)
        try:
            curve = pd.read_csv(path)
            problem = "" if {"epoch", "train_loss", "val_psnr"} <= set(curve) else "lacks epoch/train_loss/val_psnr"
        except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
            problem = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})"
        if problem:
            notes.append(f"learning curve of fold {fold} skipped: `{path}` {problem}")
        else:
            curves[fold] = curve
    return curves
