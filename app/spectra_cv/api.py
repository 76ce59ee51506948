"""The Python API, for notebooks and pipelines: the CLI's own code paths, and a run root's results
as pandas DataFrames.

    from spectra_cv import api

    api.run_cv(data_root="data/spectra_for_fold", metadata_dir="data/metadata", run_root="runs/cv1",
               preset="cpu_quick", settings={"epochs": 5}, folds=[1, 2])
    folds = api.fold_table("runs/cv1")             # one row per fold (fold_summary.csv)
    metrics = api.metrics_table("runs/cv1")        # fold × split × reference × method × metric
    spectra = api.spectrum_table("runs/cv1")       # one row per test spectrum: model and input scores
    curves = api.wavelength_table("runs/cv1")      # per-wavelength test RMSE of every method
    api.build_report("runs/cv1")

``run_fold`` and ``run_cv`` run the ``spectra-cv fold`` and ``cv`` commands in this process (so
locks, events, resumes, refusals and the audit trail are exactly the CLI's); a failure raises
``SpectraCVError`` (``Refused`` when the command refused, exit status 3) with the command's message.
The run root is created when missing. The readers only read files: they work on any run root,
finished or not, on any host that sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spectra_cv.errors import EXIT_REFUSED, Refused, SpectraCVError
from spectra_cv.paths import RunPaths

__all__ = ["config", "run_fold", "run_cv", "build_report", "fold_table", "metrics_table", "spectrum_table",
           "wavelength_table"]


def config(preset: str | None = None, config_file: str | Path | None = None,
           settings: Mapping[str, Any] | None = None) -> Any:
    """The ``RunConfig`` that ``--preset``/``--config``/``--set`` give (``settings``: flag name → value,
    as ``--set`` would), with the CLI's precedence; ``.hash()`` is the run's identity."""
    from spectra_cv.config_files import resolve_settings
    from spectra_cv.train.flags import build_run_config

    name, values, features = resolve_settings(preset, config_file, dict(settings or {}))
    return build_run_config(name, {k: v for k, (v, _) in values.items()}, film_features=features)


def _run_args(data_root: str | Path | None, metadata_dir: str | Path | None, run_root: str | Path,
              preset: str | None, config_file: str | Path | None, settings: Mapping[str, Any] | None,
              device: str, force: bool) -> list[str]:
    Path(run_root).mkdir(parents=True, exist_ok=True)  # a path in code is meant (the CLI refuses a missing chain)
    args = ["--run-root", str(run_root), "--device", device]
    for flag, value in (("--data-root", data_root), ("--metadata-dir", metadata_dir), ("--preset", preset),
                        ("--config", config_file)):
        if value is not None:
            args += [flag, str(value)]
    for key, value in (settings or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["--set", f"{key}={text}"]
    return args + (["--force"] if force else [])


def _invoke(args: list[str]) -> None:
    """Run a ``spectra-cv`` command in this process; its error becomes a ``SpectraCVError``."""
    import click

    from spectra_cv.cli import main

    try:
        main.main(args, prog_name="spectra-cv", standalone_mode=False)
    except click.ClickException as exc:
        kind = Refused if exc.exit_code == EXIT_REFUSED else SpectraCVError
        raise kind(f"spectra-cv {args[0]}: {exc.format_message()}") from exc


def run_fold(fold: int, *, data_root: str | Path | None = None, metadata_dir: str | Path | None = None,
             run_root: str | Path = ".", preset: str | None = None, config_file: str | Path | None = None,
             settings: Mapping[str, Any] | None = None, device: str = "auto", force: bool = False) -> pd.Series:
    """Run (or resume, or skip) fold ``fold`` as ``spectra-cv fold`` does; returns its summary row."""
    _invoke(["fold", "--fold", str(fold),
             *_run_args(data_root, metadata_dir, run_root, preset, config_file, settings, device, force)])
    table = fold_table(run_root)
    return table[table["fold"] == fold].iloc[0]


def run_cv(*, data_root: str | Path | None = None, metadata_dir: str | Path | None = None, run_root: str | Path = ".",
           folds: Iterable[int] = (1, 2, 3, 4, 5), parallel: int = 1, preset: str | None = None,
           config_file: str | Path | None = None, settings: Mapping[str, Any] | None = None,
           device: str = "auto", force: bool = False) -> pd.DataFrame:
    """Run the folds as ``spectra-cv cv`` does (each its own process, one coordinator); returns
    ``fold_table``. A fold that did not complete raises, after the others ran."""
    _invoke(["cv", "--folds", *map(str, folds), "--parallel", str(parallel), "--no-live",
             *_run_args(data_root, metadata_dir, run_root, preset, config_file, settings, device, force)])
    return fold_table(run_root)


def build_report(run_root: str | Path = ".", plots: bool = True) -> Path:
    """Write ``cv_report.md``, ``cv_metrics.csv`` and the plots (``spectra-cv report``); returns the report."""
    from spectra_cv.runs.report import build_report as build

    return build(RunPaths(root=Path(run_root)), plots=plots).markdown


def fold_table(run_root: str | Path = ".") -> pd.DataFrame:
    """One row per fold: status, config hash, epochs, val and test figures of the model and every
    baseline (``artifacts/cross_validation/fold_summary.csv``; docs/folds-and-metrics.md lists the columns)."""
    from spectra_cv.runs.summary import read_summary

    return read_summary(RunPaths(root=Path(run_root)).summary_csv)


def _completed(run_root: str | Path) -> tuple[RunPaths, pd.DataFrame]:
    paths = RunPaths(root=Path(run_root))
    table = fold_table(run_root)
    return paths, table[table["status"] == "completed"]


def metrics_table(run_root: str | Path = ".") -> pd.DataFrame:
    """Tidy: one row per (fold, split, reference, method) with every metric as a column, then the
    across-fold ``mean`` and ``std`` rows, as the report computes them (completed folds whose metrics
    JSON is readable)."""
    from spectra_cv.runs.report import metrics_frame, read_fold_metrics

    paths, done = _completed(run_root)
    records, _ = read_fold_metrics(paths, tuple(int(f) for f in done["fold"]))
    return metrics_frame(records)


def spectrum_table(run_root: str | Path = ".", split: str = "test") -> pd.DataFrame:
    """One row per spectrum of ``split`` in every completed fold: its manifest identity and the PSNR,
    SAM, RMSE and ROI PSNR of the model's output and of the noisy input itself, against the
    leave-one-out mean of its group, recomputed from the denoised files as the fold scored them."""
    from spectra_cv.data import loaders
    from spectra_cv.data.splits import read_split
    from spectra_cv.evaluation import read_denoised
    from spectra_cv.metrics.spectral import loo_means, per_spectrum_metrics

    paths, done = _completed(run_root)
    frames = []
    for _, row in done.iterrows():
        fold, data_root = int(row["fold"]), paths.root / str(row["data_root"])
        grid = loaders.read_grid(data_root)
        part = read_split(data_root, paths.manifest(fold, split), grid)
        reference = loo_means(part.noisy, part.groups)
        pred = read_denoised(paths.denoised(fold, split), part.relative_paths, grid.shape[0])
        frame = pd.read_csv(paths.manifest(fold, split))[["relative_path", "treatment", "sample", "angle",
                                                          "group_id"]]
        frame.insert(0, "fold", fold)
        for method, values in (("model", pred), ("input", part.noisy)):
            for metric, column in per_spectrum_metrics(values, reference, grid).items():
                frame[f"{method}_{metric}"] = np.asarray(column)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def wavelength_table(run_root: str | Path = ".", split: str = "test") -> pd.DataFrame:
    """Long: (fold, method, wavelength_nm, rmse): each method's per-wavelength RMSE on ``split`` against
    the leave-one-out means, as each fold's metrics JSON keeps it (the report's error curves)."""
    from spectra_cv.data import loaders
    from spectra_cv.runs.report import read_fold_metrics

    paths, done = _completed(run_root)
    records, _ = read_fold_metrics(paths, tuple(int(f) for f in done["fold"]))
    rows = []
    for fold, record in records.items():
        data_root = paths.root / str(done.loc[done["fold"] == fold, "data_root"].iloc[0])
        grid = loaders.read_grid(data_root)
        for method, scores in record["splits"].get(split, {}).items():
            curve = (scores.get("rmse_per_wavelength") or {}).get("loo") if isinstance(scores, dict) else None
            if curve is not None and len(curve) == grid.shape[0]:
                rows += [{"fold": fold, "method": method, "wavelength_nm": float(w), "rmse": float(v)}
                         for w, v in zip(grid, curve, strict=True)]
    return pd.DataFrame(rows, columns=["fold", "method", "wavelength_nm", "rmse"])
