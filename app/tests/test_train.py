"""Training: N2N targets by index, the loop (checkpoint, resume, guards) and the runbook CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from spectra_cv.cli import main
from spectra_cv.data import synth
from spectra_cv.errors import ResumeRefused, SpectraCVError
from spectra_cv.folds import generate
from spectra_cv.model.checkpoint import read_checkpoint
from spectra_cv.train import loop as loop_mod
from spectra_cv.train.tensors import DeviceSplit, SplitArrays, smooth_deviation_factor
from spectra_cv.train.presets import RunConfig, cpu_quick
from spectra_cv.train.run import TrainInputs, TrainOutputs, run_training

FEATURES = ["cos_theta", "UVA_total", "UVB_total", "UVA_over_UVB", "P_UVA_mW_cm2", "P_UVB_mW_cm2", "UVA_norm", "UVB_norm"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny synthetic dataset with fold-1 manifests."""
    root = tmp_path_factory.mktemp("tiny")
    synth.write_synthetic(root / "data", synth.tiny(seed=3))
    generate(1, root / "data" / "spectra_for_fold" / "manifest.csv", root / "manifests")
    return root


def tiny_config(**train_changes) -> RunConfig:
    """cpu_quick made tiny, with the recipe's dose conditioning (FiLM), so the conditioned path is trained."""
    base = cpu_quick()
    model = dataclasses.replace(base.model, d_model=8, n_layers=1, d_state=4, film=True, film_hidden_dim=8,
                                cond_dim=len(FEATURES))
    train = dataclasses.replace(base.train, **{"epochs": 3, "batch_size": 32, "early_stop_patience": 50,
                                               "time_budget_s": 0.0, **train_changes})
    return dataclasses.replace(base, model=model, train=train, film_features=tuple(FEATURES))


def inputs_for(root) -> TrainInputs:
    data = root / "data"
    return TrainInputs(
        train_dir=data / "spectra_for_fold", val_dir=data / "spectra_for_fold",
        train_manifest=root / "manifests" / "fold_01" / "train_manifest.csv",
        val_manifest=root / "manifests" / "fold_01" / "val_manifest.csv",
        dose_features_csv=data / "metadata" / "dose_features.csv",
        dose_stats_json=data / "metadata" / "dose_stats.json",
        lambda_weights=data / "spectra_for_fold" / "lambda_stats.npz",
    )


def _split(groups: list[str], values: np.ndarray) -> DeviceSplit:
    n, length = values.shape
    arrays = SplitArrays(relative_paths=tuple(f"{g}/rep_{i:03d}.npy" for i, g in enumerate(groups)),
                         noisy=values.astype(np.float32), groups=tuple(groups),
                         cos_theta=np.ones(n, np.float32), cond=np.zeros((n, 0), np.float32), fingerprint="x")
    return DeviceSplit(arrays, np.linspace(300, 600, length), torch.device("cpu"))


def test_partners_are_other_members_of_the_same_group_and_cover_it():
    groups = ["a"] * 3 + ["b"] * 5 + ["a"] * 2
    split = _split(groups, np.random.default_rng(0).random((10, 7)))
    gen = torch.Generator().manual_seed(0)
    idx = torch.arange(10).repeat(200)
    partners = split.partners(idx, split.partner_draws(len(idx), gen))
    assert not torch.any(partners == idx)
    labels = np.array(groups)
    assert np.all(labels[partners.numpy()] == labels[idx.numpy()])
    for i in range(10):
        seen = set(partners[idx == i].tolist())
        assert seen == {j for j in range(10) if labels[j] == labels[i] and j != i}


