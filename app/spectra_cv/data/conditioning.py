"""FiLM conditioning: strict readers of dose_features.csv / dose_stats.json and the (N, F) matrix.

A manifest row is conditioned on the features named in ``features`` (matched case-insensitively
through ``contract.FILM_FEATURE_COLUMNS``): ``cos_theta`` from the manifest ``angle`` column, the
rest from the dose_features.csv row with the same ``relative_path``. A missing row or a
non-finite value is an error naming the row (the original silently used 0.0).

The zero-dose control. Its ``UVA_over_UVB`` is 0/0 = NaN: the ratio is *undefined*, not zero
(a raw 0 would sit ~5σ below every treated ratio and make the control look like an extreme
dose mix). The control is already described by its zero totals, powers and norms, so the ratio
carries no information for it. We therefore

* exclude undefined ratios from ``compute_dose_stats`` (mean/std over the rows that have one);
* set an undefined ratio to the feature's mean, so it normalises to exactly 0, the neutral value
  (what the original model was effectively fed: its NaN → 0 came after normalisation). With
  ``stats=None`` the raw value is the mean of the defined ratios of the given rows, i.e. the mean
  ``compute_dose_stats`` would return for them.

The ratio may be undefined only in a zero-dose row: ``UVA_total_mWh_cm2 == UVB_total_mWh_cm2 == 0``
(a positive UVA with zero UVB gives inf and is an error). Any other non-finite value is an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spectra_cv.data import contract
from spectra_cv.data.contract import DOSE_TOTAL_COLUMNS, RATIO_FEATURE
from spectra_cv.errors import DataContractError

NORM_EPS = 1e-6
"""Normalisation is (raw − mean) / (std + NORM_EPS), as in the original."""
MIN_STD = 1e-6
"""A computed std below this (a constant feature) is replaced by 1."""


@dataclass(frozen=True, kw_only=True)
class DoseStats:
    """Per-feature normalisation statistics (the content of dose_stats.json)."""

    features: tuple[str, ...]
    """FiLM feature names, in conditioning-vector order."""
    mean: tuple[float, ...]
    """Per-feature mean of the raw values (F,)."""
    std: tuple[float, ...]
    """Per-feature population std (F,), all > 0."""

    def __post_init__(self) -> None:
        if not len(self.features) == len(self.mean) == len(self.std):
            raise ValueError("DoseStats: features, mean and std must have the same length")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` as float64 arrays (F,)."""
        return np.asarray(self.mean, dtype=np.float64), np.asarray(self.std, dtype=np.float64)

    def to_json_dict(self) -> dict[str, list]:
        """The dose_stats.json object: ``{"features": [...], "mean": [...], "std": [...]}``."""
        return {"features": list(self.features), "mean": list(self.mean), "std": list(self.std)}


def _same_features(a: Sequence[str], b: Sequence[str]) -> bool:
    return [f.lower() for f in a] == [f.lower() for f in b]


def check_dose_stats(path: str | Path, features: Sequence[str]) -> tuple[DoseStats | None, list[str]]:
    """Read dose_stats.json and list every problem: ``(stats or None, problems)``."""
    path = Path(path)
    fix = "recompute it with `spectra-cv data stats`"
    if not path.is_file():
        return None, [f"{path}: not found; {fix} (needed to normalise the FiLM features)"]
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, [f"{path}: unreadable JSON ({exc}); {fix}"]
    if not isinstance(obj, dict) or any(k not in obj for k in ("features", "mean", "std")):
        return None, [f"{path}: expected an object with keys features, mean, std; {fix}"]
    names, problems = obj["features"], []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None, [f"{path}: 'features' must be a list of names; {fix}"]
    if not _same_features(names, features):
        problems.append(
            f"{path}: features {names} differ from the requested FiLM features {list(features)} "
            f"(same names, same order); {fix} or pass matching --film-features"
        )
    values: dict[str, list[float]] = {}
    for key in ("mean", "std"):
        raw = obj[key]
        if not isinstance(raw, list) or len(raw) != len(names):
            problems.append(f"{path}: '{key}' must be a list of {len(names)} numbers (one per feature); {fix}")
            continue
        try:
            values[key] = [float(v) for v in raw]
        except (TypeError, ValueError):
            problems.append(f"{path}: '{key}' holds a non-number; {fix}")
    # a key that failed above is absent and its loop has nothing to check (strict=False)
    for name, m in zip(names, values.get("mean", []), strict=False):
        if not math.isfinite(m):
            problems.append(f"{path}: mean of {name} is {m}; it must be finite; {fix}")
    for name, s in zip(names, values.get("std", []), strict=False):
        if not (math.isfinite(s) and s > 0):
            problems.append(f"{path}: std of {name} is {s}; it must be finite and > 0; {fix}")
    if problems:
        return None, problems
    return DoseStats(features=tuple(features), mean=tuple(values["mean"]), std=tuple(values["std"])), []


