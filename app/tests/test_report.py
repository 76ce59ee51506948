"""The cross-validation report on a hand-made run root: tiny synthetic data, three scored folds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spectra_cv import evaluation
from spectra_cv.data import loaders, splits, synth
from spectra_cv.denoise import output_path
from spectra_cv.errors import DataContractError
from spectra_cv.folds.manifests import generate
from spectra_cv.io import atomic_save_npy, atomic_write_csv, atomic_write_json
from spectra_cv.metrics import loo_means, psnr
from spectra_cv.metrics.baselines import BASELINE_NAMES, gaussian_filter
from spectra_cv.runs.report import NAMES
from spectra_cv.paths import RunPaths
from spectra_cv.runs.summary import SUMMARY_COLUMNS

COMPLETED = (1, 2, 3)
FAILED = 4
ERROR = "CUDA out of memory at epoch 7"
SIGMA = {1: 1.5, 2: 2.0, 3: 3.0}  # the stand-in model of each fold: Gaussian smoothing (σ in samples)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("fold_metrics.png", "error_curves.png", "psnr_distributions.png", "spectra_examples.png",
         "learning_curves.png")
PROFILES = ("rmse_per_wavelength", "psnr_percentiles")


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
        by_role = {role: splits.read_split(data_root, paths.manifest(fold, role), grid)
                   for role in ("train", "val", "test")}
        tables = {}
        fitted = evaluation.train_baselines(by_role["train"])  # val and test of a fold share one fit
        for role in ("val", "test"):
            split = by_role[role]
            pred = gaussian_filter(split.noisy, SIGMA[fold]).astype(np.float32)
            if role == "test":
                for rel, x in zip(split.relative_paths, pred):
                    atomic_save_npy(output_path(paths.denoised(fold, "test"), rel), x, durable=False)
            clean = evaluation.read_clean(root / "data" / "clean" / "clean_manifest.csv", split.groups)
            tables[role] = evaluation.score_table(pred, split, by_role["train"], grid, clean, fitted)
        frame = loaders.read_manifest(data_root / "manifest.csv")
        control = splits.split_of(data_root, frame[frame["treatment"] == "treatment_6"], grid, "control rows")
        tables["control"] = evaluation.score_table(gaussian_filter(control.noisy, SIGMA[fold]), control,
                                                   by_role["train"], grid, None, fitted)
        atomic_write_json(paths.metrics_json(fold), {"fold": fold, "wavelength_nm": grid.tolist(), "splits": tables},
                          durable=False)  # as the fold's _evaluate writes it
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
def built(tmp_path_factory):
    """(paths, result, cv_report.md as built with plots): the text is kept because later tests rebuild
    the report in the same run root (the CLI test without plots)."""
    from spectra_cv.runs.report import build_report

    root = tmp_path_factory.mktemp("run")
    _write_run(root)
    paths = RunPaths(root=root)
    result = build_report(paths, examples_per_fold=3)
    return paths, result, result.markdown.read_text()


@pytest.fixture(scope="module")
def run(built):
    return built[:2]


@pytest.fixture(scope="module")
def report_text(built):
    return built[2]


def _test_psnr(paths: RunPaths, method: str, reference: str = "loo") -> np.ndarray:
    return np.array([json.loads(paths.metrics_json(f).read_text())["splits"]["test"][method][reference]["psnr_mean"]
                     for f in COMPLETED])


def test_markdown_has_across_fold_mean_std_failed_fold_and_clean_section(run, report_text):
    paths, result = run
    text = report_text
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
    for name in PLOTS:
        assert f"(plots/{name})" in text
    assert "*: left out," not in text


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


def test_plots_are_real_pngs_and_svgs(run):
    paths, result = run
    assert {p.name for p in result.plots} == set(PLOTS) | {p.replace(".png", ".svg") for p in PLOTS}
    for plot in result.plots:
        assert plot.parent == paths.plots_dir
        data = plot.read_bytes()
        if plot.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
        else:
            assert b"<svg" in data[:2000] and len(data) > 10_000


def _stand_in(paths: RunPaths, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(pred, LOO reference) of ``fold``'s test split, both (N, L), recomputed from the data."""
    data_root = paths.root / "data" / "spectra_for_fold"
    split = splits.read_split(data_root, paths.manifest(fold, "test"), loaders.read_grid(data_root))
    return gaussian_filter(split.noisy, SIGMA[fold]).astype(np.float32), loo_means(split.noisy, split.groups)


