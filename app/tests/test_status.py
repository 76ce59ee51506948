"""A run you can watch: epoch progress and ETA, every fold's state from its events, the live lines."""

from __future__ import annotations

import io
import math

import pytest
from click.testing import CliRunner

from spectra_cv.cli import main
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs.locks import file_lock
from spectra_cv.runs.status import LiveLines, fold_state, format_state, run_states
from spectra_cv.train.progress import epoch_progress, format_duration


def _progress(**overrides):
    values = dict(epoch=4, epochs=60, elapsed_s=400.0, time_budget_s=0.0, stopped=False, bad_validations=0,
                  patience=10, val_every=1, validated=True)
    return epoch_progress(**{**values, **overrides})


def test_eta_counts_the_epochs_left_at_the_mean_epoch_time():
    p = _progress()
    assert p.eta_s == pytest.approx(56 * 100.0) and p.earliest_stop_epoch == 14


def test_eta_respects_the_time_budget_and_the_epoch_that_crosses_it():
    # 840 s budget, 400 s spent at 100 s/epoch: 4.4 epochs of budget left, the fifth crosses it and completes
    p = _progress(time_budget_s=840.0)
    assert p.eta_s == pytest.approx(5 * 100.0)
    assert _progress(time_budget_s=840.0, epochs=6).eta_s == pytest.approx(2 * 100.0)  # max epochs first


def test_eta_is_zero_when_the_epoch_ended_the_run_and_early_stopping_bounds_the_soonest_end():
    assert _progress(stopped=True).eta_s == 0.0 and _progress(epoch=60).eta_s == 0.0
    assert _progress(bad_validations=7, val_every=2).earliest_stop_epoch == 4 + 3 * 2
    assert _progress(bad_validations=0, patience=100).earliest_stop_epoch == 60  # never past the last epoch
    assert _progress(validated=False).earliest_stop_epoch is None


def test_durations_read_as_people_write_them():
    assert [format_duration(s) for s in (7, 125, 3725, None, math.inf)] == ["7s", "2m05s", "1h02m", "?", "?"]


def _started(paths: RunPaths, fold: int) -> ev.EventWriter:
    writer = ev.EventWriter(paths.events(fold), fold)
    writer.emit(ev.START, f"Starting fold_{fold:02d}", config_hash="h", config={}, preset="cpu_quick")
    writer.emit(ev.MANIFESTS, "Generating manifests")
    writer.emit(ev.MANIFESTS_DONE, "Generated manifests: …")
    return writer


def _epoch(writer: ev.EventWriter, epoch: int, eta_s: float = 300.0, best: float = 55.1) -> None:
    writer.emit(ev.EPOCH, None, epoch=epoch, epochs=60, elapsed_s=100.0 * epoch, eta_s=eta_s,
                earliest_stop_epoch=epoch + 10, train_loss=0.01, lr=1e-3, val_loss=0.01, val_psnr=best,
                val_sam=0.29, best_epoch=epoch, best_val_psnr=best, best_val_sam=0.29, examples_per_sec=9.0,
                stop=False)


def test_a_training_fold_shows_its_epoch_best_val_and_an_eta_counted_from_its_last_epoch(tmp_path):
    paths = RunPaths(root=tmp_path)
    writer = _started(paths, 2)
    writer.emit(ev.TRAIN, "Launching training run")
    _epoch(writer, 1, best=54.9)
    _epoch(writer, 2, eta_s=300.0, best=55.1)
    last = ev.read_events(paths.events(2))
    now = ev.timestamp(last[-1].time) + 100.0  # 100 s after the last epoch event
    state = fold_state(2, last, alive=True, now=now)
    assert (state.state, state.stage, state.epoch, state.epochs) == ("running", "training", 2, 60)
    assert state.best_val_psnr == 55.1 and state.eta_s == pytest.approx(200.0)
    assert format_state(state) == "fold 2  training  epoch 2/60  best val 55.10 dB  elapsed 3m20s  ETA ≤ 3m20s"
    dead = fold_state(2, last, alive=False, now=now)  # nobody holds the lock: killed
    assert dead.state == "interrupted" and dead.finished and "rerun to resume" in dead.stage and dead.eta_s is None


def _trained(paths: RunPaths, fold: int, epochs_run: int, val_psnr: float) -> ev.EventWriter:
    """A fold that trained (one epoch event, then its training's outcome)."""
    writer = _started(paths, fold)
    writer.emit(ev.TRAIN, "Launching training run")
    _epoch(writer, 1)
    writer.emit(ev.TRAIN_DONE, "Training completed successfully", epochs_run=epochs_run, val_psnr=val_psnr,
                best_epoch=1)
    return writer


