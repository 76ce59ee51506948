"""Where every fold of a run stands, read from its events: what ``status`` and ``cv`` show.

Reads files only (each fold's ``events.jsonl`` and whether a process holds its lock), so it works
on any host that sees the run root: beside a ``cv`` run, in another container, on a cluster's
login node. A fold's line names its stage (manifests, training, denoising a split, evaluating,
completed, failed, interrupted), and while it trains the epoch, the best validation PSNR so far,
the elapsed training time and an upper bound of the time left (``train.progress``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs.coordinator import fold_alive
from spectra_cv.train.progress import format_duration

FINISHED = ("completed", "failed", "interrupted", "skipped")
"""States in which no process works on the fold."""


@dataclass(frozen=True, kw_only=True)
class FoldState:
    """One fold's state as its events tell it."""

    fold: int
    state: str
    """pending, running, completed, failed, interrupted or skipped."""
    stage: str
    """What the fold does or did last (``training``, ``denoising test`` …)."""
    epoch: int | None = None
    epochs: int | None = None
    best_val_psnr: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    """Upper bound of the training time left, as of now (None outside training)."""
    earliest_stop_epoch: int | None = None
    test_psnr: float | None = None
    best_linear_psnr: float | None = None
    """Test PSNR of ridge+Wiener, the best linear baseline, when evaluated."""
    total_s: float | None = None
    error: str = ""
    queued: str = ""
    """Why Slurm holds the fold's task pending (its reason and task), when it does (state ``queued``)."""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


_STAGES = {
    ev.START: "starting", ev.MANIFESTS: "writing manifests", ev.MANIFESTS_DONE: "manifests written",
    ev.TRAIN: "training", ev.EPOCH: "training", ev.TRAIN_DONE: "trained", ev.CHECKPOINT: "trained",
    ev.EVALUATED: "evaluated", ev.SWAP: "swapping the retrain in", ev.COMPLETED: "completed",
}


def _stage(run: list[ev.Event]) -> str:
    stage = "pending"
    for event in run:
        if event.type in _STAGES:
            stage = _STAGES[event.type]
        elif event.type == ev.INFER:
            stage = f"denoising {event.data.get('split', '')}".strip()
        elif event.type == ev.INFER_DONE:
            stage = "evaluating" if event.data.get("split") == "test" else f"denoised {event.data.get('split', '')}"
        elif event.type == ev.RESUME and event.data.get("stage") == "train":
            stage = "training"
        elif event.type == ev.SKIP:
            stage = "skipped (already completed)"
        elif event.type == ev.FAILED:
            stage = f"failed in {event.data.get('stage', 'the pipeline')}"
    return stage


def _age_s(stamp: str, now: float) -> float:
    try:
        then = ev.timestamp(stamp)
    except ValueError:
        return 0.0
    return max(0.0, now - then)


def fold_state(fold: int, events: list[ev.Event], alive: bool, now: float | None = None) -> FoldState:
    """The state of ``fold`` from its events; ``alive``: whether a process holds its lock."""
    now = time.time() if now is None else now
    run = ev.current_run(events)
    state = ev.run_status(run)
    if run and run[-1].type == ev.SKIP:
        state = "skipped"
    elif state == "running" and not alive:
        state = "interrupted"
    stage = _stage(run)
    fields: dict = {}
    epoch = ev.last_of(run, ev.EPOCH)
    if epoch is not None:
        d = epoch.data
        fields.update(epoch=d.get("epoch"), epochs=d.get("epochs"), best_val_psnr=d.get("best_val_psnr"),
                      elapsed_s=d.get("elapsed_s"), earliest_stop_epoch=d.get("earliest_stop_epoch"))
        if state == "running" and stage == "training" and d.get("eta_s") is not None:
            fields["eta_s"] = max(0.0, float(d["eta_s"]) - _age_s(epoch.time, now))
    trained = ev.last_of(run, ev.TRAIN_DONE)
    if trained is not None:
        fields.update(epoch=trained.data.get("epochs_run", fields.get("epoch")),
                      best_val_psnr=trained.data.get("val_psnr", fields.get("best_val_psnr")))
    evaluated = ev.last_of(run, ev.EVALUATED)
    if evaluated is not None:
        test = evaluated.data.get("test", {})
        fields.update(test_psnr=test.get("model", {}).get("psnr_mean"),
                      best_linear_psnr=test.get("ridge_wiener", {}).get("psnr_mean"))
    end = ev.last_of(run, ev.COMPLETED)
    if end is not None and state == "completed":
        fields["total_s"] = end.data.get("total_seconds")
    failure = ev.last_of(run, ev.FAILED)
    if failure is not None and state == "failed":
        fields["error"] = failure.message or str(failure.data.get("error", ""))
    if state == "interrupted":
        stage = f"interrupted while {stage} (rerun to resume)"
    return FoldState(fold=fold, state=state, stage=stage, **fields)


