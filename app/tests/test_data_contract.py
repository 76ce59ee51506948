"""check_dataset / format_report / `spectra-cv data check` on tiny datasets built here, broken one way per test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spectra_cv import paths
from spectra_cv.cli import main
from spectra_cv.data import check, contract

L = 601
ANGLES = ("6Oclock", "12Oclock")
REPS = 3
# treatment → (samples, P_UVA, P_UVB); treatment_9 is the zero-dose control with 2 samples
TREATMENTS = {
    "treatment_1": (("sample_A", "sample_B", "sample_C", "sample_E", "sample_H"), 3.185, 0.707),
    "treatment_2": (("sample_A", "sample_C", "sample_D", "sample_F", "sample_H"), 2.488, 0.768),
    "treatment_9": (("sample_G", "sample_I"), 0.0, 0.0),
}
N_ROWS = sum(len(s) for s, _, _ in TREATMENTS.values()) * len(ANGLES) * REPS  # 72
CSVS = (  # (folder: "root" or "meta", file) of every CSV keyed by relative_path
    ("root", contract.MANIFEST_FILE), ("meta", contract.DOSE_FEATURES_FILE), ("meta", contract.SAMPLING_WEIGHTS_FILE)
)


def make_dataset(base: Path) -> tuple[Path, Path]:
    """A valid dataset in the user's layout: (data root, metadata dir). 72 spectra of 601 points."""
    root, meta = base / "data" / "spectra_for_fold", base / "data" / "metadata"
    root.mkdir(parents=True), meta.mkdir(parents=True)
    grid = (300.0 + 0.5 * np.arange(L)).astype(np.float32)
    np.save(root / contract.GRID_FILE, grid)
    rng = np.random.default_rng(0)
    shape = 0.4 + 0.2 * np.sin(np.linspace(0.0, 3.0, L))
    rows, dose = [], []
    for t, (samples, p_uva, p_uvb) in TREATMENTS.items():
        hours = (24.0, 1.065625) if p_uva > 0 else (0.0, 0.0)
        uva, uvb = p_uva * hours[0], p_uvb * hours[1]
        for s in samples:
            for a in ANGLES:
                for k in range(REPS):
                    rel = f"{t}/{s}/{a}/rep_{k:03d}.npy"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    np.save(root / rel, (shape + 0.005 * rng.standard_normal(L)).astype(np.float32))
                    rows.append([rel, t, s, a, f"{t}/{s}/{a}", f"/raw/{rel}.txt"])
                    dose.append({
                        "relative_path": rel, "treatment": t, "sample": s, "angle": a,
                        "UVA_hours_h": hours[0], "UVB_hours_h": hours[1], "P_UVA_mW_cm2": p_uva,
                        "P_UVB_mW_cm2": p_uvb, "UVA_total_mWh_cm2": uva, "UVB_total_mWh_cm2": uvb,
                        "UVA_over_UVB": uva / uvb if uvb > 0 else np.nan,
                        "UVA_norm": p_uva / 3.185, "UVB_norm": p_uvb / 0.768,
                    })
    pd.DataFrame(rows, columns=contract.MANIFEST_COLUMNS).to_csv(root / contract.MANIFEST_FILE, index=False)
    pd.DataFrame(dose).to_csv(meta / contract.DOSE_FEATURES_FILE, index=False)
    weights = pd.DataFrame({"relative_path": [r[0] for r in rows], "sampling_weight": 1.0, "bin_pair": "(0, 0)"})
    weights.to_csv(meta / contract.SAMPLING_WEIGHTS_FILE, index=False)
    stats = {"features": list(contract.CV_FILM_FEATURES), "mean": [0.0, 40.0, 0.5, 70.0, 1.5, 0.5, 0.6, 0.7],
             "std": [1.0, 20.0, 0.2, 14.0, 0.9, 0.2, 0.3, 0.3]}
    (meta / contract.DOSE_STATS_FILE).write_text(json.dumps(stats))
    lam = np.where((grid >= 320) & (grid <= 500), 3.0, 1.0).astype(np.float32) * 100.0
    np.savez(root / contract.LAMBDA_STATS_FILE, wavelength=grid, weights=lam)
    return root, meta


def manifest_of(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / contract.MANIFEST_FILE, dtype=str, keep_default_na=False)


def row_of(root: Path, rel: str) -> int:
    """1-based manifest data row of ``rel``."""
    return int(np.flatnonzero(manifest_of(root)["relative_path"].to_numpy() == rel)[0]) + 1


