"""``spectra-cv data check``: a data root and a metadata directory against the contract (docs/data-format.md).

``check_dataset`` reads everything a fold would read and reports *every* problem it finds, each
naming the file or row and the fix, instead of stopping at the first; ``format_report`` prints it.
The contract itself (names, shapes, constants) is ``data.contract``; the readers used here are the
pipeline's own (``loaders``, ``conditioning``, ``rows``), so the check and the runs agree.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from spectra_cv.data import conditioning, loaders, rows
from spectra_cv.data.contract import (
    CLIP_RANGE,
    CV_FILM_FEATURES,
    DOSE_FEATURES_FILE,
    DOSE_STATS_FILE,
    FOLD_SAMPLES_PER_TREATMENT,
    GRID_START_NM,
    GRID_STOP_NM,
    HOUR_RE,
    LAMBDA_STATS_FILE,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    MIN_REPLICATES_PER_GROUP,
    REQUIRED_MANIFEST_COLUMNS,
    SAMPLING_WEIGHTS_FILE,
    SEQUENCE_LENGTH,
    SPECTRUM_SUFFIXES,
)
from spectra_cv.data.degenerate import degenerate
from spectra_cv.errors import DataContractError

REFLECTANCE_TOLERANCE = 0.1
"""Values within this of [0, 1] are clipped on load and counted; beyond it a spectrum is a problem
(a percent scale, a failed calibration)."""
MAX_WARNINGS_SHOWN = 20
"""Warnings listed by ``data check`` (the count says how many more)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TreatmentSummary:
    """One treatment of the manifest: its samples, angles and replicate counts."""

    name: str
    samples: tuple[str, ...]
    angles: tuple[str, ...]
    n_groups: int
    """(sample, angle) groups."""
    n_spectra: int
    min_replicates: int
    max_replicates: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetReport:
    """What ``check_dataset`` found: a summary of the dataset and every problem (capped)."""

    data_root: Path
    metadata_dir: Path
    n_rows: int
    """Manifest data rows."""
    treatments: tuple[TreatmentSummary, ...]
    grid_points: int | None
    grid_range_nm: tuple[float, float] | None
    grid_step_nm: float | None
    """None when the grid is unreadable or not uniform."""
    value_range: tuple[float, float] | None
    """Min and max reflectance over the readable spectra, before clipping."""
    n_values_clipped: int
    """Values outside [0, 1] (within tolerance) that loaders clip."""
    film_features: tuple[str, ...]
    dose_rows_matched: int | None
    """Manifest rows with a dose_features.csv row (None when it could not be read)."""
    undefined_ratio_rows: int
    """Zero-dose control rows whose undefined UVA_over_UVB takes the feature mean (normalised 0)."""
    sampling_weights_matched: int | None
    """Manifest rows with a sampling weight (None when the optional file is absent)."""
    dose_stats_ok: bool
    lambda_weights_range: tuple[float, float, float] | None
    """(min, mean, max) of lambda_stats.npz weights when valid."""
    cv_treatments: tuple[str, ...]
    excluded_treatments: dict[str, str]
    """Treatment → why it stays out of CV (it still joins the final all-data model)."""
    problems: list[str]
    n_problems: int
    """All problems found; ``problems`` holds the first ``max_problems`` of them."""
    warnings: list[str] = dataclasses.field(default_factory=list)
    """What a user may mean but should know (``data.degenerate``: saturated spectra, many negative values)."""

    @property
    def ok(self) -> bool:
        return self.n_problems == 0


class _Problems:
    """Collects problems in order, drops exact repeats, keeps the first ``cap``, counts them all."""

    def __init__(self, cap: int) -> None:
        self.cap, self.total = cap, 0
        self.items: list[str] = []
        self._seen: set[str] = set()

    def add(self, message: str) -> None:
        if message in self._seen:
            return
        self._seen.add(message)
        self.total += 1
        if len(self.items) < self.cap:
            self.items.append(message)

    def extend(self, messages: list[str]) -> None:
        for message in messages:
            self.add(message)


