"""The benchmark scripts run (a couple of steps, CPU): `make bench` and the GPU check must not rot."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_train import train_throughput  # noqa: E402

from spectra_cv.train.presets import cpu_quick, recipe  # noqa: E402


@pytest.mark.e2e
def test_train_throughput_runs_the_presets_with_their_prior():
    tiny_recipe = recipe()
    tiny_recipe = dataclasses.replace(tiny_recipe, model=dataclasses.replace(tiny_recipe.model, d_model=16, n_layers=1))
    for cfg in (cpu_quick(), tiny_recipe):
        assert cfg.model.prior == "ridge_wiener" and cfg.train.signal_jitter > 0
        out = train_throughput(cfg, torch.device("cpu"), seconds=30.0, max_steps=2, backend="torch",
                               batch_size=8, eval_spectra=16, spectra=600)  # 600: every group, a few each
        assert out["steps"] == 2 and out["train_spectra_per_s"] > 0, out


@pytest.mark.slow  # ~40 s: run after the unit tests (make test-slow, in .ci/run)
def test_gpu_check_writes_every_section_in_a_cpu_dry_run(tmp_path):
    """scripts/gpu_check.sh --smoke-on-cpu: the same sections as on a GPU, tiny; the real-data fold
    runs `spectra-cv fold` on a synthetic dataset in the user's layout and is scored beside ridge."""
    import json
    import os
    import subprocess

    from spectra_cv.data import synth

    synth.write_synthetic(tmp_path / "data", synth.tiny(seed=5))
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "gpu"
    proc = subprocess.run(["bash", str(repo / "scripts" / "gpu_check.sh"), "--smoke-on-cpu", "--real-data",
                           str(tmp_path / "data")], env={**os.environ, "OUT": str(out),
                                                         "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert set(report["scan_parity"]) == {"torch_fp32", "torch_bf16"}
    assert report["scan_parity"]["torch_fp32"]["out_max_rel_to_peak"] < 1e-5
    assert {"torch", "torch_no_checkpoint_blocks", "torch_compile"} <= set(report["train"])
    assert all(r.get("steps", 0) >= 1 for r in report["train"].values()), report["train"]
    assert report["train"]["torch"]["checkpoint_blocks"] and not report["train"]["torch_no_checkpoint_blocks"]["checkpoint_blocks"]
    assert report["determinism"]["torch"]["bit_identical"] is True
    fold = report["real_fold"]
    assert "error" not in fold, fold
    assert fold["ridge"]["psnr_db"] > 0 and fold["model"]["psnr_db"] > 0
    assert fold["model_minus_ridge_psnr_db"] == fold["model"]["psnr_db"] - fold["ridge"]["psnr_db"]


def test_quality_table_compares_the_model_with_the_best_linear_method_of_each_fold(uninterrupted):
    import json

    from quality_real import fold_rows, paired, summarise, table

    from spectra_cv.paths import RunPaths

    paths = RunPaths(root=uninterrupted)
    rows = fold_rows(paths, (1,))
    test = json.loads(paths.metrics_json(1).read_text())["splits"]["test"]
    best = max((name for name in test if name != "model"), key=lambda name: test[name]["loo"]["psnr_mean"])
    assert rows[0]["best_linear"] == best
    assert rows[0]["margin_db"] == test["model"]["loo"]["psnr_mean"] - test[best]["loo"]["psnr_mean"]
    assert rows[0]["control_model_psnr"] is not None
    summary = summarise(rows)
    assert summary["model_psnr"]["std"] is None and summary["met"]["above_best_linear_in_every_fold"] == (
        rows[0]["margin_db"] > 0)
    groups = paired(paths, (1,), rows)
    per_group = test["model"]["per_group"]["psnr"]
    theirs = test[groups["baseline"]]["per_group"]["psnr"]
    won = sum(per_group[g] > theirs[g] for g in per_group)
    assert (groups["groups"], groups["won"]) == (len(per_group), won)
    assert groups["ci95_low_db"] <= groups["mean_db"] <= groups["ci95_high_db"]
    assert groups["met"] == (won / len(per_group) >= 0.8)
    text = table(rows, summary, groups)
    assert f"| 1 | {rows[0]['model_psnr']:.2f} |" in text and "Targets: PSNR ≥ 55.8 dB" in text
    assert f"ahead in {won} of {len(per_group)}" in text


@pytest.mark.slow  # ~10 s, a benchmark's own check: run after the unit tests (make test-slow, in .ci/run)
def test_fold_stages_times_every_stage_of_a_tiny_fold(tmp_path):
    """bench_fold_stages.py (make bench): the tiny case runs a real fold in its own process and accounts
    for its wall time stage by stage; an unknown case is refused before anything runs."""
    import json

    from click.testing import CliRunner

    from bench_fold_stages import main as fold_stages

    out = tmp_path / "fold_stages.json"
    result = CliRunner().invoke(fold_stages, ["--cases", "tiny", "--work", str(tmp_path / "work"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (case,) = json.loads(out.read_text())["cases"]
    stages = case["stages_s"]
    for stage in ("manifests", "train split read", "baselines", "training", "epoch", "denoise train",
                  "denoise val", "denoise test", "score val", "score test", "controls", "coordinator"):
        assert stages[stage] >= 0, stage
    assert case["epochs"] == 1 and len(case["epoch_s"]) == 1
    assert 0 < case["epochs_s_total"] < case["fold_call_s"] < case["process_wall_s"]
    assert stages["training set-up"] == pytest.approx(
        stages["training"] - case["epochs_s_total"] - stages["baselines"] - stages["train split read"], abs=0.01)
    assert case["report_s"] > 0 and case["test_psnr_mean"] > 30
    refused = CliRunner().invoke(fold_stages, ["--cases", "tiny,huge", "--work", str(tmp_path / "w2")])
    assert refused.exit_code != 0 and "unknown case(s) huge" in refused.output


@pytest.mark.slow  # ~40 s: run after the unit tests (make test-slow, in .ci/run)
def test_the_fault_drill_runs_and_judges_its_cases(tmp_path):
    """scripts/fault_drill.py (`make fault-drill`) on a few of its cases: it builds its state, runs each
    case, and its JSON says what each command did and what it printed."""
    import json
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(repo / "scripts" / "fault_drill.py"), "-k", "*/garbage/report",
                          "--json", str(tmp_path / "drill.json")], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(repo / "app")})
    assert out.returncode == 0, out.stdout + out.stderr
    cases = json.loads((tmp_path / "drill.json").read_text())
    assert {c["case"] for c in cases} == {"events/garbage/report", "summary/garbage/report",
                                          "metrics-json/garbage/report"}
    assert all(c["outcome"] == "ok" for c in cases)
    said = {c["case"]: c["said"] for c in cases}
    assert "fold_summary.csv" in said["summary/garbage/report"] and said["summary/garbage/report"].startswith("Error")


def test_reference_floor_reports_each_fold_split_below_what_a_denoiser_scores(tmp_path):
    """app/benchmarks/reference_floor.py on a synthetic dataset in the user's layout: a floor for each
    fold and split asked for, well beyond what the noisy input scores (12 replicates: the reference
    averages 11, so its noise is ~1/√11 of a spectrum's: ~10 dB and a third of the angle)."""
    import json

    from click.testing import CliRunner
    from reference_floor import main as floor_main

    from spectra_cv.data import contract, loaders, synth
    from spectra_cv.metrics import loo_means, psnr, sam_deg

    synth.write_synthetic(tmp_path / "data", dataclasses.replace(synth.tiny(seed=2), replicates=12))
    out = CliRunner().invoke(floor_main, [str(tmp_path / "data"), "--folds", "1", "--folds", "4",
                                          "--output", str(tmp_path / "floor.json")])
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "floor.json").read_text())
    assert sorted(result["folds"]) == ["1", "4"] and set(result["folds"]["1"]) == {"val", "test"}
    root = tmp_path / "data" / "spectra_for_fold"
    manifest = loaders.read_manifest(root / contract.MANIFEST_FILE)
    x = loaders.load_spectra(root, manifest["relative_path"].tolist(), loaders.read_grid(root)).astype(float)
    refs = loo_means(x, manifest["group_id"].tolist())  # the noisy input itself scores far from the floor
    floor = result["folds"]["1"]["test"]
    assert 0 < floor["sam_deg_mean"] < sam_deg(x, refs).mean() / 2 and floor["psnr_mean"] > psnr(x, refs).mean() + 6