def _records(paths: RunPaths) -> dict[int, dict]:
    return {f: json.loads(paths.metrics_json(f).read_text()) for f in COMPLETED}


def test_first_paragraph_states_the_margin_over_the_best_baseline_and_the_folds_it_wins(run, report_text):
    """The verdict is against the run's strongest baseline (highest mean test PSNR across folds), never a
    weaker one the model happens to beat; a run with folds missing says so before anything else."""
    paths, _ = run
    first = report_text.split("\n\n")[1]
    assert first.startswith("**Partial cross-validation: 3 of 5 folds completed** (missing: 4, 5); every figure "
                            "below covers the completed folds only. ")
    test = {f: r["splits"]["test"] for f, r in _records(paths).items()}
    methods = [m for m in test[COMPLETED[0]] if m != "model"]
    lead = max(methods, key=lambda m: np.mean([test[f][m]["loo"]["psnr_mean"] for f in COMPLETED]))
    diffs = _test_psnr(paths, "model") - _test_psnr(paths, lead)
    wins = int((diffs > 0).sum())
    margin = f"{diffs.mean():+.2f} ± {diffs.std(ddof=1):.2f} dB test PSNR on average"
    name = NAMES[lead]
    if diffs.mean() > 0:
        assert f"The model beats {name}, the best baseline, in {wins} of 3 folds, by {margin}" in first
    else:
        assert f"The model does not beat {name}, the best baseline: it is ahead in {wins} of 3 folds, by {margin}" \
            in first
    best = {f: max((m for m in t if m != "model"), key=lambda m: t[m]["loo"]["psnr_mean"]) for f, t in test.items()}
    to_best = np.array([test[f]["model"]["loo"]["psnr_mean"] - test[f][best[f]]["loo"]["psnr_mean"] for f in COMPLETED])
    assert ("Against each fold's best baseline (" in first and f"it is ahead in {int((to_best > 0).sum())} of 3 "
            f"folds, by {to_best.mean():+.2f} ± {to_best.std(ddof=1):.2f} dB." in first)
    assert "Folds completed: 3 (1, 2, 3); not completed: 1 (4)." in first  # what it said before stays


def _frame_of(model: list[float], ridge: list[float], gaussian: list[float] | None = None,
              folds: tuple[int, ...] = COMPLETED) -> pd.DataFrame:
    from spectra_cv.runs.report import metrics_frame

    gaussian = gaussian or [r - 5.0 for r in ridge]
    return metrics_frame({f: {"splits": {"test": {"model": {"loo": {"psnr_mean": m}},
                                                  "ridge": {"loo": {"psnr_mean": r}},
                                                  "gaussian": {"loo": {"psnr_mean": g}}}}}
                          for f, m, r, g in zip(folds, model, ridge, gaussian)})


def test_first_paragraph_counts_wins_and_losses_of_a_hand_made_run(tmp_path):
    from spectra_cv.runs.report import render_markdown

    summary = _summary([{"fold": f, "status": "completed"} for f in COMPLETED])
    paths = RunPaths(root=tmp_path)
    # against ridge (the stronger baseline: Gaussian is 5 dB lower): +0.5, -0.2, +1.0: mean +0.433, sample std 0.603
    text = render_markdown(paths, summary, _frame_of([40.0, 41.0, 42.0], [39.5, 41.2, 41.0]), [], [])
    assert text.split("\n\n")[1].startswith(
        "**Partial cross-validation: 3 of 5 folds completed** (missing: 4, 5); every figure below covers the "
        "completed folds only. The model beats ridge regression, the best baseline, in 2 of 3 folds, by +0.43 ± "
        "0.60 dB test PSNR on average")
    assert "Against each fold's best baseline (ridge regression in folds 1, 2, 3) it is ahead in 2 of 3" in text
    text = render_markdown(paths, summary, _frame_of([40.0, 41.0, 42.0], [40.5, 41.2, 41.9]), [], [])
    assert ("The model does not beat ridge regression, the best baseline: it is ahead in 1 of 3 folds, by -0.20 ± "
            "0.30 dB test PSNR on average") in text  # -0.5, -0.2, +0.1; it beats Gaussian in all three, unsaid
    assert "The model beats Gaussian" not in text.split("\n\n")[1]
    whole = _summary([{"fold": f, "status": "completed"} for f in range(1, 6)])  # whole; here Gaussian is best
    text = render_markdown(paths, whole, _frame_of([40.0] * 5, [39.0] * 5, [39.5] * 5, folds=(1, 2, 3, 4, 5)), [], [])
    assert text.split("\n\n")[1].startswith("The model beats Gaussian smoothing, the best baseline, in 5 of 5 folds")


