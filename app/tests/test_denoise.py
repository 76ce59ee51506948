"""Denoising from a manifest: row mapping, records, conditioning checks, the runbook §9 command."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from spectra_cv.cli import main
from spectra_cv.data import contract, synth
from spectra_cv.denoise import RECORD_FILE, denoise_manifest, is_complete, output_path
from spectra_cv.errors import ConfigError, DataContractError, ModelOutputError
from spectra_cv.folds import generate
from spectra_cv.model.checkpoint import load_model
from spectra_cv.train.presets import cpu_quick
from spectra_cv.train.run import TrainInputs, TrainOutputs, run_training

REPO = Path(__file__).resolve().parents[2]


def _train_tiny(root: Path, film: bool) -> Path:
    """A one-epoch cpu_quick model on tiny data: dose-conditioned (FiLM, as the recipe) or not (as cpu_quick)."""
    base = cpu_quick()
    features = contract.CV_FILM_FEATURES if film else ()
    cfg = dataclasses.replace(
        base, model=dataclasses.replace(base.model, d_model=8, n_layers=1, d_state=4, film_hidden_dim=8, film=film,
                                        cond_dim=max(1, len(features))),
        train=dataclasses.replace(base.train, epochs=1, batch_size=64, time_budget_s=0.0), film_features=features)
    data = root / "data"
    fold = root / "manifests" / "fold_01"
    result = run_training(cfg, TrainInputs(
        train_dir=data / "spectra_for_fold", val_dir=data / "spectra_for_fold",
        train_manifest=fold / "train_manifest.csv", val_manifest=fold / "val_manifest.csv",
        dose_features_csv=data / "metadata" / "dose_features.csv",
        dose_stats_json=data / "metadata" / "dose_stats.json"),
        TrainOutputs(checkpoint_dir=root / ("ck" if film else "ck_nf")))
    return result.best_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("den")
    synth.write_synthetic(root / "data", synth.tiny(seed=5))
    generate(1, root / "data" / "spectra_for_fold" / "manifest.csv", root / "manifests")
    return root, _train_tiny(root, film=True)


def _kwargs(root: Path, ckpt: Path, manifest: Path, out: Path, **extra):
    data = root / "data"
    return dict(checkpoint=ckpt, manifest=manifest, root_dir=data / "spectra_for_fold", output_root=out,
                dose_features_csv=data / "metadata" / "dose_features.csv", **extra)


def test_outputs_follow_manifest_rows_not_order(trained, tmp_path):
    root, ckpt = trained
    manifest = root / "manifests" / "fold_01" / "val_manifest.csv"
    first = denoise_manifest(**_kwargs(root, ckpt, manifest, tmp_path / "a", batch_size=7))
    shuffled = pd.read_csv(manifest, dtype=str, keep_default_na=False).sample(frac=1.0, random_state=1)
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    denoise_manifest(**_kwargs(root, ckpt, tmp_path / "shuffled.csv", tmp_path / "b", batch_size=64))
    for rel in first.relative_paths:
        a = np.load(output_path(tmp_path / "a", rel))
        b = np.load(output_path(tmp_path / "b", rel))
        assert a.shape == (601,) and a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    rel = first.relative_paths[0]
    assert output_path(tmp_path / "a", rel).name == Path(rel).stem + "_denoised.npy"


def test_output_equals_the_model_applied_directly(trained, tmp_path):
    root, ckpt = trained
    manifest = root / "manifests" / "fold_01" / "test_manifest.csv"
    result = denoise_manifest(**_kwargs(root, ckpt, manifest, tmp_path / "o"))
    model, stored = load_model(ckpt)
    x = torch.as_tensor(result.noisy[:3])
    lam = torch.linspace(-1, 1, 601).expand_as(x)
    frame = pd.read_csv(manifest, dtype=str)
    cos = torch.tensor([1.0 if a.startswith("12") else -1.0 for a in frame["angle"][:3]]).unsqueeze(1).expand_as(x)
    from spectra_cv.data.conditioning import DoseStats, conditioning_matrix, read_dose_features
    stats = DoseStats(**{k: tuple(v) for k, v in stored["dose_stats"].items()})
    cond = conditioning_matrix(frame.iloc[:3], read_dose_features(root / "data" / "metadata" / "dose_features.csv"),
                               stored["film_features"], stats)
    with torch.no_grad():
        direct = model(torch.stack([x, lam, cos], 1), torch.as_tensor(cond))[:, 0].numpy()
    np.testing.assert_allclose(result.denoised[:3], direct, atol=1e-6)


def test_record_marks_complete_output(trained, tmp_path):
    root, ckpt = trained
    manifest = root / "manifests" / "fold_01" / "val_manifest.csv"
    out = tmp_path / "o"
    assert not is_complete(out, ckpt, manifest)
    denoise_manifest(**_kwargs(root, ckpt, manifest, out))
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["rows"] == len(pd.read_csv(manifest))
    assert is_complete(out, ckpt, manifest)
    assert not is_complete(out, ckpt, root / "manifests" / "fold_01" / "test_manifest.csv")
    for damaged in (b'{"checkpoint_sha256": "ab', b"\xff\xfe", b"[1, 2]"):  # torn, not UTF-8, not a record
        (out / RECORD_FILE).write_bytes(damaged)
        assert not is_complete(out, ckpt, manifest)  # the pass is simply done again


def test_conditioning_mismatches_are_refused(trained, tmp_path):
    root, ckpt = trained
    manifest = root / "manifests" / "fold_01" / "val_manifest.csv"
    with pytest.raises(ConfigError, match="differ from the checkpoint"):
        denoise_manifest(**_kwargs(root, ckpt, manifest, tmp_path / "o", film_features=("cos_theta",)))
    bad = {"features": list(load_model(ckpt)[1]["film_features"]), "mean": [0.0] * 8, "std": [1.0] * 8}
    (tmp_path / "stats.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="differs from the dose statistics"):
        denoise_manifest(**_kwargs(root, ckpt, manifest, tmp_path / "o", dose_stats_json=tmp_path / "stats.json"))
    kwargs = _kwargs(root, ckpt, manifest, tmp_path / "o")
    kwargs["dose_features_csv"] = None
    with pytest.raises(ConfigError, match="--dose-features-csv"):
        denoise_manifest(**kwargs)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("film", [True, False], ids=["conditioned", "unconditioned"])
def test_runbook_denoise_script_verbatim(trained, tmp_path, film):
    """The runbook's command names the recipe's eight dose features: a conditioned checkpoint uses them, one
    trained without conditioning (cpu_quick) says it does not and denoises all the same."""
    root, ckpt = trained
    if not film:
        ckpt = _train_tiny(root, film=False)
    data = root / "data"
    features = ["cos_theta", "UVA_total", "UVB_total", "UVA_over_UVB", "P_UVA_mW_cm2", "P_UVB_mW_cm2", "UVA_norm", "UVB_norm"]
    args = ["--manifest", str(root / "manifests" / "fold_01" / "val_manifest.csv"),
            "--root-dir", str(data / "spectra_for_fold"), "--checkpoint", str(ckpt),
            "--output-root", str(tmp_path / "denoised" / "folds" / "fold_01" / "val"),
            "--sequence-length", "601", "--batch-size", "64",
            "--dose-features-csv", str(data / "metadata" / "dose_features.csv"),
            "--dose-stats-json", str(data / "metadata" / "dose_stats.json"),
            "--film-features", *features, "--amp"]
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "run_denoise_from_manifest.py"), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("trained without dose conditioning" in done.stderr) is (not film)
    assert "Saved denoised spectra for 40 entries" in done.stdout
    assert len(list((tmp_path / "denoised").rglob("*_denoised.npy"))) == 40


def test_cli_error_is_a_clean_message(trained, tmp_path):
    root, _ = trained
    result = CliRunner().invoke(main, ["denoise", "--manifest", str(root / "manifests" / "fold_01" / "val_manifest.csv"),
                                       "--root-dir", str(root / "data" / "spectra_for_fold"),
                                       "--checkpoint", str(tmp_path / "none.pt"), "--output-root", str(tmp_path / "o")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output


def test_rows_breaking_the_contract_are_refused_before_anything_is_written(trained, tmp_path):
    root, ckpt = trained
    frame = pd.read_csv(root / "manifests" / "fold_01" / "val_manifest.csv", dtype=str, keep_default_na=False)
    data_root = root / "data" / "spectra_for_fold"
    first = frame["relative_path"].iat[0]
    twin = first.replace(".npy", ".csv")
    values = np.load(data_root / first)
    pd.DataFrame({"wavelength_nm": np.linspace(300, 600, values.size), "reflectance": values}).to_csv(
        data_root / twin, index=False)
    try:
        for bad, message in ((f"../spectra_for_fold/{first}", "contains '..'"),
                             (twin, f"would all be denoised to {first.replace('.npy', '_denoised.npy')}")):
            edited = pd.concat([frame, frame.iloc[[1]].assign(relative_path=bad)], ignore_index=True)
            edited.to_csv(tmp_path / "m.csv", index=False)
            out = tmp_path / "out"
            with pytest.raises(DataContractError, match=message):
                denoise_manifest(**_kwargs(root, ckpt, tmp_path / "m.csv", out))
            assert not out.exists()
    finally:
        (data_root / twin).unlink()


def test_non_finite_model_output_fails_naming_the_row_and_writes_nothing(trained, tmp_path):
    root, ckpt = trained
    blob = torch.load(ckpt, weights_only=True)
    for state in ("model_state", "ema_state"):
        if blob.get(state) is not None:
            key = next(k for k in blob[state] if k.endswith("out_proj.weight"))
            blob[state][key] = torch.full_like(blob[state][key], float("nan"))
    broken = tmp_path / "broken.pt"
    torch.save(blob, broken)
    manifest = root / "manifests" / "fold_01" / "val_manifest.csv"
    first = pd.read_csv(manifest)["relative_path"].iat[0]
    with pytest.raises(ModelOutputError, match=rf"val_manifest.csv row 1: {first}: the model's output has"):
        denoise_manifest(**_kwargs(root, broken, manifest, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_damaged_denoised_file_is_named_not_scored(tmp_path):
    """Scoring reads each denoised file whole: non-finite values, or values no reflectance takes (bytes
    changed inside the file), are an error naming the file, not a PSNR."""
    from spectra_cv.evaluation import read_denoised

    rel = ["treatment_1/sample_A/6Oclock/rep_000.npy"]
    path = output_path(tmp_path, rel[0])
    path.parent.mkdir(parents=True)
    good = np.linspace(0.2, 0.6, 601, dtype=np.float32)
    np.save(path, good)
    assert np.array_equal(read_denoised(tmp_path, rel, 601)[0], good)
    for bad, words in ((np.inf, "NaN/inf"), (3.4e30, "which no denoised reflectance does")):
        np.save(path, np.where(np.arange(601) == 300, bad, good).astype(np.float32))
        with pytest.raises(DataContractError, match=f"{path}: denoised output for {rel[0]} .*{words}"):
            read_denoised(tmp_path, rel, 601)
