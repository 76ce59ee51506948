"""The rerun rules and what they protect: rerun = resume, nothing finished deleted before its
replacement exists, the data fingerprint, two configs racing, liveness, safe loading, locks.

Every kill is a real ``SIGKILL`` of a real ``spectra-cv fold`` process: at ``SPECTRA_CV_FAULT``
points, and at random moments of a whole run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spectra_cv.errors import EXIT_REFUSED
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs import locks, mounts
from spectra_cv.runs.coordinator import Coordinator
from spectra_cv.runs.summary import read_summary

from runs_support import APP, fold_args, messages, spectra_cv, summary_without_times  # noqa: E402


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(path: Path) -> dict[str, str]:
    """relative path → sha256 of every file under ``path``."""
    return {p.relative_to(path).as_posix(): _digest(p) for p in sorted(path.rglob("*")) if p.is_file()}


def _finished(root: Path) -> dict[str, object]:
    """Fold 1's finished result as found on disk: checkpoint, record, metrics, denoised files, manifests."""
    paths = RunPaths(root=root)
    return {
        "checkpoint": _digest(paths.best_checkpoint(1)), "record": paths.completion_record(1).read_text(),
        "metrics": paths.metrics_json(1).read_text(), "denoised": _tree(root / "denoised" / "folds" / "fold_01"),
        "manifests": _tree(paths.manifests(1)),
    }


def _assert_consistent(root: Path) -> None:
    """The live result agrees with itself: record, metrics and every denoise record name the checkpoint."""
    paths = RunPaths(root=root)
    sha = _digest(paths.best_checkpoint(1))
    assert json.loads(paths.completion_record(1).read_text())["checkpoint_sha256"] == sha
    assert json.loads(paths.metrics_json(1).read_text())["checkpoint_sha256"] == sha
    for role in ("train", "val", "test"):
        record = json.loads((paths.denoised(1, role) / "denoise_record.json").read_text())
        assert record["checkpoint_sha256"] == sha
        assert record["rows"] == len(pd.read_csv(paths.manifest(1, role)))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# --- rerun = resume ---------------------------------------------------------------------------------
def test_the_same_command_again_skips_a_completed_fold(data, uninterrupted, tmp_path):
    root = _copy(uninterrupted, tmp_path / "run")
    before = _finished(root)
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root), cwd=root)
    assert "[fold 1] skipped" in out.stdout
    script = subprocess.run([sys.executable, str(APP.parent / "scripts" / "run_cross_validation.py"), "--folds", "1",
                             "--skip-existing", *fold_args(data, root)], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(APP)}, timeout=120)
    assert script.returncode == 0, script.stderr
    got = messages(RunPaths(root=root).audit_log(1))
    assert got.count("Fold completed") == 1 and sum(m.startswith("Skipping fold_01") for m in got) == 2
    assert _finished(root) == before


