"""Fold pipeline, events, coordinator, cv runner and final model — including the crash tests.

Crashes are real ``SIGKILL``s of real processes, placed by ``SPECTRA_CV_FAULT`` (see
``spectra_cv.faults``): during training (an epoch's work lost), halfway through writing the
denoised files, and in the coordinator between two appended audit lines. After a rerun the audit
log and the summary must equal those of an uninterrupted run, timestamps and durations aside.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from spectra_cv.data.loaders import read_grid
from spectra_cv.data.splits import read_split
from spectra_cv.errors import ConfigError, FoldRefused
from spectra_cv.metrics import loo_means, refit_baselines
from spectra_cv.metrics.baselines import BASELINE_NAMES
from spectra_cv.model.checkpoint import read_checkpoint
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs.coordinator import Coordinator, render_audit
from spectra_cv.runs.summary import summary_row
from spectra_cv.runs.summary import SUMMARY_COLUMNS, read_summary

from runs_support import (APP, EXPECTED_MESSAGES, fold_args, messages, spectra_cv,  # noqa: E402
                          summary_without_times)


# --- events -------------------------------------------------------------------------------------
def test_events_append_durably_and_a_torn_tail_is_ignored_then_cut(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = ev.EventWriter(path, fold=2)
    writer.emit(ev.START, "Starting fold_02", config_hash="abc")
    writer.emit(ev.NOTE, "two\nlines")
    with open(path, "ab") as handle:
        handle.write(b'{"v":1,"seq":2,"ti')  # what a crash inside a write leaves
    events = ev.read_events(path)
    assert [e.seq for e in events] == [0, 1] and events[1].message == "two lines"
    writer = ev.EventWriter(path, fold=2)  # the next writer cuts the torn line and goes on
    writer.emit(ev.COMPLETED, "Fold completed")
    assert [e.type for e in ev.read_events(path)] == [ev.START, ev.NOTE, ev.COMPLETED]
    assert path.read_bytes().endswith(b"\n")


@pytest.mark.parametrize("damage", [b"not json\n", b"\n", b"\xff\xfe garbage\n", b'{"v":1,"seq":1}\n', b"[1, 2]\n",
                                    b'{"v":1,"seq":1,"time":"yesterday","fold":1,"type":"note"}\n'])
def test_a_damaged_event_is_named_and_left_out_the_rest_are_read(tmp_path, damage, caplog):
    """One damaged record (blank, garbage, wrong encoding, fields missing, not an object, a bad time)
    costs that record only: the reader names file and line, keeps the others, and the writer goes on
    after them."""
    path = tmp_path / "events.jsonl"
    writer = ev.EventWriter(path, fold=1)
    for i in range(4):
        writer.emit(ev.NOTE, f"note {i}")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + damage + lines[2] + lines[3])  # line 2 (seq 1) damaged
    read = ev.read_event_file(path)
    assert [e.seq for e in read.events] == [0, 2, 3]
    assert len(read.damaged) == 1 and read.damaged[0].startswith(f"{path}:2: ")
    with caplog.at_level("WARNING", logger="spectra_cv"):
        assert [e.message for e in ev.read_events(path)] == ["note 0", "note 2", "note 3"]
    assert f"{path}:2: " in caplog.text and "coordinator --rebuild" in caplog.text
    ev.EventWriter(path, fold=1).emit(ev.NOTE, "after")
    assert [e.seq for e in ev.read_events(path)] == [0, 2, 3, 4]


def test_lost_and_repeated_event_lines_are_named(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = ev.EventWriter(path, fold=1)
    for i in range(3):
        writer.emit(ev.NOTE, f"note {i}")
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    read = ev.read_event_file(path)
    assert [e.seq for e in read.events] == [0, 2] and "events.jsonl:2: event seq 2, expected 1 (lines lost" in read.damaged[0]
    path.write_bytes(lines[0] + lines[1] + lines[1] + lines[2])
    read = ev.read_event_file(path)
    assert [e.seq for e in read.events] == [0, 1, 2] and "events.jsonl:3: event seq 1 repeats" in read.damaged[0]


# --- coordinator ---------------------------------------------------------------------------------
def _fake_fold(paths: RunPaths, fold: int, n_notes: int = 3, complete: bool = True,
               config: dict | None = None) -> ev.EventWriter:
    writer = ev.EventWriter(paths.events(fold), fold)
    writer.emit(ev.START, f"Starting fold_{fold:02d}", config_hash="h1", config=config or {}, preset="cpu_quick",
                model="mamba_tiny_uv", seed=0, data_root="data/spectra_for_fold", code_version="v", image=None,
                library_versions={"torch": "x"})
    for i in range(n_notes):
        writer.emit(ev.NOTE, f"note {i}")
    writer.emit(ev.TRAIN_DONE, "Training completed successfully", checkpoint_sha256="c" * 64, best_epoch=3,
                epochs_run=5, stopped_because="max epochs", val_psnr=50.0, val_sam=0.5, parameters=10,
                data_fingerprint="f", seconds=1.0)
    if complete:
        writer.emit(ev.EVALUATED, "Test metrics: …", checkpoint_sha256="c" * 64,
                    test={"model": {"psnr_mean": 51.5}, "ridge": {"psnr_mean": 54.0}}, val={})
        writer.emit(ev.COMPLETED, "Fold completed", checkpoint_sha256="c" * 64, total_seconds=9.0)
    return writer


def _two_synced_folds(tmp_path: Path) -> tuple[RunPaths, bytes, list[bytes]]:
    """Folds 1 and 2 faked and synced: (paths, fold 2's audit log, fold 2's event lines)."""
    paths = RunPaths(root=tmp_path)
    _fake_fold(paths, 1)
    _fake_fold(paths, 2)
    Coordinator(paths).sync()
    return paths, paths.audit_log(2).read_bytes(), paths.events(2).read_bytes().splitlines(keepends=True)


def test_a_damaged_event_line_costs_only_that_record(tmp_path):
    """One garbage line in fold 2's events: status and the summary still show both folds, the audit
    log keeps the damaged event's line and gets the later ones, and a rebuild keeps the old log."""
    from spectra_cv.cli import main

    paths, audit_before, lines = _two_synced_folds(tmp_path)
    assert b'"note 1"' in lines[2]
    paths.events(2).write_bytes(b"".join(lines[:2]) + b"\x00 not an event \xff\n" + b"".join(lines[3:]))
    ev.EventWriter(paths.events(2), 2).emit(ev.NOTE, "after the damage")
    result = Coordinator(paths).sync()
    assert result.errors == () and result.folds == (1, 2)
    assert list(read_summary(paths.summary_csv)["fold"]) == [1, 2]
    audit = paths.audit_log(2).read_bytes()
    assert audit.startswith(audit_before) and audit.endswith(b"| after the damage\n")
    status = CliRunner().invoke(main, ["status", "--run-root", str(tmp_path)])
    assert status.exit_code == 0, status.output
    assert "fold 1" in status.output and "fold 2" in status.output
    Coordinator(paths).rebuild()
    kept = list(paths.audit_log(2).parent.glob("auditing_manifest.log.before-rebuild-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == audit  # the trail, the damaged event's line included
    assert b"note 1" not in paths.audit_log(2).read_bytes() and b"after the damage" in paths.audit_log(2).read_bytes()
    assert not list(paths.audit_log(1).parent.glob("*.before-rebuild-*"))  # fold 1 rebuilt to the same bytes


def test_coordinator_appends_only_what_is_missing_and_rebuild_is_byte_identical(tmp_path):
    paths = RunPaths(root=tmp_path)
    writer = _fake_fold(paths, 1, complete=False)
    _fake_fold(paths, 3)
    coord = Coordinator(paths)
    first = coord.sync()
    assert first.folds == (1, 3) and first.appended == 5 + 7
    assert coord.sync().appended == 0  # nothing new: nothing written
    writer.emit(ev.FAILED, "Training failed: boom", stage="train", error="RuntimeError: boom")
    assert coord.sync().appended == 1
    audit = paths.audit_log(1).read_bytes()
    assert audit == render_audit(ev.read_events(paths.events(1)))
    rows = read_summary(paths.summary_csv)
    assert list(rows.columns) == list(SUMMARY_COLUMNS)
    assert rows["status"].tolist() == ["failed", "completed"]
    assert rows.loc[0, "error"] == "RuntimeError: boom" and rows.loc[1, "test_psnr_mean"] == 51.5
    assert rows.loc[1, "baseline_ridge_psnr_mean"] == 54.0
    before = {p: p.read_bytes() for p in (paths.audit_log(1), paths.audit_log(3), paths.summary_csv)}
    for p in before:
        p.unlink()
    coord.rebuild()
    assert {p: p.read_bytes() for p in before} == before


def test_coordinator_cuts_a_torn_line_and_refuses_an_edited_log(tmp_path):
    paths = RunPaths(root=tmp_path)
    _fake_fold(paths, 2)
    want = render_audit(ev.read_events(paths.events(2)))
    log_path = paths.audit_log(2)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    first_two = b"".join(want.splitlines(keepends=True)[:2])
    log_path.write_bytes(first_two + want.splitlines(keepends=True)[2][:9])  # torn third line
    Coordinator(paths).sync()
    assert log_path.read_bytes() == want
    log_path.write_bytes(want.replace(b"note 1", b"note X"))
    _fake_fold(paths, 4)  # another fold, written although fold 2's log is refused
    result = Coordinator(paths).sync()
    assert len(result.errors) == 1 and "fold 2" in result.errors[0] and "--rebuild" in result.errors[0]
    assert log_path.read_bytes() == want.replace(b"note 1", b"note X")  # left as it is
    assert paths.audit_log(4).read_bytes() == render_audit(ev.read_events(paths.events(4)))
    assert read_summary(paths.summary_csv)["fold"].tolist() == [2, 4]
    Coordinator(paths).rebuild()
    assert log_path.read_bytes() == want


def test_coordinator_killed_between_appends_restarts_without_loss_or_repeat(tmp_path):
    paths = RunPaths(root=tmp_path)
    _fake_fold(paths, 1)
    out = spectra_cv("coordinator", "--once", "--run-root", str(tmp_path), cwd=tmp_path,
                     fault="coordinator_mid_append", check=False)
    assert out.returncode == -signal.SIGKILL
    partial = paths.audit_log(1).read_bytes()
    want = render_audit(ev.read_events(paths.events(1)))
    assert partial == want.splitlines(keepends=True)[0]  # killed after the first line
    spectra_cv("coordinator", "--once", "--run-root", str(tmp_path), cwd=tmp_path)
    assert paths.audit_log(1).read_bytes() == want


def test_summary_row_is_a_pure_function_of_the_events(tmp_path):
    paths = RunPaths(root=tmp_path)
    events = ev.read_events(_fake_fold(paths, 4).path)
    row = summary_row(4, events)
    assert row == summary_row(4, list(events))
    assert row["checkpoint"] == "checkpoints/Track_H_fold_04/mamba_tiny_uv_best.pt"
    assert row["status"] == "completed" and row["best_epoch"] == 3 and row["config_hash"] == "h1"


# --- the fold pipeline ---------------------------------------------------------------------------
def test_uninterrupted_fold_writes_every_runbook_path(data, uninterrupted):
    paths = RunPaths(root=uninterrupted)
    got = messages(paths.audit_log(1))
    assert len(got) == len(EXPECTED_MESSAGES)
    assert all(m.startswith(e) for m, e in zip(got, EXPECTED_MESSAGES)), got
    for role in ("train", "val", "test"):
        assert paths.manifest(1, role).is_file()
        rows = pd.read_csv(paths.manifest(1, role))
        assert len(list(paths.denoised(1, role).rglob("*_denoised.npy"))) == len(rows)
    for path in (paths.train_log(1), paths.best_checkpoint(1), paths.metrics_json(1), paths.speed_log(1),
                 paths.completion_record(1), paths.learning_curve(1)):
        assert path.is_file(), path
    row = read_summary(paths.summary_csv).iloc[0]
    assert row["status"] == "completed" and row["fold"] == 1 and row["preset"] == "cpu_quick"
    assert row["test_psnr_mean"] > 30 and row["baseline_ridge_psnr_mean"] > 30
    assert "Epoch 1/4" in paths.train_log(1).read_text()
    # the control (treatment_6: never in a split) is scored too, in memory: nothing of it is written
    assert json.loads(paths.metrics_json(1).read_text())["data_warnings"] == []  # the tests' spectra are all usable
    metrics = json.loads(paths.metrics_json(1).read_text())["splits"]
    control = metrics["control"]
    assert set(control) == {"model", *BASELINE_NAMES} and control["model"]["loo"]["n_spectra"] == 2 * 2 * 4
    assert row["control_psnr_mean"] == pytest.approx(control["model"]["loo"]["psnr_mean"], rel=1e-5)
    assert row["control_baseline_ridge_wiener_psnr_mean"] == pytest.approx(
        control["ridge_wiener"]["loo"]["psnr_mean"], rel=1e-5)
    evaluated = next(m for m in got if m.startswith("Test metrics"))
    assert "ridge+Wiener" in evaluated and "control samples (never trained on): PSNR" in evaluated
    assert not any("treatment_6" in str(p) for p in (uninterrupted / "denoised").rglob("*"))
    # the baselines were fitted once: the prior is the evaluated ridge+Wiener map, its parameters recorded
    record = json.loads(paths.baselines_json(1).read_text())["baselines"]
    assert record["ridge_wiener"]["params"] == metrics["test"]["ridge_wiener"]["params"]
    root = data / "spectra_for_fold"
    train = read_split(root, paths.manifest(1, "train"), read_grid(root))
    rebuilt = refit_baselines(train.noisy, loo_means(train.noisy, train.groups), train.groups,
                              {name: entry["params"] for name, entry in record.items()})
    state = read_checkpoint(paths.best_checkpoint(1))["model_state"]
    eye = np.eye(train.noisy.shape[1])
    offset = rebuilt["ridge_wiener"].apply(np.zeros((1, eye.shape[0])))[0]
    np.testing.assert_allclose(state["prior_matrix"].numpy(), rebuilt["ridge_wiener"].apply(eye) - offset, atol=1e-6)
    np.testing.assert_allclose(state["prior_offset"].numpy(), offset, atol=1e-6)
    assert "baselines: fitting each on 120 train spectra" in paths.train_log(1).read_text()


def test_fold_killed_during_training_resumes_to_the_uninterrupted_result(data, uninterrupted, tmp_path):
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, tmp_path), cwd=tmp_path, fault="train_epoch_3", check=False)
    assert out.returncode == -signal.SIGKILL
    paths = RunPaths(root=tmp_path)
    assert not paths.audit_log(1).exists()  # the fold never writes it; its events are all that survive
    spectra_cv("fold", "--fold", "1", *fold_args(data, tmp_path), cwd=tmp_path)
    assert "resuming after epoch 2" in paths.train_log(1).read_text()
    assert "baselines: rebuilt from fold_01_baselines.json" in paths.train_log(1).read_text()  # not searched again
    ref = RunPaths(root=uninterrupted)
    assert messages(paths.audit_log(1)) == messages(ref.audit_log(1))
    pd.testing.assert_frame_equal(summary_without_times(tmp_path), summary_without_times(uninterrupted))


