"""Readers of the contract's files: grid, manifest, spectra (npy/npz/csv/txt, resampling, clipping), λ-weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectra_cv.data import contract, loaders
from spectra_cv.errors import DataContractError

L = 601
GRID = 300.0 + 0.5 * np.arange(L)


@pytest.fixture
def root(tmp_path):
    np.save(tmp_path / contract.GRID_FILE, GRID.astype(np.float32))
    return tmp_path


def _ramp(wl: np.ndarray) -> np.ndarray:
    """A reflectance linear in λ: linear interpolation reproduces it exactly."""
    return 0.1 + 0.001 * (wl - 300.0)


# --- grid ----------------------------------------------------------------------------------------


def test_read_grid_returns_float64_grid(root):
    grid = loaders.read_grid(root)
    assert grid.dtype == np.float64 and grid.shape == (L,)
    np.testing.assert_allclose(grid, GRID)


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.linspace(300, 600, L - 1), f"{L - 1} points, expected {L}"),
        (np.ones((2, L)), "expected a 1-D array"),
        (np.r_[GRID[:50], GRID[49], GRID[51:]], "not strictly increasing at index 50 (324.5 nm then 324.5 nm)"),
        (np.r_[np.nan, GRID[1:]], "non-finite wavelength at index 0"),
        (GRID / 1000.0, "wavelengths span 0.3…0.6, which does not cover the region of interest 320–500 nm (a grid in µm"),
        (GRID * 10.0, "wavelengths span 3000…6000, which does not cover the region of interest 320–500 nm (a grid in Å"),
        (np.linspace(400.0, 700.0, L), "wavelengths span 400…700, which does not cover the region of interest "
                                       "320–500 nm; write the wavelengths in nm"),
    ],
)
def test_read_grid_rejects_bad_grids(root, array, fragment):
    np.save(root / contract.GRID_FILE, array)
    with pytest.raises(DataContractError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        loaders.read_grid(root)


def test_read_grid_missing_and_unreadable(tmp_path):
    with pytest.raises(DataContractError, match="missing"):
        loaders.read_grid(tmp_path)
    (tmp_path / contract.GRID_FILE).write_bytes(b"not numpy")
    with pytest.raises(DataContractError, match="unreadable .npy"):
        loaders.read_grid(tmp_path)


# --- manifest ------------------------------------------------------------------------------------


def test_read_manifest_keeps_text_and_order(tmp_path):
    path = tmp_path / "m.csv"
    frame = pd.DataFrame({c: ["b", "a"] for c in contract.MANIFEST_COLUMNS})
    frame["sample"] = ["NA", ""]  # no NaN for "NA" or empty cells
    frame.to_csv(path, index=False)
    out = loaders.read_manifest(path)
    assert list(out.columns) == list(contract.MANIFEST_COLUMNS)
    assert out["relative_path"].tolist() == ["b", "a"] and out["sample"].tolist() == ["NA", ""]


def test_read_manifest_names_missing_columns_and_empty(tmp_path):
    path = tmp_path / "m.csv"
    pd.DataFrame({"relative_path": ["x.npy"], "treatment": ["t"]}).to_csv(path, index=False)
    with pytest.raises(DataContractError, match="missing required column\\(s\\) sample, angle, group_id"):
        loaders.read_manifest(path)
    pd.DataFrame(columns=list(contract.MANIFEST_COLUMNS)).to_csv(path, index=False)
    with pytest.raises(DataContractError, match="no rows"):
        loaders.read_manifest(path)


# --- spectra -------------------------------------------------------------------------------------


def test_npy_round_trip_and_clipping(tmp_path):
    values = np.linspace(-0.02, 1.3, L).astype(np.float32)
    np.save(tmp_path / "s.npy", values)
    clipped = loaders.load_spectrum(tmp_path / "s.npy", GRID)
    assert clipped.dtype == np.float32 and clipped.shape == (L,)
    np.testing.assert_array_equal(clipped, np.clip(values, 0.0, 1.0))
    np.testing.assert_array_equal(loaders.load_spectrum(tmp_path / "s.npy", GRID, clip=False), values)


def test_npz_reads_the_reflectance_key(tmp_path):
    values = _ramp(GRID).astype(np.float32)
    np.savez(tmp_path / "s.npz", reflectance=values, other=np.zeros(3))
    np.testing.assert_array_equal(loaders.load_spectrum(tmp_path / "s.npz", GRID), values)


@pytest.mark.parametrize(("name", "sep"), [("s.csv", ","), ("s.txt", "\t")])
def test_tables_are_resampled_linearly_onto_the_grid(tmp_path, name, sep):
    wl = np.arange(299.0, 601.5, 1.0)  # 1 nm steps, covering the grid
    pd.DataFrame({"wavelength_nm": wl, "reflectance": _ramp(wl)}).to_csv(tmp_path / name, sep=sep, index=False)
    out = loaders.load_spectrum(tmp_path / name, GRID)
    np.testing.assert_allclose(out, _ramp(GRID), atol=1e-6)  # exact for a linear spectrum


def test_table_on_the_grid_is_taken_as_is(tmp_path):
    refl = np.random.default_rng(0).uniform(0.2, 0.8, L)
    pd.DataFrame({"wavelength_nm": GRID, "reflectance": refl}).to_csv(tmp_path / "s.csv", index=False)
    np.testing.assert_allclose(loaders.load_spectrum(tmp_path / "s.csv", GRID), refl.astype(np.float32))


def _write(tmp_path, name, what):
    path = tmp_path / name
    if isinstance(what, bytes):
        path.write_bytes(what)
    elif isinstance(what, pd.DataFrame):
        what.to_csv(path, index=False)
    elif name.endswith(".npz"):
        np.savez(path, **what)
    else:
        np.save(path, what)
    return path


@pytest.mark.parametrize(
    ("name", "what", "reason"),
    [
        ("s.npy", np.full(L - 1, 0.5, dtype=np.float32), f"has {L - 1} points, expected {L} (wavelength_grid.npy)"),
        ("s.npy", np.full((1, L), 0.5, dtype=np.float32), f"array of shape (1, {L}), expected 1-D ({L},)"),
        ("s.npy", np.where(np.arange(L) == 7, np.nan, 0.5), "1 NaN/inf value(s) (first at 303.5 nm)"),
        ("s.npy", np.where(np.arange(L) >= 600, np.inf, 0.5), "1 NaN/inf value(s) (first at 600 nm)"),
        ("s.npy", np.array(["x"] * L), "dtype <U1 is not numeric"),
        ("s.npy", b"\x93NUMPY\x01\x00garbage", "corrupt or unreadable .npy"),
        ("s.npz", {"spectrum": np.zeros(L)}, ".npz has keys ['spectrum'] but no 'reflectance'"),
        ("s.npz", b"PK\x03\x04 broken zip", "corrupt or unreadable .npz"),
        ("s.csv", pd.DataFrame({"wl": [300.0, 600.0], "refl": [0.1, 0.2]}),
         "missing column(s) wavelength_nm, reflectance (has wl, refl)"),
        ("s.csv", pd.DataFrame({"wavelength_nm": [600.0, 300.0], "reflectance": [0.1, 0.2]}),
         "wavelength_nm must be numeric and strictly increasing"),
        ("s.csv", pd.DataFrame({"wavelength_nm": [310.0, 600.0], "reflectance": [0.1, 0.2]}),
         "covers 310.0–600.0 nm but the grid needs 300.0–600.0 nm"),
        ("s.csv", pd.DataFrame({"wavelength_nm": GRID, "reflectance": np.where(GRID == 400.0, np.nan, 0.3)}),
         "1 NaN/inf value(s) (first at 400 nm)"),
        ("s.json", b"{}", "unsupported spectrum type '.json'"),
    ],
)
def test_bad_spectra_raise_naming_file_and_reason(tmp_path, name, what, reason):
    path = _write(tmp_path, name, what)
    with pytest.raises(loaders.SpectrumError) as info:
        loaders.load_spectrum(path, GRID)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}: ") and isinstance(info.value, DataContractError)


def test_missing_spectrum_file(tmp_path):
    with pytest.raises(loaders.SpectrumError, match="spectrum file not found; fix the manifest row"):
        loaders.load_spectrum(tmp_path / "nope.npy", GRID)


def test_load_spectra_stacks_in_order(tmp_path):
    for k in range(3):
        (tmp_path / "g").mkdir(exist_ok=True)
        np.save(tmp_path / "g" / f"rep_{k}.npy", np.full(L, 0.1 * (k + 1), dtype=np.float32))
    out = loaders.load_spectra(tmp_path, ["g/rep_2.npy", "g/rep_0.npy"], GRID)
    assert out.shape == (2, L) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], [0.3, 0.1], rtol=1e-6)


# --- λ-weights -----------------------------------------------------------------------------------


def test_lambda_weights_from_npz_and_npy(tmp_path):
    weights = np.linspace(60.0, 900.0, L)
    np.savez(tmp_path / "lambda_stats.npz", weights=weights, variance=1.0 / weights)
    np.save(tmp_path / "w.npy", weights)
    np.testing.assert_allclose(loaders.read_lambda_weights(tmp_path / "lambda_stats.npz", L), weights)
    np.testing.assert_allclose(loaders.read_lambda_weights(tmp_path / "w.npy", L), weights)


BAD = "1 weight(s) not finite and positive "


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ({"weights": np.ones(L - 1)}, f"weights of shape ({L - 1},), expected ({L},)"),
        ({"weights": np.where(np.arange(L) == 5, -1.0, 1.0)}, BAD + "(first at index 5: -1)"),
        ({"weights": np.where(np.arange(L) < 2, np.nan, 1.0)}, "2" + BAD[1:] + "(first at index 0: nan)"),
        ({"variance": np.ones(L)}, "no 'weights' key (has ['variance'])"),
    ],
)
def test_lambda_weights_rejects_bad_files(tmp_path, content, fragment):
    np.savez(tmp_path / "lambda_stats.npz", **content)
    with pytest.raises(DataContractError) as info:
        loaders.read_lambda_weights(tmp_path / "lambda_stats.npz", L)
    assert fragment in str(info.value)


def test_lambda_weights_missing_file(tmp_path):
    with pytest.raises(DataContractError, match="not found; run `spectra-cv data stats`"):
        loaders.read_lambda_weights(tmp_path / "lambda_stats.npz", L)