def rename_row(root: Path, meta: Path, old: str, new: str) -> None:
    """Point a spectrum's manifest, dose and weight rows at another file name."""
    for path in csv_paths(root, meta):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.loc[frame["relative_path"] == old, "relative_path"] = new
        frame.to_csv(path, index=False)
    (root / old).unlink()


def csv_paths(root: Path, meta: Path) -> list[Path]:
    return [(root if where == "root" else meta) / name for where, name in CSVS]


def set_cell(path: Path, row: int, column: str, value: str) -> None:
    """Overwrite one cell (0-based data row) of a CSV, keeping every cell as written."""
    edit_csv(path, lambda f: f.assign(**{column: [value if i == row else v for i, v in enumerate(f[column])]}))


def edit_csv(path: Path, edit) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = edit(frame)
    frame.to_csv(path, index=False)


def run_cli(root: Path, meta: Path, *extra: str):
    return CliRunner().invoke(main, ["data", "check", "--data-root", str(root), "--metadata-dir", str(meta), *extra])


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, Path]:
    return make_dataset(tmp_path)


def test_valid_dataset_passes_with_summary(dataset):
    root, meta = dataset
    report = check.check_dataset(root, meta)
    assert report.ok and report.problems == [] and report.n_rows == N_ROWS
    by_name = {t.name: t for t in report.treatments}
    assert set(by_name) == set(TREATMENTS)
    assert by_name["treatment_1"].samples == TREATMENTS["treatment_1"][0]
    assert by_name["treatment_1"].angles == ANGLES  # clock order: 6 before 12
    assert (by_name["treatment_9"].min_replicates, by_name["treatment_9"].max_replicates) == (REPS, REPS)
    assert by_name["treatment_9"].n_spectra == 2 * len(ANGLES) * REPS
    assert report.grid_points == L and report.grid_range_nm == (300.0, 600.0)
    assert report.grid_step_nm == pytest.approx(0.5)
    assert report.cv_treatments == ("treatment_1", "treatment_2")
    assert list(report.excluded_treatments) == ["treatment_9"]
    assert "2 sample(s)" in report.excluded_treatments["treatment_9"]
    assert report.dose_rows_matched == N_ROWS and report.sampling_weights_matched == N_ROWS
    assert report.undefined_ratio_rows == 12 and report.dose_stats_ok
    lam = np.load(root / contract.LAMBDA_STATS_FILE)["weights"]
    assert report.lambda_weights_range == pytest.approx((100.0, lam.mean(), 300.0))
    result = run_cli(root, meta)
    assert result.exit_code == 0, result.output
    assert "OK: no problems found" in result.output
    assert "left out of CV: treatment_9" in result.output
    assert "treatment_1: 5 samples" in result.output and "× 3 replicates" in result.output


def test_cli_falls_back_to_env_paths(tmp_path):
    make_dataset(tmp_path)  # conftest points the env defaults at tmp_path/data/...
    assert paths.data_root() == tmp_path / "data" / "spectra_for_fold"
    result = CliRunner().invoke(main, ["data", "check"])
    assert result.exit_code == 0, result.output


def _missing_file(root, meta):
    rel = "treatment_1/sample_B/12Oclock/rep_001.npy"
    (root / rel).unlink()
    return [f"manifest.csv row {row_of(root, rel)}: {rel}: spectrum file not found"]


def _duplicate_rows(root, meta):
    edit_csv(root / contract.MANIFEST_FILE, lambda f: pd.concat([f, f.iloc[[4]]], ignore_index=True))
    rel = manifest_of(root)["relative_path"].iat[4]
    return [f"manifest.csv rows 5, {N_ROWS + 1}: duplicate relative_path {rel}"]


def _save_spectrum(values):
    def breaker(root, meta):
        rel = "treatment_2/sample_D/6Oclock/rep_002.npy"
        np.save(root / rel, values)
        return [f"manifest.csv row {row_of(root, rel)}: {rel}: "]
    return breaker


def _with_nonfinite():
    values = np.full(L, 0.5, dtype=np.float32)
    values[[3, 9]] = [np.nan, np.inf]
    return values


def _corrupt_npy(root, meta):
    rel = "treatment_1/sample_A/6Oclock/rep_000.npy"
    (root / rel).write_bytes(b"\x93NUMPY garbage")
    return ["manifest.csv row 1: treatment_1/sample_A/6Oclock/rep_000.npy: corrupt or unreadable .npy"]