def test_loo_mean_and_inputs():
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    split = _split(["g", "g", "h", "h"], values)
    expected = np.array([values[1], values[0], values[3], values[2]])
    np.testing.assert_allclose(split.loo.numpy(), expected)
    x = split.inputs(torch.tensor([0, 2]))
    assert x.shape == (2, 3, 3)
    np.testing.assert_allclose(x[:, 0].numpy(), values[[0, 2]])
    np.testing.assert_allclose(x[0, 1].numpy(), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(x[:, 2].numpy(), 1.0)


def test_group_of_one_is_refused():
    with pytest.raises(SpectraCVError, match="at least 2"):
        _split(["g", "g", "h"], np.zeros((3, 4)))


def test_fit_writes_checkpoint_metrics_and_speed_log(tiny_run, tmp_path):
    out = TrainOutputs(checkpoint_dir=tmp_path / "ck", speed_log_json=tmp_path / "speed.json", log_dir=tmp_path / "logs")
    lines: list[str] = []
    result = run_training(tiny_config(), inputs_for(tiny_run), out, audit=lines.append)
    assert result.epochs_run == 3 and 1 <= result.best_epoch <= 3
    ckpt = read_checkpoint(result.best_path)
    assert ckpt["film_features"] == FEATURES
    assert ckpt["epoch"] == result.best_epoch
    kept = result.history[result.best_epoch - 1]["val_sam"]  # the kept epoch's; SAM ties broken by PSNR
    assert ckpt["sam_deg"] == pytest.approx(kept)
    assert kept <= min(r["val_sam"] for r in result.history) + tiny_config().train.select_sam_tie
    assert ckpt["run_config"]["model"]["d_model"] == 8 and ckpt["config_hash"] == tiny_config().hash()
    assert set(ckpt["data_fingerprint"]) == {"train", "val"} and ckpt["seed"] == 0
    speed = json.loads((tmp_path / "speed.json").read_text())
    assert speed["summary"]["epochs_logged"] == 3 and all(e["examples_per_sec"] > 0 for e in speed["epochs"])
    metrics = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("epoch,train_loss") and len(metrics) == 4
    assert lines[0].startswith("Training started") and lines[-1].startswith("Training stopped after 3 epochs")


@pytest.mark.parametrize("changes", [{}, {"signal_jitter": 3e-4}, {"residual_transplant": 0.5, "signal_mix": 0.5, "select_sam_tie": 0.01}],
                         ids=["plain", "signal_jitter", "residual_transplant"])
def test_killed_run_resumes_to_the_same_result(tiny_run, tmp_path, monkeypatch, changes):
    cfg = tiny_config(**changes)
    whole = run_training(cfg, inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "a"))
    real_epoch = loop_mod.train_epoch
    calls = {"n": 0}

    def dies_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "train_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "b"))
    monkeypatch.setattr(loop_mod, "train_epoch", real_epoch)
    lines: list[str] = []
    resumed = run_training(cfg, inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "b"), audit=lines.append)
    assert any(l.startswith("Resuming training after epoch 2") for l in lines)
    assert [r["val_sam"] for r in resumed.history] == [r["val_sam"] for r in whole.history]
    a, b = read_checkpoint(whole.best_path), read_checkpoint(resumed.best_path)
    for key in a["ema_state"]:
        torch.testing.assert_close(a["ema_state"][key], b["ema_state"][key], rtol=0, atol=0)


def test_smooth_deviations_have_the_kernel_as_covariance():
    factor = smooth_deviation_factor(60, 3e-4, 8.0, torch.device("cpu"))
    draws = torch.randn(40_000, 60, generator=torch.Generator().manual_seed(0)) @ factor
    i = np.arange(60)
    kernel = 3e-4 * np.exp(-0.5 * ((i[:, None] - i[None, :]) / 8.0) ** 2)
    np.testing.assert_allclose((draws.T @ draws / len(draws)).double().numpy(), kernel, atol=1.5e-5)