def test_stages_after_training_and_the_outcomes(tmp_path):
    paths = RunPaths(root=tmp_path)
    writer = _trained(paths, 1, epochs_run=1, val_psnr=55.1)
    writer.emit(ev.INFER, "Starting inference for val -> …", split="val")
    assert fold_state(1, writer.events, alive=True).stage == "denoising val"
    writer.emit(ev.INFER_DONE, "Completed inference for test", split="test")
    assert fold_state(1, writer.events, alive=True).stage == "evaluating"
    writer.emit(ev.EVALUATED, "Test metrics: …", test={"model": {"psnr_mean": 55.48},
                                                      "ridge_wiener": {"psnr_mean": 55.32}})
    writer.emit(ev.COMPLETED, "Fold completed", total_seconds=1250.0)
    done = fold_state(1, writer.events, alive=False)
    assert done.state == "completed" and done.finished
    assert format_state(done) == "fold 1  completed  test PSNR 55.48 dB (ridge+Wiener 55.32 dB)  in 20m50s"
    failing = _started(paths, 3)
    failing.emit(ev.FAILED, "Training failed: boom", stage="train", error="RuntimeError: boom")
    failed = fold_state(3, failing.events, alive=False)
    assert failed.state == "failed" and format_state(failed) == "fold 3  failed in train  Training failed: boom"


def test_run_states_reads_the_locks_and_lists_planned_folds_without_events_as_pending(tmp_path):
    paths = RunPaths(root=tmp_path)
    _started(paths, 1)
    with file_lock(paths.fold_lock(1), "fold 1"):
        states = run_states(paths, [1, 4])
        assert [(s.fold, s.state) for s in states] == [(1, "running"), (4, "pending")]
    assert run_states(paths)[0].state == "interrupted"


def test_live_lines_redraw_in_place_on_a_terminal_and_print_changes_otherwise(tmp_path):
    paths = RunPaths(root=tmp_path)
    writer = _started(paths, 1)
    writer.emit(ev.TRAIN, "Launching training run")
    _epoch(writer, 1)
    training = [fold_state(1, writer.events, alive=True), fold_state(2, [], alive=False)]
    plain = io.StringIO()
    live = LiveLines(plain, tty=False, plain_every_s=60.0)
    live.show(training, now=0.0)
    live.show(training, now=30.0)  # same stage within a minute: nothing new
    assert plain.getvalue().splitlines() == [format_state(training[0])]  # the pending fold 2 is not shown
    live.show(training, now=61.0)  # a minute later while training: a fresh line
    _epoch(writer, 2)
    writer.emit(ev.TRAIN_DONE, "Training completed successfully", epochs_run=2, val_psnr=55.1)
    live.show([fold_state(1, writer.events, alive=True)], now=62.0)  # a new stage: at once
    lines = plain.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("fold 1  trained") and "\x1b" not in plain.getvalue()
    tty = io.StringIO()
    drawn = LiveLines(tty, tty=True)
    drawn.show(training)
    drawn.show(training)
    first, second = tty.getvalue().split("\x1b[2F\x1b[J")
    assert first == second and first.count("\n") == 2


def test_status_command_reads_a_finished_fold_and_watch_returns_once_nothing_runs(uninterrupted):
    runner = CliRunner()
    out = runner.invoke(main, ["status", "--run-root", str(uninterrupted)])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("fold 1  completed  test PSNR ") and "(ridge+Wiener " in out.output
    watched = runner.invoke(main, ["status", "--run-root", str(uninterrupted), "--watch", "--interval", "0.1"])
    assert watched.exit_code == 0 and watched.output.count("fold 1  completed") == 1  # plain: printed once
    empty = runner.invoke(main, ["status", "--run-root", str(uninterrupted / "nowhere")])
    assert empty.exit_code != 0  # a run root that does not exist is an error, not "no folds"


def test_a_fold_run_emits_one_epoch_event_per_epoch_with_its_progress(uninterrupted):
    events = ev.read_events(RunPaths(root=uninterrupted).events(1))
    epochs = [e.data for e in events if e.type == ev.EPOCH]
    assert [d["epoch"] for d in epochs] == [1, 2, 3, 4] and all(d["epochs"] == 4 for d in epochs)
    assert epochs[-1]["eta_s"] == 0.0 and all(d["eta_s"] > 0 for d in epochs[:-1])
    assert all(e.message is None for e in events if e.type == ev.EPOCH)  # no audit lines
    trained = next(e for e in events if e.type == ev.TRAIN_DONE).data
    assert epochs[-1]["best_epoch"] == trained["best_epoch"]
    assert epochs[-1]["best_val_psnr"] == pytest.approx(trained["val_psnr"], abs=1e-3)
    assert [d["elapsed_s"] for d in epochs] == sorted(d["elapsed_s"] for d in epochs)


def test_after_training_a_line_says_what_was_kept_and_is_not_repeated(tmp_path):
    paths = RunPaths(root=tmp_path)
    writer = _trained(paths, 1, epochs_run=7, val_psnr=55.14)
    writer.emit(ev.INFER, "Starting inference for test -> …", split="test")
    state = fold_state(1, writer.events, alive=True)
    assert format_state(state) == "fold 1  denoising test  7 epochs, best val 55.14 dB"
    plain = io.StringIO()
    live = LiveLines(plain, tty=False, plain_every_s=60.0)
    for now in (0.0, 61.0, 200.0):  # not training: printed once, not every minute
        live.show([state], now=now)
    assert plain.getvalue().splitlines() == [format_state(state)]