def read_dose_stats(path: str | Path, features: Sequence[str]) -> DoseStats:
    """dose_stats.json, strictly: features equal to ``features`` (in order), finite mean, std > 0."""
    stats, problems = check_dose_stats(path, features)
    if stats is None:
        raise DataContractError(_summary(problems), problems)
    return stats


def read_dose_features(path: str | Path) -> pd.DataFrame:
    """dose_features.csv as a frame (``relative_path`` as text, row order kept)."""
    path = Path(path)
    if not path.is_file():
        raise DataContractError(f"{path}: dose features not found; it needs one row per manifest relative_path")
    try:
        frame = pd.read_csv(path, dtype={"relative_path": str})
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a contract error
        raise DataContractError(f"{path}: unreadable CSV ({exc})") from exc
    if "relative_path" not in frame.columns:
        raise DataContractError(f"{path}: no relative_path column; rows are looked up by relative_path")
    if frame.empty:
        raise DataContractError(f"{path}: no rows; it needs one row per manifest relative_path")
    return frame


@dataclass(frozen=True)
class _Gathered:
    raw: np.ndarray  # (N, F) float64; NaN where undefined
    undefined: np.ndarray  # (N, F) bool: an undefined control ratio
    problems: list[str]


def angle_cos(manifest_df: pd.DataFrame, manifest_name: str, problems: list[str]) -> np.ndarray:
    """cos θ per manifest row (N,) from the ``angle`` column; NaN (and a problem naming the first row)
    for a bad label. cos θ is an input channel of every model, so ``data check`` applies this whatever
    the FiLM features."""
    angles = manifest_df["angle"].astype(str).to_numpy()
    labels, inverse = np.unique(angles, return_inverse=True)
    table = np.full(labels.shape, np.nan)
    for k, label in enumerate(labels):
        try:
            table[k] = contract.angle_to_cos(label)
        except ValueError as exc:
            rows = np.flatnonzero(inverse == k)
            problems.append(f"{manifest_name} row {rows[0] + 1} ({rows.size} row(s) with this label): {exc}")
    return table[inverse]


def angle_cosines(frame: pd.DataFrame, label: str) -> np.ndarray:
    """float32 cos θ (N,) of the rows ``frame`` (``label`` names them); a bad label is a
    ``DataContractError`` naming its first row, never a bare ValueError."""
    problems: list[str] = []
    cos = angle_cos(frame.reset_index(drop=True), label, problems)
    if problems:
        raise DataContractError(_summary(problems), problems)
    return cos.astype(np.float32)


