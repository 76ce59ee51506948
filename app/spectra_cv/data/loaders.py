"""Readers of the data contract's files: grid, manifest, spectra (npy/npz/csv/txt), λ-weights.

Every reader raises ``DataContractError`` whose message names the file and the fix. Spectra are
returned as float32 arrays on the wavelength grid, clipped to [0, 1] unless ``clip=False``
(derived statistics use the unclipped values, as the shipped ``lambda_stats.npz`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from spectra_cv.data import contract, rows
from spectra_cv.errors import DataContractError


class SpectrumError(DataContractError):
    """One spectrum file breaks the contract. ``reason`` is the message without the path.

    ``check_dataset`` catches it to name the manifest row instead of the bare path.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_grid(root: str | Path, expected_length: int | None = contract.SEQUENCE_LENGTH) -> np.ndarray:
    """The wavelength grid ``<root>/wavelength_grid.npy`` as float64 (L,), strictly increasing, in nm
    and covering the region of interest (``contract.ROI_NM``) that the metrics and the objective use."""
    path = Path(root) / contract.GRID_FILE
    if not path.is_file():
        raise DataContractError(
            f"{path}: missing; every data root needs {contract.GRID_FILE} "
            f"(float32 ({contract.SEQUENCE_LENGTH},), 300–600 nm; `spectra-cv data synth` shows the layout)"
        )
    try:
        with open(path, "rb") as handle:
            shape, _ = _npy_header(handle, path)  # before loading: a huge file is refused unread
        if int(np.prod(shape)) > MAX_GRID_POINTS:
            raise DataContractError(f"{path}: shape {shape} from its header, far more than a wavelength grid "
                                    f"(≤ {MAX_GRID_POINTS} points); regenerate the wavelength grid")
        grid = np.load(path, allow_pickle=False)
    except SpectrumError as exc:
        raise DataContractError(
            f"{path}: unreadable .npy header ({exc.reason}); regenerate the wavelength grid") from exc
    except DataContractError:
        raise
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
    if not np.all(np.isfinite(grid)):
        bad = int(np.flatnonzero(~np.isfinite(grid))[0])
        raise DataContractError(f"{path}: non-finite wavelength at index {bad}; regenerate the grid")
    steps = np.diff(grid)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise DataContractError(
            f"{path}: wavelengths not strictly increasing at index {i + 1} "
            f"({grid[i]:g} nm then {grid[i + 1]:g} nm); the grid must ascend, e.g. 300.0, 300.5, … 600.0"
        )
    lo, hi = contract.ROI_NM
    if grid[0] > lo or grid[-1] < hi:
        unit = " (a grid in µm?)" if grid[-1] < lo / 10 else " (a grid in Å?)" if grid[0] > hi * 2 else ""
        raise DataContractError(
            f"{path}: wavelengths span {grid[0]:g}…{grid[-1]:g}, which does not cover the region of interest "
            f"{lo:g}–{hi:g} nm{unit}; write the wavelengths in nm, e.g. "
            f"np.linspace({contract.GRID_START_NM:g}, {contract.GRID_STOP_NM:g}, {grid.shape[0]})"
        )
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
        raise DataContractError(f"{path}: manifest has no rows; list one spectrum per row")
    return frame


