"""Classical baselines: closed forms and train-only parameter choice."""

from __future__ import annotations

import numpy as np
import pytest

from spectra_cv.data.smooth import smooth_kernel
from spectra_cv.metrics import baselines as bl
from spectra_cv.metrics import fit_baselines, loo_means, psnr


def test_savgol_is_exact_on_polynomials_including_edges():
    t = np.linspace(-1.0, 1.0, 60)
    x = np.stack([1 + 2 * t - 3 * t**2 + 0.5 * t**3, 0.3 - t**2])
    np.testing.assert_allclose(bl.savgol_filter(x, 11, 3), x, atol=1e-10)
    np.testing.assert_allclose(bl.savgol_filter(x[1:], 7, 2), x[1:], atol=1e-10)
    # a cubic is not preserved by a quadratic fit: the test can fail
    assert np.abs(bl.savgol_filter(x[:1], 11, 2) - x[:1]).max() > 1e-4


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


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_banded_product_equals_the_dense_product(block):
    """The filters' matrices applied a block of columns at a time from the inputs each block uses
    give z @ op, whatever the band: Savitzky–Golay (edges reach a whole window), Gaussian (mirror
    edges), an irregular band, a dense matrix and one with empty columns."""
    rng = np.random.default_rng(4)
    length = 90
    z = rng.normal(size=(7, length))
    irregular = np.triu(rng.normal(size=(length, length)), -3) * np.tril(np.ones((length, length)), 11)
    empty_columns = rng.normal(size=(length, length))
    empty_columns[:, 10:30] = 0.0
    ops = {
        "savgol": bl.linear_operator(lambda x: bl.savgol_filter(x, 31, 3), length),
        "gaussian": bl.linear_operator(lambda x: bl.gaussian_filter(x, 3.0), length),
        "irregular": irregular, "dense": rng.normal(size=(length, length)), "empty columns": empty_columns,
    }
    for name, op in ops.items():
        np.testing.assert_allclose(bl.banded_times(op, block=block)(z), z @ op, rtol=0, atol=1e-12, err_msg=name)


def test_principal_axes_are_the_svd_without_its_null_space():
    rng = np.random.default_rng(5)
    for n, length in ((40, 12), (9, 30)):  # more spectra than samples, and fewer
        x = rng.normal(size=(n, length))
        centred = x - x.mean(axis=0)
        values, axes = bl.principal_axes(centred)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        rank = min(n - 1, length)  # centring removes one direction when n ≤ length
        assert values.shape == (rank,) and axes.shape == (length, rank)
        np.testing.assert_allclose(values, s[:rank] ** 2, rtol=1e-9)
        np.testing.assert_allclose(np.abs(axes.T @ vt[:rank].T), np.eye(rank), atol=1e-7)


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