def test_fold_killed_while_denoising_resumes_to_the_uninterrupted_result(data, uninterrupted, tmp_path):
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, tmp_path), cwd=tmp_path, fault="denoise_midway", check=False)
    assert out.returncode == -signal.SIGKILL
    paths = RunPaths(root=tmp_path)
    assert not (paths.denoised(1, "train") / "denoise_record.json").exists()  # half written, not complete
    spectra_cv("coordinator", "--once", "--run-root", str(tmp_path), cwd=tmp_path)
    assert read_summary(paths.summary_csv).loc[0, "status"] == "interrupted"  # killed outside cv: its lock is free
    spectra_cv("fold", "--fold", "1", *fold_args(data, tmp_path), cwd=tmp_path)
    ref = RunPaths(root=uninterrupted)
    assert messages(paths.audit_log(1)) == messages(ref.audit_log(1))
    pd.testing.assert_frame_equal(summary_without_times(tmp_path), summary_without_times(uninterrupted))


def test_skip_existing_skips_only_a_fold_whose_record_matches_its_checkpoint(data, uninterrupted, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(uninterrupted, root)
    paths = RunPaths(root=root)
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root), "--skip-existing", cwd=root)
    assert "[fold 1] skipped" in out.stdout
    assert messages(paths.audit_log(1))[-1].startswith("Skipping fold_01: already completed")
    with open(paths.best_checkpoint(1), "ab") as handle:
        handle.write(b"tampered")
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root), "--skip-existing", cwd=root)
    assert "[fold 1] completed" in out.stdout
    got = messages(paths.audit_log(1))
    assert got.count("Fold completed") == 2 and got.count("Starting fold_01") == 2


