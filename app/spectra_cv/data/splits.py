"""One reader of a split: the spectra of manifest rows, checked, with their groups and angles.

Training (``train.tensors``), scoring (``evaluation``) and the report read splits through here, so
every consumer sees the same rows, the same clipping and the same group ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spectra_cv.data import loaders, rows
from spectra_cv.data.conditioning import angle_cosines
from spectra_cv.data.degenerate import degenerate
from spectra_cv.errors import DataContractError
from spectra_cv.log import get_logger

log = get_logger("splits")


@dataclass(frozen=True, kw_only=True)
class Split:
    """The spectra of some manifest rows, in manifest order (host memory)."""

    relative_paths: tuple[str, ...]
    noisy: np.ndarray
    """(N, L) float32 reflectance clipped to [0, 1]."""
    groups: tuple[str, ...]
    """(N,) ``treatment/sample/angle`` of each row."""
    cos_theta: np.ndarray
    """(N,) float32 cos θ from the angle label."""
    warnings: tuple[str, ...] = ()
    """Spectra a user may mean but should know about (``data.degenerate``: saturated ones), one line each."""


def split_of(root: str | Path, frame: pd.DataFrame, grid: np.ndarray, label: str) -> Split:
    """The spectra of manifest rows ``frame`` under ``root`` (``label`` names them in errors), row contract
    checked; all-zero or constant spectra are refused (``data.degenerate``), the warnings kept and logged."""
    rows.check_manifest(frame, root, label)
    rel = tuple(frame["relative_path"].astype(str))
    cos = angle_cosines(frame, label)
    noisy = loaders.load_spectra(root, list(rel), grid, clip=True)
    found = degenerate(noisy, rel, label, grid)
    if found.errors:
        shown = found.errors[:rows.MAX_LISTED]
        more = f"\n  … and {len(found.errors) - len(shown)} more" if len(found.errors) > len(shown) else ""
        raise DataContractError(f"{len(found.errors)} spectra cannot be used:\n  " + "\n  ".join(shown) + more,
                                found.errors)
    for warning in found.warnings:
        log.warning("%s", warning)
    return Split(relative_paths=rel, noisy=noisy, groups=tuple(loaders.group_ids_of(frame, label)), cos_theta=cos,
                 warnings=tuple(found.warnings))


def read_split(root: str | Path, manifest: Path, grid: np.ndarray) -> Split:
    """The spectra of the manifest file ``manifest``."""
    return split_of(root, loaders.read_manifest(manifest), grid, str(manifest))
