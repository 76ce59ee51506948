"""The report's run facts per fold: what it trained with (epochs, learning rate, batch, seed, time
budget), what it computed on (device, CPU or GPU model, threads), with which versions, and how long
it took. Read from each completed fold's events (the run that produced its live result)."""

from __future__ import annotations

from typing import Any

from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs.rerun import finished_folds
from spectra_cv.train.progress import format_duration

VERSIONS = ("python", "torch", "numpy", "pandas", "mamba-ssm")


def _hardware(done: ev.Event | None) -> str:
    hw = (done.data.get("hardware") if done is not None else None) or {}
    if not isinstance(hw, dict) or not hw:
        return "(not recorded)"
    return f"{hw.get('device')} ({hw.get('name')}; {hw.get('threads')} thread(s) of {hw.get('cpus')} CPUs)"


def _row(fold: int, run: list[ev.Event]) -> str:
    start, trained, completed = run[0].data, ev.last_of(run, ev.TRAIN_DONE), ev.last_of(run, ev.COMPLETED)
    train: dict[str, Any] = (start.get("config") or {}).get("train", {})
    t = trained.data if trained is not None else {}
    budget = train.get("time_budget_s") or 0
    total = completed.data.get("total_seconds") if completed is not None else None
    lr = train.get("lr")
    return (f"| {fold} | {t.get('best_epoch', '—')} of {t.get('epochs_run', '—')} ({t.get('stopped_because', '—')}) "
            f"| {train.get('epochs', '—')} | {f'{lr:g}' if isinstance(lr, (int, float)) else '—'} "
            f"| {train.get('batch_size', '—')} "
            f"| {train.get('seed', '—')} | {format_duration(budget) if budget else 'none'} "
            f"| {format_duration(t.get('seconds'))} | {format_duration(total)} | {_hardware(trained)} |")


def run_fact_lines(paths: RunPaths, folds: tuple[int, ...]) -> list[str]:
    """The per-fold table and the library versions (those the folds agree on, else per fold)."""
    runs = {f: done.run for f, done in finished_folds(paths, skip_unreadable=True).items() if f in folds}
    if not runs:
        return []
    lines = ["| fold | best epoch of run (stopped by) | max epochs | lr | batch | seed | time budget | training "
             "| fold in all | computed on |", "|---:|---|---:|---:|---:|---:|---|---|---|---|"]
    lines += [_row(fold, run) for fold, run in sorted(runs.items())]
    versions: dict[str, set[str]] = {}
    for run in runs.values():
        for name in VERSIONS:
            versions.setdefault(name, set()).add(str((run[0].data.get("library_versions") or {}).get(name)))
    said = ", ".join(f"{name} {'/'.join(sorted(v))}" for name, v in versions.items() if v != {"None"})
    return [*lines, "", f"Versions: {said}." if said else "Versions: (not recorded)."]
