"""All folds: each in its own ``spectra-cv fold`` process, K at a time, with one coordinator.

Each fold runs as a child process (a crash or an out-of-memory kill takes one fold down, not the
run), its console output appended to ``logs/Track_H_fold_##/fold.log``. The folds are laid onto
lanes by ``runs.lanes`` (the rule ``make cv`` follows too): with ``gpus`` every child sees exactly
one GPU (``CUDA_VISIBLE_DEVICES``), and a GPU serves one fold at a time unless more lanes than GPUs
are asked for. This process
holds the coordinator lock and syncs while the folds run; when a coordinator already runs (a
compose service) it leaves the writing to that one.

A child that dies without recording an outcome (a signal, the OOM killer, ``--fail-fast``
stopping it) gets a ``failed`` event written on its behalf once its fold lock is free, so the
summary never shows a dead fold as running; a rerun retries it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from spectra_cv import io as sio
from spectra_cv.errors import EXIT_REFUSED, ConfigError, RunRootBusy
from spectra_cv.folds.manifests import check_fold
from spectra_cv.log import get_logger
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs.coordinator import Coordinator, follower
from spectra_cv.runs.events import fold_status
from spectra_cv.runs.lanes import plan_lanes, shared_gpus
from spectra_cv.runs.locks import LockBusy, file_lock
from spectra_cv.runs.status import LiveLines, run_states
from spectra_cv.runs.summary import read_summary

log = get_logger("cv")


@dataclass(frozen=True, kw_only=True)
class CvPlan:
    folds: tuple[int, ...]
    fold_args: tuple[str, ...]
    """Arguments every child ``spectra-cv fold`` gets (data, config, device …)."""
    paths: RunPaths
    parallel: int = 1
    gpus: tuple[str, ...] = ()
    fail_fast: bool = False
    poll_s: float = 0.5
    live: TextIO | None = None
    """Where to show every fold's state while they run (``runs.status.LiveLines``); None: nowhere."""
    live_every_s: float = 2.0
    wait: bool = False
    """When another cv run holds the run root: wait for it to end (True) or refuse at once."""


@dataclass
class CvOutcome:
    results: dict[int, str] = field(default_factory=dict)
    """fold → completed | skipped | refused | failed | not run."""
    reasons: dict[int, str] = field(default_factory=dict)
    """fold → why it was refused (the fold's own message)."""

    @property
    def failed(self) -> list[int]:
        return sorted(f for f, r in self.results.items() if r != "completed" and r != "skipped")

    @property
    def refused(self) -> list[int]:
        return sorted(f for f, r in self.results.items() if r == "refused")


@dataclass
class _Child:
    fold: int
    process: subprocess.Popen
    gpu: str | None
    log_handle: object
    started: float


def _check(plan: CvPlan) -> None:

    if not plan.folds:
        raise ConfigError("no folds to run; pass --folds 1 2 3 4 5 (or a subset)")
    for fold in plan.folds:
        check_fold(fold)
    if len(set(plan.folds)) != len(plan.folds):
        raise ConfigError(f"--folds {list(plan.folds)} repeats a fold")
    if plan.parallel < 1:
        raise ConfigError("--parallel must be >= 1")


@contextlib.contextmanager
def _hold_run_root(paths: RunPaths, wait: bool) -> Iterator[None]:
    """Hold the run root's cv lock for the run (``RunRootBusy`` naming the other run, unless ``wait``)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(paths.cv_lock, "the run root", wait_s=0.5))
        except LockBusy as exc:
            other = _holder(paths)
            if not wait:
                raise RunRootBusy(
                    f"{paths.root}: another cross-validation run holds this run root ({other}); nothing was "
                    "started. Wait for it to end (`spectra-cv status` shows its folds), or rerun with --wait to "
                    "start when it has"
                ) from exc
            log.info("another cross-validation run holds %s (%s); waiting for it to end (--wait)", paths.root, other)
            stack.enter_context(file_lock(paths.cv_lock, "the run root", blocking=True))
        sio.atomic_write_json(paths.cv_holder, {
            "host": socket.gethostname(), "pid": os.getpid(), "started": ev.now_iso(),
            "command": " ".join(sys.argv[:6]) + (" …" if len(sys.argv) > 6 else ""),
        })
        yield


def _holder(paths: RunPaths) -> str:
    """``pid 123 on host-a since 2026-12-06T22:40:00 UTC`` from the holder's note (or what the lock knows)."""
    try:
        info = json.loads(paths.cv_holder.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} since {info['started']} UTC: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its holder left no note"