def test_a_changed_config_is_refused_and_force_retrains_beside_the_finished_result(data, uninterrupted, tmp_path):
    root = _copy(uninterrupted, tmp_path / "run")
    paths = RunPaths(root=root)
    before = _finished(root)
    events_before = paths.events(1).read_bytes()
    args = fold_args(data, root, epochs=3)
    out = spectra_cv("fold", "--fold", "1", *args, cwd=root, check=False)
    assert out.returncode == EXIT_REFUSED
    assert "fold_01 completed, but the config differs (train.epochs 4 → 3)" in out.stderr and "--force" in out.stderr
    assert paths.events(1).read_bytes() == events_before and _finished(root) == before

    # forced, killed in its second epoch: the finished result is all there and consistent
    out = spectra_cv("fold", "--fold", "1", *args, "--force", cwd=root, fault="train_epoch_2", check=False)
    assert out.returncode == -signal.SIGKILL
    assert _finished(root) == before
    _assert_consistent(root)
    assert (paths.checkpoint_dir(1) / ".retrain" / "last_state.pt").is_file()
    spectra_cv("coordinator", "--once", "--run-root", ".", cwd=root)
    row = read_summary(paths.summary_csv).iloc[0]
    assert row["status"] == "completed" and row["retrain"] == "interrupted"
    assert row["checkpoint_sha256"] == before["checkpoint"]

    # the same command again resumes the retrain; killed in the middle of its swap …
    out = spectra_cv("fold", "--fold", "1", *args, "--force", cwd=root, fault="swap_midway", check=False)
    assert out.returncode == -signal.SIGKILL
    assert "resuming after epoch 1" in (paths.log_dir(1) / ".retrain" / "train.log").read_text() \
        or "resuming after epoch 1" in paths.train_log(1).read_text()
    spectra_cv("coordinator", "--once", "--run-root", ".", cwd=root)
    assert read_summary(paths.summary_csv).loc[0, "retrain"].startswith("swap interrupted")
    # … rerun even while the data cannot be read: the swap needs none, so it is finished first …
    broken = _copy(data, tmp_path / "broken")
    (broken / "spectra_for_fold" / "manifest.csv").unlink()
    out = spectra_cv("fold", "--fold", "1", *fold_args(broken, root, epochs=3), cwd=root, check=False)
    assert out.returncode == 1 and "manifest not found" in out.stderr
    _assert_consistent(root)
    # … and once more with the data (no --force needed): nothing is trained again
    out = spectra_cv("fold", "--fold", "1", *args, cwd=root)
    assert "[fold 1] skipped" in out.stdout
    _assert_consistent(root)
    after = _finished(root)
    assert after["checkpoint"] != before["checkpoint"] and after["metrics"] != before["metrics"]
    assert not any(p.name.endswith((".retrain", ".replaced")) for p in root.rglob("*"))  # no leftovers
    got = messages(paths.audit_log(1))
    assert got.count("Starting fold_01") == 2 and got.count("Fold completed") == 2
    assert "Retraining fold_01 (--force: the config differs (train.epochs 4 → 3))" in got[got.index("Fold completed") + 2]
    assert any(m.startswith("Swapping the retrained fold_01 in") for m in got)
    assert got[-2] == "Fold completed" and got[-1].startswith("Skipping fold_01")
    assert "Launching training run" not in got[got.index(next(m for m in got if m.startswith("Swapping"))):]
    row = read_summary(paths.summary_csv).iloc[0]
    assert row["status"] == "completed" and pd.isna(row["retrain"]) and row["epochs_run"] == 3


def test_a_finished_result_whose_events_were_removed_is_kept_until_replaced(data, uninterrupted, tmp_path):
    root = _copy(uninterrupted, tmp_path / "run")
    paths = RunPaths(root=root)
    before = _finished(root)
    shutil.rmtree(paths.log_dir(1))  # what an old error message once suggested
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root), cwd=root, fault="train_epoch_2", check=False)
    assert out.returncode == -signal.SIGKILL
    assert _finished(root) == before  # a run that starts with no events still works beside what it finds
    got = [e.message for e in ev.read_events(paths.events(1)) if e.message]
    assert got[:2] == ["Starting fold_01", "Starting fold_01 beside a finished result found without its events; "
                                           "that result stays until this run completes"]


# --- the data fingerprint ---------------------------------------------------------------------------
def _killed_in_training(data: Path, base: Path) -> tuple[Path, Path]:
    """(a copy of the data, a run root) where fold 1 was killed in its second epoch."""
    own = _copy(data, base / "data")
    root = base / "run"
    out = spectra_cv("fold", "--fold", "1", *fold_args(own, root, epochs=3), cwd=root, fault="train_epoch_2",
                     check=False)
    assert out.returncode == -signal.SIGKILL
    return own, root