def test_scoring_keeps_the_hand_computed_per_wavelength_rmse_and_psnr_percentiles(run):
    paths, _ = run
    for fold, record in _records(paths).items():
        pred, ref = _stand_in(paths, fold)
        model = record["splits"]["test"]["model"]
        np.testing.assert_allclose(model["rmse_per_wavelength"]["loo"], np.sqrt(np.mean((pred - ref) ** 2, axis=0)),
                                   rtol=1e-3)  # kept to 4 significant digits
        np.testing.assert_allclose(model["psnr_percentiles"]["loo"], np.percentile(psnr(pred, ref), range(101)),
                                   atol=1e-3)
        assert set(model) == {"params", "loo", "clean", "per_group", *PROFILES}  # the clean reference gets its profiles too
        assert len(model["rmse_per_wavelength"]["clean"]) == len(record["wavelength_nm"]) == 601


def test_error_curve_is_the_fold_mean_of_each_fold_s_test_rmse(run):
    from spectra_cv.runs.report_data import error_curves

    paths, _ = run
    curves, why = error_curves(paths, _records(paths))
    assert why == "" and curves.folds == COMPLETED and set(curves.rmse) == {"model", "ridge", "gaussian"}
    by_hand = np.mean([np.sqrt(np.mean(np.subtract(*_stand_in(paths, f)) ** 2, axis=0)) for f in COMPLETED], axis=0)
    np.testing.assert_allclose(curves.mean("model"), by_hand, rtol=1e-3)
    np.testing.assert_array_equal(curves.wavelength, loaders.read_grid(paths.root / "data" / "spectra_for_fold"))


def _curve_record(values: list[float] | None) -> dict:
    row = {"loo": {"psnr_mean": 40.0}}
    if values is not None:
        row["rmse_per_wavelength"] = {"loo": values}
    return {"wavelength_nm": None if values is None else [300.0, 300.5, 301.0],
            "splits": {"test": {m: row for m in ("model", "ridge", "gaussian")}}}


def test_error_curves_average_the_folds_that_keep_them_and_name_the_others(tmp_path):
    from spectra_cv.runs.report_data import error_curves

    paths = RunPaths(root=tmp_path)
    records = {1: _curve_record([1.0, 2.0, 3.0]), 2: _curve_record([3.0, 4.0, 6.0]), 3: _curve_record(None)}
    curves, why = error_curves(paths, records)
    assert curves.folds == (1, 2)
    np.testing.assert_allclose(curves.mean("ridge"), [2.0, 3.0, 4.5])
    assert why.startswith("the metrics JSON of fold 3 predates per-wavelength errors")
    assert error_curves(paths, {3: _curve_record(None)})[0] is None
    records[2]["splits"]["test"]["ridge"] = {"rmse_per_wavelength": {"loo": [1.0, 2.0]}}
    with pytest.raises(DataContractError, match=r"fold_02_metrics\.json: splits\.test\.ridge\.rmse_per_wavelength"
                                                r"\.loo is not 3 numbers.*rerun fold 2"):
        error_curves(paths, records)


def test_box_stats_come_from_the_stored_percentiles():
    from spectra_cv.runs.report_plots import _box

    stats = _box(np.arange(101.0) * 0.1 + 40.0, "1")  # percentile p is 40 + p/10 dB
    assert (stats["whislo"], stats["q1"], stats["med"], stats["q3"], stats["whishi"]) == pytest.approx(
        (40.5, 42.5, 45.0, 47.5, 49.5))
    assert stats["fliers"] == [40.0, 50.0]