def _check_spectra(root: Path, manifest: pd.DataFrame, grid: np.ndarray, name: str, out: _Problems) -> dict:
    """Load every manifest spectrum once (unclipped); report per-row problems naming the row."""

    rel = manifest["relative_path"].astype(str).to_numpy()
    first = ~pd.Series(rel).duplicated(keep="first").to_numpy()
    values = np.zeros((len(rel), grid.shape[0]), dtype=np.float32)  # (N, L)
    ok = np.zeros(len(rel), dtype=bool)
    guard = rows.RootGuard(root)
    for i in np.flatnonzero(first):
        r = rel[i]
        if rows.path_problem(r) is not None or guard.outside(r) is not None:
            continue  # reported by rows.manifest_problems
        try:
            values[i] = loaders.load_spectrum(root / r, grid, clip=False)
            ok[i] = True
        except loaders.SpectrumError as exc:
            out.add(f"{name} row {i + 1}: {r}: {exc.reason}")
    good = values[ok]
    lo, hi = CLIP_RANGE
    far = (good.min(axis=1) < lo - REFLECTANCE_TOLERANCE) | (good.max(axis=1) > hi + REFLECTANCE_TOLERANCE)
    for i in np.flatnonzero(ok)[far]:
        out.add(
            f"{name} row {i + 1}: {rel[i]}: reflectance spans {values[i].min():.3g}…{values[i].max():.3g}, "
            f"far outside [0, 1] (a percent scale?); export reflectance as a fraction"
        )
    readable = np.flatnonzero(ok)[~far]  # a spectrum already refused for its scale is not reported twice
    found = degenerate(good[~far], [rel[i] for i in readable], name, grid, rows=readable.tolist(), unclipped=True)
    out.extend(found.errors)
    return {
        "value_range": (float(good.min()), float(good.max())) if good.size else None,
        "n_values_clipped": int(np.count_nonzero((good < lo) | (good > hi))),
        "warnings": found.warnings,
    }


def _unlisted_spectra(root: Path, manifest: pd.DataFrame) -> list[str]:
    """A warning when spectrum files (of any type a row may name) lie under ``root`` that no manifest
    row lists: a manifest cut short (or not updated) loses them without an error, while leaving
    spectra out on purpose is allowed."""
    listed = set(manifest["relative_path"].astype(str))
    unlisted = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.suffix.lower() in SPECTRUM_SUFFIXES and p.parent != root and p.is_file()
                      and p.relative_to(root).as_posix() not in listed)
    if not unlisted:
        return []
    return [f"{root / MANIFEST_FILE}: {len(unlisted)} spectrum file(s) under the data root are in no row "
            f"(first: {unlisted[0]}): if the manifest was cut short or not updated, add their rows; "
            "if they were left out on purpose, nothing to do"]


def _check_groups(manifest: pd.DataFrame, name: str, out: _Problems) -> tuple[TreatmentSummary, ...]:
    """Identity columns filled and consistent, angle labels clock hours, ≥ 2 replicates per group; the
    per-treatment summary."""
    frame = manifest.reset_index(drop=True)
    keys = ["treatment", "sample", "angle"]
    for col in keys:
        for i in np.flatnonzero(frame[col].astype(str).str.strip().eq("").to_numpy()):
            out.add(f"{name} row {i + 1}: empty {col}; fill it or delete the row")
    angle_problems: list[str] = []
    conditioning.angle_cos(frame, name, angle_problems)  # cos θ is every model's input, FiLM or not
    out.extend(angle_problems)
    expected = frame["treatment"].astype(str) + "/" + frame["sample"].astype(str) + "/" + frame["angle"].astype(str)
    if "group_id" in frame.columns:
        for i in np.flatnonzero((frame["group_id"].astype(str) != expected).to_numpy()):
            out.add(
                f"{name} row {i + 1}: group_id {frame['group_id'].iat[i]!r} is not treatment/sample/angle "
                f"{expected.iat[i]!r}; fix the row"
            )
    parent = frame["relative_path"].astype(str).map(lambda p: Path(p).parent.as_posix())
    for i in np.flatnonzero((parent != expected).to_numpy()):
        out.add(
            f"{name} row {i + 1}: {frame['relative_path'].iat[i]} does not lie in its group folder "
            f"{expected.iat[i]}/ (Noise2Noise groups by folder); fix the row's columns or move the file"
        )
    counts = frame.drop_duplicates("relative_path").groupby(keys, sort=True).size()
    for (t, s, a), n in counts.items():
        if n < MIN_REPLICATES_PER_GROUP:
            rows = np.flatnonzero(expected.eq(f"{t}/{s}/{a}").to_numpy()) + 1
            out.add(
                f"{name} row{'s' if rows.size > 1 else ''} {', '.join(map(str, rows))}: group {t}/{s}/{a} has "
                f"{n} replicate(s); Noise2Noise needs ≥ {MIN_REPLICATES_PER_GROUP}: add replicates or drop the "
                "group from the manifest"
            )
    summaries = []
    for t, sub in counts.groupby(level=0, sort=True):
        samples = tuple(sorted(set(sub.index.get_level_values(1))))
        angles = tuple(sorted(set(sub.index.get_level_values(2)), key=_angle_sort_key))
        summaries.append(TreatmentSummary(
            name=str(t), samples=samples, angles=angles, n_groups=int(sub.size), n_spectra=int(sub.sum()),
            min_replicates=int(sub.min()), max_replicates=int(sub.max()),
        ))
    return tuple(sorted(summaries, key=lambda t: _natural_key(t.name)))


