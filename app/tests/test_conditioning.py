"""FiLM conditioning: dose_stats.json / dose_features.csv readers, the (N, F) matrix, per-fold stats."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from spectra_cv.data import conditioning, contract
from spectra_cv.errors import DataContractError

FEATURES = contract.CV_FILM_FEATURES
# treatment → (P_UVA, P_UVB); hours 24 / 1.065625 for treated rows, 0 for the control
DOSES = {"treatment_1": (3.185, 0.707), "treatment_2": (2.488, 0.768), "treatment_6": (0.0, 0.0)}


def make_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A manifest of 12 rows (3 treatments × 2 angles × 2 replicates) and its dose rows, shuffled."""
    manifest, dose = [], []
    for t, (pa, pb) in DOSES.items():
        hours = (24.0, 1.065625) if pa > 0 else (0.0, 0.0)
        for a in ("6Oclock", "12Oclock"):
            for k in range(2):
                rel = f"{t}/sample_A/{a}/rep_{k:03d}.npy"
                manifest.append({"relative_path": rel, "treatment": t, "sample": "sample_A", "angle": a,
                                 "group_id": f"{t}/sample_A/{a}"})
                ua, ub = pa * hours[0], pb * hours[1]
                dose.append({"relative_path": rel, "UVA_total_mWh_cm2": ua, "UVB_total_mWh_cm2": ub,
                             "UVA_over_UVB": ua / ub if ub else np.nan, "P_UVA_mW_cm2": pa, "P_UVB_mW_cm2": pb,
                             "UVA_norm": pa / 3.185, "UVB_norm": pb / 0.768, "UVA_pct_MDV": np.nan if pa == 0 else 1.0})
    dose_df = pd.DataFrame(dose).sample(frac=1.0, random_state=0).reset_index(drop=True)  # lookup is by path
    return pd.DataFrame(manifest), dose_df


def expected_raw(manifest: pd.DataFrame, ratio_for_control: float) -> np.ndarray:
    """The raw (N, 8) matrix written out by hand from DOSES."""
    rows = []
    for _, r in manifest.iterrows():
        pa, pb = DOSES[r["treatment"]]
        hours = (24.0, 1.065625) if pa > 0 else (0.0, 0.0)
        ua, ub = pa * hours[0], pb * hours[1]
        cos = -1.0 if r["angle"] == "6Oclock" else 1.0
        rows.append([cos, ua, ub, ua / ub if ub else ratio_for_control, pa, pb, pa / 3.185, pb / 0.768])
    return np.array(rows)


def test_raw_matrix_matches_hand_values_and_control_ratio_is_mean_of_defined():
    manifest, dose = make_tables()
    out = conditioning.conditioning_matrix(manifest, dose, FEATURES)
    assert out.shape == (12, 8) and out.dtype == np.float32
    ratios = [3.185 * 24 / (0.707 * 1.065625), 2.488 * 24 / (0.768 * 1.065625)]
    np.testing.assert_allclose(out, expected_raw(manifest, np.mean(ratios)), rtol=1e-6)


