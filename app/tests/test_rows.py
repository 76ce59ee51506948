"""The manifest row contract (``data.rows``) and the loaders' header checks, as every reader applies them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spectra_cv.cli import main
from spectra_cv.data import loaders, rows, synth
from spectra_cv.errors import DataContractError
from spectra_cv.folds import generate

L = 601
GOOD = "treatment_1/sample_A/6Oclock/rep_000.npy"


@pytest.fixture()
def data(tmp_path) -> Path:
    synth.write_synthetic(tmp_path / "data", synth.tiny())
    return tmp_path / "data"


def _add_rows(root: Path, new: list[str]) -> None:
    """Append manifest rows (copies of row 1 with another relative_path)."""
    frame = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    extra = pd.concat([frame.iloc[[0]]] * len(new), ignore_index=True)
    extra["relative_path"] = new
    pd.concat([frame, extra], ignore_index=True).to_csv(root / "manifest.csv", index=False)


def test_every_rule_names_its_row(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    outside = tmp_path / "outside.npy"
    np.save(outside, np.zeros(L, dtype=np.float32))
    (root / "a" / "link.npy").symlink_to(outside)
    (root / "a" / "inner.npy").symlink_to(root / "a" / "rep_000.npy")  # a link inside the root is fine
    for name in ("rep_000.npy", "rep_000.csv", "rep_001.npy"):
        (root / "a" / name).write_bytes(b"x")
    frame = pd.DataFrame({"relative_path": [
        "a/rep_001.npy", "../outside.npy", str(outside), "a/rep_000.npy", "a/rep_000.csv", "", "a/link.npy",
        "a/rep_001.npy", "a/rep.xlsx", "a/inner.npy", "a/missing.npy"]})
    got = rows.manifest_problems(frame, root, "m.csv")
    text = "\n".join(got)
    assert "m.csv row 2: ../outside.npy: contains '..'" in text
    assert f"m.csv row 3: {outside}: an absolute path" in text
    assert "m.csv rows 4 (a/rep_000.npy), 5 (a/rep_000.csv): would all be denoised to a/rep_000_denoised.npy" in text
    assert "m.csv row 6: empty relative_path" in text
    assert f"m.csv row 7: a/link.npy: a symlink leads out of the data root (to {outside})" in text
    assert "m.csv rows 1, 8: duplicate relative_path a/rep_001.npy" in text
    assert "m.csv row 9: a/rep.xlsx: unsupported spectrum type '.xlsx'" in text
    assert "m.csv row 11: a/missing.npy: spectrum file not found" in text
    assert len(got) == 8 and "row 10" not in text  # the inner link is allowed
    # a folder that is a link: its rows lead where the folder does (each folder resolved once per guard)
    (tmp_path / "elsewhere").mkdir()
    (root / "b").symlink_to(tmp_path / "elsewhere")
    (root / "c").symlink_to(root / "a")
    guard = rows.RootGuard(root)
    assert guard.outside("b/x.npy") == (tmp_path / "elsewhere" / "x.npy").resolve()
    assert guard.outside("b/y.npy") == (tmp_path / "elsewhere" / "y.npy").resolve()
    assert guard.outside("c/rep_000.npy") is None and guard.outside("c/link.npy") == outside.resolve()
    with pytest.raises(DataContractError, match="contains '..'"):
        rows.resolve_row(root, "../outside.npy")
    with pytest.raises(DataContractError, match="symlink leads out of the data root"):
        loaders.load_spectra(root, ["a/link.npy"], np.linspace(300, 600, L))


def test_data_check_and_manifests_refuse_the_same_rows(data, tmp_path):
    root = data / "spectra_for_fold"
    outside = data / "outside"
    outside.mkdir()
    np.save(outside / "rep_999.npy", np.full(L, 0.5, dtype=np.float32))
    (root / "treatment_1/sample_A/6Oclock/rep_000.csv").write_text("wavelength_nm,reflectance\n300,0.5\n600,0.5\n")
    _add_rows(root, ["../outside/rep_999.npy", "treatment_1/sample_A/6Oclock/rep_000.csv"])
    result = CliRunner().invoke(main, ["data", "check", "--data-root", str(root), "--metadata-dir",
                                       str(data / "metadata")])
    assert result.exit_code == 1
    assert "../outside/rep_999.npy: contains '..'" in result.output
    assert "would all be denoised to treatment_1/sample_A/6Oclock/rep_000_denoised.npy" in result.output
    with pytest.raises(DataContractError, match=r"contains '\.\.'") as err:
        generate(1, root / "manifest.csv", tmp_path / "manifests")
    assert any("would all be denoised to" in p for p in err.value.problems)
    assert not (tmp_path / "manifests").exists()  # nothing written


def _npy_with_header(path: Path, shape: tuple[int, ...], body: bytes = b"") -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    path.write_bytes(buffer.getvalue() + body)


def test_sizes_come_from_the_header_before_any_data_is_read(tmp_path):
    grid = np.linspace(300, 600, L)
    huge = tmp_path / "huge.npy"
    _npy_with_header(huge, (1_000_000_000,))  # 4 GB promised, a few bytes on disk: never allocated
    with pytest.raises(loaders.SpectrumError, match="has 1000000000 points, expected 601"):
        loaders.load_spectrum(huge, grid)
    short = tmp_path / "short.npy"
    _npy_with_header(short, (L,), b"\0" * 100)
    with pytest.raises(loaders.SpectrumError, match="truncated or padded"):
        loaders.load_spectrum(short, grid)
    table = tmp_path / "big.csv"
    with open(table, "wb") as handle:
        handle.truncate(loaders.MAX_TABLE_BYTES + 1)
    with pytest.raises(loaders.SpectrumError, match="over the 32 MiB"):
        loaders.load_spectrum(table, grid)
    archive = tmp_path / "big.npz"
    with zipfile.ZipFile(archive, "w") as z:
        member = io.BytesIO()
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (7, L)})
        z.writestr("reflectance.npy", member.getvalue())
    with pytest.raises(loaders.SpectrumError, match=r"'reflectance': array of shape \(7, 601\)"):
        loaders.load_spectrum(archive, grid)
    ok = tmp_path / "ok.npy"
    np.save(ok, np.full(L, 0.25, dtype=np.float32))
    np.testing.assert_array_equal(loaders.load_spectrum(ok, grid), np.full(L, 0.25, dtype=np.float32))


@pytest.mark.parametrize("rel", ["a/rep_000.npy", "rep.npy", "./a/rep.npz", "a//b/rep.csv", "a/./b/rep.tar.npy", "a/.npy", "a/rep."])
def test_denoised_name_is_the_rows_parent_and_stem(rel):
    """The output a row maps to, as strings (one pathlib parse per row was most of a manifest check)."""
    from pathlib import Path

    from spectra_cv.paths import denoised_name, denoised_output

    as_path = Path(rel)
    assert denoised_name(rel) == (as_path.parent / f"{as_path.stem}_denoised.npy").as_posix()
    assert denoised_output(Path("/out"), rel) == Path("/out") / as_path.parent / f"{as_path.stem}_denoised.npy"
