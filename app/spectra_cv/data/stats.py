"""Derived statistics of a dataset: ``lambda_stats.npz``, ``dose_sampling_weights.csv``, ``dose_stats.json``.

Definitions (notes/original-system.md §2.3–2.5, verified on the real data):

* ``lambda_stats``: ``variance`` = per-wavelength sample variance (ddof=1) of the **unclipped**
  reflectance over the manifest rows; ``variance_clipped`` = ``variance`` clipped to its own 5th and
  95th percentiles across wavelengths; ``precision`` = 1/``variance_clipped``; ``alpha`` = 3 inside
  320–500 nm (inclusive) else 1; ``weights`` = ``precision`` × ``alpha`` (not normalised). All float32.
* ``dose_sampling_weights``: ``sampling_weight`` = 1.0; ``bin_pair`` = ``"(u, v)"`` where u (v) counts
  the 20/40/60/80 % quantile edges of ``UVA_norm`` (``UVB_norm``) over the selected rows that are
  ≤ the row's value (searchsorted right).
* ``dose_stats``: population mean and std (ddof=0, std < 1e-6 → 1) of the raw FiLM features over the
  selected rows. An undefined value (``UVA_over_UVB`` = 0/0 = NaN of the zero-dose control) is left
  out of that feature's statistics, the rule of ``conditioning.compute_dose_stats`` (which feeds the
  control the mean ratio, i.e. 0 after normalisation). The shipped file was computed from treatments
  1–5 only; a fold's train manifest (which never holds the control) reproduces that choice, per fold
  and without leakage. With the full manifest the control's zero doses enter the other features.

Every statistic is computed over the rows of one manifest (the full one, or one fold's train split
to keep validation and test spectra out of the loss weights). Nothing here overwrites an input
unless the caller asks for it explicitly (``in_place=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spectra_cv import io
from spectra_cv.data import contract, loaders
from spectra_cv.errors import DataContractError
from spectra_cv.log import get_logger

log = get_logger("data.stats")

CLIP_PERCENTILES = (5.0, 95.0)
"""Percentiles (across wavelengths) the per-wavelength variance is clipped to."""
BIN_QUANTILES = (0.2, 0.4, 0.6, 0.8)
"""Quantile edges of ``UVA_norm`` / ``UVB_norm`` that define the ``bin_pair`` quintile bins."""
STD_FLOOR = 1e-6
"""A FiLM feature whose std falls below this gets std 1 (it is constant over the rows)."""


def lambda_stats(
    spectra: np.ndarray,
    wavelength: np.ndarray,
    roi_nm: tuple[float, float] = contract.ROI_NM,
    roi_weight: float = contract.ROI_WEIGHT,
) -> dict[str, np.ndarray]:
    """Per-wavelength loss weights from unclipped spectra.

    spectra: (N, L) reflectance, **not** clipped (N ≥ 2); wavelength: (L,) nm.
    Returns the six ``lambda_stats.npz`` arrays, each float32 (L,), keyed as contract.LAMBDA_STATS_KEYS.
    """
    x = np.asarray(spectra, dtype=np.float64)
    wl = np.asarray(wavelength, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] != wl.shape[0]:
        raise DataContractError(
            f"lambda_stats needs spectra of shape (N ≥ 2, {wl.shape[0]}), got {x.shape}; "
            "the manifest must list at least two spectra on the wavelength grid"
        )
    variance = x.var(axis=0, ddof=1)  # (L,)
    lo, hi = np.percentile(variance, CLIP_PERCENTILES)
    if not lo > 0:
        raise DataContractError(
            f"lambda_stats: the {CLIP_PERCENTILES[0]:g}th percentile of the per-wavelength variance is {lo:g}; "
            "the spectra are (nearly) identical, so the precision weights are undefined"
        )
    variance_clipped = np.clip(variance, lo, hi)
    precision = 1.0 / variance_clipped
    alpha = np.where((wl >= roi_nm[0]) & (wl <= roi_nm[1]), roi_weight, 1.0)
    arrays = {
        "wavelength": wl,
        "variance": variance,
        "variance_clipped": variance_clipped,
        "precision": precision,
        "alpha": alpha,
        "weights": precision * alpha,
    }
    return {key: arrays[key].astype(np.float32) for key in contract.LAMBDA_STATS_KEYS}


def quantile_bins(values: np.ndarray, quantiles: Sequence[float] = BIN_QUANTILES) -> np.ndarray:
    """Bin index of each value: how many quantile edges (over ``values`` itself) are ≤ it.

    values: (N,) → int64 (N,) in 0..len(quantiles).
    """
    v = np.asarray(values, dtype=np.float64)
    edges = np.quantile(v, quantiles)  # (Q,)
    return np.searchsorted(edges, v, side="right").astype(np.int64)


def read_dose_features(path: str | Path) -> pd.DataFrame:
    """``dose_features.csv`` indexed by ``relative_path`` (unique), numeric columns as float."""
    path = Path(path)
    if not path.is_file():
        raise DataContractError(
            f"{path}: dose features not found; pass --metadata-dir pointing at the directory that holds "
            f"{contract.DOSE_FEATURES_FILE}"
        )
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a contract error
        raise DataContractError(f"{path}: unreadable CSV ({exc})") from exc
    if "relative_path" not in frame.columns:
        raise DataContractError(f"{path}: no relative_path column; one row per spectrum is required")
    duplicated = frame["relative_path"][frame["relative_path"].duplicated()]
    if not duplicated.empty:
        raise DataContractError(
            f"{path}: relative_path {duplicated.iloc[0]!r} appears more than once "
            f"({duplicated.size} duplicate rows); keep one row per spectrum"
        )
    frame.attrs["source"] = str(path)
    return frame.set_index("relative_path", drop=False)


def _rows(dose_features: pd.DataFrame, relative_paths: Sequence[str]) -> pd.DataFrame:
    """The dose-feature rows of ``relative_paths``, in that order; a missing row is an error."""
    frame = dose_features if dose_features.index.name == "relative_path" else dose_features.set_index(
        "relative_path", drop=False
    )
    paths = pd.Index(list(relative_paths))
    missing = paths[~paths.isin(frame.index)]
    if len(missing):
        source = dose_features.attrs.get("source", contract.DOSE_FEATURES_FILE)
        raise DataContractError(
            f"{source}: no row for {len(missing)} manifest spectra (first: {missing[0]!r}); "
            "the original silently used 0.0 for every dose feature — add the rows or fix the manifest"
        )
    return frame.loc[paths]


def _require(rows: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        source = rows.attrs.get("source", contract.DOSE_FEATURES_FILE)
        raise DataContractError(f"{source}: missing column(s) {', '.join(missing)} needed for {what}")


def sampling_weights(dose_features: pd.DataFrame, relative_paths: Sequence[str]) -> pd.DataFrame:
    """``dose_sampling_weights.csv`` rows for ``relative_paths`` (in that order).

    Columns ``relative_path, sampling_weight (1.0), bin_pair ("(u, v)")``; the quintile edges are
    taken over the selected rows only.
    """
    rows = _rows(dose_features, relative_paths)
    _require(rows, ("UVA_norm", "UVB_norm"), "bin_pair")
    u = quantile_bins(rows["UVA_norm"].to_numpy(dtype=np.float64))
    v = quantile_bins(rows["UVB_norm"].to_numpy(dtype=np.float64))
    return pd.DataFrame(
        {
            "relative_path": list(relative_paths),
            "sampling_weight": np.ones(len(u), dtype=np.float64),
            "bin_pair": [f"({a}, {b})" for a, b in zip(u.tolist(), v.tolist(), strict=True)],
        }
    )


def film_features(
    dose_features: pd.DataFrame, relative_paths: Sequence[str], features: Sequence[str]
) -> np.ndarray:
    """Raw FiLM features of ``relative_paths``: float64 (N, F), NaN where a value is undefined.

    ``cos_theta`` comes from the ``angle`` column (else the spectrum's parent directory name).
    A missing, non-numeric or infinite value is an error naming the row, except an empty/NaN
    ``UVA_over_UVB`` in a zero-dose row (both totals 0), which stays NaN: the control's undefined
    ratio (the rule ``data check`` applies, ``conditioning``).
    """
    rows = _rows(dose_features, relative_paths)
    out = np.empty((len(rows), len(features)), dtype=np.float64)
    for j, name in enumerate(features):
        column = contract.film_column(name)
        if column is None:
            if "angle" in rows.columns:
                angles = rows["angle"].astype(str).to_numpy()
            else:
                angles = np.array([Path(p).parent.name for p in relative_paths])
            labels, inverse = np.unique(angles, return_inverse=True)
            try:
                cos = np.array([contract.angle_to_cos(a) for a in labels], dtype=np.float64)
            except ValueError as exc:
                source = dose_features.attrs.get("source", contract.DOSE_FEATURES_FILE)
                raise DataContractError(f"{source}: {exc}") from exc
            out[:, j] = cos[inverse]
        else:
            _require(rows, (column,), f"FiLM feature {name!r}")
            out[:, j] = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(out)
    if bad.any():  # only a zero-dose row may leave its UVA/UVB ratio undefined (0/0), as data check rules
        zero_dose = np.ones(len(rows), dtype=bool)
        for c in contract.DOSE_TOTAL_COLUMNS:
            values = pd.to_numeric(rows[c], errors="coerce") if c in rows.columns else pd.Series(np.nan, rows.index)
            zero_dose &= values.to_numpy(dtype=np.float64) == 0
        is_ratio = np.array([f.lower() == contract.RATIO_FEATURE for f in features])
        bad &= ~(np.isnan(out) & zero_dose[:, None] & is_ratio[None, :])
    if bad.any():
        i, j = np.argwhere(bad)[0]
        source = dose_features.attrs.get("source", contract.DOSE_FEATURES_FILE)
        raise DataContractError(
            f"{source}: {relative_paths[i]!r} has no finite {features[j]} ({int(bad.sum())} such values); "
            "only a zero-dose control row may leave its UVA_over_UVB empty — fix the dose value"
        )
    return out


def dose_stats(
    dose_features: pd.DataFrame,
    relative_paths: Sequence[str],
    features: Sequence[str] = contract.CV_FILM_FEATURES,
) -> dict[str, list]:
    """``dose_stats.json`` content: ``{"features", "mean", "std"}`` over the selected rows.

    Population statistics (ddof=0) of each feature over the rows where it is defined (the
    control's NaN ``UVA_over_UVB`` is left out, as ``conditioning.compute_dose_stats`` does);
    a std below STD_FLOOR, or a feature defined nowhere, gets std 1.0 (and mean 0.0).
    """
    x = film_features(dose_features, relative_paths, features)  # (N, F), NaN = undefined
    defined = np.isfinite(x)  # (N, F)
    count = defined.sum(axis=0)  # (F,)
    filled = np.where(defined, x, 0.0)
    mean = np.divide(filled.sum(axis=0), count, out=np.zeros(x.shape[1]), where=count > 0)
    var = np.divide(np.where(defined, (x - mean) ** 2, 0.0).sum(axis=0), count,
                    out=np.zeros(x.shape[1]), where=count > 0)
    std = np.sqrt(var)
    std = np.where(std < STD_FLOOR, 1.0, std)
    return {"features": list(features), "mean": mean.tolist(), "std": std.tolist()}


@dataclass(frozen=True, kw_only=True)
class StatsTargets:
    """Where the three derived files go."""

    lambda_stats: Path
    sampling_weights: Path
    dose_stats: Path

    @classmethod
    def in_dir(cls, directory: str | Path) -> StatsTargets:
        """All three files side by side in ``directory``."""
        d = Path(directory)
        return cls(
            lambda_stats=d / contract.LAMBDA_STATS_FILE,
            sampling_weights=d / contract.SAMPLING_WEIGHTS_FILE,
            dose_stats=d / contract.DOSE_STATS_FILE,
        )

    @classmethod
    def in_layout(cls, data_root: str | Path, metadata_dir: str | Path) -> StatsTargets:
        """The dataset layout's own locations (data root and metadata directory)."""
        return cls(
            lambda_stats=Path(data_root) / contract.LAMBDA_STATS_FILE,
            sampling_weights=Path(metadata_dir) / contract.SAMPLING_WEIGHTS_FILE,
            dose_stats=Path(metadata_dir) / contract.DOSE_STATS_FILE,
        )

    def paths(self) -> tuple[Path, Path, Path]:
        return (self.lambda_stats, self.sampling_weights, self.dose_stats)


def write_stats(
    targets: StatsTargets,
    lam: dict[str, np.ndarray],
    weights: pd.DataFrame,
    film: dict[str, list],
) -> StatsTargets:
    """Write the three derived files atomically (each one whole or not at all)."""
    io.atomic_save_npz(targets.lambda_stats, durable=True, **lam)  # durable named: **lam cannot be taken for it
    io.atomic_write_csv(targets.sampling_weights, weights)
    io.atomic_write_json(targets.dose_stats, film)
    return targets


def recompute(
    data_root: str | Path,
    metadata_dir: str | Path,
    targets: StatsTargets,
    manifest: str | Path | None = None,
    features: Sequence[str] = contract.CV_FILM_FEATURES,
    overwrite: bool = False,
) -> StatsTargets:
    """Recompute and write the three derived files from one manifest's rows.

    ``manifest`` defaults to ``<data_root>/manifest.csv``. An existing target is an error unless
    ``overwrite`` (the caller decides whether writing over the inputs' own files is intended).
    """
    data_root, metadata_dir = Path(data_root), Path(metadata_dir)
    manifest_path = Path(manifest) if manifest is not None else data_root / contract.MANIFEST_FILE
    existing = [str(p) for p in targets.paths() if p.exists()]
    if existing and not overwrite:
        raise DataContractError(
            f"refusing to overwrite {', '.join(existing)}; choose another --output-dir, "
            "or pass --overwrite (or --in-place for the dataset's own files)"
        )
    frame = loaders.read_manifest(manifest_path)
    rel = frame["relative_path"].tolist()
    grid = loaders.read_grid(data_root, expected_length=None)
    spectra = loaders.load_spectra(data_root, rel, grid, clip=False)  # (N, L) unclipped
    dose = read_dose_features(metadata_dir / contract.DOSE_FEATURES_FILE)
    lam = lambda_stats(spectra, grid)
    weights = sampling_weights(dose, rel)
    film = dose_stats(dose, rel, features)
    write_stats(targets, lam, weights, film)
    log.info(
        "derived statistics from %d spectra of %s: %s", len(rel), manifest_path,
        ", ".join(str(p) for p in targets.paths()),
    )
    return targets