def test_compute_dose_stats_is_population_stats_of_defined_values():
    manifest, dose = make_tables()
    stats = conditioning.compute_dose_stats(manifest, dose, FEATURES)
    raw = expected_raw(manifest, np.nan)
    assert stats.features == FEATURES
    np.testing.assert_allclose(stats.mean, np.nanmean(raw, axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, np.nanstd(raw, axis=0, ddof=0), rtol=1e-12)
    treated = manifest[manifest["treatment"] != "treatment_6"]
    one = conditioning.compute_dose_stats(treated[treated["treatment"] == "treatment_1"], dose, FEATURES)
    assert one.std[1:] == (1.0,) * 7  # constant features: std < 1e-6 → 1
    assert one.std[0] == pytest.approx(1.0) and one.mean[0] == pytest.approx(0.0)  # ±1 half/half


def test_normalised_matrix_and_control_ratio_normalises_to_zero():
    manifest, dose = make_tables()
    stats = conditioning.DoseStats(features=FEATURES, mean=(0.5, 40, 0.5, 70, 1.5, 0.5, 0.6, 0.7),
                                   std=(1.0, 20, 0.2, 14, 0.9, 0.2, 0.3, 0.3))
    out = conditioning.conditioning_matrix(manifest, dose, FEATURES, stats)
    mean, std = np.array(stats.mean), np.array(stats.std)
    np.testing.assert_allclose(out, (expected_raw(manifest, 70.0) - mean) / (std + 1e-6), rtol=1e-5, atol=1e-6)
    control = (manifest["treatment"] == "treatment_6").to_numpy()
    assert np.all(out[control, 3] == 0.0)
    assert np.all(out[~control, 3] != 0.0)
    fitted = conditioning.compute_dose_stats(manifest, dose, FEATURES)
    again = conditioning.conditioning_matrix(manifest, dose, FEATURES, fitted)
    assert np.all(again[control, 3] == 0.0)


def test_feature_names_match_case_insensitively_and_in_the_given_order():
    manifest, dose = make_tables()
    out = conditioning.conditioning_matrix(manifest, dose, ["uvb_norm", "COS_THETA", "p_uva"])
    np.testing.assert_allclose(out, expected_raw(manifest, 0.0)[:, [7, 0, 4]], rtol=1e-6)


def test_missing_dose_rows_are_named_never_zeros():
    manifest, dose = make_tables()
    gone = manifest["relative_path"].iloc[[2, 7]].tolist()
    with pytest.raises(DataContractError) as info:
        conditioning.conditioning_matrix(manifest, dose[~dose["relative_path"].isin(gone)], FEATURES)
    assert info.value.problems == [
        f"manifest row {i + 1}: {manifest['relative_path'].iat[i]}: no row in dose_features.csv; add its dose "
        "features (one row per relative_path) or drop the spectrum from the manifest"
        for i in (2, 7)
    ]
    assert "(and 1 more problem(s))" in str(info.value)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("UVA_over_UVB", np.nan, "UVA_over_UVB is NaN (or empty); FiLM feature UVA_over_UVB needs a finite number "
         "(only a zero-dose"),
        ("UVA_over_UVB", np.inf, "UVA_over_UVB is inf"),
        ("P_UVB_mW_cm2", "abc", "P_UVB_mW_cm2 is 'abc'"),
        ("UVA_norm", np.nan, "UVA_norm is NaN (or empty); FiLM feature UVA_norm needs a finite number; fix"),
    ],
)
def test_non_finite_values_of_treated_rows_are_errors_naming_the_dose_row(column, value, fragment):
    manifest, dose = make_tables()
    r = int(np.flatnonzero(dose["relative_path"] == manifest["relative_path"].iat[0])[0])
    dose[column] = dose[column].astype(object)
    dose.loc[r, column] = value
    with pytest.raises(DataContractError) as info:
        conditioning.conditioning_matrix(manifest, dose, FEATURES)
    assert info.value.problems == [info.value.problems[0]]
    assert info.value.problems[0].startswith(f"dose_features.csv row {r + 1}: {manifest['relative_path'].iat[0]}: ")
    assert fragment in info.value.problems[0]


def test_undefined_ratio_needs_both_totals_zero():
    manifest, dose = make_tables()
    control = dose["UVB_total_mWh_cm2"] == 0
    dose.loc[control, "UVA_total_mWh_cm2"] = 5.0  # UVA without UVB: not a control, the ratio is not allowed NaN
    problems, n_undefined = conditioning.check_conditioning(manifest, dose, FEATURES)
    assert len(problems) == 4 and n_undefined == 0
    assert all("UVA_over_UVB is NaN" in p for p in problems)


def test_other_non_finite_features_of_the_control_are_errors():
    manifest, dose = make_tables()
    problems, n_undefined = conditioning.check_conditioning(manifest, dose, FEATURES)
    assert problems == [] and n_undefined == 4  # the control's NaN ratio is allowed
    dose.loc[dose["UVB_total_mWh_cm2"] == 0, "UVA_norm"] = np.nan
    problems, _ = conditioning.check_conditioning(manifest, dose, FEATURES)
    assert len(problems) == 4 and all("UVA_norm is NaN" in p for p in problems)


@pytest.mark.parametrize("label, cos", [("12Oclock", 1.0), ("0Oclock", 1.0), ("6Oclock", -1.0), (" 6 ", -1.0),
                                        ("06h", -1.0), ("3Oclock", 0.0), ("1Oclock", 0.866025403784)])
def test_clock_hour_labels_give_the_cosine_of_their_position(label, cos):
    assert contract.angle_to_cos(label) == pytest.approx(cos, abs=1e-12)


@pytest.mark.parametrize("label, reason", [("45deg", "is not a clock hour"), ("6 deg", "is not a clock hour"),
                                           ("30°", "is not a clock hour"), ("10º", "is not a clock hour"),
                                           ("13Oclock", "is not a clock hour"),
                                           ("Oclock6", "has no leading clock hour"), ("", "has no leading clock hour")])
