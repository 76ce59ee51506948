"""``spectra-cv coordinator``: the single writer of the audit logs and ``fold_summary.csv``."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, GreedyCommand


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option("--follow", "mode", flag_value="follow", default=True,
              help="Keep syncing until stopped (SIGTERM/SIGINT) [default].")
@click.option("--once", "mode", flag_value="once", help="Sync once and exit.")
@click.option("--rebuild", "mode", flag_value="rebuild",
              help="Regenerate every audit log and the summary from the events, then exit.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between syncs (--follow).")
@click.option("--run-root", type=DIR, default=None,
              help="Run root holding logs/ and artifacts/ [env SPECTRA_CV_RUN_ROOT; default .].")
def coordinator(mode: str, interval: float, run_root: Path | None) -> None:
    """Turn the folds' events into audit lines and summary rows (restartable at any point)."""
    from spectra_cv.errors import SpectraCVError
    from spectra_cv.paths import RunPaths
    from spectra_cv.runs.coordinator import Coordinator, follower

    paths = RunPaths(root=run_root) if run_root is not None else RunPaths.from_env()
    coord = Coordinator(paths)
    if mode in ("once", "rebuild"):
        result = coord.sync() if mode == "once" else coord.rebuild()
        done = "synced" if mode == "once" else "rebuilt"
        click.echo(f"{done} folds {list(result.folds)}: {result.appended} audit line(s) written")
        if result.errors:
            raise SpectraCVError("; ".join(result.errors))
        return
    with follower(paths):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(f"coordinator following {paths.root / 'logs'} every {interval:g} s (SIGTERM to stop)")
        coord.follow(stop, interval)
