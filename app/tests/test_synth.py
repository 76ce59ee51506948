"""Synthetic data: layout, determinism, statistics like the real data, dips, and `data synth`."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spectra_cv.cli import main
from spectra_cv.data import check, contract, loaders, stats, synth
from spectra_cv.errors import ConfigError
from spectra_cv.metrics.baselines import gaussian_filter


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "ds"
    synth.write_synthetic(out, synth.tiny(seed=0))
    return out


@pytest.fixture(scope="module")
def demo() -> synth.SynthData:
    return synth.generate(synth.demo(seed=0))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _group_stats(data: synth.SynthData) -> tuple[np.ndarray, np.ndarray]:
    """Within-group variance (L,) and between-spectrum variance (L,)."""
    x = data.spectra.astype(np.float64)
    _, inv = np.unique(data.manifest["group_id"], return_inverse=True)
    sums = np.zeros((inv.max() + 1, x.shape[1]))
    np.add.at(sums, inv, x)
    means = sums / np.bincount(inv)[:, None]  # (G, L)
    resid = x - means[inv]
    within = (resid**2).sum(axis=0) / (len(x) - means.shape[0])
    return within, x.var(axis=0, ddof=1)


# --- layout --------------------------------------------------------------------------------------
def test_layout_loads_and_passes_the_contract_check(tiny_dir):
    root, meta = tiny_dir / "spectra_for_fold", tiny_dir / "metadata"
    report = check.check_dataset(root, meta)
    assert report.ok, report.problems
    manifest = loaders.read_manifest(root / contract.MANIFEST_FILE)
    assert tuple(manifest.columns) == contract.MANIFEST_COLUMNS
    grid = loaders.read_grid(root)
    np.testing.assert_allclose(grid, np.arange(300.0, 600.01, 0.5))
    x = loaders.load_spectra(root, manifest["relative_path"].tolist(), grid, clip=False)
    assert x.shape == (54 * 4, 601)
    first = np.load(root / manifest["relative_path"].iloc[0])
    assert first.dtype == np.float32 and first.shape == (601,)
    assert report.cv_treatments == tuple(f"treatment_{k}" for k in range(1, 6))
    assert "treatment_6" in report.excluded_treatments
    physics = json.loads((tiny_dir / synth.CONFIG_FILE).read_text())["physics"]  # every constant it drew from
    assert physics["smooth_deviation"] == synth.SMOOTH_DEVIATION and physics["fixed_pattern"] == synth.FIXED_PATTERN


def test_manifest_structure_matches_the_real_data():
    data = synth.generate(synth.full())
    m = data.manifest
    assert len(m) == 8100 and m["relative_path"].is_unique
    assert (m.groupby("group_id").size() == 150).all()
    assert set(m["angle"]) == {"6Oclock", "12Oclock"}
    samples = m.groupby("treatment")["sample"].unique()
    assert sorted(samples["treatment_1"]) == ["sample_A", "sample_B", "sample_C", "sample_E", "sample_H"]
    assert sorted(samples["treatment_3"]) == ["sample_B", "sample_F", "sample_G", "sample_I", "sample_J"]
    assert sorted(samples["treatment_6"]) == ["sample_G", "sample_I"]
    assert m["relative_path"].iloc[151] == "treatment_1/sample_A/12Oclock/rep_001.npy"
    assert (m["group_id"] == m["treatment"] + "/" + m["sample"] + "/" + m["angle"]).all()


def test_dose_features_follow_the_real_dose_table(tiny_dir):
    dose = pd.read_csv(tiny_dir / "metadata" / contract.DOSE_FEATURES_FILE)
    assert list(dose.columns) == [
        "relative_path", "treatment", "treatment_number", "sample", "angle", "group_id", "column_label",
        "UVA_hours_h", "UVB_hours_h", "P_UVA_mW_cm2", "P_UVB_mW_cm2", "UVA_total_mWh_cm2",
        "UVB_total_mWh_cm2", "UVA_over_UVB", "UVA_norm", "UVB_norm", "UVA_total_z", "UVB_total_z",
        "UVA_pct_MDV", "UVB_pct_MDV",
    ]
    per = dose.drop_duplicates("treatment_number").set_index("treatment_number")
    np.testing.assert_allclose(per.loc[1:5, "UVA_total_mWh_cm2"], [76.44, 59.712, 40.608, 26.28, 15.528])
    np.testing.assert_allclose(per.loc[1:5, "UVB_norm"], [0.9206, 1.0, 0.7604, 0.4401, 0.3203], atol=1e-4)
    np.testing.assert_allclose(per.loc[1, "UVA_over_UVB"], 101.46, atol=0.01)
    assert math.isnan(per.loc[6, "UVA_over_UVB"]) and per.loc[6, "UVA_norm"] == 0.0
    assert per.loc[6, "column_label"] == "control"
    assert (dose.groupby("treatment")["UVA_total_mWh_cm2"].nunique() == 1).all()  # constant per treatment


def test_clean_ground_truth_is_the_replicate_expectation(tiny_dir, demo):
    clean = pd.read_csv(tiny_dir / "clean" / synth.CLEAN_MANIFEST)
    assert len(clean) == 54 and clean["group_id"].is_unique
    c0 = np.load(tiny_dir / "clean" / clean["clean_path"].iloc[0])
    assert c0.dtype == np.float32 and c0.shape == (601,)
    # demo: the mean of 20 replicates sits within a few σ/√20 of the clean spectrum
    x = demo.spectra.reshape(len(demo.groups), -1, 601).astype(np.float64)  # (G, R, L)
    err = x.mean(axis=1) - demo.clean
    assert np.sqrt((err**2).mean()) < 2.0 * 0.005 / np.sqrt(x.shape[1])
    assert np.sqrt((err**2).mean()) > 0.2 * 0.005 / np.sqrt(x.shape[1])


# --- determinism ---------------------------------------------------------------------------------
def test_same_seed_same_bytes(tiny_dir, tmp_path):
    again = tmp_path / "again"
    synth.write_synthetic(again, synth.tiny(seed=0))
    assert _tree(again) == _tree(tiny_dir)


def test_other_seed_other_data_and_smaller_presets_are_prefixes():
    a, b = synth.generate(synth.tiny(seed=0)), synth.generate(synth.tiny(seed=1))
    assert not np.array_equal(a.spectra, b.spectra)
    bigger = synth.generate(replace(synth.tiny(seed=0), replicates=7))
    np.testing.assert_array_equal(bigger.clean, a.clean)
    np.testing.assert_array_equal(bigger.spectra.reshape(54, 7, 601)[:, :4], a.spectra.reshape(54, 4, 601))


# --- statistics ----------------------------------------------------------------------------------
def test_statistics_resemble_the_real_data(demo):
    within, between = _group_stats(demo)
    assert 1.8e-5 < within.mean() < 3.5e-5  # real: 2.5e-5
    assert 4e-3 < between.mean() < 1e-2  # real: 6.6e-3
    lo, hi = np.percentile(demo.spectra, [1, 99.9])
    assert 0.02 < lo and hi < 0.9
    assert -0.02 < demo.spectra.min() and demo.spectra.max() < 1.0
    wl = demo.wavelength
    uv, mid = within[wl < 310].mean(), within[(wl >= 400) & (wl < 450)].mean()
    assert uv > 4 * mid  # noise rises toward 300 nm
    assert 0.003 < np.sqrt(mid) < 0.006


def test_group_means_are_heavy_tailed_like_the_real_data(monkeypatch):
    """Real data: kurtosis up to 3.6, 2 of 54 groups beyond the 99th percentile. Gaussian sample
    departures (the tail turned off) give neither, which left a non-linear model nothing to gain."""
    def tails() -> tuple[float, list[int]]:
        got = [synth.group_mean_tails(synth.generate(synth.tiny(seed=seed)).clean) for seed in range(6)]
        return float(np.mean([k for k, _ in got])), [n for _, n in got]

    kurtosis, outliers = tails()
    assert kurtosis > 1.5 and min(outliers) >= 2, (kurtosis, outliers)  # every seed, the demo's included
    monkeypatch.setitem(synth.SMOOTH_DEVIATION, "tail_dof", 1e9)  # amplitudes all ≈ tail_scale: Gaussian
    monkeypatch.setitem(synth.SMOOTH_DEVIATION, "tail_scale", 1.0)
    kurtosis, outliers = tails()
    assert kurtosis < 1.0 and sum(outliers) <= 1, (kurtosis, outliers)


def test_replicates_carry_gain_and_offset_jitter(demo):
    x = demo.spectra.reshape(len(demo.groups), -1, 601).astype(np.float64)  # (G, R, L)
    resid = x - demo.clean[:, None, :]
    # least-squares gain of each replicate's residual against its clean spectrum (offset removed)
    c = demo.clean[:, None, :] - demo.clean.mean(axis=1)[:, None, None]
    r = resid - resid.mean(axis=2, keepdims=True)
    gain = (r * c).sum(axis=2) / (c * c).sum(axis=2)  # (G, R)
    assert 0.5 * synth.NOISE["gain_sd"] < gain.std() < 2.0 * synth.NOISE["gain_sd"]


def test_spectra_are_smooth_low_rank_times_one_fine_pattern(demo):
    clean = demo.clean.astype(np.float64)
    base = clean / (1.0 + synth.fixed_pattern(0, clean.shape[1]))
    s = np.linalg.svd(base - base.mean(axis=0), compute_uv=False)
    assert (s[:5] ** 2).sum() / (s**2).sum() > 0.99
    assert np.abs(np.diff(base, n=2, axis=1)).max() < 0.01  # no jumps between 0.5 nm points
    # the fine structure (what a 1-point Gaussian blur removes) is one pattern shared by every group, as
    # in the real data (95 % of it in one direction there), and large enough that smoothing loses it
    fine = clean - gaussian_filter(clean, 2.0)
    s = np.linalg.svd(fine, compute_uv=False)
    assert s[0] ** 2 / (s**2).sum() > 0.9
    assert 1e-6 < (fine**2).mean() < 2e-5  # real: 4.7e-6


def test_noise_power_by_frequency_follows_the_real_data(demo):
    shares = synth.noise_octaves(demo.spectra, demo.manifest["group_id"].to_numpy())
    ratio = shares / np.asarray(synth.REAL_NOISE_OCTAVES)
    assert ratio.shape == (10,) and np.all((ratio > 1 / 1.5) & (ratio < 1.5)), np.round(ratio, 2)
    white = synth.noise_octaves(np.random.default_rng(0).normal(size=demo.spectra.shape), demo.manifest["group_id"])
    assert not np.all(np.abs(np.log(white / np.asarray(synth.REAL_NOISE_OCTAVES))) < np.log(1.5))  # can fail


def test_dips_are_minima_inside_the_roi(demo):
    c, wl = demo.clean.astype(np.float64), demo.wavelength.astype(np.float64)
    is_min = (c[:, 1:-1] < c[:, :-2]) & (c[:, 1:-1] < c[:, 2:])  # (G, L-2)
    for centre, _, _ in synth.DIPS:
        assert contract.ROI_NM[0] <= centre <= contract.ROI_NM[1]
        near = np.abs(wl[1:-1] - centre) <= 5.0
        assert is_min[:, near].any(axis=1).all(), f"no minimum near {centre} nm in some group"


def test_scytonemin_dip_deepens_with_dose(demo):
    wl = demo.wavelength.astype(np.float64)
    at = lambda nm: demo.clean[:, int(np.argmin(np.abs(wl - nm)))]  # noqa: E731
    relative = at(372.0) / (0.5 * (at(352.0) + at(392.0)))  # (G,) < 1 in a dip
    by_treatment = pd.Series(relative).groupby(demo.groups["treatment"].to_numpy()).mean()
    ordered = by_treatment[[f"treatment_{k}" for k in range(1, 7)]].to_numpy()  # UVA dose decreasing
    assert np.all(np.diff(ordered) > 0)


def test_written_lambda_stats_come_from_the_written_spectra(tiny_dir):
    root = tiny_dir / "spectra_for_fold"
    manifest = loaders.read_manifest(root / contract.MANIFEST_FILE)
    x = loaders.load_spectra(root, manifest["relative_path"].tolist(), loaders.read_grid(root), clip=False)
    expected = stats.lambda_stats(x, loaders.read_grid(root))
    with np.load(root / contract.LAMBDA_STATS_FILE) as got:
        for key in contract.LAMBDA_STATS_KEYS:
            np.testing.assert_array_equal(got[key], expected[key])


# --- config and CLI ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, flag", [({"replicates": 1}, "--replicates"), ({"replicates": 4, "seed": -1}, "--seed"),
                     ({"replicates": 4, "treatments": (7,)}, "treatments")]
)
def test_config_rejects_bad_values_naming_the_flag(kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        synth.SynthConfig(**kwargs)


def test_presets_sizes():
    assert (synth.tiny().replicates, synth.demo().replicates, synth.full().replicates) == (4, 60, 150)
    assert synth.PRESETS["full"](3).seed == 3


def test_cli_synth_writes_a_layout_and_refuses_a_non_empty_out(tmp_path):
    out = tmp_path / "ds"
    args = ["data", "synth", str(out), "--preset", "tiny", "--replicates", "2", "--seed", "5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = loaders.read_manifest(out / "spectra_for_fold" / contract.MANIFEST_FILE)
    assert len(manifest) == 54 * 2
    assert manifest["source_path"].iloc[0].startswith("synthetic://tiny/seed_5/")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "--force" in again.output
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0


def test_cli_synth_needs_a_known_preset(tmp_path):
    result = CliRunner().invoke(main, ["data", "synth", str(tmp_path / "x"), "--preset", "huge"])
    assert result.exit_code == 2 and "huge" in result.output


def test_synth_force_killed_mid_swap_loses_nothing(tmp_path):
    """`data synth --force` killed between moving the old tree aside and renaming the new one in:
    the old tree is kept aside, and the next run moves it back before it replaces it again."""
    from runs_support import spectra_cv

    from spectra_cv import io as sio

    out = tmp_path / "ds"
    args = ["data", "synth", str(out), "--preset", "tiny", "--replicates", "2"]
    spectra_cv(*args, "--seed", "5", cwd=tmp_path)
    manifest = (out / "spectra_for_fold" / contract.MANIFEST_FILE).read_bytes()
    killed = spectra_cv(*args, "--seed", "6", "--force", cwd=tmp_path, fault="staged_swap", check=False)
    assert killed.returncode == -9 and not out.exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".ds.") and p.name.endswith(".old")]
    assert len(aside) == 1 and (aside[0] / "ds" / "spectra_for_fold" / contract.MANIFEST_FILE).read_bytes() == manifest
    assert sio.settle_replacement(out)  # what the next writer does first
    assert (out / "spectra_for_fold" / contract.MANIFEST_FILE).read_bytes() == manifest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]
    spectra_cv(*args, "--seed", "6", "--force", cwd=tmp_path)
    assert (out / "spectra_for_fold" / contract.MANIFEST_FILE).read_bytes() != manifest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]