def _npz_without_key(root, meta):
    old, new = "treatment_1/sample_C/6Oclock/rep_000.npy", "treatment_1/sample_C/6Oclock/rep_000.npz"
    rename_row(root, meta, old, new)
    np.savez(root / new, spectrum=np.full(L, 0.5, dtype=np.float32))
    return [f"manifest.csv row {row_of(root, new)}: {new}: .npz has keys ['spectrum'] but no 'reflectance'"]


def _csv_without_columns(root, meta):
    old, new = "treatment_1/sample_C/6Oclock/rep_001.npy", "treatment_1/sample_C/6Oclock/rep_001.csv"
    rename_row(root, meta, old, new)
    pd.DataFrame({"wl": np.arange(300, 601.0), "refl": 0.5}).to_csv(root / new, index=False)
    return [f"manifest.csv row {row_of(root, new)}: {new}: missing column(s) wavelength_nm, reflectance"]


def _grid_wrong_length(root, meta):
    np.save(root / contract.GRID_FILE, np.linspace(300, 600, L - 1).astype(np.float32))
    return [f"{root / contract.GRID_FILE}: {L - 1} points, expected {L}"]


def _grid_not_increasing(root, meta):
    grid = (300.0 + 0.5 * np.arange(L)).astype(np.float32)
    grid[[100, 101]] = grid[[101, 100]]
    np.save(root / contract.GRID_FILE, grid)
    return ["wavelength_grid.npy: wavelengths not strictly increasing at index 101 (350.5 nm then 350 nm)"]


def _manifest_missing_column(root, meta):
    edit_csv(root / contract.MANIFEST_FILE, lambda f: f.drop(columns=["group_id"]))
    return ["manifest.csv: missing required column(s) group_id"]


def _group_with_one_replicate(root, meta):
    group = "treatment_2/sample_F/12Oclock"
    keep = manifest_of(root)
    rows = [row_of(root, f"{group}/rep_000.npy")]
    keep = keep[~keep["relative_path"].isin([f"{group}/rep_001.npy", f"{group}/rep_002.npy"])]
    keep.to_csv(root / contract.MANIFEST_FILE, index=False)
    return [f"manifest.csv row {rows[0]}: group {group} has 1 replicate(s); Noise2Noise needs ≥ 2"]


def _no_dose_row(root, meta):
    rel = "treatment_2/sample_A/12Oclock/rep_002.npy"
    edit_csv(meta / contract.DOSE_FEATURES_FILE, lambda f: f[f["relative_path"] != rel])
    return [f"manifest.csv row {row_of(root, rel)}: {rel}: no row in dose_features.csv; add its dose features"]


def _dose_stats_other_features(root, meta):
    stats = json.loads((meta / contract.DOSE_STATS_FILE).read_text())
    stats["features"][1], stats["features"][2] = stats["features"][2], stats["features"][1]
    (meta / contract.DOSE_STATS_FILE).write_text(json.dumps(stats))
    return ["dose_stats.json: features ['cos_theta', 'UVB_total', 'UVA_total'", "differ from the requested FiLM"]


def _lambda(weights):
    def breaker(root, meta):
        np.savez(root / contract.LAMBDA_STATS_FILE, weights=weights)
        return [f"{root / contract.LAMBDA_STATS_FILE}: "]
    return breaker


def _ratio_nan_not_control(root, meta):
    rel = "treatment_1/sample_E/6Oclock/rep_001.npy"
    dose_row = int(np.flatnonzero(pd.read_csv(meta / contract.DOSE_FEATURES_FILE)["relative_path"] == rel)[0]) + 1
    set_cell(meta / contract.DOSE_FEATURES_FILE, dose_row - 1, "UVA_over_UVB", "nan")
    return [f"dose_features.csv row {dose_row}: {rel}: UVA_over_UVB is NaN", "only a zero-dose control row"]


def _sampling_weight_zero(root, meta):
    set_cell(meta / contract.SAMPLING_WEIGHTS_FILE, 0, "sampling_weight", "0")
    rel = "treatment_1/sample_A/6Oclock/rep_000.npy"
    return [f"dose_sampling_weights.csv row 1: {rel}: sampling_weight '0' must be finite and > 0"]