def test_labels_in_degrees_or_past_twelve_are_refused_not_wrapped(label, reason):
    """The original read `45deg` as hour 45 ≡ 9 o'clock (cos θ = 0) without a word."""
    with pytest.raises(ValueError, match=re.escape(f"angle {label!r} {reason}")):
        contract.angle_to_cos(label)


def test_unknown_feature_missing_column_bad_angle_and_duplicates():
    manifest, dose = make_tables()
    manifest.loc[3, "angle"] = "sideways"
    dose = pd.concat([dose, dose.iloc[[0]]], ignore_index=True).drop(columns=["UVB_norm"])
    problems, _ = conditioning.check_conditioning(manifest, dose, [*FEATURES, "brightness"])
    assert problems[0] == (
        f"dose_features.csv rows 1, 13: duplicate relative_path {dose['relative_path'].iat[0]}; "
        "keep one row per spectrum"
    )
    assert "manifest row 4 (1 row(s) with this label): angle 'sideways' has no leading clock hour" in problems[1]
    assert problems[2] == "dose_features.csv: no column UVB_norm, needed for FiLM feature UVB_norm; add it"
    assert problems[3].startswith("FiLM feature 'brightness': unknown FiLM feature 'brightness'")
    assert len(problems) == 4


def test_stats_for_other_features_are_refused():
    manifest, dose = make_tables()
    stats = conditioning.compute_dose_stats(manifest, dose, FEATURES[:2])
    with pytest.raises(DataContractError, match="dose stats are for features"):
        conditioning.conditioning_matrix(manifest, dose, FEATURES, stats)


# --- dose_stats.json -----------------------------------------------------------------------------


def _write_stats(tmp_path, obj) -> str:
    path = tmp_path / contract.DOSE_STATS_FILE
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_read_dose_stats_round_trip(tmp_path):
    manifest, dose = make_tables()
    stats = conditioning.compute_dose_stats(manifest, dose, FEATURES)
    path = _write_stats(tmp_path, stats.to_json_dict())
    assert conditioning.read_dose_stats(path, FEATURES) == stats
    assert conditioning.read_dose_stats(path, [f.lower() for f in FEATURES]).mean == stats.mean


GOOD = {"features": list(FEATURES), "mean": [0.0] * 8, "std": [1.0] * 8}


@pytest.mark.parametrize(
    ("obj", "fragments"),
    [
        ({**GOOD, "features": list(reversed(FEATURES))}, ["differ from the requested FiLM features"]),
        ({**GOOD, "features": list(FEATURES[:7])}, ["differ from the requested", "'mean' must be a list of 7 numbers",
                                                   "'std' must be a list of 7 numbers"]),
        ({**GOOD, "mean": [0.0] * 7 + [float("nan")]}, ["mean of UVB_norm is nan; it must be finite"]),
        ({**GOOD, "std": [1.0] * 6 + [0.0, -2.0]}, ["std of UVA_norm is 0.0", "std of UVB_norm is -2.0"]),
        ({**GOOD, "std": ["x"] * 8}, ["'std' holds a non-number"]),
        ({"features": list(FEATURES)}, ["expected an object with keys features, mean, std"]),
        ("{not json", ["unreadable JSON"]),
    ],
)
def test_read_dose_stats_reports_every_problem(tmp_path, obj, fragments):
    path = _write_stats(tmp_path, obj)
    with pytest.raises(DataContractError) as info:
        conditioning.read_dose_stats(path, FEATURES)
    assert len(info.value.problems) == len(fragments)
    for problem, fragment in zip(info.value.problems, fragments):
        assert problem.startswith(f"{path}: ") and fragment in problem


def test_read_dose_stats_missing_file(tmp_path):
    with pytest.raises(DataContractError, match="not found; recompute it with `spectra-cv data stats`"):
        conditioning.read_dose_stats(tmp_path / "dose_stats.json", FEATURES)


def test_read_dose_features_strict(tmp_path):
    manifest, dose = make_tables()
    dose.to_csv(tmp_path / "d.csv", index=False)
    read = conditioning.read_dose_features(tmp_path / "d.csv")
    expected = conditioning.conditioning_matrix(manifest, dose, FEATURES)
    np.testing.assert_array_equal(conditioning.conditioning_matrix(manifest, read, FEATURES), expected)
    dose.drop(columns=["relative_path"]).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataContractError, match="no relative_path column"):
        conditioning.read_dose_features(tmp_path / "d.csv")
    with pytest.raises(DataContractError, match="dose features not found"):
        conditioning.read_dose_features(tmp_path / "nope.csv")