def test_data_edited_between_kill_and_resume_is_refused_naming_the_file(data, tmp_path):
    data, root = _killed_in_training(data, tmp_path)
    paths = RunPaths(root=root)
    rel = pd.read_csv(paths.manifest(1, "train"))["relative_path"].iat[5]
    spectrum = np.load(data / "spectra_for_fold" / rel)
    np.save(data / "spectra_for_fold" / rel, spectrum * 0.99)
    events_before = paths.events(1).read_bytes()
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root, epochs=3), cwd=root, check=False)
    assert out.returncode == EXIT_REFUSED
    assert f"fold_01 has an unfinished run, but the data changed since it started: {rel} changed" in out.stderr
    assert paths.events(1).read_bytes() == events_before
    assert (paths.checkpoint_dir(1) / "last_state.pt").is_file()  # the unfinished run is still resumable
    assert read_summary(paths.summary_csv).loc[0, "status"] == "interrupted"
    np.save(data / "spectra_for_fold" / rel, spectrum)  # put it back: the run resumes
    spectra_cv("fold", "--fold", "1", *fold_args(data, root, epochs=3), cwd=root)
    assert "resuming after epoch 1" in paths.train_log(1).read_text()

    # completed now; edit the data again: the rerun refuses, and the report says what changed
    np.save(data / "spectra_for_fold" / rel, spectrum * 0.98)
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root, epochs=3), cwd=root, check=False)
    assert out.returncode == EXIT_REFUSED and f"the data changed since it ran: {rel} changed" in out.stderr
    spectra_cv("report", "--no-plots", "--run-root", ".", cwd=root)
    assert f"fold 1: the data changed since it ran: {rel} changed" in paths.report_md.read_text()
    _assert_consistent(root)  # (--force would retrain it: see the config test above)


def test_a_tampered_last_state_is_refused_without_running_its_code(data, tmp_path):
    data, root = _killed_in_training(data, tmp_path)
    paths = RunPaths(root=root)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    state = paths.checkpoint_dir(1) / "last_state.pt"
    torch.save({"config_hash": "x", "model": Payload()}, state)
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root, epochs=3), cwd=root, check=False)
    assert out.returncode == 1
    assert not marker.exists()  # the payload never ran
    assert f"{Path('checkpoints/Track_H_fold_01/last_state.pt')}: refused to load the resumable state" in out.stderr
    assert "Delete" in out.stderr
    got = messages(paths.audit_log(1))
    assert got[-1].startswith("Training failed: ") and "refused to load the resumable state" in got[-1]


# --- the row contract in the fold pipeline, and a broken data root --------------------------------------
def test_rows_outside_the_data_root_or_colliding_are_refused_before_anything_is_written(data, tmp_path):
    own = _copy(data, tmp_path / "data")
    root = own / "spectra_for_fold"
    frame = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    first = frame["relative_path"].iat[0]
    twin = first.replace(".npy", ".npz")
    np.savez(root / twin, reflectance=np.load(root / first))
    (own / "escape.npy").write_bytes((root / first).read_bytes())
    bad = pd.concat([frame, frame.iloc[[0]].assign(relative_path="../escape.npy"),
                     frame.iloc[[0]].assign(relative_path=twin)], ignore_index=True)
    bad.to_csv(root / "manifest.csv", index=False)
    run = tmp_path / "run"
    out = spectra_cv("fold", "--fold", "1", *fold_args(own, run), cwd=run, check=False)
    assert out.returncode == 1
    assert f"row {len(frame) + 1}: ../escape.npy: contains '..'" in out.stderr
    assert f"would all be denoised to {first.replace('.npy', '_denoised.npy')}" in out.stderr
    for folder in ("manifests", "checkpoints", "denoised", "artifacts"):
        assert not (run / folder).exists(), folder


def test_a_rerun_against_a_broken_data_root_keeps_the_finished_result(data, uninterrupted, tmp_path):
    root = _copy(uninterrupted, tmp_path / "run")
    own = _copy(data, tmp_path / "data")
    before = _finished(root)
    (own / "spectra_for_fold" / "manifest.csv").unlink()
    for extra in ((), ("--force",)):
        out = spectra_cv("fold", "--fold", "1", *fold_args(own, root), *extra, cwd=root, check=False)
        assert out.returncode == 1 and "manifest.csv: manifest not found" in out.stderr
        assert _finished(root) == before