def test_signal_jitter_moves_the_input_and_its_target_alike():
    """An identity model scores x − target; shifting both by the same smooth deviation leaves it, shifting
    only the input would not: the step must add the jitter to both."""
    from spectra_cv.model.mamba_uv import MambaUV, ModelConfig
    from spectra_cv.objective import Objective, ObjectiveConfig
    from spectra_cv.train.schedule import adamw

    rng = np.random.default_rng(0)
    groups = [f"treatment_1/sample_{s}/6Oclock" for s in "AB" for _ in range(4)]
    split = _split(groups, 0.3 + 0.01 * rng.normal(size=(8, 32)))
    model = MambaUV(ModelConfig(name="t", d_model=8, n_layers=1, d_state=4, sequence_length=32, residual=True,
                                out_activation="none"))
    objective = Objective(ObjectiveConfig(dip_loss=False), np.linspace(300, 600, 32))
    cfg = dataclasses.replace(tiny_config().train, noise2noise_pairwise=False, ema=False)
    idx = torch.arange(8)
    with torch.no_grad():
        identity = model(split.inputs(idx), None)[:, 0]
    assert torch.allclose(identity, split.noisy[idx], atol=1e-6)  # the residual head starts at the identity
    jitter = torch.randn(8, 32, generator=torch.Generator().manual_seed(1)) @ split.jitter_factor(1e-3, 8.0)

    def step(j):
        return float(loop_mod.train_step(model, None, adamw(model, 1e-12, 0.0), split, objective, idx, cfg,
                                         torch.device("cpu"), epoch=1, lr=1e-12, jitter=j))

    plain, jittered = step(None), step(jitter)
    assert jittered == pytest.approx(plain, rel=1e-4)
    with torch.no_grad():
        moved = model(split.inputs(idx, jitter), None)[:, 0]
    assert float(objective(moved, split.loo[idx])[0]) > 2 * plain  # input alone moved: the loss grows


def test_made_pairs_carry_another_spectrums_residual_scaled_onto_the_group_mean():
    """--residual_transplant: a made row's input is its group's LOO mean plus a donor's residual scaled by
    the two means' ratio, its target (and dip target) that mean exactly; the other rows keep their input
    and target. --signal_mix: the mean is mixed with a mate's of the same treatment and angle."""
    rng = np.random.default_rng(0)
    groups = [f"treatment_1/sample_{s}/6Oclock" for s in "AB" for _ in range(4)]
    levels = np.repeat([[0.2], [0.4]], 4, axis=0)
    split = _split(groups, (levels * (1 + 0.01 * rng.normal(size=(8, 16)))).astype(np.float32))
    idx, target = torch.tensor([0, 5]), split.loo[torch.tensor([0, 5])]
    made = loop_mod.MadePairs(rows=torch.tensor([True, False]), donors=torch.tensor([6, 1]))
    made_target, dip_target, shift = loop_mod.made_pairs(split, idx, target, made)
    inputs = split.inputs(idx, shift)[:, 0]
    residual = (split.noisy[6] - split.loo[6]) * split.loo[0] / split.loo[6]
    torch.testing.assert_close(inputs[0], split.loo[0] + residual)
    torch.testing.assert_close(made_target[0], split.loo[0])
    torch.testing.assert_close(dip_target, split.loo[idx])
    torch.testing.assert_close(inputs[1], split.noisy[5])
    torch.testing.assert_close(made_target[1], target[1])
    assert float(residual.abs().mean()) < 0.01  # relative: a bright donor's noise shrunk onto a dark mean

    mates = split.mates(torch.arange(8).repeat(50), torch.randint(0, 2**62, (400,)))
    assert set(mates.tolist()) == set(range(8))  # any spectrum of treatment_1 at 6 o'clock
    mixed = loop_mod.MadePairs(rows=torch.tensor([True, True]), donors=torch.tensor([6, 1]),
                               mates=torch.tensor([4, 0]), weights=torch.tensor([0.25, 0.0]))
    mixed_target, mixed_dip, _ = loop_mod.made_pairs(split, idx, target, mixed)
    torch.testing.assert_close(mixed_target[0], 0.75 * split.loo[0] + 0.25 * split.loo[4])
    torch.testing.assert_close(mixed_dip, mixed_target)
    torch.testing.assert_close(mixed_target[1], split.loo[5])


@pytest.mark.parametrize("history, scores, tie, kept", [
    ([0.30, 0.29], {"sam": 0.2905, "psnr": 56.0}, 0.0, False),  # no tie: a higher SAM never replaces
    ([0.30, 0.29], {"sam": 0.2905, "psnr": 56.0}, 0.001, True),  # within the tie, a higher PSNR does
    ([0.30, 0.29], {"sam": 0.2905, "psnr": 54.0}, 0.001, False),  # … a lower one does not
    ([0.30, 0.29], {"sam": 0.2920, "psnr": 56.0}, 0.001, False),  # outside the tie
    ([0.30, 0.29], {"sam": 0.2850, "psnr": 54.0}, 0.001, True),  # the kept one falls out of the tie
])
def test_the_checkpoint_kept_breaks_sam_ties_by_psnr_only_when_asked(history, scores, tie, kept):
    state = loop_mod.TrainState(best_sam=0.29, best_val={"sam": 0.29, "psnr": 55.0},
                                history=[{"epoch": i + 1, "val_sam": v} for i, v in enumerate(history)])
    assert loop_mod.keeps(scores, state, min(history), tie) is kept


