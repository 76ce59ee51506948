"""Readers of the data contract's files: grid, manifest, spectra (npy/npz/csv/txt), λ-weights.

Every reader raises ``DataContractError`` whose message names the file and the fix. Spectra are
returned as float32 arrays on the wavelength grid, clipped to [0, 1] unless ``clip=False``
(derived statistics use the unclipped values, as the shipped ``lambda_stats.npz`` does).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spectra_cv.data import contract
from spectra_cv.errors import DataContractError


def read_grid(root: str | Path, expected_length: int | None = contract.SEQUENCE_LENGTH) -> np.ndarray:
    """The wavelength grid ``<root>/wavelength_grid.npy`` as float64 (L,), strictly increasing."""
    path = Path(root) / contract.GRID_FILE
    if not path.is_file():
        raise DataContractError(
            f"{path}: missing; every data root needs {contract.GRID_FILE} "
            f"(float32 ({contract.SEQUENCE_LENGTH},), 300–600 nm; `spectra-cv data synth` shows the layout)"
        )
    try:
        grid = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a contract error
        raise DataContractError(f"{path}: unreadable .npy ({exc}); regenerate the wavelength grid") from exc
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1:
        raise DataContractError(f"{path}: shape {grid.shape}, expected a 1-D array of wavelengths in nm")
    if expected_length is not None and grid.shape[0] != expected_length:
        raise DataContractError(
            f"{path}: {grid.shape[0]} points, expected {expected_length} "
            f"(--sequence_length); fix the grid or pass the matching sequence length"
        )
    if not np.all(np.isfinite(grid)) or np.any(np.diff(grid) <= 0):
        raise DataContractError(f"{path}: wavelengths must be finite and strictly increasing")
    return grid


def read_manifest(
    path: str | Path, required: Sequence[str] = contract.REQUIRED_MANIFEST_COLUMNS
) -> pd.DataFrame:
    """A manifest CSV with every column read as text (row order kept, no NaN for empty cells)."""
    path = Path(path)
    if not path.is_file():
        raise DataContractError(f"{path}: manifest not found; pass --input-manifest or generate it")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001
        raise DataContractError(f"{path}: unreadable CSV ({exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"a manifest needs {', '.join(required)}"
        )
    if frame.empty:
        raise DataContractError(f"{path}: manifest has no rows")
    return frame


def _resample_table(path: Path, grid: np.ndarray) -> np.ndarray:
    try:
        table = pd.read_csv(path, sep=None, engine="python")
    except Exception as exc:  # noqa: BLE001
        raise DataContractError(f"{path}: unreadable table ({exc})") from exc
    missing = [c for c in contract.TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise DataContractError(
            f"{path}: missing column(s) {', '.join(missing)}; a .csv/.txt spectrum needs a header "
            f"with {' and '.join(contract.TABLE_COLUMNS)}"
        )
    wl = pd.to_numeric(table["wavelength_nm"], errors="coerce").to_numpy(dtype=np.float64)
    refl = pd.to_numeric(table["reflectance"], errors="coerce").to_numpy(dtype=np.float64)
    if wl.size < 2 or not np.all(np.isfinite(wl)) or np.any(np.diff(wl) <= 0):
        raise DataContractError(f"{path}: wavelength_nm must be numeric and strictly increasing (≥ 2 rows)")
    if wl.shape == grid.shape and np.allclose(wl, grid):
        return refl
    if wl[0] > grid[0] + 1e-9 or wl[-1] < grid[-1] - 1e-9:
        raise DataContractError(
            f"{path}: covers {wl[0]:.1f}–{wl[-1]:.1f} nm but the grid needs {grid[0]:.1f}–{grid[-1]:.1f} nm; "
            "resampling would extrapolate"
        )
    return np.interp(grid, wl, refl)


def load_spectrum(path: str | Path, grid: np.ndarray, clip: bool = True) -> np.ndarray:
    """One spectrum as float32 (L,) on ``grid``; .csv/.txt are linearly resampled onto it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataContractError(f"{path}: spectrum file not found; fix the manifest row or restore the file")
    if suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise DataContractError(f"{path}: corrupt or unreadable .npy ({exc}); re-export the spectrum") from exc
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                if contract.NPZ_KEY not in archive.files:
                    raise DataContractError(
                        f"{path}: .npz has keys {sorted(archive.files)} but no '{contract.NPZ_KEY}'; "
                        f"save the spectrum under the key '{contract.NPZ_KEY}'"
                    )
                values = archive[contract.NPZ_KEY]
        except DataContractError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise DataContractError(f"{path}: corrupt or unreadable .npz ({exc})") from exc
    elif suffix in (".csv", ".txt"):
        values = _resample_table(path, grid)
    else:
        raise DataContractError(
            f"{path}: unsupported spectrum type '{suffix}'; use one of {', '.join(contract.SPECTRUM_SUFFIXES)}"
        )
    values = np.asarray(values)
    if values.ndim != 1:
        raise DataContractError(f"{path}: array of shape {values.shape}, expected 1-D ({grid.shape[0]},)")
    if values.shape[0] != grid.shape[0]:
        raise DataContractError(
            f"{path}: has {values.shape[0]} points, expected {grid.shape[0]} ({contract.GRID_FILE})"
        )
    if not np.issubdtype(values.dtype, np.number):
        raise DataContractError(f"{path}: dtype {values.dtype} is not numeric")
    values = values.astype(np.float32)
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise DataContractError(f"{path}: {bad} NaN/inf value(s); re-export or drop this spectrum from the manifest")
    if clip:
        np.clip(values, *contract.CLIP_RANGE, out=values)
    return values


def load_spectra(
    root: str | Path, relative_paths: Sequence[str], grid: np.ndarray, clip: bool = True
) -> np.ndarray:
    """Spectra of ``relative_paths`` (under ``root``) stacked as float32 (N, L), in the given order."""
    root = Path(root)
    out = np.empty((len(relative_paths), grid.shape[0]), dtype=np.float32)
    for i, rel in enumerate(relative_paths):
        out[i] = load_spectrum(root / rel, grid, clip=clip)
    return out


def read_lambda_weights(path: str | Path, length: int) -> np.ndarray:
    """Per-wavelength loss weights (L,) from an ``.npy`` or the ``weights`` key of an ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise DataContractError(f"{path}: λ-weights file not found; run `spectra-cv data stats` to create it")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if "weights" not in loaded.files:
                    raise DataContractError(f"{path}: no 'weights' key (has {sorted(loaded.files)})")
                weights = loaded["weights"]
        else:
            weights = loaded
    except DataContractError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataContractError(f"{path}: unreadable λ-weights ({exc})") from exc
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (length,):
        raise DataContractError(f"{path}: weights of shape {weights.shape}, expected ({length},)")
    if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise DataContractError(f"{path}: weights must be finite and positive; recompute with `spectra-cv data stats`")
    return weights