# --- two configs racing, liveness ----------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(APP)}
    env.pop("SPECTRA_CV_FAULT", None)
    return env


def test_two_folds_started_at_once_with_different_configs_one_is_refused(data, tmp_path):
    base = fold_args(data, tmp_path, epochs=2)
    procs = [subprocess.Popen([sys.executable, "-m", "spectra_cv", "fold", "--fold", str(fold), *base,
                               "--set", f"d_state={state}"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for fold, state in ((1, 4), (2, 3))]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, EXIT_REFUSED], results
    refused = next(err for code, err in results if code == EXIT_REFUSED)
    assert "--allow-mixed-config" in refused
    assert "running now in this run root" in refused or "differs from completed" in refused  # (if it waited that long)


def test_a_killed_fold_shows_as_interrupted_and_a_live_one_as_running(tmp_path):
    paths = RunPaths(root=tmp_path)
    writer = ev.EventWriter(paths.events(2), 2)
    writer.emit(ev.START, "Starting fold_02", config_hash="h", config={}, model="mamba_tiny_uv")
    writer.emit(ev.TRAIN, "Launching training run")
    Coordinator(paths).sync()
    assert read_summary(paths.summary_csv).loc[0, "status"] == "interrupted"  # nobody holds its lock
    with locks.file_lock(paths.fold_lock(2), "fold 2"):
        assert locks.is_held(paths.fold_lock(2))
        Coordinator(paths).sync()
        assert read_summary(paths.summary_csv).loc[0, "status"] == "running"
    assert not locks.is_held(paths.fold_lock(2))
    assert paths.audit_log(2).read_text().count("\n") == 2  # the audit log only renders events


def test_a_filesystem_without_flock_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRA_CV_LOCK", "flock")  # auto falls back to a lease file (tests/test_locks.py)
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_locks)
    with pytest.raises(locks.LockUnsupported) as err:
        with locks.file_lock(tmp_path / "x.lock", "fold 1"):
            pass
    point, kind = mounts.mount_of(tmp_path)
    text = str(err.value)
    assert f"mounted at {point} (type {kind}) does not support file locks" in text
    assert "nolock" in text and "local disk" in text


# --- kill -9 at random moments ---------------------------------------------------------------------------
@pytest.mark.slow  # real processes, 12-22 s: with the slow checks (make test-slow, in .ci/run)
def test_kill_9_at_random_moments_then_rerun_gives_the_uninterrupted_result(data, uninterrupted, tmp_path):
    seed = int(os.environ.get("SPECTRA_CV_KILL_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    args = [sys.executable, "-m", "spectra_cv", "fold", "--fold", "1", *fold_args(data, tmp_path)]
    kills = []
    # a whole run: the interpreter's start (~2 s) and the uninterrupted fold's own time, so the kills land
    # anywhere from the manifests to the end however fast the fold has become; the first one always inside
    whole = 2.0 + float(read_summary(RunPaths(root=uninterrupted).summary_csv).loc[0, "total_seconds"])
    for attempt in range(3):
        proc = subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(1.0, 0.8 * whole if attempt == 0 else whole)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append(round(delay, 2))
    assert kills, f"seed {seed}: every run ended before its kill"  # the first delay is shorter than a whole run
    spectra_cv("fold", "--fold", "1", *fold_args(data, tmp_path), cwd=tmp_path)
    spectra_cv("coordinator", "--once", "--run-root", ".", cwd=tmp_path)
    where = f"(seed {seed}; killed after {kills} s; rerun with SPECTRA_CV_KILL_SEED={seed})"
    ref = RunPaths(root=uninterrupted)
    got = [m for m in messages(RunPaths(root=tmp_path).audit_log(1)) if not m.startswith("Skipping fold_01")]
    assert got == messages(ref.audit_log(1)), where
    pd.testing.assert_frame_equal(summary_without_times(tmp_path), summary_without_times(uninterrupted), obj=where)
    _assert_consistent(tmp_path)
    for role in ("train", "val", "test"):  # every denoised file, as the uninterrupted run wrote it
        assert _tree(RunPaths(root=tmp_path).denoised(1, role)).keys() == _tree(ref.denoised(1, role)).keys(), where


def test_temp_files_a_killed_writer_left_are_removed_by_the_next_run_of_that_fold(data, uninterrupted, tmp_path):
    root = _copy(uninterrupted, tmp_path / "run")
    paths = RunPaths(root=root)
    before = _finished(root)
    mine = [paths.denoised(1, "test") / "treatment_1" / ".rep_000_denoised.npy.k1ll3d0a.tmp",  # mid-denoise
            paths.checkpoint_dir(1) / ".last_state.pt.k1ll3d0b.tmp",  # mid-checkpoint
            paths.artifacts / f".{paths.metrics_json(1).name}.k1ll3d0c.tmp"]
    theirs = [paths.artifacts / f".{paths.metrics_json(2).name}.k1ll3d0d.tmp",  # fold 2's writer, maybe in flight
              paths.log_dir(1) / f".{paths.audit_log(1).name}.k1ll3d0e.tmp"]  # the coordinator's
    for leftover in (*mine, *theirs):
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"half a write")
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root), cwd=root)
    assert "[fold 1] skipped" in out.stdout
    assert [p.exists() for p in mine] == [False] * 3 and all(p.exists() for p in theirs)
    assert _finished(root) == before