def _sampling_weight_row_missing(root, meta):
    rel = "treatment_9/sample_I/12Oclock/rep_002.npy"
    edit_csv(meta / contract.SAMPLING_WEIGHTS_FILE, lambda f: f[f["relative_path"] != rel])
    return [f"manifest.csv row {row_of(root, rel)}: {rel}: no row in dose_sampling_weights.csv"]


def _percent_scale(root, meta):
    rel = "treatment_1/sample_H/12Oclock/rep_000.npy"
    np.save(root / rel, np.full(L, 45.0, dtype=np.float32))
    return [f"manifest.csv row {row_of(root, rel)}: {rel}: reflectance spans 45…45, far outside [0, 1]"]


def _all_zero(root, meta):
    rel = "treatment_1/sample_H/12Oclock/rep_000.npy"
    np.save(root / rel, np.zeros(L, dtype=np.float32))
    return [f"manifest.csv row {row_of(root, rel)}: {rel}: all zero (a dark frame or an empty export)"]


def _all_negative(root, meta):
    """Every value in [−0.1, 0): within the tolerance, so not a scale problem, but all zero once a fold
    clips it; `data check` must refuse it as the fold does."""
    rel = "treatment_1/sample_H/12Oclock/rep_002.npy"
    np.save(root / rel, np.linspace(-0.09, -0.01, L).astype(np.float32))
    return [f"manifest.csv row {row_of(root, rel)}: {rel}: every value is ≤ 0 (down to -0.09), so it is all zero "
            "once negatives are clipped to 0 on load"]


def _constant_once_clipped(root, meta):
    rel = "treatment_1/sample_H/6Oclock/rep_000.npy"
    np.save(root / rel, np.linspace(1.01, 1.05, L).astype(np.float32))
    return [f"manifest.csv row {row_of(root, rel)}: {rel}: constant at 1 once clipped to [0, 1] on load"]


def _constant(root, meta):
    rel = "treatment_1/sample_H/12Oclock/rep_001.npy"
    np.save(root / rel, np.full(L, 0.42, dtype=np.float32))
    return [f"manifest.csv row {row_of(root, rel)}: {rel}: constant at 0.42 (no spectrum was recorded)"]


def _group_id_mismatch(root, meta):
    set_cell(root / contract.MANIFEST_FILE, 0, "group_id", "treatment_1/sample_A/12Oclock")
    return ["manifest.csv row 1: group_id 'treatment_1/sample_A/12Oclock' is not treatment/sample/angle"]


def _bad_angle_label(root, meta):
    old, new = "treatment_9/sample_G/6Oclock", "treatment_9/sample_G/Oclock6"
    (root / old).rename(root / new)
    for path in csv_paths(root, meta):
        path.write_text(_relabel(path.read_text(), old, new))
    first = row_of(root, f"{new}/rep_000.npy")
    return [f"manifest.csv row {first} ({REPS} row(s) with this label): angle 'Oclock6' has no leading clock hour"]


def _relabel(text: str, old: str, new: str) -> str:
    """Rename one group's folder and angle label in a CSV's text (only that group's rows change)."""
    lines = text.splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        if old in line:
            line = line.replace(old, new).replace(",6Oclock,", ",Oclock6,")
        out.append(line)
    return "\n".join(out) + "\n"


BREAKERS = {
    "missing file": _missing_file,
    "duplicate rows": _duplicate_rows,
    "wrong length": _save_spectrum(np.full(L - 1, 0.5, dtype=np.float32)),
    "nan and inf": _save_spectrum(_with_nonfinite()),
    "2-D array": _save_spectrum(np.full((2, L), 0.5, dtype=np.float32)),
    "corrupt npy": _corrupt_npy,
    "npz without reflectance": _npz_without_key,
    "csv without columns": _csv_without_columns,
    "grid wrong length": _grid_wrong_length,
    "grid not increasing": _grid_not_increasing,
    "manifest missing column": _manifest_missing_column,
    "group with one replicate": _group_with_one_replicate,
    "no dose_features row": _no_dose_row,
    "dose_stats other features": _dose_stats_other_features,
    "lambda wrong length": _lambda(np.ones(L - 1)),
    "lambda non-positive": _lambda(np.where(np.arange(L) == 10, 0.0, 1.0)),
    "ratio NaN outside control": _ratio_nan_not_control,
    "sampling weight zero": _sampling_weight_zero,
    "sampling weight row missing": _sampling_weight_row_missing,
    "percent scale": _percent_scale,
    "all zero": _all_zero,
    "all negative": _all_negative,
    "constant once clipped": _constant_once_clipped,
    "constant": _constant,
    "group_id mismatch": _group_id_mismatch,
    "bad angle label": _bad_angle_label,
}
DETAILS = {  # the reason each spectrum/λ breaker must report, beyond naming the row/file
    "wrong length": f"has {L - 1} points, expected {L} (wavelength_grid.npy)",
    "nan and inf": "2 NaN/inf value(s) (first at 301.5 nm)",
    "2-D array": f"array of shape (2, {L}), expected 1-D ({L},)",
    "lambda wrong length": f"weights of shape ({L - 1},), expected ({L},)",
    "lambda non-positive": "1 weight(s) not finite and positive (first at index 10: 0)",
}