def _dose_positions(
    manifest_df: pd.DataFrame, dose_df: pd.DataFrame, names: tuple[str, str], problems: list[str]
) -> np.ndarray:
    """Row position in ``dose_df`` of each manifest row (N,), −1 (and a problem) where missing."""
    manifest_name, dose_name = names
    dose_rel = dose_df["relative_path"].astype(str)
    dup = np.flatnonzero(dose_rel.duplicated(keep=False).to_numpy())
    rows_of: dict[str, list[int]] = {}
    for r in dup:
        rows_of.setdefault(dose_rel.iat[r], []).append(int(r) + 1)
    for rel_path, rows in rows_of.items():
        where = ", ".join(map(str, rows))
        problems.append(f"{dose_name} rows {where}: duplicate relative_path {rel_path}; keep one row per spectrum")
    first = np.flatnonzero(~dose_rel.duplicated(keep="first").to_numpy())
    lookup = pd.Index(dose_rel.to_numpy()[first])
    rel = manifest_df["relative_path"].astype(str).to_numpy()
    found = lookup.get_indexer(rel)
    pos = np.where(found >= 0, first[np.maximum(found, 0)], -1)
    for i in np.flatnonzero(pos < 0):
        problems.append(
            f"{manifest_name} row {i + 1}: {rel[i]}: no row in {dose_name}; add its dose features "
            "(one row per relative_path) or drop the spectrum from the manifest"
        )
    return pos