# --- the rules themselves (pure: events in, decision out) --------------------------------------------------
def _events(*runs: tuple[str, ...], config_hash: str = "h1", digest: str = "d1") -> list[ev.Event]:
    """Runs as tuples of event types (the first is always a start; "staged" marks a retrain)."""
    out: list[ev.Event] = []
    for run in runs:
        staged = run[0] == "staged"
        for type_ in (ev.START, *run[1:]):
            data = {"config_hash": config_hash, "config": {"train": {"lr": 0.001}}, "data_digest": digest,
                    "staged": staged} if type_ == ev.START else {}
            out.append(ev.Event(seq=len(out), time="2026-12-01T00:00:00", fold=1, type=type_, data=data))
    return out


def _decide(events: list[ev.Event], force: bool = False, data: str | None = None, intact: bool = True):
    from spectra_cv.runs import rerun

    return rerun.decide(events, tag="fold_01", config_hash="h1", config={"train": {"lr": 0.001}},
                        data_change=lambda run: data, completion_problem=lambda: None if intact else "x is missing",
                        force=force)


def test_the_rerun_rules():
    from spectra_cv.errors import FoldRefused
    from spectra_cv.runs import rerun

    done = ("start", ev.COMPLETED)
    assert _decide([]).action == rerun.START
    assert _decide(_events(done)).action == rerun.SKIP
    assert _decide(_events(done), force=True).action == rerun.SKIP  # nothing differs: a forced campaign resumes
    assert _decide(_events(done), intact=False).staged  # a broken finished result is retrained beside itself
    with pytest.raises(FoldRefused, match=r"completed, but the config differs \(train.lr 0.002 → 0.001\).*--force"):
        _decide([ev.Event(0, "t", 1, ev.START, data={"config_hash": "h2", "config": {"train": {"lr": 0.002}}}),
                 ev.Event(1, "t", 1, ev.COMPLETED)])
    with pytest.raises(FoldRefused, match="the data changed since it ran: a.npy changed"):
        _decide(_events(done), data="a.npy changed")
    assert _decide(_events(("start", ev.TRAIN))).action == rerun.RESUME
    retry = _decide(_events(("start", ev.TRAIN, ev.FAILED)))
    assert retry.action == rerun.RETRY and retry.after == 2
    with pytest.raises(FoldRefused, match="unfinished run, but the data changed since it started"):
        _decide(_events(("start", ev.TRAIN)), data="a.npy changed")
    fresh = _decide(_events(("start", ev.TRAIN)), data="a.npy changed", force=True)
    assert fresh.action == rerun.START and not fresh.staged  # nothing finished to keep
    beside = _decide(_events(done, ("staged", ev.TRAIN)), data="a.npy changed", force=True)
    assert beside.action == rerun.RETRAIN and beside.staged  # the finished result is kept
    resumed = _decide(_events(done, ("staged", ev.TRAIN)))
    assert resumed.action == rerun.RESUME and resumed.staged
    other = [*_events(done), ev.Event(2, "t", 1, ev.START, data={"config_hash": "h2", "config": {}, "staged": True})]
    kept = _decide(other)  # back to the finished result's settings: it stands, the retrain waits
    assert kept.action == rerun.SKIP and "left as it is" in kept.reason
    assert _decide(_events(done, ("staged", ev.TRAIN, ev.SWAP))).action == rerun.FINISH_SWAP
    assert rerun.finished_run(_events(done, ("staged", ev.TRAIN)))[0].seq == 0
    assert rerun.finished_run(_events(done, ("start", ev.TRAIN))) is None  # a plain start wrote over it