def _natural_key(label: str) -> list:
    """``treatment_2`` before ``treatment_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]


def _angle_sort_key(label: str) -> tuple[int, str]:
    match = HOUR_RE.match(label)
    return (int(match.group(1)) if match else 10**6, label)


def _check_sampling_weights(path: Path, manifest: pd.DataFrame, name: str, out: _Problems) -> int:
    """dose_sampling_weights.csv: every manifest row covered once, weights finite and > 0."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # cells shown as written
    except Exception as exc:  # noqa: BLE001
        out.add(f"{path}: unreadable CSV ({exc}); rewrite it or delete it (uniform weights)")
        return 0
    missing = [c for c in ("relative_path", "sampling_weight") if c not in frame.columns]
    if missing:
        out.add(f"{path}: missing column(s) {', '.join(missing)}; it needs relative_path,sampling_weight")
        return 0
    rel = frame["relative_path"].astype(str)
    for r in np.flatnonzero(rel.duplicated(keep="first").to_numpy()):
        out.add(f"{path.name} row {r + 1}: duplicate relative_path {rel.iat[r]}; keep one row per spectrum")
    weight = pd.to_numeric(frame["sampling_weight"], errors="coerce").to_numpy(dtype=np.float64)
    wanted = set(manifest["relative_path"].astype(str))
    for r in np.flatnonzero(~(np.isfinite(weight) & (weight > 0)) & rel.isin(wanted).to_numpy()):
        out.add(
            f"{path.name} row {r + 1}: {rel.iat[r]}: sampling_weight {frame['sampling_weight'].iat[r]!r} "
            "must be finite and > 0; fix it"
        )
    covered = manifest["relative_path"].astype(str).isin(set(rel)).to_numpy()
    for i in np.flatnonzero(~covered):
        out.add(
            f"{name} row {i + 1}: {manifest['relative_path'].iat[i]}: no row in {path.name}; add one "
            "(weight 1.0 is uniform) or delete the file"
        )
    return int(covered.sum())


def _grid_summary(grid: np.ndarray | None) -> dict:
    if grid is None:
        return {"grid_points": None, "grid_range_nm": None, "grid_step_nm": None}
    steps = np.diff(grid)
    uniform = steps.size > 0 and np.allclose(steps, steps.mean(), rtol=1e-4, atol=1e-6)
    return {
        "grid_points": int(grid.size),
        "grid_range_nm": (float(grid[0]), float(grid[-1])),
        "grid_step_nm": float(steps.mean()) if uniform else None,
    }


