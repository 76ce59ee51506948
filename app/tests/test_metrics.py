"""Metrics against closed forms: PSNR, SAM, RMSE, ROI PSNR, LOO means, dips, aggregation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from spectra_cv.errors import DataContractError
from spectra_cv.metrics import (
    DipMetricConfig,
    aggregate,
    dip_metrics,
    find_minima,
    loo_means,
    psnr,
    rmse,
    rmse_per_wavelength,
    roi_psnr,
    sam_deg,
    score,
)
from spectra_cv.metrics import dips as metric_dips

GRID = np.arange(601) * 0.5 + 300.0


def _gauss(centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((GRID - centre) / sigma) ** 2)


def test_psnr_rmse_of_constant_error():
    ref = np.full((2, 50), 0.4)
    pred = ref + np.array([[0.01], [0.1]])
    np.testing.assert_allclose(psnr(pred, ref), [40.0, 20.0])
    np.testing.assert_allclose(rmse(pred, ref), [0.01, 0.1])
    assert psnr(ref, ref)[0] == pytest.approx(120.0)  # MSE floor 1e-12, no infinity


def test_rmse_per_wavelength_is_over_spectra_at_each_point():
    ref = np.zeros((2, 3))
    pred = np.array([[0.3, 0.0, -0.1], [0.4, 0.0, 0.1]])
    # column by column: sqrt((0.09 + 0.16) / 2), 0, sqrt((0.01 + 0.01) / 2)
    np.testing.assert_allclose(rmse_per_wavelength(pred, ref), [np.sqrt(0.125), 0.0, 0.1])
    np.testing.assert_allclose(rmse_per_wavelength(pred[0], ref[0]), [0.3, 0.0, 0.1])  # one spectrum: |error|


def test_sam_parallel_orthogonal_and_45_degrees():
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    pred = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    np.testing.assert_allclose(sam_deg(pred, ref), [0.0, 90.0, 45.0], atol=1e-6)


def test_roi_psnr_only_sees_roi():
    ref = np.full((1, 601), 0.3)
    pred = ref.copy()
    pred[0, GRID < 320] += 0.5  # error outside the ROI only
    pred[0, (GRID >= 320) & (GRID <= 500)] += 0.001
    assert roi_psnr(pred, ref, GRID)[0] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="ROI"):
        roi_psnr(pred, ref, GRID, roi=(700.0, 800.0))


def test_loo_means_against_direct_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 4))
    groups = np.array(["b", "a", "b", "a", "c", "c", "b"])
    got = loo_means(x, groups)
    for i in range(7):
        others = [j for j in range(7) if groups[j] == groups[i] and j != i]
        np.testing.assert_allclose(got[i], x[others].mean(axis=0), rtol=1e-12)


def test_loo_means_refuses_singleton_groups():
    with pytest.raises(DataContractError, match="lonely"):
        loo_means(np.zeros((3, 2)), ["g1", "g1", "lonely"])


def test_find_minima_finds_dip_ignores_bump_and_shallow_wiggle():
    # gentle slope: on a steeper one the bump's right foot is a genuine minimum (prominence ≈ slope·6 nm)
    ref = 0.4 + 0.0001 * (GRID - 300) - 0.02 * _gauss(400.0, 1.5) + 0.02 * _gauss(450.0, 1.5)
    ref = ref - 0.0005 * _gauss(360.0, 1.0)  # below the 0.002 prominence threshold
    ref = ref - 0.02 * _gauss(310.0, 1.5)  # outside the ROI
    centres, valid, prom = find_minima(ref[None], GRID)
    assert GRID[centres[valid]].tolist() == [400.0]
    assert prom[valid][0] == pytest.approx(0.02, rel=0.1)


def test_metric_prominence_matches_objective_detector():
    torch = pytest.importorskip("torch")
    from spectra_cv.objective import dips as loss_dips

    rng = np.random.default_rng(1)
    seg = rng.normal(size=(50, 17))
    np.testing.assert_allclose(metric_dips.window_prominence(seg),
                               loss_dips.window_prominence(torch.tensor(seg)).numpy(), rtol=1e-12)


def test_baseline_excludes_dip_core_so_exact_copy_and_scaled_dip_are_measured():
    continuum = 0.4 + 0.0004 * (GRID - 300)
    triangle = 0.02 * np.maximum(1.0 - np.abs(GRID - 400.0) / 2.0, 0.0)  # inside the ±2.5 nm core
    ref = (continuum - triangle)[None]
    exact = dip_metrics(ref, ref, GRID)
    assert exact["n_dips"][0] == 1.0
    assert exact["dip_area_error_pct"][0] == pytest.approx(0.0, abs=1e-9)
    # half the dip depth → 50 % area error: the baseline is the continuum, not a fit through the dip
    half = dip_metrics((continuum - 0.5 * triangle)[None], ref, GRID)
    assert half["dip_area_error_pct"][0] == pytest.approx(50.0, rel=1e-6)
    assert half["dip_depth_mae"][0] == pytest.approx(0.5 * triangle[np.abs(GRID - 400.0) <= 6.0].mean(), rel=1e-6)
    # the reference's area is the triangle's, 0.5 · 4 nm · 0.02
    geo = metric_dips._geometry(GRID, DipMetricConfig())
    window = np.abs(GRID - 400.0) <= 6.0
    _, area, centroid = metric_dips._features(ref[:, window][None], GRID[window][None, None], geo)
    assert area[0, 0] == pytest.approx(0.04, rel=1e-6) and centroid[0, 0] == pytest.approx(400.0)
    # a shifted dip → centroid error ≈ the shift
    dip = continuum - 0.02 * _gauss(400.0, 1.0)
    shifted = dip_metrics((continuum - 0.02 * _gauss(401.0, 1.0))[None], dip[None], GRID)
    assert shifted["dip_centroid_error_nm"][0] == pytest.approx(1.0, abs=0.1)


def test_original_degenerate_window_is_rejected():
    with pytest.raises(ValueError, match="core_half_nm"):
        DipMetricConfig(half_width_nm=2.0, core_half_nm=5.0)


def test_dip_metrics_nan_when_no_dips_and_aggregate_ignores_nan():
    flat = np.full((2, 601), 0.3)
    with_dip = (0.3 - 0.02 * _gauss(420.0, 1.0))[None]
    ref = np.vstack([flat, with_dip])
    out = dip_metrics(ref + 0.001, ref, GRID)
    np.testing.assert_array_equal(out["n_dips"], [0, 0, 1])
    assert np.isnan(out["dip_area_error_pct"][:2]).all() and np.isfinite(out["dip_area_error_pct"][2])
    agg = aggregate(out)
    assert agg["n_dips_total"] == 1.0 and agg["n_spectra_with_dips"] == 1.0
    assert agg["dip_depth_mae_std"] == 0.0
    assert aggregate({"dip_depth_mae": np.array([np.nan])})["dip_depth_mae_mean"] is None


def test_evaluate_dataset_psnr_and_mean_std():
    ref = np.full((2, 601), 0.3)
    pred = ref + np.array([[0.01], [0.001]])
    out = score(pred, ref, GRID)
    assert out["psnr_mean"] == pytest.approx(50.0) and out["psnr_std"] == pytest.approx(10.0)
    assert out["psnr_dataset"] == pytest.approx(-10 * np.log10((1e-4 + 1e-6) / 2))
    assert out["n_spectra"] == 2.0 and out["n_dips_total"] == 0.0
    assert {"sam_deg_mean", "rmse_mean", "roi_psnr_mean", "dip_area_error_pct_mean"} <= set(out)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must both be"):
        psnr(np.zeros((2, 5)), np.zeros((3, 5)))


def test_dips_of_a_reference_found_once_score_every_prediction_as_found_each_time():
    """A scoring table finds each reference's dips once (``dip_reference``) for all its methods; a
    reference object of other spectra, another grid or another config is not used but found again."""
    rng = np.random.default_rng(4)
    continuum = 0.4 + 0.0004 * (GRID - 300)
    ref = np.stack([continuum - 0.02 * _gauss(c, 1.0) for c in (350.0, 400.0, 420.0)])
    pred = ref + 0.001 * rng.normal(size=ref.shape)
    found = metric_dips.dip_reference(ref, GRID)
    for key, values in dip_metrics(pred, ref, GRID).items():
        np.testing.assert_array_equal(dip_metrics(pred, ref, GRID, reference=found)[key], values, err_msg=key)
    other = metric_dips.dip_reference(ref[::-1], GRID)  # another reference: ignored, the dips found anew
    np.testing.assert_array_equal(dip_metrics(pred, ref, GRID, reference=other)["dip_centroid_error_nm"],
                                  dip_metrics(pred, ref, GRID)["dip_centroid_error_nm"])
    wide = DipMetricConfig(half_width_nm=8.0)
    assert not found.matches(ref, GRID, wide) and not found.matches(ref, GRID + 0.1, DipMetricConfig())
    ref32 = ref.astype(np.float32)  # the clean truth arrives as float32: the same values, another dtype
    assert metric_dips.dip_reference(ref32, GRID).matches(ref32, GRID, DipMetricConfig())
    assert not found.matches(ref32, GRID, DipMetricConfig())  # rounded values are another reference
    assert score(pred, ref, GRID, dips_of_ref=found) == score(pred, ref, GRID)


@pytest.mark.parametrize("noise_scale", [0.5, 1.0, 2.0])
def test_reference_floor_matches_what_the_true_spectra_score_against_the_references(noise_scale):
    """The synthetic data know each group's clean spectrum: the floor estimated from the noisy
    replicates alone must match the clean spectra's own scores against the leave-one-out means."""
    from spectra_cv.data import synth
    from spectra_cv.metrics.spectral import reference_floor

    data = synth.generate(dataclasses.replace(synth.tiny(seed=3), replicates=30, noise_scale=noise_scale))
    groups = data.manifest["group_id"].to_numpy()
    clean = data.clean[np.repeat(np.arange(len(data.groups)), 30)]  # manifest order: groups × replicates
    refs = loo_means(data.spectra, groups)
    truth_sam, truth_psnr = sam_deg(clean, refs), psnr(clean, refs)
    floor = reference_floor(data.spectra, groups)
    assert floor["sam_deg"].mean() == pytest.approx(truth_sam.mean(), rel=0.02)
    assert floor["psnr"].mean() == pytest.approx(truth_psnr.mean(), abs=0.1)
    by_group = pd.DataFrame({"g": groups, "floor": floor["sam_deg"], "truth": truth_sam}).groupby("g").mean()
    assert np.corrcoef(by_group["floor"], by_group["truth"])[0, 1] > 0.9  # dark groups high, bright low