def test_examples_come_from_every_fold_with_their_split_s_references(run, report_text):
    from spectra_cv.runs.report_data import example_spectra

    paths, _ = run
    assert "Folds 1, 2, 3: up to 3 test spectra each" in report_text
    data_root = paths.root / "data" / "spectra_for_fold"
    examples = example_spectra(paths, 2, data_root, 3)
    split = splits.read_split(data_root, paths.manifest(2, "test"), loaders.read_grid(data_root))
    rows = [split.relative_paths.index(label) for label in examples.labels]
    assert examples.fold == 2 and len({split.groups[i].split("/")[0] for i in rows}) == 3  # one per treatment
    np.testing.assert_allclose(examples.reference, loo_means(split.noisy, split.groups)[rows], rtol=1e-12)
    np.testing.assert_array_equal(examples.noisy, split.noisy[rows])


def test_old_format_metrics_json_still_builds_a_report_without_the_new_plots(run, report_text, tmp_path):
    from spectra_cv.runs.report import build_report

    paths, _ = run
    root = tmp_path / "old"
    for part in ("artifacts", "logs", "manifests", "denoised", "data"):
        shutil.copytree(paths.root / part, root / part)
    old = RunPaths(root=root)
    shutil.rmtree(old.plots_dir)
    for fold in COMPLETED:
        record = json.loads(old.metrics_json(fold).read_text())
        del record["wavelength_nm"]
        for table in record["splits"].values():
            for row in table.values():
                for key in PROFILES:
                    del row[key]
        atomic_write_json(old.metrics_json(fold), record, durable=False)
    result = build_report(old, examples_per_fold=1)
    assert {p.name for p in result.plots} == {f"{n}.{fmt}" for n in ("fold_metrics", "spectra_examples",
                                                                     "learning_curves") for fmt in ("png", "svg")}
    assert sorted(p.name for p in old.plots_dir.iterdir()) == sorted(p.name for p in result.plots)
    text = result.markdown.read_text()
    assert ("*Per-wavelength test RMSE of the model, the best baseline and Gaussian smoothing, dip ROI shaded*: "
            "left out, the "
            "metrics JSON of folds 1, 2, 3 predates per-wavelength errors") in text
    assert "*Per-spectrum test PSNR per fold, model beside the best baseline*: left out, the metrics JSON of folds 1, 2, 3 "\
           "predates per-spectrum PSNR percentiles" in text
    assert "(plots/error_curves.png)" not in text and "(plots/spectra_examples.png)" in text
    assert text.split("\n\n")[1].replace(str(root), "") == \
        report_text.split("\n\n")[1].replace(str(paths.root), "")  # the verdict needs no profile


def test_a_plot_that_fails_to_draw_is_left_out_and_the_report_still_builds(run, tmp_path, monkeypatch):
    """Plots illustrate the results: one that raises (a broken font, a backend error) is left out
    with the reason where it would have been, a warning is logged, and the report is written."""
    from spectra_cv.runs import report_plots
    from spectra_cv.runs.report import build_report

    paths, _ = run
    root = tmp_path / "copy"
    for part in ("artifacts", "logs", "manifests", "denoised", "data"):
        shutil.copytree(paths.root / part, root / part)

    def broken(*args, **kwargs):
        raise RuntimeError("no font")

    monkeypatch.setattr(report_plots, "plot_psnr_distributions", broken)
    result = build_report(RunPaths(root=root), examples_per_fold=1)
    assert "psnr_distributions.png" not in {p.name for p in result.plots} and len(result.plots) == 8
    text = result.markdown.read_text()
    assert "*Per-spectrum test PSNR per fold, model beside the best baseline*: left out, drawing it failed " \
           "(RuntimeError: no font)" in text