def test_a_fold_with_another_config_than_completed_folds_is_refused(data, tmp_path):
    from spectra_cv.train.flags import parse_sets
    from spectra_cv.runs.fold import FoldSettings, run_fold

    from spectra_cv.train.flags import build_run_config
    from spectra_cv.train.presets import cpu_quick

    paths = RunPaths(root=tmp_path)
    _fake_fold(paths, 2, config=build_run_config("cpu_quick", {"d_model": 48, "lr": 0.002}).to_dict())
    settings = FoldSettings(fold=1, config=cpu_quick(), data_root=data / "spectra_for_fold",
                            metadata_dir=data / "metadata", paths=paths)
    with pytest.raises(FoldRefused, match=r"differs from completed fold 2 \(model.d_model 48 → 32, train.lr 0.002 → "
                                          r"0.001\).*--allow-mixed-config"):  # the settings that differ, by name
        run_fold(settings)
    assert not paths.events(1).exists() or ev.read_events(paths.events(1)) == []
    assert parse_sets(("d_model=32", "residual=false", "prior=ridge")) == {
        "d_model": 32, "residual": False, "prior": "ridge"}
    with pytest.raises(ConfigError, match="unknown flag 'd_modle'"):
        parse_sets(("d_modle=3",))


def test_a_second_process_of_the_same_fold_is_refused(data, tmp_path):
    from spectra_cv.runs.locks import file_lock

    paths = RunPaths(root=tmp_path)
    with file_lock(paths.fold_lock(1), "fold 1"):
        out = spectra_cv("fold", "--fold", "1", *fold_args(data, tmp_path), cwd=tmp_path, check=False)
    assert out.returncode == 1 and "fold 1 is held by another process" in out.stderr


