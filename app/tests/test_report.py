"""The cross-validation report on a hand-made run root: tiny synthetic data, three scored folds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spectra_cv import evaluation
from spectra_cv.data import loaders, synth
from spectra_cv.denoise import output_path
from spectra_cv.errors import DataContractError
from spectra_cv.folds.manifests import generate
from spectra_cv.io import atomic_save_npy, atomic_write_csv, atomic_write_json
from spectra_cv.metrics.baselines import BASELINE_NAMES, gaussian_filter
from spectra_cv.paths import RunPaths
from spectra_cv.runs.summary import SUMMARY_COLUMNS

COMPLETED = (1, 2, 3)
FAILED = 4
ERROR = "CUDA out of memory at epoch 7"
SIGMA = {1: 1.5, 2: 2.0, 3: 3.0}  # the stand-in model of each fold: Gaussian smoothing (σ in samples)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _summary(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{c: row.get(c, "") for c in SUMMARY_COLUMNS} for row in rows], columns=SUMMARY_COLUMNS)


def _write_run(root: Path) -> None:
    """Data, manifests, denoised test outputs, metrics JSONs, learning curves and the summary."""
    paths = RunPaths(root=root)
    synth.write_synthetic(root / "data", synth.tiny())
    data_root = root / "data" / "spectra_for_fold"
    grid = loaders.read_grid(data_root)
    rows = []
    for fold in COMPLETED:
        generate(fold, data_root / "manifest.csv", root / "manifests")
        splits = {role: evaluation.read_split(data_root, paths.manifest(fold, role), grid)
                  for role in ("train", "val", "test")}
        tables = {}
        fitted = evaluation.train_baselines(splits["train"])  # val and test of a fold share one fit
        for role in ("val", "test"):
            split = splits[role]
            pred = gaussian_filter(split.noisy, SIGMA[fold]).astype(np.float32)
            if role == "test":
                for rel, x in zip(split.relative_paths, pred):
                    atomic_save_npy(output_path(paths.denoised(fold, "test"), rel), x, durable=False)
            clean = evaluation.read_clean(root / "data" / "clean" / "clean_manifest.csv", split.groups)
            tables[role] = evaluation.score_table(pred, split, splits["train"], grid, clean, fitted)
        frame = loaders.read_manifest(data_root / "manifest.csv")
        control = evaluation.split_of(data_root, frame[frame["treatment"] == "treatment_6"], grid, "control rows")
        tables["control"] = evaluation.score_table(gaussian_filter(control.noisy, SIGMA[fold]), control,
                                                   splits["train"], grid, None, fitted)
        atomic_write_json(paths.metrics_json(fold), {"fold": fold, "splits": tables}, durable=False)
        epochs = np.arange(1, 7)
        atomic_write_csv(paths.learning_curve(fold), pd.DataFrame({
            "epoch": epochs, "train_loss": 0.01 / epochs, "lr": 1e-3,
            "val_loss": np.where(epochs % 2 == 0, 0.02 / epochs, np.nan),
            "val_psnr": np.where(epochs % 2 == 0, 40 + epochs + fold, np.nan),
            "val_psnr_std": np.nan, "val_sam": np.nan, "stop": ""}), durable=False)
        rows.append({"fold": fold, "status": "completed", "config_hash": "cafe1234", "preset": "cpu_quick",
                     "model": "mamba_tiny_uv", "parameters": 12345, "code_version": "0.1.0", "image": "",
                     "data_root": "data/spectra_for_fold"})
    rows.append({"fold": FAILED, "status": "failed", "error": ERROR})
    atomic_write_csv(paths.summary_csv, _summary(rows), durable=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from spectra_cv.runs.report import build_report

    root = tmp_path_factory.mktemp("run")
    _write_run(root)
    paths = RunPaths(root=root)
    return paths, build_report(paths, examples_per_fold=3)


def _test_psnr(paths: RunPaths, method: str, reference: str = "loo") -> np.ndarray:
    return np.array([json.loads(paths.metrics_json(f).read_text())["splits"]["test"][method][reference]["psnr_mean"]
                     for f in COMPLETED])


def test_markdown_has_across_fold_mean_std_failed_fold_and_clean_section(run):
    paths, result = run
    text = result.markdown.read_text()
    assert result.markdown == paths.report_md and result.completed_folds == COMPLETED
    assert result.other_folds == (FAILED,)
    for method in ("model", "ridge"):
        for reference in ("loo", "clean"):
            values = _test_psnr(paths, method, reference)
            assert f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" in text
    model, gaussian = _test_psnr(paths, "model").mean(), _test_psnr(paths, "gaussian").mean()
    verb = "beats" if model > gaussian else "does not beat"
    assert f"The model **{verb}** Gaussian smoothing on mean test PSNR: {model:.2f} vs {gaussian:.2f} dB" in text
    assert "ridge regression on mean test PSNR" in text
    assert "## Against the clean truth (synthetic data)" in text and "synthetic figures" in text
    assert f"| {FAILED} | failed | {ERROR} |" in text
    assert "config_hash: `cafe1234`" in text and "WARNING" not in text
    for name in ("fold_metrics.png", "spectra_examples.png", "learning_curves.png"):
        assert f"(plots/{name})" in text


def test_control_samples_have_their_own_section(run):
    paths, result = run
    text = result.markdown.read_text()
    assert "## Control samples (left out of CV, never trained on)" in text
    for method, name in (("model", "model"), ("ridge", "ridge regression"), ("ridge_wiener", "mean of ridge and Wiener")):
        values = np.array([json.loads(paths.metrics_json(f).read_text())["splits"]["control"][method]["loo"]["psnr_mean"]
                           for f in COMPLETED])
        assert f"| {name} | {values.mean():.2f} ± {values.std(ddof=1):.2f} |" in text


def test_metrics_csv_is_tidy_with_mean_and_std_rows(run):
    paths, result = run
    frame = pd.read_csv(result.metrics_csv, dtype={"fold": str})
    methods = 1 + len(BASELINE_NAMES)
    per_fold = 2 * 2 * methods + methods  # val and test × references × methods, control against LOO only
    assert len(frame) == len(COMPLETED) * per_fold + 2 * per_fold
    assert not frame.duplicated(["fold", "split", "reference", "method"]).any()
    key = (frame["split"] == "test") & (frame["reference"] == "loo") & (frame["method"] == "model")
    mean = frame.loc[key & (frame["fold"] == "mean"), "psnr_mean"].item()
    std = frame.loc[key & (frame["fold"] == "std"), "psnr_mean"].item()
    assert mean == pytest.approx(np.mean(_test_psnr(paths, "model")), rel=1e-12)
    assert std == pytest.approx(np.std(_test_psnr(paths, "model"), ddof=1), rel=1e-12)


def test_plots_are_real_pngs(run):
    paths, result = run
    assert {p.name for p in result.plots} == {"fold_metrics.png", "spectra_examples.png", "learning_curves.png"}
    for plot in result.plots:
        assert plot.parent == paths.plots_dir
        data = plot.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000


def test_pick_examples_is_one_per_treatment_first():
    from spectra_cv.runs.report_data import pick_examples

    manifest = pd.DataFrame({"treatment": ["t1", "t1", "t1", "t2", "t2", "t3"]})
    groups = ["t1/a", "t1/a", "t1/b", "t2/a", "t2/a", "t3/a"]
    assert pick_examples(manifest, groups, 4) == [0, 3, 5, 2]


def test_zero_completed_folds_raises_and_writes_nothing(tmp_path):
    from spectra_cv.runs.report import build_report

    paths = RunPaths(root=tmp_path)
    atomic_write_csv(paths.summary_csv, _summary([{"fold": 1, "status": "failed", "error": "boom"},
                                                  {"fold": 2, "status": "running"}]))
    with pytest.raises(DataContractError, match="no fold has completed.*spectra-cv cv"):
        build_report(paths)
    assert sorted(p.name for p in paths.artifacts.iterdir()) == ["fold_summary.csv"]


def test_missing_metrics_json_names_the_file(tmp_path):
    from spectra_cv.runs.report import build_report

    paths = RunPaths(root=tmp_path)
    atomic_write_csv(paths.summary_csv, _summary([{"fold": 2, "status": "completed"}]))
    with pytest.raises(DataContractError, match=r"fold_02_metrics\.json: missing.*rerun the fold"):
        build_report(paths, plots=False)
    assert not paths.report_md.exists()


def test_differing_config_hash_is_a_loud_warning(run, tmp_path):
    from spectra_cv.runs.report import render_markdown

    paths, _ = run
    summary = pd.read_csv(paths.summary_csv, keep_default_na=False)
    summary["status"] = summary["status"].astype(str)
    summary.loc[summary["fold"] == 2, "config_hash"] = "beef5678"
    frame = pd.read_csv(paths.report_metrics_csv, dtype={"fold": str})
    text = render_markdown(paths, summary, frame, [], [])
    assert "**WARNING" in text and "config_hash differs: fold 1 `cafe1234`, fold 2 `beef5678`" in text


def test_cli_writes_the_report(run):
    from spectra_cv.cli.report import report

    paths, _ = run
    result = CliRunner().invoke(report, ["--run-root", str(paths.root), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert f"report: {paths.report_md}" in result.output and "not completed: 4" in result.output


def test_cli_zero_completed_folds_exits_nonzero(tmp_path):
    from spectra_cv.cli.report import report

    atomic_write_csv(RunPaths(root=tmp_path).summary_csv, _summary([{"fold": 1, "status": "failed"}]))
    result = CliRunner().invoke(report, ["--run-root", str(tmp_path)])
    assert result.exit_code == 1 and "no fold has completed" in result.output


def test_report_module_imports_no_torch():
    code = "import sys, spectra_cv.runs.report, spectra_cv.cli.report; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