def _grouped(rng: np.random.Generator, treatments: int = 3, samples: int = 3, reps: int = 8,
             length: int = 120, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Noisy spectra with their clean group means and treatment/sample/angle ids."""
    means, groups = [], []
    signals = _smooth_signals(rng, treatments * samples * 2, length)
    for t in range(treatments):
        for s in range(samples):
            for a, angle in enumerate(("6Oclock", "12Oclock")):
                means.append(signals[(t * samples + s) * 2 + a])
                groups.append(f"treatment_{t + 1}/sample_{'ABCDE'[s]}/{angle}")
    clean = np.repeat(np.stack(means), reps, axis=0)
    ids = [g for g in groups for _ in range(reps)]
    return clean + noise * rng.normal(size=clean.shape), clean, ids


def test_fit_baselines_all_beat_identity_on_noisy_low_rank_data():
    rng = np.random.default_rng(5)
    noisy, clean, groups = _grouped(rng, reps=5)
    ref = loo_means(noisy, groups)
    fitted = fit_baselines(noisy, ref, groups)
    assert tuple(fitted) == bl.BASELINE_NAMES
    base = np.mean(psnr(fitted["identity"].apply(noisy), clean))
    for name in bl.BASELINE_NAMES[1:]:
        assert np.mean(psnr(fitted[name].apply(noisy), clean)) > base + 1.0, name
    assert fitted["identity"].params == {}
    with pytest.raises(ValueError, match="odd window"):
        bl.savgol_filter(noisy, 4, 2)
    with pytest.raises(ValueError, match="needs the group"):
        bl.fit_ridge(noisy, ref)  # a choice on held-out samples needs to know the samples


# --- parameters chosen on held-out samples of the train split ----------------------------------------
def test_inner_folds_hold_out_one_sample_of_every_treatment():
    groups = [f"treatment_{t}/sample_{s}/{a}" for t in (1, 2) for s in "BCA" for a in ("6Oclock", "12Oclock")
              for _ in range(2)]
    folds = bl.inner_folds(groups)
    assert len(folds) == 3
    np.testing.assert_array_equal(np.sum(folds, axis=0), np.ones(len(groups)))  # each spectrum held out once
    for j, held in enumerate(folds):
        held_samples = {tuple(g.split("/")[:2]) for g, h in zip(groups, held) if h}
        assert held_samples == {(f"treatment_{t}", f"sample_{'ABC'[j]}") for t in (1, 2)}  # sorted names
    with pytest.raises(Exception, match="≥ 2 samples in some treatment"):
        bl.inner_folds([f"treatment_{t}/sample_A/6Oclock" for t in (1, 2, 3)])


def test_held_out_samples_regularise_more_than_the_training_fit():
    rng = np.random.default_rng(7)
    noisy, clean, groups = _grouped(rng, treatments=3, samples=3, reps=6, length=60, noise=0.02)
    ref = loo_means(noisy, groups)
    alphas = tuple(float(a) for a in np.logspace(-9, -1, 33))
    on_fit = {a: np.mean(psnr(bl.fit_ridge(noisy, ref, alphas=(a,)).apply(noisy), ref)) for a in alphas}
    assert max(on_fit, key=on_fit.get) == alphas[0]  # the training fit always wants the least penalty …
    fitted = bl.fit_ridge(noisy, ref, groups, alphas=alphas)
    chosen = fitted.params["alpha"]
    assert alphas[0] < chosen < alphas[-1]  # … held-out samples pick an interior α
    manual = {}
    for a in alphas:  # the same choice, spelled out: fit on two samples, score the third
        total = 0.0
        for held in bl.inner_folds(groups):
            model = bl.fit_ridge(noisy[~held], ref[~held], alphas=(a,))
            total += psnr(model.apply(noisy[held]), ref[held]).sum()
        manual[a] = total / len(noisy)
    assert max(manual, key=manual.get) == pytest.approx(chosen)
    pca = bl.fit_pca(noisy, ref, groups)
    on_fit_rank = bl.fit_pca(noisy, ref, ranks=(max(bl.PCA_RANKS),)).params["rank"]
    assert pca.params["rank"] < on_fit_rank


def test_ridge_grid_grows_until_the_choice_is_interior():
    rng = np.random.default_rng(8)
    noisy, _, groups = _grouped(rng, treatments=3, samples=3, reps=6, length=60, noise=0.02)
    ref = loo_means(noisy, groups)
    wide = bl.fit_ridge(noisy, ref, groups)
    narrow = bl.fit_ridge(noisy, ref, groups, alphas=(1e-12, 1e-11))  # far below the best α
    assert narrow.params["alpha"] == pytest.approx(wide.params["alpha"], rel=1e-6)
    lo, hi = narrow.params["alpha_grid"]
    assert lo < narrow.params["alpha"] < hi


# --- the Wiener filter and the mean of the linear maps -------------------------------------------------
def test_wiener_is_its_formula():
    pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(11)
    noisy, _, groups = _grouped(rng, treatments=3, samples=3, reps=6, length=40, noise=0.02)
    lam, ell = 3e-4, 8.0
    fitted = bl.fit_wiener(noisy, noisy, groups, lambdas=(lam,), length_scales=(ell,))
    names = sorted(set(groups))
    index = np.array([names.index(g) for g in groups])
    means = np.stack([noisy[index == k].mean(axis=0) for k in range(len(names))])
    i = np.arange(40)
    from sklearn.covariance import ledoit_wolf
    sigma_n = ledoit_wolf(noisy - means[index], assume_centered=True)[0]
    between = np.cov(means, rowvar=False) - sigma_n / 6  # a group mean of 6 still carries Σn / 6
    values, vectors = np.linalg.eigh(between)
    sigma_s = (vectors * np.clip(values, 0, None)) @ vectors.T + lam * np.exp(-((i[:, None] - i[None, :]) ** 2)
                                                                            / (2 * ell**2))
    mu = means.mean(axis=0)
    expected = mu + (noisy - mu) @ np.linalg.inv(sigma_s + sigma_n) @ sigma_s
    np.testing.assert_allclose(fitted.apply(noisy), expected, atol=1e-10)
    assert fitted.params == {"lambda": lam, "length_scale": ell}
    with pytest.raises(ValueError, match="needs the group"):
        bl.fit_wiener(noisy, noisy, lambdas=(lam,), length_scales=(ell,))


def test_ledoit_wolf_matches_sklearn():
    covariance = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(15)
    for n, p in ((30, 50), (400, 20)):  # fewer and more rows than columns
        x = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) * 0.1
        ours, shrink = bl.ledoit_wolf(x)
        theirs, their_shrink = covariance.ledoit_wolf(x, assume_centered=True)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-14)
        assert shrink == pytest.approx(their_shrink, rel=1e-10)
    assert np.linalg.matrix_rank(bl.ledoit_wolf(rng.normal(size=(10, 40)))[0]) == 40  # invertible from 10 rows


def test_wiener_converges_to_the_optimal_linear_map_on_gaussian_data():
    rng = np.random.default_rng(12)
    length, groups_n, reps = 10, 3000, 20
    a = rng.normal(size=(length, length))
    sigma_s = a @ a.T / length
    b = rng.normal(size=(length, length)) * 0.3
    sigma_n = b @ b.T / length + 0.05 * np.eye(length)
    signal = rng.multivariate_normal(np.full(length, 0.5), sigma_s, size=groups_n)
    noisy = np.repeat(signal, reps, axis=0) + rng.multivariate_normal(np.zeros(length), sigma_n, groups_n * reps)
    groups = [f"treatment_1/sample_{k}/6Oclock" for k in range(groups_n) for _ in range(reps)]
    fitted = bl.fit_wiener(noisy, noisy, groups, lambdas=(1e-12,), length_scales=(1.0,))
    weights = fitted.apply(np.eye(length)) - fitted.apply(np.zeros((1, length)))
    optimal = np.linalg.solve(sigma_s + sigma_n, sigma_s)  # the group means' own noise (Σn / reps) is taken out
    np.testing.assert_allclose(weights, optimal, atol=0.02)
    biased = np.linalg.solve(sigma_s + sigma_n / reps + sigma_n, sigma_s + sigma_n / reps)
    assert np.abs(biased - optimal).max() > 0.02  # what leaving it in would give: the test can tell
    assert np.abs(weights - np.eye(length)).max() > 0.2  # far from the identity: the test can fail


def test_wiener_grid_grows_until_the_choice_is_interior():
    rng = np.random.default_rng(13)
    length, reps = 40, 30  # enough replicates for the noise covariance to be full rank
    kernel = smooth_kernel(length, 6.0) + 1e-9 * np.eye(length)
    signal = 0.4 + rng.multivariate_normal(np.zeros(length), 1e-3 * kernel, size=18)  # smooth group means
    groups = [f"treatment_{g % 3}/sample_{g // 6}/{('6Oclock', '12Oclock')[g % 2]}" for g in range(18) for _ in range(reps)]
    noisy = np.repeat(signal, reps, axis=0) + 0.02 * rng.normal(size=(18 * reps, length))
    ref = loo_means(noisy, groups)
    wide = bl.fit_wiener(noisy, ref, groups)
    assert 2.0 < wide.params["length_scale"] < 40.0 and 1e-7 < wide.params["lambda"] < 1e-1  # interior
    narrow = bl.fit_wiener(noisy, ref, groups, lambdas=(1e-11, 10**-10.5), length_scales=(1.25, 2.5))
    assert narrow.params == pytest.approx(wide.params)


def test_ridge_wiener_is_the_mean_of_the_two_fitted_maps():
    rng = np.random.default_rng(14)
    noisy, clean, groups = _grouped(rng, treatments=3, samples=3, reps=6, length=60, noise=0.02)
    ref = loo_means(noisy, groups)
    fitted = fit_baselines(noisy, ref, groups)
    both = (fitted["ridge"].apply(noisy) + fitted["wiener"].apply(noisy)) / 2
    np.testing.assert_allclose(fitted["ridge_wiener"].apply(noisy), both, atol=1e-12)
    assert fitted["ridge_wiener"].params == {"ridge": fitted["ridge"].params, "wiener": fitted["wiener"].params}
    alone = bl.fit_ridge_wiener(noisy, ref, groups)
    np.testing.assert_allclose(alone.apply(noisy), both, atol=1e-12)


# --- parity with SciPy and scikit-learn ----------------------------------------------------------------
def test_pca_matches_sklearn():
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(11)
    noisy, _, _ = _grouped(rng, length=80)
    z = noisy[:7] + 0.01
    for rank in (1, 3, 10):
        ref = decomposition.PCA(n_components=rank, svd_solver="full").fit(noisy)
        np.testing.assert_allclose(bl.fit_pca(noisy, noisy, ranks=(rank,)).apply(z),
                                   ref.inverse_transform(ref.transform(z)), atol=1e-10)


def test_ridge_matches_sklearn_with_alpha_times_n():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(12)
    noisy, clean, _ = _grouped(rng, length=50)
    z = rng.normal(0.4, 0.1, size=(5, 50))
    for alpha in (1e-7, 1e-4, 1e-2):
        ref = linear_model.Ridge(alpha=alpha * len(noisy), fit_intercept=True, solver="svd").fit(noisy, clean)
        np.testing.assert_allclose(bl.fit_ridge(noisy, clean, alphas=(alpha,)).apply(z), ref.predict(z), atol=1e-9)


# --- one decomposition per fit, a cheap update per grid point -----------------------------------------
@pytest.mark.parametrize("family", ["pca", "ridge", "wiener"])
def test_shared_held_out_scoring_equals_applying_every_candidate(family):
    """The families that score their grid from one decomposition give each grid point's PSNR as
    building and applying that point's map does (the held-out choice is the same computation)."""
    rng = np.random.default_rng(11)
    noisy, _, groups = _grouped(rng, treatments=3, samples=3, reps=6, length=60, noise=0.02)
    ref = loo_means(noisy, groups)
    held = bl.inner_folds(groups)[0]
    make = {"pca": lambda: bl._pca_family(bl.PCA_RANKS),
            "ridge": lambda: bl._ridge_family(bl.RIDGE_ALPHAS),
            "wiener": lambda: bl._wiener_family(bl.WIENER_LAMBDAS, bl.WIENER_LENGTH_SCALES)}[family]()
    fit_groups = [g for g, h in zip(groups, held) if not h]
    candidates = make(noisy[~held], ref[~held], fit_groups)
    assert candidates.held_out is not None
    shared = candidates.held_out_psnr(noisy[held], ref[held])
    assert list(shared) == list(candidates.params)
    for label in candidates.params:
        direct = psnr(candidates.transform(label)(noisy[held]), ref[held])
        np.testing.assert_allclose(shared[label], direct, rtol=0, atol=1e-8, err_msg=label)


def test_refit_with_the_chosen_parameters_gives_the_same_maps_without_a_search(monkeypatch):
    rng = np.random.default_rng(12)
    noisy, _, groups = _grouped(rng, treatments=3, samples=3, reps=6, length=60, noise=0.02)
    ref = loo_means(noisy, groups)
    searched = fit_baselines(noisy, ref, groups)
    monkeypatch.setattr(bl, "_held_out_scores", lambda *a, **k: pytest.fail("a grid was searched"))
    rebuilt = bl.refit_baselines(noisy, ref, groups, {n: b.params for n, b in searched.items()})
    assert tuple(rebuilt) == bl.BASELINE_NAMES
    for name in bl.BASELINE_NAMES:
        assert rebuilt[name].params == searched[name].params
        np.testing.assert_array_equal(rebuilt[name].apply(noisy), searched[name].apply(noisy), err_msg=name)
    with pytest.raises(KeyError, match="wiener"):
        bl.refit_baselines(noisy, ref, groups, {n: b.params for n, b in searched.items() if n != "wiener"})


def test_wiener_on_replicates_without_noise_falls_back_to_one_solve_per_point():
    """Identical replicates leave no noise to estimate (Σn = 0), so Σs + Σn has no Cholesky factor:
    the grid is then scored one solve per point, as the filter is fitted, instead of failing."""
    rng = np.random.default_rng(13)
    _, clean, groups = _grouped(rng, treatments=3, samples=3, reps=4, length=60, noise=0.0)
    candidates = bl._wiener_family((1e-4, 1e-2), (5.0, 20.0))(clean, clean, groups)
    held = bl.inner_folds(groups)[0]
    fit = bl._WienerFit.of(clean[~held], [g for g, h in zip(groups, held, strict=True) if not h])
    with pytest.raises(np.linalg.LinAlgError):
        __import__("scipy.linalg").linalg.cho_factor(fit.signal + fit.noise)
    scores = candidates.held_out_psnr(clean, clean)
    assert set(scores) == set(candidates.params)
    fitted = bl.fit_wiener(clean, clean, groups, lambdas=(1e-4, 1e-2), length_scales=(5.0, 20.0))
    assert np.isfinite(fitted.apply(clean)).all()


def test_pca_ranks_beyond_a_small_split_are_the_same_labels_in_every_inner_fold():
    """With fewer spectra than some grid ranks (144 here, ~96 per inner fold), every fit scores the
    same labels: a rank an inner fold cannot reach uses all it has, and ranks beyond the whole split
    are capped at its N − 1 before choosing (a label only one fit knew crashed the choice)."""
    rng = np.random.default_rng(14)
    noisy, _, groups = _grouped(rng, treatments=3, samples=3, reps=8, length=200, noise=0.02)
    ref = loo_means(noisy, groups)
    fitted = bl.fit_pca(noisy, ref, groups, ranks=(5, 95, 100, 143, 150, 200))
    assert set(fitted.train_scores) == {"r5", "r95", "r100", "r143"}
    assert fitted.params["rank"] in (5, 95, 100, 143)
    assert np.isfinite(fitted.apply(noisy[:3])).all()