@pytest.mark.parametrize("name", list(BREAKERS))
def test_each_broken_input_is_reported_once_named_and_fails_the_cli(dataset, name):
    root, meta = dataset
    fragments = BREAKERS[name](root, meta) + ([DETAILS[name]] if name in DETAILS else [])
    report = check.check_dataset(root, meta)
    assert report.n_problems == 1, report.problems
    for fragment in fragments:
        assert fragment in report.problems[0]
    result = run_cli(root, meta)
    assert result.exit_code == 1
    assert all(fragment in result.output for fragment in fragments)
    assert "1 data contract problem(s)" in result.output


def test_several_problems_are_all_reported(dataset):
    root, meta = dataset
    names = ["missing file", "wrong length", "no dose_features row", "lambda non-positive", "group_id mismatch"]
    fragments = [BREAKERS[n](root, meta)[0] for n in names]
    report = check.check_dataset(root, meta)
    assert report.n_problems == len(names)
    for fragment in fragments:
        assert sum(fragment in p for p in report.problems) == 1, fragment
    result = run_cli(root, meta)
    assert result.exit_code == 1 and all(f in result.output for f in fragments)


def test_problems_are_capped_and_counted(dataset):
    root, meta = dataset
    rels = manifest_of(root)["relative_path"].to_numpy()[:10]
    for rel in rels:
        (root / rel).unlink()
    report = check.check_dataset(root, meta, max_problems=3)
    assert report.n_problems == 10 and len(report.problems) == 3
    assert [p.split(":")[0] for p in report.problems] == [f"manifest.csv row {i}" for i in (1, 2, 3)]
    assert "… and 7 more (raise --max-problems to see them)" in check.format_report(report)
    result = run_cli(root, meta, "--max-problems", "3")
    assert result.exit_code == 1 and "10 data contract problem(s)" in result.output
    assert "manifest.csv row 3:" in result.output and "manifest.csv row 4:" not in result.output


def test_requested_film_features_must_match_dose_stats(dataset):
    root, meta = dataset
    result = run_cli(root, meta, "--film-features", "cos_theta", "--film-features", "UVA_total")
    assert result.exit_code == 1
    assert "differ from the requested FiLM features ['cos_theta', 'UVA_total']" in result.output


def test_missing_angle_column_is_reported_for_manifest_and_conditioning(dataset):
    root, meta = dataset
    edit_csv(root / contract.MANIFEST_FILE, lambda f: f.drop(columns=["angle"]))
    report = check.check_dataset(root, meta)
    assert report.n_problems == 2
    assert "missing required column(s) angle" in report.problems[0]
    assert "no angle column, needed for FiLM feature cos_theta" in report.problems[1]


def test_missing_metadata_files_are_each_reported(dataset):
    root, meta = dataset
    (meta / contract.DOSE_FEATURES_FILE).unlink()
    (meta / contract.DOSE_STATS_FILE).unlink()
    (meta / contract.SAMPLING_WEIGHTS_FILE).unlink()  # optional: absent means uniform weights
    report = check.check_dataset(root, meta)
    assert report.n_problems == 2 and report.sampling_weights_matched is None
    assert "dose_features.csv: dose features not found" in report.problems[0]
    assert "dose_stats.json: not found" in report.problems[1]


def test_no_treatment_with_five_samples_is_a_problem(dataset):
    root, meta = dataset
    edit_csv(root / contract.MANIFEST_FILE, lambda f: f[f["sample"] != "sample_A"])
    report = check.check_dataset(root, meta)
    assert report.cv_treatments == () and report.n_problems == 1
    assert "no treatment has exactly 5 samples" in report.problems[0]
    assert set(report.excluded_treatments) == set(TREATMENTS)


