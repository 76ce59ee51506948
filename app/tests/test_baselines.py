"""Classical baselines: closed forms and train-only parameter choice."""

from __future__ import annotations

import numpy as np
import pytest

from spectra_cv.metrics import baselines as bl
from spectra_cv.metrics import fit_baselines, loo_means, psnr


def test_savgol_is_exact_on_polynomials_including_edges():
    t = np.linspace(-1.0, 1.0, 60)
    x = np.stack([1 + 2 * t - 3 * t**2 + 0.5 * t**3, 0.3 - t**2])
    np.testing.assert_allclose(bl.savgol_filter(x, 11, 3), x, atol=1e-10)
    np.testing.assert_allclose(bl.savgol_filter(x[1:], 7, 2), x[1:], atol=1e-10)
    # a cubic is not preserved by a quadratic fit: the test can fail
    assert np.abs(bl.savgol_filter(x[:1], 11, 2) - x[:1]).max() > 1e-4


def test_savgol_centre_kernel_matches_classic_coefficients():
    # 5-point quadratic smoothing: (−3, 12, 17, 12, −3) / 35
    np.testing.assert_allclose(bl.savgol_projection(5, 2)[2], np.array([-3, 12, 17, 12, -3]) / 35, atol=1e-12)


def test_gaussian_preserves_constants_and_matches_direct_convolution():
    const = np.full((2, 40), 0.7)
    np.testing.assert_allclose(bl.gaussian_filter(const, 2.5), const, atol=1e-12)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 40))
    sigma, radius = 1.5, 6
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    direct = np.convolve(np.pad(x[0], radius, mode="reflect"), taps, mode="valid")
    np.testing.assert_allclose(bl.gaussian_filter(x, sigma)[0], direct, atol=1e-12)


def test_linear_operator_equals_filter():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 30))
    op = bl.linear_operator(lambda z: bl.savgol_filter(z, 9, 3), 30)
    np.testing.assert_allclose(x @ op, bl.savgol_filter(x, 9, 3), atol=1e-12)


def test_pca_full_rank_is_identity_and_rank_one_projects():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 8))
    full = bl.fit_pca(x, x, ranks=(8,))
    np.testing.assert_allclose(full.apply(x[:5]), x[:5], atol=1e-10)
    one = bl.fit_pca(x, x, ranks=(1,))
    out = one.apply(x)
    centred = out - x.mean(axis=0)
    assert np.linalg.matrix_rank(centred, tol=1e-8) == 1


def test_ridge_small_alpha_recovers_exact_linear_map():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4))
    w_true = rng.normal(size=(4, 3))
    y = x @ w_true + np.array([0.1, -0.2, 0.3])
    fitted = bl.fit_ridge(x, y, alphas=(1e-10,))
    np.testing.assert_allclose(fitted.apply(x), y, atol=1e-7)
    z = rng.normal(size=(5, 4))
    np.testing.assert_allclose(fitted.apply(z), z @ w_true + np.array([0.1, -0.2, 0.3]), atol=1e-7)


def _smooth_signals(rng: np.random.Generator, n: int, length: int = 120) -> np.ndarray:
    t = np.linspace(0, 1, length)
    return np.stack([0.4 + 0.1 * np.sin(2 * np.pi * (1 + rng.uniform()) * t + rng.uniform(0, 6)) for _ in range(n)])


def test_parameters_are_chosen_on_train_only():
    rng = np.random.default_rng(4)
    # train: smooth signals under heavy noise → wide smoothing; test: sharp signals, tiny noise
    train_clean = _smooth_signals(rng, 20)
    train_noisy = train_clean + 0.05 * rng.normal(size=train_clean.shape)
    test_clean = np.where(rng.uniform(size=(20, 120)) > 0.5, 0.6, 0.2)
    test_noisy = test_clean + 0.001 * rng.normal(size=test_clean.shape)
    sigmas = (0.5, 1.0, 4.0)
    fitted = bl.fit_gaussian(train_noisy, train_clean, sigmas=sigmas)
    test_scores = {s: np.mean(psnr(bl.gaussian_filter(test_noisy, s), test_clean)) for s in sigmas}
    assert max(test_scores, key=test_scores.get) == 0.5  # the test split would pick σ = 0.5 …
    assert fitted.params == {"sigma_samples": 4.0}  # … the train split chose 4
    assert max(fitted.train_scores, key=fitted.train_scores.get) == "s4"
    np.testing.assert_allclose(fitted.apply(test_noisy), bl.gaussian_filter(test_noisy, 4.0), atol=1e-12)


def test_fit_baselines_all_five_beat_or_equal_identity_on_noisy_low_rank_data():
    rng = np.random.default_rng(5)
    clean = _smooth_signals(rng, 60)
    groups = np.repeat(np.arange(12), 5)
    clean = clean[groups]  # 12 groups of 5 replicates
    noisy = clean + 0.01 * rng.normal(size=clean.shape)
    ref = loo_means(noisy, groups)
    fitted = fit_baselines(noisy, ref)
    assert set(fitted) == {"identity", "savgol", "gaussian", "pca", "ridge"}
    base = np.mean(psnr(fitted["identity"].apply(noisy), clean))
    for name in ("savgol", "gaussian", "pca", "ridge"):
        assert np.mean(psnr(fitted[name].apply(noisy), clean)) > base + 1.0, name
    assert fitted["identity"].params == {}
    with pytest.raises(ValueError, match="odd window"):
        bl.savgol_projection(4, 2)