@pytest.mark.parametrize("replicates", [2, 3, 5])
def test_reference_floor_holds_for_small_and_odd_groups(replicates):
    """Halves of one spectrum (2, 3 replicates) and a spectrum left out of each split (odd sizes):
    the estimate stays unbiased; averaged over the 54 groups it matches the truth within 10 %."""
    from spectra_cv.data import synth
    from spectra_cv.metrics.spectral import reference_floor

    data = synth.generate(dataclasses.replace(synth.tiny(seed=4), replicates=replicates))
    groups = data.manifest["group_id"].to_numpy()
    clean = data.clean[np.repeat(np.arange(len(data.groups)), replicates)]
    truth = np.mean((clean - loo_means(data.spectra, groups)) ** 2)
    floor = reference_floor(data.spectra, groups, splits=64)
    assert np.mean(10 ** (-floor["psnr"] / 10)) == pytest.approx(truth, rel=0.1)


def test_reference_floor_is_undefined_for_a_group_of_one():
    from spectra_cv.metrics.spectral import reference_floor

    x = np.random.default_rng(0).normal(0.5, 0.01, size=(4, 20))
    floor = reference_floor(x, ["a"] * 3 + ["b"])
    assert np.isfinite(floor["sam_deg"][:3]).all() and np.isnan(floor["sam_deg"][3])