def test_missing_data_root_is_one_problem_per_missing_directory(tmp_path):
    report = check.check_dataset(tmp_path / "nope", tmp_path / "nada")
    assert report.n_problems == 2
    assert "data root not found" in report.problems[0] and "metadata directory not found" in report.problems[1]


def test_npz_and_resampled_csv_spectra_pass(dataset):
    root, meta = dataset
    base = "treatment_2/sample_C/6Oclock/rep_00"
    rename_row(root, meta, base + "0.npy", base + "0.npz")
    np.savez(root / (base + "0.npz"), reflectance=np.linspace(0.4, 0.6, L, dtype=np.float32))
    rename_row(root, meta, base + "1.npy", base + "1.csv")
    wl = np.arange(299.0, 602.0, 1.0)
    pd.DataFrame({"wavelength_nm": wl, "reflectance": 0.3 + 1e-4 * wl}).to_csv(root / (base + "1.csv"), index=False)
    report = check.check_dataset(root, meta)
    assert report.ok, report.problems
    assert report.value_range[0] == pytest.approx(0.3 + 1e-4 * 300.0, abs=1e-6)  # the resampled CSV at 300 nm


def test_saturated_or_mostly_negative_spectra_are_warnings_named_by_row(dataset):
    """What a user may mean (a saturated detector, a dark offset) is a warning, not a problem: the
    check passes, names the row, and `data check` prints it and exits 0."""
    root, meta = dataset
    saturated, negative = "treatment_1/sample_H/12Oclock/rep_000.npy", "treatment_1/sample_H/12Oclock/rep_001.npy"
    values = np.linspace(0.2, 0.8, L).astype(np.float32)
    values[300:312] = 0.95
    np.save(root / saturated, values)
    np.save(root / negative, np.linspace(-0.05, 0.3, L).astype(np.float32))
    report = check.check_dataset(root, meta)
    assert report.ok, report.problems
    assert len(report.warnings) == 2
    assert report.warnings[0].startswith(f"manifest.csv row {row_of(root, saturated)}: {saturated}: 12 consecutive "
                                         "samples at its maximum 0.95 from 450 nm")
    assert f"row {row_of(root, negative)}: {negative}: 14% of its values are negative" in report.warnings[1]
    out = CliRunner().invoke(main, ["data", "check", "--data-root", str(root), "--metadata-dir", str(meta)])
    assert out.exit_code == 0 and "2 warning(s)" in out.output and "12 consecutive samples" in out.output


@pytest.mark.parametrize("features", [contract.CV_FILM_FEATURES, (), ("UVA_total",)])
def test_a_bad_angle_label_is_refused_by_check_and_fold_whatever_the_film_features(dataset, features):
    """cos θ is an input channel of every model (FiLM or none), so `data check` refuses a label in
    degrees even when cos_theta is no FiLM feature, and a fold reading it says the same, not a
    bare ValueError."""
    from spectra_cv.data import loaders
    from spectra_cv.data.splits import read_split
    from spectra_cv.errors import DataContractError

    root, meta = dataset
    old, new = "treatment_9/sample_G/6Oclock", "treatment_9/sample_G/45deg"
    (root / old).rename(root / new)
    for path in csv_paths(root, meta):
        path.write_text(_relabel(path.read_text(), old, new).replace(",Oclock6,", ",45deg,"))
    report = check.check_dataset(root, meta, film_features=features)
    first = row_of(root, f"{new}/rep_000.npy")
    angle = [p for p in report.problems if "angle '" in p]  # (other features also differ from dose_stats.json)
    assert angle == [f"manifest.csv row {first} ({REPS} row(s) with this label): angle '45deg' is not a clock hour "
                     "(0–12); convert angles to clock positions, e.g. '6Oclock' or '12Oclock'"]
    with pytest.raises(DataContractError, match="angle '45deg' is not a clock hour"):
        read_split(root, root / contract.MANIFEST_FILE, loaders.read_grid(root))