def test_fold_number_from_the_environment(monkeypatch):
    from spectra_cv.cli.fold import fold_from_env

    for name in ("FOLD", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="which fold"):
        fold_from_env(None)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert fold_from_env(None) == 4
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    assert fold_from_env(None) == 3  # 0-based index
    monkeypatch.setenv("FOLD", "5")
    assert fold_from_env(None) == 5 and fold_from_env(1) == 1


# --- concurrency and the cv runner -----------------------------------------------------------------
@pytest.mark.slow  # real processes, 12-22 s: with the slow checks (make test-slow, in .ci/run)
def test_three_folds_at_once_with_one_coordinator(data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(APP)}
    env.pop("SPECTRA_CV_FAULT", None)
    coordinator = subprocess.Popen([sys.executable, "-m", "spectra_cv", "coordinator", "--follow", "--interval",
                                    "0.05", "--run-root", str(tmp_path)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # let it take the lock, so the folds leave the writing to it
        folds = [subprocess.Popen([sys.executable, "-m", "spectra_cv", "fold", "--fold", str(f),
                                   *fold_args(data, tmp_path)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for f in (1, 2, 3)]
        codes = [p.wait(timeout=300) for p in folds]
        assert codes == [0, 0, 0], [p.stderr.read()[-2000:] for p in folds]
        deadline = time.time() + 30
        paths = RunPaths(root=tmp_path)
        while time.time() < deadline:
            if paths.summary_csv.exists() and (read_summary(paths.summary_csv)["status"] == "completed").sum() == 3:
                break
            time.sleep(0.1)
    finally:
        coordinator.send_signal(signal.SIGTERM)
        coordinator.wait(timeout=30)
    assert coordinator.returncode == 0
    rows = read_summary(paths.summary_csv)
    assert rows["fold"].tolist() == [1, 2, 3] and set(rows["status"]) == {"completed"}
    for fold in (1, 2, 3):
        got = messages(paths.audit_log(fold))
        want = [m.replace("fold_01", f"fold_{fold:02d}") for m in EXPECTED_MESSAGES]
        assert len(got) == len(want) and all(g.startswith(w) for g, w in zip(got, want)), got
        assert paths.audit_log(fold).read_bytes() == render_audit(ev.read_events(paths.events(fold)))


@pytest.mark.slow  # real processes, 12-22 s: with the slow checks (make test-slow, in .ci/run)
def test_cv_records_a_killed_fold_goes_on_and_a_rerun_resumes_it(data, tmp_path):
    args = fold_args(data, tmp_path, epochs=2)
    out = spectra_cv("cv", "--folds", "1", "2", *args, cwd=tmp_path, fault="fold_01_training", check=False)
    assert out.returncode == 1 and "fold(s) 1 did not complete" in out.stderr
    paths = RunPaths(root=tmp_path)
    rows = read_summary(paths.summary_csv)
    assert rows["status"].tolist() == ["failed", "completed"]
    assert rows.loc[0, "error"] == "process killed by signal 9"
    assert messages(paths.audit_log(1))[-1] == "Fold failed: process killed by signal 9"
    out = spectra_cv("cv", "--folds", "1", "2", "--skip-existing", *args, cwd=tmp_path)
    assert "fold 1: completed" in out.stdout
    got = messages(paths.audit_log(1))
    assert "Retrying fold_01 after: Fold failed: process killed by signal 9" in got
    assert got.count("Launching training run") == 2 and got[-1] == "Fold completed"
    assert messages(paths.audit_log(2))[-1].startswith("Skipping fold_02")


def test_cv_fail_fast_stops_the_remaining_folds(data, tmp_path):
    out = spectra_cv("cv", "--folds", "1", "2", "--fail-fast", *fold_args(data, tmp_path, epochs=2),
                     cwd=tmp_path, fault="fold_01_training", check=False)
    assert out.returncode == 1
    assert not RunPaths(root=tmp_path).events(2).exists()  # fold 2 never started


def test_final_model_uses_the_folds_config_and_median_best_epoch(data, uninterrupted, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(uninterrupted, root)
    result = CliRunner().invoke(
        __import__("spectra_cv.cli", fromlist=["main"]).main,
        ["-q", "final", "--data-root", str(data / "spectra_for_fold"), "--metadata-dir", str(data / "metadata"),
         "--run-root", str(root)],
    )
    assert result.exit_code == 0, result.output
    paths = RunPaths(root=root)
    import json

    record = json.loads((paths.artifacts / "final_model.json").read_text())
    best = int(read_summary(paths.summary_csv).loc[0, "best_epoch"])
    assert record["epochs"] == best and record["fold_best_epochs"] == {"1": best}
    manifest = pd.read_csv(data / "spectra_for_fold" / "manifest.csv")
    assert record["spectra"] == len(manifest)  # every sample, the control included
    assert len(list(paths.final_denoised.rglob("*_denoised.npy"))) == len(manifest)
    assert messages(paths.final_log_dir / "auditing_manifest.log")[-1] == "Final model completed"

    # the corpus changed since: resuming the finished state would hand back the old model as new
    changed = tmp_path / "changed"
    shutil.copytree(data, changed)
    spectrum = changed / "spectra_for_fold" / manifest["relative_path"].iloc[0]
    np.save(spectrum, np.load(spectrum) * 1.01)
    final_ckpt = record["checkpoint"]
    before = (Path(final_ckpt).read_bytes(), (paths.artifacts / "final_model.json").read_text())
    args = ["-q", "final", "--data-root", str(changed / "spectra_for_fold"), "--metadata-dir",
            str(changed / "metadata"), "--run-root", str(root)]
    refused = CliRunner().invoke(__import__("spectra_cv.cli", fromlist=["main"]).main, args)
    assert refused.exit_code == 3, refused.output
    assert "the train spectra, the val spectra changed" in refused.output and "--force" in refused.output
    assert (Path(final_ckpt).read_bytes(), (paths.artifacts / "final_model.json").read_text()) == before
    assert messages(paths.final_log_dir / "auditing_manifest.log")[-1].startswith("Final model refused")
    forced = CliRunner().invoke(__import__("spectra_cv.cli", fromlist=["main"]).main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert Path(final_ckpt).read_bytes() != before[0]


def test_cv_option_errors_are_clear_and_start_nothing(tmp_path):
    from spectra_cv.cli import main

    runner = CliRunner()
    out = runner.invoke(main, ["cv", "--gpus", "0,1", "--device", "cpu", "--run-root", str(tmp_path)])
    assert out.exit_code == 1 and "--device cpu conflicts with --gpus 0,1" in out.output
    out = runner.invoke(main, ["cv", "--gpus", "0,0", "--run-root", str(tmp_path)])
    assert out.exit_code == 1 and "lists a GPU twice" in out.output
    out = runner.invoke(main, ["cv", "--set", "d_modle=3", "--run-root", str(tmp_path)])
    assert out.exit_code == 1 and "unknown flag 'd_modle'" in out.output
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("command", [["fold", "--fold", "1"], ["cv"]])
@pytest.mark.parametrize("bad, says", [
    (["--device", "tpu"], "'tpu' is not a device; use auto, cpu, cuda or cuda:N"),
    (["--infer-batch-size", "0"], "'--infer-batch-size': 0 is not in the range x>=1"),
    (["--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    (["--set", "seed=-1"], "--seed must be an integer in [0, 2**63)"),
    (["--device", "cuda"], "CUDA is not available here"),
])
def test_bad_options_are_refused_before_any_work(data, tmp_path, command, bad, says):
    """Options that would fail after training (a denoising batch of 0) or after the manifests (a GPU
    that is not there) are refused first: a clear error, and nothing written under the run root."""
    from spectra_cv.cli import main

    if bad == ["--device", "cuda"] and __import__("torch").cuda.is_available():
        pytest.skip("this host has CUDA")
    out = CliRunner().invoke(main, [*command, *fold_args(data, tmp_path)[:-2], "--run-root", str(tmp_path), *bad])
    assert out.exit_code in (1, 2) and says in out.output, out.output
    assert "Traceback" not in out.output and list(tmp_path.iterdir()) == []


def test_a_second_cv_on_a_held_run_root_is_refused_or_waits(data, uninterrupted, tmp_path):
    """While a cv run holds the run root, another cv says who holds it and since when, exits 3 and
    writes nothing; with --wait it starts once the first has ended (here: finds fold 1 done)."""
    from spectra_cv.runs.cv import _hold_run_root

    root = tmp_path / "run"
    shutil.copytree(uninterrupted, root, ignore=shutil.ignore_patterns("*.lock"))
    paths = RunPaths(root=root)
    args = ["cv", "--folds", "1", "--no-live", *fold_args(data, root)]
    with _hold_run_root(paths, wait=False):
        before = {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*")}
        in_process = [*args[:-1], str(root)]  # "--run-root ." is the subprocess's cwd; flock is per open file
        refused = CliRunner().invoke(__import__("spectra_cv.cli", fromlist=["main"]).main, in_process)
        assert refused.exit_code == 3, refused.output
        assert "another cross-validation run holds this run root (pid " in refused.output
        assert f"pid {os.getpid()} on " in refused.output and "--wait" in refused.output
        assert {p.relative_to(root): p.stat().st_mtime_ns for p in root.rglob("*")} == before
        events_before = paths.events(1).read_bytes()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(APP)}
        waiting = subprocess.Popen([sys.executable, "-m", "spectra_cv", *args, "--wait"], cwd=root, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None and paths.events(1).read_bytes() == events_before  # still waiting
    out, err = waiting.communicate(timeout=240)
    assert waiting.returncode == 0, err[-2000:]
    assert "waiting for it to end (--wait)" in err and "Skipping fold_01: already completed" in \
        paths.audit_log(1).read_text()


def test_a_mistyped_run_root_is_not_created(data, tmp_path):
    from spectra_cv.cli import main

    typo = tmp_path / "runs_typo" / "experiment"
    for command in (["fold", "--fold", "1"], ["cv"]):
        out = CliRunner().invoke(main, [*command, *fold_args(data, tmp_path)[:-2], "--run-root", str(typo)])
        assert out.exit_code == 2 and "neither it nor its parent" in out.output and "a typo?" in out.output
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "runs").mkdir()  # one new folder under an existing one is a new run root: accepted
    out = CliRunner().invoke(main, ["fold", "--fold", "1", *fold_args(data, tmp_path)[:-2],
                                    "--run-root", str(tmp_path / "runs" / "new"), "--device", "tpu"])
    assert "neither it nor its parent" not in out.output and "'tpu' is not a device" in out.output


def test_events_that_lost_their_end_are_named_and_the_audit_log_kept(tmp_path):
    """An event file cut short (or restored from an older copy) behind its audit log: the coordinator
    names the event file and what it lacks instead of calling the audit log edited, and leaves the log."""
    paths, audit, lines = _two_synced_folds(tmp_path)
    paths.events(2).write_bytes(b"".join(lines[:3]))
    result = Coordinator(paths).sync()
    assert len(result.errors) == 1 and f"{paths.events(2)}: holds 3 audited record(s)" in result.errors[0]
    assert "lost its end" in result.errors[0] and "edited by hand" not in result.errors[0]
    assert paths.audit_log(2).read_bytes() == audit
    assert read_summary(paths.summary_csv)["fold"].tolist() == [1, 2]


def test_names_that_are_not_utf8_pass_through_the_summary_and_audit_log_as_their_bytes(tmp_path):
    """A data root whose name is not valid UTF-8 (Python reads it as surrogates): the summary and the
    audit log hold the name's own bytes, and the summary reads back to the same string."""
    paths = RunPaths(root=tmp_path)
    odd = os.fsdecode(b"/data/d\xe9ta")
    writer = ev.EventWriter(paths.events(1), 1)
    writer.emit(ev.START, f"Starting fold_01 on {odd}", config_hash="a" * 64, data_root=odd, data_digest="d")
    Coordinator(paths).sync()
    assert b"/data/d\xe9ta" in paths.audit_log(1).read_bytes()
    assert b"/data/d\xe9ta" in paths.summary_csv.read_bytes()
    assert odd in set(read_summary(paths.summary_csv).astype(str).to_numpy().ravel())


@pytest.mark.slow  # ~11 s: a fold of its own (make test-slow, in .ci/run)
def test_a_fold_scores_the_samples_its_config_leaves_out_of_every_role(data, tmp_path):
    """Leave-samples-out: with a folds.json that keeps one sample out of every role, the fold scores its
    model and every baseline on that sample's spectra (``unseen``, per group too), and the report gives
    them their own section and paired verdict; the test split is still the fold's own."""
    from spectra_cv.folds.manifests import leave_samples_out

    manifest = pd.read_csv(data / "spectra_for_fold" / "manifest.csv", dtype=str, keep_default_na=False)
    treatment = sorted(manifest["treatment"].unique())[0]
    sample = sorted(manifest.loc[manifest["treatment"] == treatment, "sample"].unique())[-1]
    config = tmp_path / "folds.json"
    config.write_text(json.dumps(leave_samples_out(manifest, [f"{treatment}/{sample}"])))
    root = tmp_path / "run"
    spectra_cv("fold", "--fold", "1", *fold_args(data, root), "--fold-config", str(config), cwd=root)
    paths = RunPaths(root=root)
    splits = json.loads(paths.metrics_json(1).read_text())["splits"]
    held = manifest[(manifest["treatment"] == treatment) & (manifest["sample"] == sample)]
    assert splits["unseen"]["model"]["loo"]["n_spectra"] == len(held)
    assert set(splits["unseen"]["ridge_wiener"]["per_group"]["psnr"]) == set(held["group_id"])
    assert not set(splits["test"]["model"]["per_group"]["psnr"]) & set(held["group_id"])
    spectra_cv("report", "--run-root", ".", "--no-plots", cwd=root)
    text = paths.report_md.read_text()
    assert "## Samples never seen (leave-samples-out)" in text and "### Samples never seen: model −" in text
