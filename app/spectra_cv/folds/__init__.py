"""Folds: the sample rotation (docs/folds-and-metrics.md) (or a folds.json), leakage proof and fold manifests."""

from __future__ import annotations

from spectra_cv.folds.manifests import (
    N_FOLDS,
    RECORD_FILE,
    ROLES,
    FoldAssignment,
    FoldResult,
    MissingSpectrumError,
    check_manifest_rows,
    check_no_leakage,
    generate,
    load_fold_config,
    rotation_assignment,
    split_manifest,
    write_fold_manifests,
)

__all__ = [
    "N_FOLDS",
    "RECORD_FILE",
    "ROLES",
    "FoldAssignment",
    "FoldResult",
    "MissingSpectrumError",
    "check_manifest_rows",
    "check_no_leakage",
    "generate",
    "load_fold_config",
    "rotation_assignment",
    "split_fold",
    "split_manifest",
    "write_fold_manifests",
]