def _gather(
    manifest_df: pd.DataFrame,
    dose_df: pd.DataFrame,
    features: Sequence[str],
    names: tuple[str, str] = ("manifest", contract.DOSE_FEATURES_FILE),
) -> _Gathered:
    """Raw features (N, F) of every manifest row, the undefined-ratio mask, and every problem."""
    manifest_name, dose_name = names
    n = len(manifest_df)
    problems: list[str] = []
    raw = np.full((n, len(features)), np.nan)
    undefined = np.zeros((n, len(features)), dtype=bool)
    if "relative_path" not in manifest_df.columns:
        return _Gathered(raw, undefined, [f"{manifest_name}: no relative_path column"])
    if "relative_path" not in dose_df.columns:
        return _Gathered(raw, undefined, [f"{dose_name}: no relative_path column"])
    pos = _dose_positions(manifest_df, dose_df, names, problems)
    have = pos >= 0
    used = np.unique(pos[have])  # dose rows referenced by the manifest
    rel = dose_df["relative_path"].astype(str).to_numpy()
    totals_known = all(c in dose_df.columns for c in DOSE_TOTAL_COLUMNS)
    if totals_known:
        tot = np.stack([pd.to_numeric(dose_df[c], errors="coerce").to_numpy(float) for c in DOSE_TOTAL_COLUMNS])
        zero_dose = np.all(tot == 0.0, axis=0)  # (n_dose,)
    for j, feature in enumerate(features):
        try:
            column = contract.film_column(feature)
        except KeyError as exc:
            problems.append(f"FiLM feature {feature!r}: {exc.args[0]}")
            continue
        if column is None:  # cos_theta
            if "angle" not in manifest_df.columns:
                problems.append(f"{manifest_name}: no angle column, needed for FiLM feature {feature}")
            else:
                raw[:, j] = angle_cos(manifest_df, manifest_name, problems)
            continue
        if column not in dose_df.columns:
            problems.append(f"{dose_name}: no column {column}, needed for FiLM feature {feature}; add it")
            continue
        values = pd.to_numeric(dose_df[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = used[~np.isfinite(values[used])]
        is_ratio = feature.lower() == RATIO_FEATURE
        allowed = zero_dose[bad] & np.isnan(values[bad]) if (is_ratio and totals_known) else np.zeros(bad.size, bool)
        for r in bad[~allowed]:
            hint = (
                f" (only a zero-dose control row, {' = '.join(DOSE_TOTAL_COLUMNS)} = 0, may leave it undefined)"
                if is_ratio else ""
            )
            problems.append(
                f"{dose_name} row {r + 1}: {rel[r]}: {column} is {_cell(dose_df[column].iat[r])}; FiLM feature "
                f"{feature} needs a finite number{hint}; fix the value"
            )
        raw[have, j] = values[pos[have]]
        if is_ratio and allowed.any():
            undefined[have, j] = np.isin(pos[have], bad[allowed])
    return _Gathered(raw, undefined, problems)


def _cell(value: object) -> str:
    """A CSV cell as the user wrote it: ``NaN``, ``inf``, ``'abc'`` or an empty cell."""
    if isinstance(value, str):
        return repr(value) if value.strip() else "empty"
    if isinstance(value, float) and math.isnan(value):
        return "NaN (or empty)"
    return str(value)


def _summary(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return problems[0] + more


def check_conditioning(
    manifest_df: pd.DataFrame,
    dose_features_df: pd.DataFrame,
    features: Sequence[str],
    manifest_name: str = "manifest",
    dose_name: str = contract.DOSE_FEATURES_FILE,
) -> tuple[list[str], int]:
    """``(problems, n_undefined)``: every problem that would stop ``conditioning_matrix`` (empty:
    none) and how many manifest rows are zero-dose controls whose undefined ratio takes the mean."""
    g = _gather(manifest_df, dose_features_df, features, (manifest_name, dose_name))
    return g.problems, int(g.undefined.any(axis=1).sum())


def _defined_stats(g: _Gathered) -> tuple[np.ndarray, np.ndarray]:
    """Population mean and std (F,) over the defined values; std < MIN_STD → 1; none defined → (0, 1)."""
    defined = ~g.undefined
    count = defined.sum(axis=0)
    filled = np.where(defined, g.raw, 0.0)
    mean = np.divide(filled.sum(axis=0), count, out=np.zeros(g.raw.shape[1]), where=count > 0)
    sq = np.where(defined, (g.raw - mean) ** 2, 0.0).sum(axis=0)
    std = np.sqrt(np.divide(sq, count, out=np.zeros_like(mean), where=count > 0))
    return mean, np.where(std < MIN_STD, 1.0, std)


def _checked(manifest_df: pd.DataFrame, dose_df: pd.DataFrame, features: Sequence[str]) -> _Gathered:
    if not features:
        raise DataContractError("no FiLM features requested; pass at least one --film-features")
    g = _gather(manifest_df, dose_df, features)
    if g.problems:
        raise DataContractError(_summary(g.problems), g.problems)
    return g


def compute_dose_stats(
    manifest_df: pd.DataFrame, dose_features_df: pd.DataFrame, features: Sequence[str]
) -> DoseStats:
    """Population mean and std (ddof=0; std < 1e-6 → 1) of each feature over the manifest's rows.

    Undefined control ratios are left out (see the module docstring). Use the train manifest of
    a fold to get that fold's statistics.
    """
    mean, std = _defined_stats(_checked(manifest_df, dose_features_df, features))
    return DoseStats(features=tuple(features), mean=tuple(map(float, mean)), std=tuple(map(float, std)))


def no_conditioning(n: int) -> np.ndarray:
    """The conditioning of ``n`` rows for a model without dose conditioning (no FiLM): float32 (n, 0)."""
    return np.zeros((n, 0), dtype=np.float32)


def conditioning_matrix(
    manifest_df: pd.DataFrame,
    dose_features_df: pd.DataFrame,
    features: Sequence[str],
    stats: DoseStats | None = None,
) -> np.ndarray:
    """Conditioning vectors, float32 (N, F), of the N manifest rows in order.

    With ``stats`` each column is ``(raw − mean) / (std + 1e-6)``; without, the raw values. An
    undefined control ratio takes the feature's mean (normalised: 0). Raises ``DataContractError``
    listing every missing row and non-finite value.
    """
    g = _checked(manifest_df, dose_features_df, features)
    if stats is None:
        mean, _ = _defined_stats(g)
        out = np.where(g.undefined, mean, g.raw)
    else:
        if not _same_features(stats.features, features):
            raise DataContractError(
                f"dose stats are for features {list(stats.features)}, not the requested {list(features)}; "
                "recompute them with `spectra-cv data stats` or pass matching --film-features"
            )
        mean, std = stats.arrays()
        out = (np.where(g.undefined, mean, g.raw) - mean) / (std + NORM_EPS)
    return out.astype(np.float32)