def _record_death(paths: RunPaths, fold: int, why: str) -> None:
    """Write a ``failed`` event for a child that ended without recording an outcome (once its lock is free)."""
    try:
        with file_lock(paths.fold_lock(fold), f"fold {fold}", wait_s=3.0):  # rides out the follower's probe
            writer = ev.EventWriter(paths.events(fold), fold)
            if fold_status(writer.events) == "running":
                writer.emit(ev.FAILED, f"Fold failed: {why}", stage="process", error=why)
    except LockBusy:
        log.warning("fold %d: its lock is still held after the process ended; not recording the failure", fold)


def _last_error(paths: RunPaths, fold: int) -> str:
    events = ev.read_events(paths.events(fold))
    failure = ev.last_of(ev.current_run(events), ev.FAILED)
    return failure.message if failure is not None and failure.message else "see its fold.log"


def run_cv(plan: CvPlan) -> CvOutcome:
    """Run the plan's folds; returns each fold's result (failures do not stop the others unless fail_fast)."""
    _check(plan)
    paths = plan.paths
    outcome = CvOutcome(results={f: "not run" for f in plan.folds})
    with contextlib.ExitStack() as stack:
        stack.enter_context(_hold_run_root(paths, plan.wait))
        stop = threading.Event()
        thread: threading.Thread | None = None
        try:
            stack.enter_context(follower(paths))
            coord = Coordinator(paths)
            thread = threading.Thread(target=coord.follow, args=(stop, 1.0), name="coordinator", daemon=True)
            thread.start()
        except LockBusy:
            log.info("a coordinator already follows %s; it writes the audit logs and summary", paths.root)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # `docker compose stop cv`: stop the folds cleanly
        try:
            _run_children(plan, outcome)
        finally:
            signal.signal(signal.SIGTERM, previous)
            stop.set()
            if thread is not None:
                thread.join()
    return outcome


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run_children(plan: CvPlan, outcome: CvOutcome) -> None:
    paths = plan.paths
    lanes = plan_lanes(plan.folds, plan.parallel, plan.gpus)
    shared = shared_gpus(lanes)
    if shared:
        log.warning("%d lanes on %d GPU(s): GPU %s run(s) two folds at once", len(lanes), len(plan.gpus),
                    ", ".join(shared))
    queues = {lane.index: list(lane.folds) for lane in lanes}
    running: dict[int, tuple[int, _Child]] = {}  # lane → (fold, its process)
    stopping = False
    live = LiveLines(plan.live) if plan.live is not None else None
    shown = 0.0
    try:
        while any(queues.values()) or running:
            for lane in lanes:
                if lane.index not in running and queues[lane.index] and not stopping:
                    fold = queues[lane.index].pop(0)
                    running[lane.index] = (fold, _launch(plan, fold, lane.gpu, quiet=live is not None and live.tty))
            time.sleep(plan.poll_s)
            if live is not None and time.monotonic() - shown >= plan.live_every_s:
                live.show(run_states(paths, list(plan.folds)))
                shown = time.monotonic()
            for index, (fold, child) in list(running.items()):
                code = child.process.poll()
                if code is None:
                    continue
                del running[index]
                child.log_handle.close()  # type: ignore[attr-defined]
                outcome.results[fold] = _finish(paths, fold, code, time.monotonic() - child.started)
                if outcome.results[fold] == "refused":
                    outcome.reasons[fold] = _refusal(paths, fold)
                if outcome.results[fold] == "failed" and plan.fail_fast and not stopping:
                    stopping = True
                    waiting = sorted(f for q in queues.values() for f in q)
                    log.error("--fail-fast: fold %d failed; stopping the others (not started: %s)", fold,
                              ", ".join(map(str, waiting)) or "none")
                    for q in queues.values():
                        q.clear()
                    for _, other in running.values():
                        other.process.send_signal(signal.SIGTERM)
        if live is not None:
            live.show(run_states(paths, list(plan.folds)))
    except KeyboardInterrupt:
        log.error("interrupted; stopping the running folds (rerun to resume them)")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _, child in running.values():
            child.process.send_signal(signal.SIGTERM)
        for fold, child in running.values():
            child.process.wait()
            _record_death(paths, fold, "interrupted (the cv run was stopped)")
        raise


