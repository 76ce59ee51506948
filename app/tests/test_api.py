"""spectra_cv.api: the CLI's code paths from Python, and a run root's results as DataFrames."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from spectra_cv import api
from spectra_cv.errors import Refused, SpectraCVError
from spectra_cv.paths import RunPaths

README = Path(__file__).resolve().parents[2] / "README.md"


def test_config_follows_the_cli_precedence(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "cpu_quick"\n[model]\nd_model = 16\n[train]\nepochs = 7\n')
    cfg = api.config(config_file=path, settings={"epochs": 3})
    assert (cfg.preset, cfg.model.d_model, cfg.train.epochs, cfg.train.batch_size) == ("cpu_quick", 16, 3, 64)
    assert api.config("cpu_quick").hash() == api.config(config_file=path, settings={"d_model": 32, "epochs": 60}).hash()


def test_the_readers_give_the_folds_the_spectra_and_the_wavelengths_of_a_run(uninterrupted):
    """Per fold, per (split, method) metrics, per spectrum (recomputed from the denoised files, agreeing
    with the fold's own scores) and per wavelength, from a run root's files (read only)."""
    root = uninterrupted
    folds = api.fold_table(root)
    assert folds["fold"].tolist() == [1] and folds.loc[0, "status"] == "completed"
    metrics = api.metrics_table(root)
    model = metrics[(metrics["fold"] == "1") | (metrics["fold"] == 1)]
    row = model[(model["split"] == "test") & (model["method"] == "model") & (model["reference"] == "loo")].iloc[0]
    spectra = api.spectrum_table(root)
    assert len(spectra) == row["n_spectra"]
    assert np.isclose(spectra["model_psnr"].mean(), row["psnr_mean"], atol=1e-6)
    assert {"relative_path", "group_id", "model_sam_deg", "input_psnr"} <= set(spectra.columns)
    curves = api.wavelength_table(root)
    assert set(curves["method"]) >= {"model", "ridge_wiener"} and curves["wavelength_nm"].between(300, 600).all()
    assert len(curves[curves["method"] == "model"]) == 601


def test_a_refusal_and_a_failure_are_the_project_errors(tmp_path):
    with pytest.raises(SpectraCVError, match="spectra-cv fold: .*data root not found|spectra-cv fold: .*missing"):
        api.run_fold(1, data_root=tmp_path / "none", metadata_dir=tmp_path / "none", run_root=tmp_path)
    assert issubclass(Refused, SpectraCVError)


@pytest.mark.slow  # two folds in their own processes and the report, ~20 s: with make test-slow, in .ci/run
def test_the_readme_example_runs_as_written(data, tmp_path, monkeypatch):
    """The README's Python example, taken from the README, on tiny synthetic data in its layout."""
    example = README.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "data").symlink_to(data, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for name in ("SPECTRA_CV_DATA_ROOT", "SPECTRA_CV_METADATA_DIR", "SPECTRA_CV_RUN_ROOT"):
        monkeypatch.delenv(name)
    fast = re.sub(r'settings=\{[^}]*\}', 'settings={"epochs": 1, "d_model": 8, "n_layers": 1}', example)
    scope: dict = {}
    exec(compile(fast, "README.md", "exec"), scope)
    assert scope["folds"]["status"].tolist() == ["completed", "completed"]  # folds=[1, 2]
    assert (tmp_path / "runs" / "cv1" / "artifacts" / "cross_validation" / "cv_report.md").is_file()


def test_the_run_facts_say_what_each_fold_trained_with_and_on(uninterrupted):
    """The report's run facts: epochs, learning rate, batch, seed, times, the device and the CPU model
    the fold computed on, and the library versions, from the fold's own events."""
    from spectra_cv.provenance import _cpu_name
    from spectra_cv.runs.report_facts import run_fact_lines

    lines = run_fact_lines(RunPaths(root=uninterrupted), (1,))
    row = next(line for line in lines if line.startswith("| 1 |"))
    assert "| 4 | 0.001 | 64 | 0 |" in row and f"| cpu ({_cpu_name()}; 1 thread(s)" in row
    assert lines[-1].startswith("Versions: python ") and " torch " in lines[-1]
