"""``fold_summary.csv``: one row per fold, derived from that fold's events only.

The coordinator is its only writer; every cell is a pure function of the events, so
``spectra-cv coordinator --rebuild`` regenerates the file byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from spectra_cv.errors import DataContractError
from spectra_cv.metrics.baselines import BASELINE_NAMES

#: Headline metrics of the model on the test split (against leave-one-out means).
TEST_METRICS = ("psnr_mean", "psnr_std", "sam_deg_mean", "sam_deg_std", "rmse_mean", "roi_psnr_mean",
                "dip_centroid_error_nm_mean", "dip_area_error_pct_mean", "dip_depth_mae_mean")
#: Baselines of SPEC §4, fitted on the fold's train split and scored on its test split.
BASELINES = BASELINE_NAMES

#: Control-sample figures: the model's PSNR and SAM, and the PSNR of ridge and of the best linear method.
CONTROL_COLUMNS = ("control_psnr_mean", "control_sam_deg_mean", "control_baseline_ridge_psnr_mean",
                   "control_baseline_ridge_wiener_psnr_mean")

SUMMARY_COLUMNS: tuple[str, ...] = (
    "fold", "status",
    # a forced retrain beside the finished result: running | interrupted | failed: <why> | swapping |
    # swap interrupted … ("" when none)
    "retrain",
    # the original orchestrator's columns (paths relative to the run root)
    "train_manifest", "val_manifest", "test_manifest", "checkpoint", "train_log", "audit_log",
    "events", "metrics_json", "denoised_root",
    "started_at", "finished_at", "train_seconds", "denoise_seconds", "total_seconds",
    "best_epoch", "epochs_run", "stopped_because", "val_psnr_mean", "val_sam_deg_mean",
    *(f"test_{m}" for m in TEST_METRICS),
    *(f"baseline_{b}_psnr_mean" for b in BASELINES),
    # the treatments left out of CV (the zero-dose control), scored by every fold's model
    *CONTROL_COLUMNS,
    "checkpoint_sha256", "config_hash", "preset", "model", "parameters", "seed", "data_root",
    "data_fingerprint", "code_version", "image", "library_versions", "error",
)


def read_summary(path: str | Path) -> pd.DataFrame:
    """The summary as a frame (one row per fold, sorted by fold); a wrong header is an error."""
    p = Path(path)
    if not p.is_file():
        raise DataContractError(f"{p}: no fold summary yet; run `spectra-cv cv` (or a fold and the coordinator)")
    frame = pd.read_csv(p, dtype={"fold": int}, keep_default_na=False, na_values=[""])
    missing = [c for c in SUMMARY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataContractError(f"{p}: not a spectra-cv fold summary (missing columns {missing[:5]})")
    return frame.sort_values("fold").reset_index(drop=True)
