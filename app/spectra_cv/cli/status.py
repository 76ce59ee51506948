"""``spectra-cv status [--watch]``: every fold's state, read from the events under the run root.

Works wherever the run root is visible (beside ``cv``, in another container, on a cluster's
login node): it reads files only and never writes. ``--watch`` redraws the table in place on a
terminal (plain lines when the output is not a terminal) until no fold is at work.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from spectra_cv import paths
from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand


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
        for line in format_states(run_states(run, chosen)):
            click.echo(line)
        return
    live = LiveLines(sys.stdout)
    idle_polls = 0  # two polls in a row with no fold at work: cv may be between two folds once
    try:
        while True:
            states = run_states(run, chosen)
            live.show(states)
            idle_polls = idle_polls + 1 if states and all(s.finished for s in states) else 0
            if idle_polls >= 2:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return