def _launch(plan: CvPlan, fold: int, gpu: str | None, quiet: bool = False) -> _Child:
    """Start fold ``fold``'s process (``quiet``: its start is shown by the live lines, not logged)."""
    paths = plan.paths
    log_path = paths.fold_log(fold)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_path, "ab")
    env = dict(os.environ)
    args = [sys.executable, "-m", "spectra_cv", "fold", "--fold", str(fold), *plan.fold_args]
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if plan.parallel > 1 and gpu is None:
        # folds sharing CPU cores: split the threads instead of oversubscribing them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // plan.parallel)))
    process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)
    where = f" on GPU {gpu}" if gpu is not None else ""
    log.log(logging.DEBUG if quiet else logging.INFO, "[fold %d] started (pid %d%s); output in %s", fold,
            process.pid, where, log_path)
    return _Child(fold=fold, process=process, gpu=gpu, log_handle=handle, started=time.monotonic())


def _refusal(paths: RunPaths, fold: int) -> str:
    """The refusal message the fold printed last (its fold.log ends with ``Error: …``)."""
    try:
        lines = (paths.fold_log(fold)).read_text(errors="replace").splitlines()
    except OSError:
        return "see its fold.log"
    errors = [line[len("Error: "):] for line in lines if line.startswith("Error: ")]
    return errors[-1] if errors else "see its fold.log"


def _finish(paths: RunPaths, fold: int, code: int, seconds: float) -> str:
    if code == EXIT_REFUSED:
        log.error("[fold %d] refused: %s", fold, _refusal(paths, fold))
        return "refused"
    if code == 0:
        events = ev.read_events(paths.events(fold))
        status = fold_status(events)
        last = ev.current_run(events)
        result = "skipped" if last and last[-1].type == ev.SKIP else "completed"
        log.info("[fold %d] %s in %.0f s", fold, result if status == "completed" else status, seconds)
        return result
    _record_death(paths, fold, f"process killed by signal {-code}" if code < 0 else f"process exited with code {code}")
    log.error("[fold %d] failed (exit %d): %s", fold, code, _last_error(paths, fold))
    return "failed"


def parse_gpus(spec: str | None) -> tuple[str, ...]:
    """``"0,1"`` → ``("0", "1")``; None or "" → ()."""
    if not spec:
        return ()
    gpus = tuple(g.strip() for g in spec.split(",") if g.strip())
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus {spec!r} lists a GPU twice")
    return gpus


def folds_of(values: Sequence[int]) -> tuple[int, ...]:
    return tuple(values) if values else (1, 2, 3, 4, 5)


def summary_lines(paths: RunPaths) -> list[str]:
    """One line per fold of the summary, for the console."""

    try:
        frame = read_summary(paths.summary_csv)
    except Exception:  # noqa: BLE001 - the console summary is best effort
        return []
    lines = []
    for _, row in frame.iterrows():
        psnr = row.get("test_psnr_mean")
        extra = f" test PSNR {psnr:.2f} dB" if isinstance(psnr, float) and psnr == psnr else ""
        lines.append(f"fold {int(row['fold'])}: {row['status']}{extra}")
    return lines