def test_a_damaged_metrics_file_costs_its_fold_not_the_report(run, tmp_path):
    """One fold's metrics JSON garbled: the report is written from the others and lists that fold
    among those not completed, naming the file and the fix."""
    from spectra_cv.runs.report import build_report

    paths, _ = run
    root = tmp_path / "copy"
    for part in ("artifacts", "logs", "manifests", "denoised", "data"):
        shutil.copytree(paths.root / part, root / part)
    damaged = RunPaths(root=root)
    damaged.metrics_json(COMPLETED[0]).write_bytes(b'{"splits": {"test": \x00 torn')
    summary = pd.read_csv(damaged.summary_csv)
    summary["error"] = np.nan  # no fold failed: the column reads back empty, as a float column
    summary.to_csv(damaged.summary_csv, index=False)
    result = build_report(damaged, plots=False)
    assert result.completed_folds == COMPLETED[1:]
    text = result.markdown.read_text()
    assert f"| {COMPLETED[0]} | metrics unreadable | {damaged.metrics_json(COMPLETED[0])}: not a fold metrics file" in text
    assert f"rerun fold {COMPLETED[0]}" in text


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


def test_the_paired_comparison_over_test_groups_is_recomputable_from_the_fold_records(run, report_text):
    """Per test group (tested in exactly one fold), model − the run's best baseline: the share of groups
    won, the worst group, the bootstrap interval and the per-treatment rows follow from the per-group
    means the folds wrote, which are the means of the per-spectrum PSNR of each group."""
    from spectra_cv.runs.report_paired import bootstrap_interval

    paths, _ = run
    records = _records(paths)
    test = {f: r["splits"]["test"] for f, r in records.items()}
    methods = [m for m in test[COMPLETED[0]] if m != "model"]
    lead = max(methods, key=lambda m: np.mean([test[f][m]["loo"]["psnr_mean"] for f in COMPLETED]))
    d, names = [], []
    for f in COMPLETED:
        mine, theirs = test[f]["model"]["per_group"]["psnr"], test[f][lead]["per_group"]["psnr"]
        assert set(mine) == set(theirs) and len(mine) >= 2
        assert np.mean(list(mine.values())) == pytest.approx(  # equal-sized groups: the mean of means
            test[f]["model"]["loo"]["psnr_mean"], abs=1e-4)
        for group in sorted(mine):
            d.append(mine[group] - theirs[group])
            names.append((f, group))
    d = np.array(d)
    won = int((d > 0).sum())
    section = report_text.split(f"## Paired comparison over test groups: model − {NAMES[lead]}")[1].split("\n## ")[0]
    assert f"the model is ahead in **{won} of {len(d)} groups ({won / len(d):.0%})**" in section
    low, high = bootstrap_interval(d)
    assert f"mean difference {d.mean():+.2f} dB (95 % bootstrap interval over groups {low:+.2f} … {high:+.2f} dB)" \
        in section
    fold, group = names[int(np.argmin(d))]
    assert f"worst group `{group}` (fold {fold}) {d.min():+.2f} dB" in section
    assert "Wilcoxon signed-rank test of the 3 folds' mean test PSNR differences" in section
    assert "| treatment | groups | won |" in section and "| treatment_1 |" in section
    for angle in sorted({g.split("/")[-1] for _, g in names}):  # per angle: groups and groups won
        at = np.array([g.split("/")[-1] == angle for _, g in names])
        assert f"| {angle} | {at.sum()} | {int((d[at] > 0).sum())} | " in section
    bands = section.split("(easiest first)")[1].split("\n\n")[1].splitlines()[2:]
    assert len(bands) == min(5, len(d)) and sum(int(row.split("|")[2]) for row in bands) == len(d)


def test_the_interval_and_the_signed_rank_test():
    from spectra_cv.runs.report_paired import bootstrap_interval, signed_rank

    values = np.array([0.1, 0.3, -0.2, 0.5, 0.4, 0.2, 0.0, 0.6])
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high and (low, high) == bootstrap_interval(values)  # seeded: repeatable
    assert high - low < values.max() - values.min()
    assert signed_rank(np.array([0.2, 0.1, 0.3, 0.25, 0.05])) == (0.0, 0.0625)  # five wins: the smallest p
    assert signed_rank(np.array([0.2])) is None and signed_rank(np.zeros(3)) is None