def test_settings_added_later_keep_the_hash_of_configs_that_do_not_use_them():
    """A run recorded before --residual_transplant and --select_sam_tie existed keeps its hash (a rerun
    is not refused as changed); turning one on changes it."""
    preset = cpu_quick()
    off = {"residual_transplant": 0.0, "signal_mix": 0.0, "select_sam_tie": 0.0}
    config = dataclasses.replace(preset, train=dataclasses.replace(preset.train, **off))
    recorded = config.to_dict()
    for key in off:
        del recorded["train"][key]
    from spectra_cv.train.config import config_hash
    from spectra_cv.train.presets import HASH_EXCLUDED_TRAIN

    old = dict(recorded, train={k: v for k, v in recorded["train"].items() if k not in HASH_EXCLUDED_TRAIN})
    old.pop("preset")
    assert config.hash() == config_hash(old)
    assert RunConfig.from_dict(recorded).hash() == config.hash()
    changed = dataclasses.replace(config, train=dataclasses.replace(config.train, residual_transplant=0.5))
    assert changed.hash() != config.hash()


def test_resume_with_other_config_is_refused_naming_the_setting(tiny_run, tmp_path):
    run_training(tiny_config(), inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "ck"))
    with pytest.raises(ResumeRefused, match=r"settings differ \(train.lr 0.001 → 0.01\).*--force"):
        run_training(tiny_config(lr=1e-2), inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "ck"))


