"""``spectra-cv status [--watch]``: every fold's state, read from the events under the run root.

Works wherever the run root is visible (beside ``cv``, in another container, on a cluster's
login node): it reads files only and never writes. For folds sent with ``slurm submit`` it also asks
Slurm's queue (where ``squeue`` is) and shows why a task is still pending. ``--watch`` redraws the table in place on a
terminal (plain lines when the output is not a terminal) until no fold is at work.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from spectra_cv import paths
from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.log import get_logger
from spectra_cv.runs.status import FoldState

log = get_logger("cli.status")
SLURM_EVERY_S = 30.0
"""--watch asks Slurm's queue at most this often (squeue is a request to the controller)."""


@click.command(cls=GreedyCommand, greedy=("folds",), context_settings=CONTEXT_SETTINGS)
@click.option("--run-root", type=click.Path(path_type=Path, file_okay=False, exists=True), default=Path("."),
              envvar=paths.ENV_RUN_ROOT, show_default=True,
              help=f"Run root holding logs/Track_H_fold_##/events.jsonl [env {paths.ENV_RUN_ROOT}].")
@click.option("--folds", type=click.IntRange(1, 5), multiple=True,
              help="Folds to show (repeatable) [default: every fold with events].")
@click.option("--watch", is_flag=True, help="Keep showing the states until no fold is at work (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
def status(run_root: Path, folds: tuple[int, ...], watch: bool, interval: float) -> None:
    """Show each fold's stage, epoch, best validation PSNR and ETA (or its test PSNR once done)."""
    from spectra_cv.runs.status import LiveLines, format_states, run_states

    run = paths.RunPaths(root=run_root)
    chosen = sorted(folds) if folds else None
    if not watch:
        for line in format_states(_with_slurm_queue(run_states(run, chosen), _slurm_pending(run), chosen)):
            click.echo(line)
        return
    live = LiveLines(sys.stdout)
    idle_polls = 0  # two polls in a row with no fold at work: cv may be between two folds once
    pending, asked = {}, float("-inf")
    try:
        while True:
            if time.monotonic() - asked >= SLURM_EVERY_S:
                pending, asked = _slurm_pending(run), time.monotonic()
            states = _with_slurm_queue(run_states(run, chosen), pending, chosen)
            live.show(states)
            idle_polls = idle_polls + 1 if states and all(s.finished for s in states) else 0
            if idle_polls >= 2:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def _slurm_pending(run: paths.RunPaths) -> dict[int, str]:
    """Fold → why Slurm holds its task pending, for a run root with ``slurm submit`` records, read where
    squeue is (elsewhere, e.g. the run root seen from a laptop: nothing). Reading the queue is a side
    effect of showing the states: a failure is a warning."""
    from spectra_cv.cluster import slurm

    if not (run.root / slurm.SUBMISSIONS).is_dir() or shutil.which("squeue") is None:
        return {}
    try:
        return slurm.pending_folds(run)
    except slurm.SlurmError as exc:
        log.warning("Slurm's queue is not shown: %s", exc)
        return {}


def _with_slurm_queue(states: list[FoldState], pending: dict[int, str], chosen: list[int] | None) -> list[FoldState]:
    """The states, each fold Slurm holds pending marked ``queued`` with Slurm's reason (a fold with no
    events yet gets a line of its own)."""
    by_fold = {s.fold: s for s in states}
    for fold, why in pending.items():
        if chosen is None or fold in chosen:
            base = by_fold.get(fold) or FoldState(fold=fold, state="pending", stage="pending")
            stage = "not started" if base.state == "pending" else base.stage
            by_fold[fold] = replace(base, state="queued", stage=stage, queued=why)
    return [by_fold[f] for f in sorted(by_fold)]