def run_states(paths: RunPaths, folds: list[int] | None = None) -> list[FoldState]:
    """Every fold's state (the folds with an event file, or ``folds``: those without one are pending)."""
    chosen = paths.folds_with_events() if folds is None else sorted(folds)
    now = time.time()
    return [fold_state(f, ev.read_events(paths.events(f)), fold_alive(paths, f), now) for f in chosen]


def _db(value: float | None) -> str:
    return f"{value:.2f} dB" if isinstance(value, (int, float)) else "-"


def format_state(s: FoldState) -> str:
    """One plain line: ``fold 2  training  epoch 5/60  best val 55.10 dB  elapsed 3m20s  ETA ≤ 10m40s``."""
    parts = [f"fold {s.fold}", s.stage]
    if s.state == "running" and s.stage == "training" and s.epoch is not None:
        parts.append(f"epoch {s.epoch}/{s.epochs}" if s.epochs else f"epoch {s.epoch}")
        parts.append(f"best val {_db(s.best_val_psnr)}")
        if s.elapsed_s is not None:
            parts.append(f"elapsed {format_duration(s.elapsed_s)}")
        if s.eta_s is not None:
            parts.append(f"ETA ≤ {format_duration(s.eta_s)}")
    elif s.state == "running" and s.epoch is not None:  # trained: what it kept
        parts.append(f"{s.epoch} epochs, best val {_db(s.best_val_psnr)}")
    elif s.state == "completed":
        if s.test_psnr is not None:
            parts.append(f"test PSNR {_db(s.test_psnr)} (ridge+Wiener {_db(s.best_linear_psnr)})")
        if s.total_s is not None:
            parts.append(f"in {format_duration(float(s.total_s))}")
    elif s.state == "failed" and s.error:
        parts.append(s.error)
    if s.queued:
        parts.append(f"queued in Slurm, pending: {s.queued}")
    return "  ".join(parts)


def format_states(states: list[FoldState]) -> list[str]:
    """The lines of a status table (one per fold; a line when there are none)."""
    if not states:
        return ["no folds yet (no logs/Track_H_fold_##/events.jsonl under the run root)"]
    return [format_state(s) for s in states]


class LiveLines:
    """Shows fold states as they change: redrawn in place on a terminal, plain lines otherwise.

    Plain mode (CI, log files) prints a fold's line when its stage changes, and while it trains
    again at most every ``plain_every_s`` seconds, so a long run's log stays readable.
    """

    def __init__(self, stream: TextIO, tty: bool | None = None, plain_every_s: float = 60.0) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.plain_every_s = plain_every_s
        self._drawn = 0
        self._last: dict[int, tuple[str, float]] = {}

    def show(self, states: list[FoldState], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.tty:
            lines = format_states(states)
            up = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
            self.stream.write(up + "\n".join(lines) + "\n")
            self._drawn = len(lines)
        else:
            for s in states:
                key = f"{s.state}|{s.stage}"
                last = self._last.get(s.fold)
                training = s.state == "running" and s.stage == "training"
                if last is not None and last[0] == key and (not training or now - last[1] < self.plain_every_s):
                    continue
                if last is None and s.state == "pending":
                    continue
                self.stream.write(format_state(s) + "\n")
                self._last[s.fold] = (key, now)
        self.stream.flush()

    def forget_drawing(self) -> None:
        """Something else was written below the block: draw the next one afresh under it."""
        self._drawn = 0
