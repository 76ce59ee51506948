"""Derived statistics: lambda_stats, bin_pair quintiles, dose_stats, and `spectra-cv data stats`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spectra_cv import paths
from spectra_cv.cli import main
from spectra_cv.data import conditioning, contract, loaders, stats, synth
from spectra_cv.errors import DataContractError


# --- lambda_stats --------------------------------------------------------------------------------
def test_lambda_stats_matches_hand_computation():
    wl = np.linspace(300.0, 600.0, 16)  # 20 nm steps: 320 … 500 (indices 1..10) is the ROI, inclusive
    target_var = (np.arange(16) + 1.0) * 1e-4  # known per-wavelength variance, increasing
    d = np.sqrt(target_var)
    spectra = 0.3 + np.stack([-d, np.zeros(16), d])  # (3, 16): variance ddof=1 of (−d, 0, d) is d²
    out = stats.lambda_stats(spectra, wl)

    assert tuple(out) == contract.LAMBDA_STATS_KEYS
    assert all(v.dtype == np.float32 and v.shape == (16,) for v in out.values())
    np.testing.assert_allclose(out["variance"], target_var, rtol=1e-6)
    # linear percentiles of 16 sorted values: position 0.05·15 = 0.75 and 0.95·15 = 14.25
    lo = target_var[0] + 0.75 * (target_var[1] - target_var[0])
    hi = target_var[14] + 0.25 * (target_var[15] - target_var[14])
    clipped = target_var.copy()
    clipped[0], clipped[15] = lo, hi
    np.testing.assert_allclose(out["variance_clipped"], clipped, rtol=1e-6)
    np.testing.assert_allclose(out["precision"], 1.0 / clipped, rtol=1e-6)
    alpha = np.ones(16)
    alpha[1:11] = 3.0
    np.testing.assert_array_equal(out["alpha"], alpha)
    np.testing.assert_allclose(out["weights"], alpha / clipped, rtol=1e-6)
    np.testing.assert_array_equal(out["wavelength"], wl.astype(np.float32))


def test_lambda_stats_uses_unclipped_values():
    wl = np.linspace(300.0, 600.0, 8)
    spectra = np.array([[-0.002] * 8, [0.0] * 8, [0.002] * 8]) * np.linspace(1, 2, 8)  # (3, 8), some < 0
    out = stats.lambda_stats(spectra, wl)
    np.testing.assert_allclose(out["variance"], spectra.var(axis=0, ddof=1), rtol=1e-6)


@pytest.mark.parametrize("spectra", [np.ones((1, 8)), np.ones((4, 8)), np.ones((4, 7))])
def test_lambda_stats_rejects_unusable_input(spectra):
    with pytest.raises(DataContractError):
        stats.lambda_stats(spectra, np.linspace(300.0, 600.0, 8))


# --- bin_pair and sampling weights ---------------------------------------------------------------
def test_quantile_bins_hand_example():
    values = np.array([0, 0, 0.2, 0.2, 0.3, 0.3, 0.8, 0.8, 1, 1])
    # linear quantile edges: 0.16, 0.26, 0.5, 0.84 → counts of edges ≤ value
    np.testing.assert_array_equal(stats.quantile_bins(values), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])


def test_quantile_bins_value_on_an_edge_counts_it():
    values = np.array([0.0] * 5 + [1.0] * 5)  # edges 0, 0, 0.4, 1: a value equal to an edge passes it
    np.testing.assert_array_equal(stats.quantile_bins(values), [2] * 5 + [4] * 5)


def _dose_frame() -> pd.DataFrame:
    rows = []
    for k, (uva, uvb, ratio, total_a, total_b) in {
        1: (1.0, 0.5, 2.0, 10.0, 5.0), 2: (0.5, 1.0, 0.5, 5.0, 10.0), 6: (0.0, 0.0, np.nan, 0.0, 0.0)
    }.items():
        for angle in ("6Oclock", "12Oclock"):
            rows.append({
                "relative_path": f"treatment_{k}/sample_A/{angle}/rep_000.npy", "angle": angle,
                "UVA_norm": uva, "UVB_norm": uvb, "UVA_over_UVB": ratio,
                "UVA_total_mWh_cm2": total_a, "UVB_total_mWh_cm2": total_b,
            })
    return pd.DataFrame(rows)


def test_sampling_weights_rows_order_and_format():
    dose = _dose_frame()
    rel = dose["relative_path"].tolist()[::-1]  # order follows the request, not the CSV
    out = stats.sampling_weights(dose, rel)
    assert list(out.columns) == ["relative_path", "sampling_weight", "bin_pair"]
    assert out["relative_path"].tolist() == rel
    assert (out["sampling_weight"] == 1.0).all()
    # UVA_norm over the 6 rows: 0,0,.5,.5,1,1 → edges 0, .5, .5, 1 (so 0 → 1, .5 → 3, 1 → 4);
    # UVB_norm is the same multiset
    expected = {"treatment_1": "(4, 3)", "treatment_2": "(3, 4)", "treatment_6": "(1, 1)"}
    assert out["bin_pair"].tolist() == [expected[p.split("/")[0]] for p in rel]


def test_sampling_weights_edges_come_from_the_selected_rows_only():
    dose = _dose_frame()
    treated = [p for p in dose["relative_path"] if not p.startswith("treatment_6")]
    out = stats.sampling_weights(dose, treated)  # UVA_norm .5,.5,1,1 → edges .5, .6, .9, 1
    assert set(out["bin_pair"]) == {"(4, 1)", "(1, 4)"}


def test_missing_dose_row_is_an_error_naming_the_spectrum():
    dose = _dose_frame()
    with pytest.raises(DataContractError, match="treatment_9/sample_Z"):
        stats.sampling_weights(dose, ["treatment_9/sample_Z/6Oclock/rep_000.npy"])


# --- dose_stats ----------------------------------------------------------------------------------
def test_dose_stats_population_stats_and_undefined_ratio():
    dose = _dose_frame()
    rel = dose["relative_path"].tolist()
    out = stats.dose_stats(dose, rel, ["cos_theta", "UVA_norm", "UVA_over_UVB", "UVA_total"])
    assert out["features"] == ["cos_theta", "UVA_norm", "UVA_over_UVB", "UVA_total"]
    uva = np.array([1.0, 1.0, 0.5, 0.5, 0.0, 0.0])
    ratio = np.array([2.0, 2.0, 0.5, 0.5])  # the control's 0/0 ratio is left out
    np.testing.assert_allclose(out["mean"], [0.0, uva.mean(), ratio.mean(), 5.0])
    np.testing.assert_allclose(out["std"], [1.0, uva.std(), ratio.std(), np.std([10, 10, 5, 5, 0, 0])])


def test_dose_stats_constant_feature_gets_unit_std():
    dose = _dose_frame()
    out = stats.dose_stats(dose, dose["relative_path"].tolist()[:2], ["UVA_norm"])
    assert out["mean"] == [1.0] and out["std"] == [1.0]


def test_dose_stats_rejects_nan_in_a_dosed_row():
    dose = _dose_frame()
    dose.loc[0, "UVA_norm"] = np.nan
    with pytest.raises(DataContractError, match="treatment_1/sample_A/6Oclock"):
        stats.dose_stats(dose, dose["relative_path"].tolist(), ["UVA_norm"])


def test_dose_stats_agrees_with_conditioning_module():
    data = synth.generate(replace(synth.tiny(), replicates=2))
    rel = data.manifest["relative_path"].tolist()
    ours = stats.dose_stats(data.dose_features, rel)
    theirs = conditioning.compute_dose_stats(data.manifest, data.dose_features, contract.CV_FILM_FEATURES)
    np.testing.assert_allclose(ours["mean"], theirs.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours["std"], theirs.std, rtol=1e-12)


# --- recompute and the CLI -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    synth.write_synthetic(out, replace(synth.tiny(), replicates=2))
    return out


def _args(ds: Path) -> list[str]:
    return ["data", "stats", "--data-root", str(ds / "spectra_for_fold"), "--metadata-dir", str(ds / "metadata")]


def _targets(ds: Path) -> list[Path]:
    return [ds / "spectra_for_fold" / contract.LAMBDA_STATS_FILE, ds / "metadata" / contract.SAMPLING_WEIGHTS_FILE,
            ds / "metadata" / contract.DOSE_STATS_FILE]


def test_cli_stats_reproduces_the_generator_files(synth_dir, tmp_path):
    out = tmp_path / "stats"
    result = CliRunner().invoke(main, [*_args(synth_dir), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    for shipped in _targets(synth_dir):
        assert (out / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name


def test_cli_stats_needs_a_destination_and_never_overwrites_by_accident(synth_dir, tmp_path):
    before = [p.read_bytes() for p in _targets(synth_dir)]
    result = CliRunner().invoke(main, _args(synth_dir))
    assert result.exit_code == 2 and "--output-dir" in result.output
    out = tmp_path / "stats"
    assert CliRunner().invoke(main, [*_args(synth_dir), "--output-dir", str(out)]).exit_code == 0
    again = CliRunner().invoke(main, [*_args(synth_dir), "--output-dir", str(out)])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    assert CliRunner().invoke(main, [*_args(synth_dir), "--output-dir", str(out), "--overwrite"]).exit_code == 0
    assert [p.read_bytes() for p in _targets(synth_dir)] == before


def test_cli_stats_in_place_and_fold_train_split(synth_dir, tmp_path):
    ds = tmp_path / "copy"
    shutil.copytree(synth_dir, ds)
    manifest = loaders.read_manifest(ds / "spectra_for_fold" / contract.MANIFEST_FILE)
    train = manifest[manifest["treatment"].isin(["treatment_1", "treatment_2"])]
    train_path = paths.RunPaths.from_env().manifest(3, "train")  # under tmp_path (conftest)
    train_path.parent.mkdir(parents=True)
    train.to_csv(train_path, index=False)

    result = CliRunner().invoke(main, [*_args(ds), "--in-place", "--fold", "3"])
    assert result.exit_code == 0, result.output
    weights = pd.read_csv(ds / "metadata" / contract.SAMPLING_WEIGHTS_FILE)
    assert weights["relative_path"].tolist() == train["relative_path"].tolist()
    spectra = loaders.load_spectra(ds / "spectra_for_fold", train["relative_path"].tolist(),
                                   loaders.read_grid(ds / "spectra_for_fold"), clip=False)
    with np.load(ds / "spectra_for_fold" / contract.LAMBDA_STATS_FILE) as lam:
        np.testing.assert_allclose(lam["variance"], spectra.astype(np.float64).var(axis=0, ddof=1), rtol=1e-5)
    film = json.loads((ds / "metadata" / contract.DOSE_STATS_FILE).read_text())
    assert film["mean"][contract.CV_FILM_FEATURES.index("UVA_total")] == pytest.approx((76.44 + 59.712) / 2)


def test_cli_stats_missing_fold_manifest_names_the_fix(synth_dir):
    result = CliRunner().invoke(main, [*_args(synth_dir), "--output-dir", "x", "--fold", "2"])
    assert result.exit_code == 1 and "fold_02" in result.output and "manifests" in result.output


@pytest.mark.parametrize("feature, value, refused", [("UVA_over_UVB", np.nan, False), ("UVA_norm", np.nan, True),
                                                     ("UVA_over_UVB", np.inf, True)])
def test_only_the_ratio_of_a_zero_dose_row_may_be_undefined_as_data_check_rules(feature, value, refused):
    """`data stats` and `data check` read an empty dose value of the control alike: its UVA/UVB
    ratio (0/0) may be empty, any other feature may not, and no value may be infinite."""
    from spectra_cv.data import conditioning

    dose = _dose_frame()
    control = dose.index[dose["UVB_total_mWh_cm2"] == 0][0]
    dose.loc[control, feature] = value
    rel = dose["relative_path"].tolist()
    manifest = dose[["relative_path", "angle"]].reset_index(drop=True)
    problems, _ = conditioning.check_conditioning(manifest, dose.reset_index(drop=True), [feature])
    assert bool(problems) == refused, problems
    if refused:
        with pytest.raises(DataContractError, match=f"{rel[control]!r} has no finite {feature}"):
            stats.dose_stats(dose, rel, [feature])
    else:
        stats.dose_stats(dose, rel, [feature])