def _resample_table(path: Path, grid: np.ndarray) -> np.ndarray:
    """Reflectance of a ``wavelength_nm,reflectance`` table, linearly resampled onto ``grid``."""
    try:
        table = pd.read_csv(path, sep=None, engine="python")
    except Exception as exc:  # noqa: BLE001
        raise SpectrumError(path, f"unreadable table ({exc}); write a CSV with a header line") from exc
    missing = [c for c in contract.TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise SpectrumError(
            path,
            f"missing column(s) {', '.join(missing)} (has {', '.join(map(str, table.columns))}); "
            f"a .csv/.txt spectrum needs a header with {' and '.join(contract.TABLE_COLUMNS)}",
        )
    wl = pd.to_numeric(table["wavelength_nm"], errors="coerce").to_numpy(dtype=np.float64)
    refl = pd.to_numeric(table["reflectance"], errors="coerce").to_numpy(dtype=np.float64)
    if wl.size < 2 or not np.all(np.isfinite(wl)) or np.any(np.diff(wl) <= 0):
        raise SpectrumError(path, "wavelength_nm must be numeric and strictly increasing (≥ 2 rows); sort the rows")
    if wl.shape == grid.shape and np.allclose(wl, grid):
        return refl
    if wl[0] > grid[0] + 1e-9 or wl[-1] < grid[-1] - 1e-9:
        raise SpectrumError(
            path,
            f"covers {wl[0]:.1f}–{wl[-1]:.1f} nm but the grid needs {grid[0]:.1f}–{grid[-1]:.1f} nm; "
            "resampling would extrapolate: export the full range",
        )
    return np.interp(grid, wl, refl)


MAX_GRID_POINTS = 100_000
"""A wavelength grid longer than this is refused from its header (the real one has 601 points)."""
MAX_TABLE_BYTES = 32 << 20
"""A .csv/.txt spectrum larger than this is refused before it is parsed (a 601-row table is ~15 kB)."""


def _npy_header(handle: IO[bytes], path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, read before any data (an oversized file is never loaded)."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported (1.0 or 2.0)")
    except Exception as exc:  # noqa: BLE001 - any unreadable header is a contract error
        raise SpectrumError(path, f"corrupt or unreadable .npy ({exc}); re-export the spectrum") from exc
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _check_header(path: Path, shape: tuple[int, ...], dtype: np.dtype, length: int | None, what: str) -> None:
    if dtype.hasobject or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise SpectrumError(path, f"{what}dtype {dtype} is not numeric; save float32 reflectance")
    if len(shape) != 1:
        raise SpectrumError(path, f"{what}array of shape {shape}, expected 1-D ({length},); save one spectrum per file")
    if length is not None and shape[0] != length:
        raise SpectrumError(
            path, f"{what}has {shape[0]} points, expected {length} ({contract.GRID_FILE}); resample or re-export it")


def read_npy_vector(path: str | Path, length: int | None) -> np.ndarray:
    """A 1-D numeric .npy of ``length`` values; shape, dtype and size are checked from the header first.

    The file is opened once: header, then exactly the bytes it promises (one more is a padded file).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            shape, dtype = _npy_header(handle, path)
            _check_header(path, shape, dtype, length, "")
            offset = handle.tell()
            expected = shape[0] * dtype.itemsize
            data = handle.read(expected + 1)
    except FileNotFoundError:
        raise SpectrumError(path, "file not found; fix the manifest row or restore the file") from None
    except OSError as exc:
        raise SpectrumError(path, f"unreadable .npy ({exc}); re-export the spectrum") from exc
    if len(data) != expected:
        size = path.stat().st_size
        raise SpectrumError(path, f"{size} bytes where its header promises {offset + expected}; the file is "
                                  "truncated or padded: re-export it")
    return np.frombuffer(data, dtype=dtype).copy()


def _read_npy(path: Path, length: int) -> np.ndarray:
    return read_npy_vector(path, length)


def _read_npz(path: Path, length: int) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if contract.NPZ_KEY not in archive.files:
                raise SpectrumError(
                    path,
                    f".npz has keys {sorted(archive.files)} but no '{contract.NPZ_KEY}'; "
                    f"save the spectrum under the key '{contract.NPZ_KEY}'",
                )
            with archive.zip.open(f"{contract.NPZ_KEY}.npy") as member:
                shape, dtype = _npy_header(member, path)
            _check_header(path, shape, dtype, length, f"'{contract.NPZ_KEY}': ")
            return archive[contract.NPZ_KEY]
    except SpectrumError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SpectrumError(path, f"corrupt or unreadable .npz ({exc}); re-export the spectrum") from exc


def load_spectrum(path: str | Path, grid: np.ndarray, clip: bool = True) -> np.ndarray:
    """One spectrum as float32 (L,) on ``grid`` (L,); .csv/.txt are linearly resampled onto it.

    Raises ``SpectrumError`` (a ``DataContractError``) naming the file and the fix for a missing
    or unreadable file, a wrong shape or length, non-numeric or NaN/inf values.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in contract.SPECTRUM_SUFFIXES:
        raise SpectrumError(
            path, f"unsupported spectrum type '{suffix}'; use one of {', '.join(contract.SPECTRUM_SUFFIXES)}"
        )
    if not path.is_file():
        raise SpectrumError(path, "spectrum file not found; fix the manifest row or restore the file")
    if suffix == ".npy":
        values = _read_npy(path, grid.shape[0])
    elif suffix == ".npz":
        values = _read_npz(path, grid.shape[0])
    else:
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise SpectrumError(path, f"{path.stat().st_size} bytes, over the {MAX_TABLE_BYTES >> 20} MiB a spectrum "
                                      "table may have; export one spectrum per file")
        values = _resample_table(path, grid)
    values = np.asarray(values)
    if values.ndim != 1:
        raise SpectrumError(
            path, f"array of shape {values.shape}, expected 1-D ({grid.shape[0]},); save one spectrum per file"
        )
    if values.shape[0] != grid.shape[0]:
        raise SpectrumError(
            path,
            f"has {values.shape[0]} points, expected {grid.shape[0]} ({contract.GRID_FILE}); resample or re-export it",
        )
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise SpectrumError(path, f"dtype {values.dtype} is not numeric; save float32 reflectance")
    values = values.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise SpectrumError(
            path,
            f"{bad.size} NaN/inf value(s) (first at {grid[bad[0]]:g} nm); "
            "re-export the spectrum or drop it from the manifest",
        )
    if clip:
        np.clip(values, *contract.CLIP_RANGE, out=values)
    return values


def load_spectra(
    root: str | Path, relative_paths: Sequence[str], grid: np.ndarray, clip: bool = True
) -> np.ndarray:
    """Spectra of ``relative_paths`` (under ``root``) stacked as float32 (N, L), in the given order.

    Each path must follow the row rules of ``data.rows`` (relative, no ``..``, inside the root)."""
    guard = rows.RootGuard(root)
    out = np.empty((len(relative_paths), grid.shape[0]), dtype=np.float32)
    for i, rel in enumerate(relative_paths):
        out[i] = load_spectrum(guard.resolve(rel), grid, clip=clip)
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
                    raise DataContractError(
                        f"{path}: no 'weights' key (has {sorted(loaded.files)}); "
                        "recompute with `spectra-cv data stats`"
                    )
                weights = loaded["weights"]
        else:
            weights = loaded
    except DataContractError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataContractError(f"{path}: unreadable λ-weights ({exc})") from exc
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (length,):
        raise DataContractError(
            f"{path}: weights of shape {weights.shape}, expected ({length},) (one per wavelength of "
            f"{contract.GRID_FILE}); recompute with `spectra-cv data stats`"
        )
    bad = ~np.isfinite(weights) | (weights <= 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataContractError(
            f"{path}: {int(bad.sum())} weight(s) not finite and positive (first at index {first}: "
            f"{weights[first]:g}); recompute with `spectra-cv data stats`"
        )
    return weights


def group_ids_of(frame: pd.DataFrame, manifest_name: str) -> list[str]:
    """Group of each row = the file's parent directory, checked against the ``group_id`` column."""
    parents = [str(Path(p).parent.as_posix()) for p in frame["relative_path"]]
    if "group_id" in frame.columns:
        declared = frame["group_id"].astype(str).tolist()
        for row, (parent, gid) in enumerate(zip(parents, declared, strict=True), start=1):
            if gid and gid != parent:
                raise DataContractError(
                    f"{manifest_name} row {row}: group_id {gid!r} differs from the file's directory "
                    f"{parent!r}; fix the group_id column (groups are treatment/sample/angle)"
                )
    return parents