def check_dataset(
    data_root: str | Path,
    metadata_dir: str | Path,
    film_features: tuple[str, ...] | list[str] = CV_FILM_FEATURES,
    sequence_length: int = SEQUENCE_LENGTH,
    max_problems: int = 50,
) -> DatasetReport:
    """Check a data root and a metadata directory against the contract; never stops at a problem.

    Checks the grid, the manifest (columns, duplicates), every spectrum it lists (readable, 1-D,
    length L, finite, plausible range), the groups (≥ 2 replicates, consistent identity), and the
    metadata (dose features for every row, sampling weights, dose stats, λ-weights). Each problem
    names the file or the 1-based manifest data row, and the fix.
    """

    root, meta, features = Path(data_root), Path(metadata_dir), tuple(film_features)
    out = _Problems(max_problems)
    found: dict = {
        "n_rows": 0, "treatments": (), "value_range": None, "n_values_clipped": 0, "dose_rows_matched": None,
        "undefined_ratio_rows": 0, "sampling_weights_matched": None, "dose_stats_ok": False,
        "lambda_weights_range": None, "cv_treatments": (), "excluded_treatments": {}, "warnings": [],
    }
    grid = None
    if not root.is_dir():
        out.add(f"{root}: data root not found; pass --data-root or set SPECTRA_CV_DATA_ROOT")
    else:
        try:
            grid = loaders.read_grid(root, expected_length=sequence_length)
        except DataContractError as exc:
            out.add(str(exc))
    found.update(_grid_summary(grid))
    manifest, mname = None, MANIFEST_FILE
    if root.is_dir():
        try:
            manifest = loaders.read_manifest(root / MANIFEST_FILE, required=())
        except DataContractError as exc:
            out.add(str(exc))
    if manifest is not None:
        found["n_rows"] = len(manifest)
        missing = [c for c in REQUIRED_MANIFEST_COLUMNS if c not in manifest.columns]
        if missing:
            out.add(
                f"{root / MANIFEST_FILE}: missing required column(s) {', '.join(missing)}; the header must be "
                f"{','.join(MANIFEST_COLUMNS)}"
            )
        if "relative_path" in manifest.columns:
            out.extend(rows.manifest_problems(manifest, root, mname, check_files=False))
            check_grid = grid if grid is not None else np.linspace(GRID_START_NM, GRID_STOP_NM, sequence_length)
            found.update(_check_spectra(root, manifest, check_grid, mname, out))
            found["warnings"] = [*found["warnings"], *_unlisted_spectra(root, manifest)]
        if all(c in manifest.columns for c in ("relative_path", "treatment", "sample", "angle")):
            found["treatments"] = _check_groups(manifest, mname, out)
            found["cv_treatments"], found["excluded_treatments"] = _cv_membership(found["treatments"], out)

    lambda_path = root / LAMBDA_STATS_FILE
    if root.is_dir():
        try:
            weights = loaders.read_lambda_weights(lambda_path, sequence_length)
            found["lambda_weights_range"] = (float(weights.min()), float(weights.mean()), float(weights.max()))
        except DataContractError as exc:
            out.add(str(exc))

    if not meta.is_dir():
        out.add(f"{meta}: metadata directory not found; pass --metadata-dir or set SPECTRA_CV_METADATA_DIR")
    else:
        try:
            dose = conditioning.read_dose_features(meta / DOSE_FEATURES_FILE)
        except DataContractError as exc:
            dose = None
            out.add(str(exc))
        if dose is not None and manifest is not None and "relative_path" in manifest.columns:
            dose_problems, found["undefined_ratio_rows"] = conditioning.check_conditioning(
                manifest, dose, features, mname, DOSE_FEATURES_FILE
            )
            out.extend(dose_problems)
            found["dose_rows_matched"] = int(
                manifest["relative_path"].astype(str).isin(set(dose["relative_path"].astype(str))).sum()
            )
        weights_path = meta / SAMPLING_WEIGHTS_FILE
        if weights_path.is_file() and manifest is not None and "relative_path" in manifest.columns:
            found["sampling_weights_matched"] = _check_sampling_weights(weights_path, manifest, mname, out)
        stats, stats_problems = conditioning.check_dose_stats(meta / DOSE_STATS_FILE, features)
        out.extend(stats_problems)
        found["dose_stats_ok"] = stats is not None
    return DatasetReport(
        data_root=root, metadata_dir=meta, film_features=features,
        problems=out.items, n_problems=out.total, **found,
    )