def test_a_finished_run_is_not_handed_back_after_its_inputs_changed(tiny_run, tmp_path, caplog):
    """A finished ``last_state.pt`` resumed after a spectrum, a group or the λ-weights changed would
    report the old model as the new run's: refused naming the change; ``force`` trains afresh."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_run, root)
    out = TrainOutputs(checkpoint_dir=tmp_path / "ck")
    first = run_training(tiny_config(epochs=1), inputs_for(root), out)
    best_before = (tmp_path / "ck" / first.best_path.name).read_bytes()
    train_rows = pd.read_csv(root / "manifests" / "fold_01" / "train_manifest.csv")
    spectrum = root / "data" / "spectra_for_fold" / train_rows["relative_path"].iloc[3]
    np.save(spectrum, np.load(spectrum) * 1.01)
    with pytest.raises(ResumeRefused, match="trained on other inputs: the train spectra changed"):
        run_training(tiny_config(epochs=1), inputs_for(root), out)
    assert (tmp_path / "ck" / first.best_path.name).read_bytes() == best_before  # nothing replaced
    weights = root / "data" / "spectra_for_fold" / "lambda_stats.npz"
    with np.load(weights) as stats:
        changed = {k: stats[k] * (1.5 if k == "weights" else 1.0) for k in stats.files}
    np.savez(weights, **changed)
    with pytest.raises(ResumeRefused, match="other inputs: the train spectra, the λ-weights changed"):
        run_training(tiny_config(epochs=1), inputs_for(root), out)
    with caplog.at_level("INFO", logger="spectra_cv"):
        again = run_training(tiny_config(epochs=1), inputs_for(root), out, force=True)
    assert "discarded the resumable state" in caplog.text and again.epochs_run == 1
    run_training(tiny_config(epochs=1), inputs_for(root), out)  # the new state is this run's: it resumes


def test_train_cli_refusal_exits_3_and_force_retrains(tiny_run, tmp_path):
    data = tiny_run / "data" / "spectra_for_fold"
    fold = tiny_run / "manifests" / "fold_01"
    args = ["train", "--preset", "cpu_quick", "--train_dir", str(data), "--val_dir", str(data),
            "--train_manifest", str(fold / "train_manifest.csv"), "--val_manifest", str(fold / "val_manifest.csv"),
            "--d_model", "8", "--n_layers", "1", "--epochs", "1", "--no_geometry_film", "--prior", "none",
            "--checkpoint_dir", str(tmp_path / "ck"), "--audit_log", str(tmp_path / "audit.log")]
    assert CliRunner().invoke(main, args).exit_code == 0
    refused = CliRunner().invoke(main, [*args, "--lr", "0.01"])
    assert refused.exit_code == 3 and "train.lr" in refused.output and "--force" in refused.output
    forced = CliRunner().invoke(main, [*args, "--lr", "0.01", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "Discarded the resumable state" in (tmp_path / "audit.log").read_text()


def test_non_finite_loss_names_run_epoch_and_step(tiny_run, tmp_path, monkeypatch):
    from spectra_cv.objective import Objective

    real = Objective.forward

    def nan_loss(self, pred, target, epoch=None, dip_target=None):
        total, terms = real(self, pred, target, epoch, dip_target)
        return total * float("nan"), terms

    monkeypatch.setattr(Objective, "forward", nan_loss)
    with pytest.raises(loop_mod.NonFiniteLossError, match=r"fold-x: non-finite loss nan at epoch 1, step 0"):
        run_training(tiny_config(), inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "ck"), run_name="fold-x")


def test_runbook_train_command_verbatim(tiny_run, tmp_path):
    """Runbook §8 with only the program name changed (and a tiny model so it runs in seconds)."""
    data = tiny_run / "data"
    fold = tiny_run / "manifests" / "fold_01"
    args = [
        "train", "--model", "mamba_tiny_uv", "--train_dir", str(data / "spectra_for_fold"),
        "--val_dir", str(data / "spectra_for_fold"), "--train_manifest", str(fold / "train_manifest.csv"),
        "--val_manifest", str(fold / "val_manifest.csv"), "--sequence_length", "601", "--epochs", "2",
        "--early_stop_patience", "21", "--bs", "600", "--lr", "3e-4", "--lr_min", "3e-5", "--weight_decay", "1e-4",
        "--noise2noise", "--noise2noise_pairwise", "--val_noise2noise", "--geometry_film", "--film_hidden_dim", "64",
        "--film_features", *FEATURES,
        "--dose_features_csv", str(data / "metadata" / "dose_features.csv"),
        "--dose_sampling_weights_csv", str(data / "metadata" / "dose_sampling_weights.csv"),
        "--dose_stats_json", str(data / "metadata" / "dose_stats.json"),
        "--lambda_weights", str(data / "spectra_for_fold" / "lambda_stats.npz"),
        "--dip_loss", "--dip_weight", "1.0", "--dip_m", "6", "--dip_window_half_nm", "7.0", "--dip_min_area", "5e-4",
        "--dip_w_area", "2.5", "--dip_w_equivalent_width", "1.5", "--dip_w_centroid", "2.0", "--dip_w_depth", "0.3",
        "--dip_underfill_factor", "2.0", "--dip_detect_sigma_nm", "1.0", "--baseline", "local",
        "--baseline_guard_nm", "10.0", "--derivative_weight", "0.3", "--deriv_weight_roi", "0.6",
        "--deriv_roi_min", "320.0", "--deriv_roi_max", "500.0", "--curvature_weight_roi", "0.3",
        "--d_model", "8", "--n_layers", "1", "--d_state", "4",
        "--amp", "--amp_dtype", "bf16", "--ema", "--ema_decay", "0.999", "--tta_reverse", "--cudnn_benchmark",
        "--log_dir", str(tmp_path / "logs"), "--checkpoint_dir", str(tmp_path / "ck"),
        "--speed_log_json", str(tmp_path / "fold_03_speed.json"),
        "--audit_log", str(tmp_path / "logs" / "auditing_manifest.log"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ckpt = read_checkpoint(tmp_path / "ck" / "mamba_tiny_uv_best.pt")
    model_cfg = ckpt["model_config"]
    assert (model_cfg["d_model"], model_cfg["n_layers"], model_cfg["film_hidden_dim"], model_cfg["cond_dim"]) == (8, 1, 64, 8)
    run = ckpt["run_config"]
    assert run["train"]["batch_size"] == 600 and run["objective"]["dip_w_area"] == 2.5
    audit = (tmp_path / "logs" / "auditing_manifest.log").read_text().splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \| ", line) for line in audit)
    assert "Training stopped after 2 epochs" in audit[-1]


def test_train_requires_audit_log(tiny_run, tmp_path):
    data = tiny_run / "data" / "spectra_for_fold"
    result = CliRunner().invoke(main, ["train", "--train_dir", str(data), "--val_dir", str(data),
                                       "--checkpoint_dir", str(tmp_path / "ck")])
    assert result.exit_code != 0 and "--audit_log is required" in result.output
    assert not (tmp_path / "ck").exists()


def test_runbook_dip_weight_with_mean_one_weights_is_flagged(caplog):
    from spectra_cv.train.run import warn_dip_balance

    base = cpu_quick()
    loud = dataclasses.replace(base, objective=dataclasses.replace(base.objective, dip_weight=1.0))
    with caplog.at_level("WARNING", logger="spectra_cv"):
        assert warn_dip_balance(loud)
    assert "18.8 dB" in caplog.text
    assert not warn_dip_balance(base)
    original_scale = dataclasses.replace(loud, objective=dataclasses.replace(loud.objective, normalise_lambda_weights=False))
    assert not warn_dip_balance(original_scale)


def test_deterministic_runs_repeat_exactly_and_save_the_rng_state(tiny_run, tmp_path, monkeypatch):
    """--deterministic turns PyTorch's deterministic algorithms on for the run (with cuBLAS's
    workspace setting); two runs (pairwise Noise2Noise: partner draws in play) give the same
    weights bit for bit, and the resumable state carries the RNG state (CUDA's too on a GPU)."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    real_epoch = loop_mod.train_epoch
    flags: list[bool] = []

    def watching(*args, **kwargs):
        flags.append(torch.are_deterministic_algorithms_enabled())
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "train_epoch", watching)
    try:
        cfg = tiny_config(deterministic=True, noise2noise_pairwise=True, epochs=2)
        a = run_training(cfg, inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "a"))
        b = run_training(cfg, inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "b"))
        assert flags == [True] * 4
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        run_training(tiny_config(epochs=1), inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "c"))
        assert flags[-1] is False  # a plain run in the same process turns it off again
    finally:
        torch.use_deterministic_algorithms(False)
    wa, wb = read_checkpoint(a.best_path)["ema_state"], read_checkpoint(b.best_path)["ema_state"]
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    state = loop_mod.load_state(tmp_path / "a" / loop_mod.LAST_STATE_NAME)
    assert state["torch_rng"].dtype == torch.uint8 and state["torch_rng"].numel() > 0
    assert "cuda_rng" not in state  # a CPU run; on CUDA numerics.rng_state adds it


def test_rng_state_round_trip_without_a_device_state():
    from spectra_cv.train import numerics

    torch.manual_seed(3)
    saved = numerics.rng_state(torch.device("cpu"))
    first = torch.rand(4)
    numerics.restore_rng_state(saved, torch.device("cpu"))
    assert torch.equal(torch.rand(4), first)


def test_ema_update_is_the_moving_average_of_every_float_tensor():
    from spectra_cv.train.schedule import Ema

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = Ema(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(5, 3))  # moves the running stats and num_batches_tracked
    d = ema.current_decay()
    ema.update(model)
    for key, value in model.state_dict().items():
        got = ema.module.state_dict()[key]
        if value.dtype.is_floating_point:
            torch.testing.assert_close(got, d * before[key] + (1 - d) * value, rtol=1e-6, atol=1e-7, msg=key)
        else:
            assert torch.equal(got, value), key


def test_compile_without_a_compiler_is_refused_before_training(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(SpectraCVError, match=r"--compile on cpu needs a compiler \(c\+\+ or g\+\+ or clang\+\+\)"):
        run_training(tiny_config(compile=True), inputs_for(tiny_run), TrainOutputs(checkpoint_dir=tmp_path / "ck"))
    assert not (tmp_path / "ck").exists()