def test_a_fold_refuses_unusable_spectra_and_keeps_the_warnings(dataset):
    """Every split read (training, scoring) refuses all-zero spectra naming the row, and keeps the
    warnings the fold writes to its metrics JSON for the report."""
    from spectra_cv.data import loaders
    from spectra_cv.data.splits import read_split
    from spectra_cv.errors import DataContractError
    from spectra_cv.runs.report import spectra_warnings

    root, _ = dataset
    grid = loaders.read_grid(root)
    rel = "treatment_1/sample_H/12Oclock/rep_000.npy"
    values = np.linspace(0.2, 0.8, L).astype(np.float32)
    values[300:312] = 0.95
    np.save(root / rel, values)
    split = read_split(root, root / contract.MANIFEST_FILE, grid)
    assert len(split.warnings) == 1 and "12 consecutive samples at its maximum" in split.warnings[0]
    assert spectra_warnings({2: {"data_warnings": list(split.warnings)}}) == [f"fold 2: {split.warnings[0]}"]
    np.save(root / rel, np.zeros(L, dtype=np.float32))
    with pytest.raises(DataContractError, match=rf"1 spectra cannot be used:\n  .*row {row_of(root, rel)}: {rel}: all zero"):
        read_split(root, root / contract.MANIFEST_FILE, grid)


@pytest.mark.parametrize("suffix", [".npy", ".CSV", ".npz", ".txt"])
def test_spectra_that_no_manifest_row_lists_are_a_warning(dataset, suffix):
    """A manifest cut short (or not updated) loses spectra without any row being wrong: `data check`
    warns, naming the manifest, how many files and the first, and still passes — whatever type of
    spectrum file was left out."""
    root, meta = dataset
    manifest = root / "manifest.csv"
    lines = manifest.read_text().splitlines(keepends=True)
    dropped = lines[-1].split(",")[0]
    if suffix != ".npy":
        (root / dropped).rename(root / Path(dropped).with_suffix(suffix))
        dropped = Path(dropped).with_suffix(suffix).as_posix()
    manifest.write_text("".join(lines[:-1]))
    report = check.check_dataset(root, meta)
    assert report.ok, report.problems
    assert report.warnings == [f"{manifest}: 1 spectrum file(s) under the data root are in no row (first: {dropped}): "
                               "if the manifest was cut short or not updated, add their rows; if they were left out "
                               "on purpose, nothing to do"]


def test_the_conversion_script_in_the_data_format_document_runs_as_written(tmp_path):
    """docs/data-format.md's script, taken from the document, converts a folder of two-column CSV spectra;
    `data stats --in-place` derives the rest and `data check` passes: a newcomer's path, kept working."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data-format.md").read_text()
    script = doc.split("```python\n", 1)[1].split("```", 1)[0]
    rng = np.random.default_rng(0)
    wl = np.arange(295.0, 605.5, 1.0)
    index, doses = [], []
    samples = {t: [f"{chr(65 + 5 * (t - 1) + i)}" for i in range(5 if t < 6 else 2)] for t in range(1, 7)}
    for t, names in samples.items():
        dosed = t != 6  # treatment 6: the zero-dose control
        doses.append({"treatment": t, "P_UVA_mW_cm2": (1.0 + t) * dosed, "P_UVB_mW_cm2": 0.1 * t * dosed,
                      "UVA_hours_h": 10.0 * t * dosed, "UVB_hours_h": 5.0 * dosed})
        for s in names:
            for hour in (6, 12):
                shape = 0.3 + 0.2 * np.sin(wl / (40.0 + t)) + 0.01 * (hour / 6)
                for r in range(3):
                    src = tmp_path / "raw" / f"t{t}_{s}_{hour}_{r}.csv"
                    src.parent.mkdir(exist_ok=True)
                    pd.DataFrame({"wavelength_nm": wl, "reflectance": shape + rng.normal(0, 0.003, wl.size)}).to_csv(
                        src, index=False)
                    index.append({"file": str(src), "treatment": t, "sample": s, "clock_hour": hour})
    pd.DataFrame(index).to_csv(tmp_path / "my_index.csv", index=False)
    pd.DataFrame(doses).to_csv(tmp_path / "my_doses.csv", index=False)
    exec(compile(script, "docs/data-format.md", "exec"), {})  # the tests run in tmp_path (conftest)
    root, meta = tmp_path / "my_dataset" / "spectra_for_fold", tmp_path / "my_dataset" / "metadata"
    stats = CliRunner().invoke(main, ["data", "stats", "--data-root", str(root), "--metadata-dir", str(meta),
                                      "--in-place"])
    assert stats.exit_code == 0, stats.output
    out = run_cli(root, meta)
    assert out.exit_code == 0 and "OK: no problems found" in out.output, out.output