def _cv_membership(
    treatments: tuple[TreatmentSummary, ...], out: _Problems
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Treatments with exactly FOLD_SAMPLES_PER_TREATMENT samples join CV; the others, and why."""
    cv = tuple(t.name for t in treatments if len(t.samples) == FOLD_SAMPLES_PER_TREATMENT)
    excluded = {
        t.name: (
            f"{len(t.samples)} sample(s) ({', '.join(t.samples)}), CV needs exactly "
            f"{FOLD_SAMPLES_PER_TREATMENT}; it joins only the final all-data model"
        )
        for t in treatments
        if len(t.samples) != FOLD_SAMPLES_PER_TREATMENT
    }
    if treatments and not cv:
        out.add(
            f"{MANIFEST_FILE}: no treatment has exactly {FOLD_SAMPLES_PER_TREATMENT} samples, so there is "
            "nothing to cross-validate; list 5 samples per treatment"
        )
    return cv, excluded


def format_report(report: DatasetReport) -> str:
    """The report as text: summary lines, then every problem kept and how many more there are."""
    r = report
    lines = [f"data root     {r.data_root}", f"metadata dir  {r.metadata_dir}", f"manifest      {r.n_rows} rows"]
    for t in r.treatments:
        reps = f"{t.min_replicates}" + (f"–{t.max_replicates}" if t.max_replicates != t.min_replicates else "")
        lines.append(
            f"  {t.name}: {len(t.samples)} samples ({' '.join(t.samples)}) × {len(t.angles)} angles "
            f"({' '.join(t.angles)}) × {reps} replicates = {t.n_spectra} spectra"
        )
    if r.grid_points is not None and r.grid_range_nm is not None:  # set together (both or neither)
        lo, hi = r.grid_range_nm
        step = f", step {r.grid_step_nm:g} nm" if r.grid_step_nm is not None else ", non-uniform steps"
        lines.append(f"grid          {r.grid_points} points, {lo:g}–{hi:g} nm{step}")
    if r.value_range is not None:
        lines.append(
            f"reflectance   {r.value_range[0]:.4g} … {r.value_range[1]:.4g}; "
            f"{r.n_values_clipped} value(s) outside [0, 1] are clipped on load"
        )
    if r.lambda_weights_range is not None:
        lines.append("λ-weights     min {:.4g}, mean {:.4g}, max {:.4g}".format(*r.lambda_weights_range))
    lines.append(f"FiLM features {' '.join(r.film_features)}")
    if r.dose_rows_matched is not None:
        lines.append(f"dose features {r.dose_rows_matched}/{r.n_rows} manifest rows have a row")
    if r.undefined_ratio_rows:
        lines.append(
            f"  {r.undefined_ratio_rows} zero-dose control row(s) have UVA_over_UVB undefined (0/0): "
            "it takes the feature mean, i.e. normalises to 0"
        )
    lines.append(
        "sampling wts  absent (uniform)" if r.sampling_weights_matched is None
        else f"sampling wts  {r.sampling_weights_matched}/{r.n_rows} manifest rows have a weight"
    )
    lines.append(f"dose stats    {'valid, features match' if r.dose_stats_ok else 'NOT usable (see problems)'}")
    lines.append(f"CV treatments {' '.join(r.cv_treatments) or 'none'}")
    for name, why in r.excluded_treatments.items():
        lines.append(f"  left out of CV: {name}: {why}")
    if r.warnings:
        lines.append(f"{len(r.warnings)} warning(s) (the data are usable; check these spectra):")
        lines.extend(f"  - {w}" for w in r.warnings[:MAX_WARNINGS_SHOWN])
        if len(r.warnings) > MAX_WARNINGS_SHOWN:
            lines.append(f"  … and {len(r.warnings) - MAX_WARNINGS_SHOWN} more")
    if r.ok:
        lines.append("OK: no problems found")
    else:
        lines.append(f"{r.n_problems} problem(s):")
        lines.extend(f"  - {p}" for p in r.problems)
        if r.n_problems > len(r.problems):
            lines.append(f"  … and {r.n_problems - len(r.problems)} more (raise --max-problems to see them)")
    return "\n".join(lines)