def test_cv_reports_a_refused_fold_and_final_applies_the_row_rules(data, uninterrupted, tmp_path):
    root = _copy(uninterrupted, tmp_path / "run")
    out = spectra_cv("cv", "--folds", "1", *fold_args(data, root, epochs=3), cwd=root, check=False)
    assert out.returncode == 1
    assert "fold(s) 1 refused to run (nothing of theirs was changed): fold_01 completed, but the config differs" \
        in out.stderr
    own = _copy(data, tmp_path / "data")
    frame = pd.read_csv(own / "spectra_for_fold" / "manifest.csv", dtype=str, keep_default_na=False)
    frame.iloc[[0]].assign(relative_path="/etc/passwd").pipe(lambda bad: pd.concat([frame, bad])).to_csv(
        own / "spectra_for_fold" / "manifest.csv", index=False)
    out = spectra_cv("final", "--data-root", str(own / "spectra_for_fold"), "--metadata-dir", str(own / "metadata"),
                     "--run-root", ".", cwd=root, check=False)
    assert out.returncode == 1 and "/etc/passwd: an absolute path" in out.stderr
    assert not (root / "logs" / "final").exists() and not (root / "checkpoints" / "final").exists()


@pytest.mark.parametrize("crash_at", [*range(0, 30, 3), 1, 29])  # 15 items, two renames each
def test_a_retrain_swap_interrupted_at_any_rename_is_finished_by_the_next_one(tmp_path, monkeypatch, crash_at):
    """Every staged item, killed before or after either of its renames (simulated: the rename raises),
    ends live with the new content once ``swap_in`` runs again, and nothing is left beside it."""
    from spectra_cv.runs import outputs

    paths, model = RunPaths(root=tmp_path), "mamba_tiny_uv"
    live, staged = outputs.FoldOutputs(paths, 1), outputs.FoldOutputs(paths, 1, staged=True)
    for which, version in ((live, "old"), (staged, "new")):
        for item in which.items(model):
            if item in (which.manifests_dir, which.denoised_root):  # folders
                (item / "inside").mkdir(parents=True, exist_ok=True)
                (item / "inside" / "f.txt").write_text(version)
            else:
                item.parent.mkdir(parents=True, exist_ok=True)
                item.write_text(version)
    renames, real = [0], os.rename

    def rename(src, dst):
        renames[0] += 1
        if renames[0] > crash_at:
            raise OSError("killed")  # stands for a SIGKILL between two renames
        real(src, dst)

    monkeypatch.setattr(outputs.os, "rename", rename)
    with pytest.raises(OSError):
        outputs.swap_in(staged, model)
    monkeypatch.setattr(outputs.os, "rename", real)
    outputs.swap_in(staged, model)
    for item in live.items(model):
        folder = item in (live.manifests_dir, live.denoised_root)
        content = (item / "inside" / "f.txt").read_text() if folder else item.read_text()
        assert content == "new", item
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".retrain", ".replaced"))]
